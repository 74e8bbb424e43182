"""A live reader's WebSocket connection once the handshake is done: small, and no task of its own.

uvicorn's WebSocket protocol serves the handshake and ASGI serves the admission and the join like
any route (:mod:`liveblog.live`). At ``websocket.accept`` the transport is handed to a
:class:`LiveConnection`, and once the reader has joined, the app call returns. What is left per
reader is this object and its :class:`~liveblog.hub.Subscription`, a few hundred bytes, instead of
an ASGI task with its frames, a receive queue, events and websockets' parser (which keeps the
handshake's headers alive): a reader holds its connection for hours, and a process holds 10k.

It does what a server-push channel needs and no more: write the frames the hub hands it (the same
bytes for every reader, written at once, never awaited), answer pings, be pinged (by the one
:class:`Keepalive` of the process) and dropped when it stops answering, both closing handshakes,
and refuse binary messages (1003). Text messages
from the reader are not part of the protocol and are ignored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from websockets.exceptions import ProtocolError
from websockets.frames import Close, Frame, Opcode
from websockets.utils import apply_mask

#: After the server sends its close frame, how long the reader gets to read its backlog and answer.
CLOSE_GRACE = 5.0
#: Pings are not answered while this much is waiting to be sent to the reader.
PONG_BACKLOG = 64 * 1024
PROTOCOL_ERROR = 1002
UNSUPPORTED_DATA = 1003
MESSAGE_TOO_BIG = 1009
KEEPALIVE_FAILED = 1011
SERVICE_RESTART = 1012

_CONT, _TEXT, _BINARY, _CLOSE, _PING, _PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_KNOWN_OPCODES = frozenset((_CONT, _TEXT, _BINARY, _CLOSE, _PING, _PONG))
_PING_FRAME = Frame(Opcode.PING, b"").serialize(mask=False)


class FrameError(Exception):
    """The client broke RFC 6455; the connection is failed with ``code``."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


def parse_client_frames(data: bytes, max_size: int) -> tuple[list[tuple[int, bytes]], bytes]:
    """Split bytes a client sent into its complete frames, as ``(opcode, unmasked payload)``, and
    the incomplete rest, to be parsed again with what comes next.

    Raises :class:`FrameError` on a protocol violation (unmasked frame, reserved bits, unknown
    opcode, fragmented or oversized control frame) or a frame over ``max_size`` bytes. Fragments
    are returned as they are: this channel ignores text and refuses binary at its first frame.
    """
    frames = []
    offset, end = 0, len(data)
    while end - offset >= 2:
        first, second = data[offset], data[offset + 1]
        opcode, length = first & 0x0F, second & 0x7F
        if first & 0x70:
            raise FrameError(PROTOCOL_ERROR, "reserved bits set")
        if not second & 0x80:
            raise FrameError(PROTOCOL_ERROR, "client frames must be masked")
        if opcode not in _KNOWN_OPCODES:
            raise FrameError(PROTOCOL_ERROR, f"unknown opcode {opcode:#x}")
        if opcode >= _CLOSE and (length > 125 or not first & 0x80):
            raise FrameError(PROTOCOL_ERROR, "control frames are unfragmented and at most 125 bytes")
        header = 2 + {126: 2, 127: 8}.get(length, 0)
        if end - offset < header:
            break
        if header > 2:
            length = int.from_bytes(data[offset + 2 : offset + header], "big")
        if length > max_size:
            raise FrameError(MESSAGE_TOO_BIG, f"frames are limited to {max_size} bytes")
        start = offset + header + 4
        if end - start < length:
            break
        frames.append((opcode, apply_mask(data[start : start + length], data[start - 4 : start])))
        offset = start + length
    return frames, data[offset:]


def close_frame(code: int, reason: str = "") -> bytes:
    return Frame(Opcode.CLOSE, Close(code, reason).serialize()).serialize(mask=False)


