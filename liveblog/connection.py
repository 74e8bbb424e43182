"""A live reader's WebSocket connection once the handshake is done: small, and no task of its own.

uvicorn's WebSocket protocol serves the handshake and ASGI serves the admission and the join like
any route (:mod:`liveblog.live`). At ``websocket.accept`` the transport is handed to a
:class:`LiveConnection`, and once the reader has joined, the app call returns. What is left per
reader is this object and its :class:`~liveblog.hub.Subscription`, a few hundred bytes, instead of
an ASGI task with its frames, a receive queue, events and websockets' parser (which keeps the
handshake's headers alive): a reader holds its connection for hours, and a process holds 10k.

It does what a server-push channel needs and no more: write the frames the hub hands it (the same
bytes for every reader, written at once, never awaited), answer pings, ping the client and drop it
when it stops answering, both closing handshakes, and refuse binary messages (1003). Text messages
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
        "_ping_interval",
        "_timer",
        "_pong_due",
        "_closing",  # a close frame was sent or received, or the connection is lost
        "_lost",
        "_pending",
        "_release",
    )

    def __init__(self, connections: set, max_size: int, ping_interval: float | None):
        self._transport: asyncio.Transport | None = None
        self._connections = connections
        self._max_size = max_size
        self._ping_interval = ping_interval
        self._timer: asyncio.TimerHandle | None = None
        self._pong_due = False
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
        self._schedule_ping()

    def adopt(self, release: Callable[[], None]) -> None:
        """Call ``release`` once, when the connection ends (at once if it already has): the app
        call that joined the reader returns and leaves the rest of the reader's life to us."""
        if self._lost:
            release()
        else:
            self._release = release

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
        """uvicorn's graceful shutdown: tell the reader to come back (1012), and hang up."""
        if not self._lost:
            if not self._closing:
                self._transport.write(close_frame(SERVICE_RESTART, "server restarting; reconnect with your cursor"))
            self._closing = True
            self._transport.close()

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
                if not self._closing:
                    self._transport.write(Frame(Opcode.PONG, payload).serialize(mask=False))
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
        self._transport.close()

    def _fail(self, code: int, reason: str) -> None:
        if not self._closing:
            self._transport.write(close_frame(code, reason))
            self._closing = True
        self._transport.close()

    def _schedule_ping(self) -> None:
        if self._ping_interval:
            self._set_timer(self._ping_interval, self._keepalive)

    def _keepalive(self) -> None:
        """Ping every interval; a reader that did not answer the last ping (a phone that left
        without a word) is dropped, so its resources do not stay held for hours."""
        if self._closing:
            return
        if self._pong_due:
            self._fail(KEEPALIVE_FAILED, "keepalive ping timeout")
            return
        self._pong_due = True
        self._transport.write(_PING_FRAME)
        self._schedule_ping()

    def _set_timer(self, delay: float, callback: Callable[[], None]) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(delay, callback)