class LiveConnection(asyncio.Protocol):
    """The transport's protocol from ``websocket.accept`` on; the reader's sink for the hub.

    ``connections`` is uvicorn's set of open connections: it is in it while open, so a graceful
    shutdown reaches it (:meth:`shutdown`, close code 1012) and waits for it to close.
    """

    __slots__ = (
        "_transport",
        "_connections",
        "_max_size",
        "_keepalive",
        "_timer",
        "_pong_due",
        "_pinged_at",
        "_owed_pong",
        "_closing",  # a close frame was sent or received, or the connection is lost
        "_lost",
        "_pending",
        "_release",
    )

    def __init__(self, connections: set, max_size: int):
        self._transport: asyncio.Transport | None = None
        self._connections = connections
        self._max_size = max_size
        self._keepalive: Keepalive | None = None
        self._timer: asyncio.TimerHandle | None = None  # only while closing: the grace period
        self._pong_due = False
        self._pinged_at = 0.0
        self._owed_pong: bytes | None = None
        self._closing = False
        self._lost = False
        self._pending = b""
        self._release: Callable[[], None] | None = None

    # -- ownership

    def take_over(self, transport: asyncio.Transport) -> None:
        """Become ``transport``'s protocol (the handshake response has been written)."""
        self._transport = transport
        self._connections.add(self)
        transport.set_protocol(self)
        transport.set_write_buffer_limits(high=PONG_BACKLOG)  # resume_writing: time to send owed pongs

    def adopt(self, release: Callable[[], None], keepalive: Keepalive) -> None:
        """Call ``release`` once, when the connection ends (at once if it already has), and be
        pinged by ``keepalive`` until then: the app call that joined the reader returns and
        leaves the rest of the reader's life to us."""
        if self._lost:
            release()
        else:
            self._release = release
            self._keepalive = keepalive
            keepalive.watch(self)

    def ping(self, now: float, timeout: float) -> None:
        """Called by :class:`Keepalive` about once per interval: ping the client, unless the last
        ping is still unanswered; after ``timeout`` seconds unanswered (a phone that left without
        a word), drop the connection so that it does not hold its resources for hours."""
        if self._closing:
            return
        if not self._pong_due:
            self._pong_due, self._pinged_at = True, now
            self._transport.write(_PING_FRAME)
        elif now - self._pinged_at >= timeout:
            self._fail(KEEPALIVE_FAILED, "keepalive ping timeout")

    # -- the hub's sink

    def send(self, message) -> int:  # noqa: ANN001 - liveblog.hub.Message; no import cycle
        # The hot path: once per reader per message. Attribute checks and C calls only.
        transport = self._transport
        if self._closing or transport.is_closing():
            return 0
        transport.write(message.ws_frame)
        return transport.get_write_buffer_size()

    def close(self, code: int, reason: str) -> None:
        """Send a close frame now, behind what is queued; cut the reader off if it has not
        answered within ``CLOSE_GRACE`` (a stalled reader never drains its backlog)."""
        if self._closing:
            return
        self._closing = True
        self._transport.write(close_frame(code, reason))
        self._set_timer(CLOSE_GRACE, self._transport.abort)

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown: tell the reader to come back (1012), and hang up once
        what is queued is sent, or after ``CLOSE_GRACE`` if the reader is not reading."""
        if not self._lost:
            if not self._closing:
                self._transport.write(close_frame(SERVICE_RESTART, "server restarting; reconnect with your cursor"))
            self._closing = True
            self._hang_up()

    # -- asyncio.Protocol

    def data_received(self, data: bytes) -> None:
        try:
            frames, self._pending = parse_client_frames(self._pending + data, self._max_size)
        except FrameError as error:
            self._fail(error.code, error.reason)
            return
        for opcode, payload in frames:
            if opcode == _PONG:
                self._pong_due = False
            elif opcode == _PING:
                # A client that pings without reading must not grow our buffer without end: while
                # PONG_BACKLOG waits, only the latest ping is remembered (RFC 6455 allows answering
                # just the latest of several), and answered when the backlog drains.
                if self._transport.get_write_buffer_size() < PONG_BACKLOG:
                    self._pong(payload)
                else:
                    self._owed_pong = payload
            elif opcode == _CLOSE:
                self._answer_close(payload)
                return
            elif opcode == _BINARY:
                self.close(UNSUPPORTED_DATA, "this channel takes no binary messages")

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = self._closing = True
        self._connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._keepalive is not None:
            self._keepalive.forget(self)
        if self._release is not None:
            release, self._release = self._release, None
            release()

    # -- internals

    def _answer_close(self, payload: bytes) -> None:
        """The client's close frame: echo it (unless it answers ours), then hang up."""
        if not self._closing:
            try:
                close = Close.parse(payload)
            except (ProtocolError, UnicodeDecodeError):
                self._fail(PROTOCOL_ERROR, "invalid close frame")
                return
            self._transport.write(
                close_frame(close.code) if payload else Frame(Opcode.CLOSE, b"").serialize(mask=False)
            )
            self._closing = True
        self._hang_up()

    def _fail(self, code: int, reason: str) -> None:
        if not self._closing:
            self._transport.write(close_frame(code, reason))
            self._closing = True
        self._hang_up()

    def _hang_up(self) -> None:
        """Close once what is queued is sent, and cut off a reader that does not read it in time:
        otherwise a stalled client would hold its connection, counts and subscription for ever."""
        self._transport.close()
        self._set_timer(CLOSE_GRACE, self._transport.abort)

    def _pong(self, payload: bytes) -> None:
        if not self._closing:
            self._transport.write(Frame(Opcode.PONG, payload).serialize(mask=False))

    def resume_writing(self) -> None:
        if self._owed_pong is not None:
            payload, self._owed_pong = self._owed_pong, None
            self._pong(payload)

    def _set_timer(self, delay: float, callback: Callable[[], None]) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(delay, callback)


class Keepalive:
    """Pings every live connection about once per ``interval`` seconds, and drops those that left
    a ping unanswered for ``interval`` seconds (noticed at the next visit: within two intervals).

    One task for all connections, not a timer per reader (five more objects each for the garbage
    collector to walk), and spread over the interval in ``TICKS`` slices, because 10k pings at
    once would hold up an entry's fan-out as long as 10k entries would. Connections are pinged in
    the order they came (a dict keeps it), so each one's pings stay about an interval apart.
    """

    TICKS = 20

    def __init__(self, interval: float):
        self._interval = interval
        self._connections: dict[LiveConnection, None] = {}

    def watch(self, connection: LiveConnection) -> None:
        self._connections[connection] = None

    def forget(self, connection: LiveConnection) -> None:
        self._connections.pop(connection, None)

    async def run(self) -> None:
        """Ping until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            due = list(self._connections)
            share = -(-len(due) // self.TICKS)
            for tick in range(self.TICKS):
                await asyncio.sleep(self._interval / self.TICKS)
                now = loop.time()
                for connection in due[tick * share : (tick + 1) * share]:
                    connection.ping(now, self._interval)
