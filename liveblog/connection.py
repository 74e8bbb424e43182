"""A live reader's WebSocket connection once the handshake is done: small, and no task of its own.

The handshake and the join are served as ASGI (:mod:`liveblog.server`, :mod:`liveblog.live`); at
``websocket.accept`` the transport is handed to a :class:`LiveConnection`, and once the reader
has joined, the app call returns. What is left per reader is this object and its
:class:`~liveblog.hub.Subscription`, a few hundred bytes: a reader holds its connection for hours,
and a process holds 10k.

It does what a server-push channel needs and no more: write the frames the hub hands it (the same
bytes for every reader, written at once, never awaited), answer pings, be pinged (by the one
:class:`Connections` of the process) and dropped when it stops answering, both closing
handshakes, and refuse binary messages (1003). Text messages from the reader are not part of the
protocol and are ignored. With permessage-deflate agreed (:mod:`liveblog.deflate`), a
:class:`DeflatingConnection` writes each message's shared compressed frame instead, and the
reader's compressed messages are inflated, within ``max_size``, to be checked (1009 past it).

The rules are :class:`Rules`, which does no I/O: it is fed bytes, clock readings and requests,
and answers with the bytes to write and what to do next (:class:`After`), so that keepalive,
backlog and closing rules are tested without sockets (``tests/test_rules.py``).
:class:`LiveConnection` is the thin asyncio adapter that does the writes and keeps the timer.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import random
import struct
import time
from collections.abc import Callable, Iterator
from typing import Protocol

from .deflate import InflateError, Inflater
from .wire import (
    EMPTY_CLOSE_FRAME,
    FIN,
    RSV1,
    CloseCode,
    FrameError,
    Message,
    Opcode,
    close_frame,
    frame,
    parse_client_frames,
    parse_close,
)

log = logging.getLogger(__name__)

#: The ASGI scope extension through which a live route finds its reader's connection.
CONNECTION_EXTENSION = "liveblog.connection"
#: Bytes sent in the step that accepts a reader that wait for one write with the handshake's
#: answer; past this they are written at once (the kernel takes about this much in one go).
HEAD_HELD_BYTES = 64 * 1024
#: After the server sends its close frame, how long the reader gets to read its backlog and answer.
CLOSE_GRACE = 5.0
#: Pings are not answered while this much is waiting to be sent to the reader.
PONG_BACKLOG = 64 * 1024


class State(enum.Enum):
    OPEN = "open"
    #: A close frame was sent (ours, or the echo of the client's): waiting for the client to
    #: answer or to read its backlog, at most ``CLOSE_GRACE``.
    CLOSING = "closing"
    #: The transport is gone.
    CLOSED = "closed"


class After(enum.Enum):
    """What the connection does once the bytes :class:`Rules` returned are written."""

    NOTHING = "nothing"
    #: We sent a close frame: the client should answer it; cut it off after ``CLOSE_GRACE``.
    AWAIT_CLOSE = "await close"
    #: Close once what is queued is sent; cut the client off after ``CLOSE_GRACE`` if it does not
    #: read it (a stalled client would otherwise hold its connection, counts and subscription).
    HANG_UP = "hang up"


_NOTHING = (b"", After.NOTHING)


class Rules:
    """The rules of one reader's connection, without I/O.

    Each method returns ``(bytes to write, After)``. States only move forward, OPEN → CLOSING →
    CLOSED; a request that no longer applies (closing a connection that is closing) does nothing,
    and data after CLOSED is a bug and raises.
    """

    __slots__ = (
        "state",
        "close_code",
        "max_size",
        "compressed",
        "_pending",
        "_pinged_at",
        "_pong_due",
        "_owed_pong",
        "_inflater",
    )

    def __init__(self, max_size: int, compressed: bool = False):
        self.state = State.OPEN
        #: The code of the first close frame, sent or received (None: none, or one without a code).
        self.close_code: int | None = None
        self.max_size = max_size
        #: permessage-deflate was agreed: the client may send compressed messages.
        self.compressed = compressed
        #: The compressed message the client is sending, until its last fragment.
        self._inflater: Inflater | None = None
        self._pending = b""
        self._pinged_at = 0.0
        self._pong_due = False
        self._owed_pong: bytes | None = None

    def on_data(self, data: bytes, backlog: int) -> tuple[bytes, After]:
        """Bytes from the client; ``backlog`` is what waits to be sent to it."""
        if self.state is State.CLOSED:
            raise RuntimeError("data on a closed connection")
        try:
            frames, self._pending = parse_client_frames(self._pending + data, self.max_size, self.compressed)
        except FrameError as error:
            return self._fail(error.code, error.reason)
        out: list[bytes] = []
        after = After.NOTHING
        ping: bytes | None = None
        for opcode, payload, flags in frames:
            if opcode == Opcode.TEXT and flags & RSV1 or opcode == Opcode.CONT and self._inflater is not None:
                try:
                    self._inflate(opcode, payload, flags)
                except InflateError as error:
                    code = CloseCode.MESSAGE_TOO_BIG if error.too_big else CloseCode.INVALID_DATA
                    written, after = self._fail(code, error.reason)
                    return b"".join(out) + written, after
            elif opcode == Opcode.PONG:
                # Only the answer to our ping counts: unsolicited pongs (allowed as a one-way
                # heartbeat) must not keep a client that reads nothing alive.
                if self._pong_due and payload == _ping_payload(self._pinged_at):
                    self._pong_due = False
            elif opcode == Opcode.PING:
                ping = payload  # RFC 6455 §5.5.3: answering only the latest ping is enough
            elif opcode == Opcode.CLOSE:
                written, after = self._answer_close(payload)
                return b"".join(out) + written, after
            elif opcode == Opcode.BINARY and self.state is State.OPEN:
                written, after = self.on_close(CloseCode.UNSUPPORTED_DATA, "this channel takes no binary messages")
                out.append(written)
        if ping is not None and self.state is State.OPEN:
            # A client that pings without reading must not grow our buffer without end: past
            # PONG_BACKLOG (the transport is paused then) the pong waits until the backlog drains.
            if backlog <= PONG_BACKLOG:
                out.append(frame(Opcode.PONG, ping))
            else:
                self._owed_pong = ping
        return b"".join(out), after

    def _inflate(self, opcode: int, payload: bytes, flags: int) -> None:
        """A fragment of a compressed text message: inflated within ``max_size`` for the whole
        message, then dropped (the channel ignores text); :class:`InflateError` if it is bad."""
        if opcode == Opcode.TEXT:
            self._inflater = Inflater(self.max_size)
        assert self._inflater is not None
        self._inflater.feed(payload, last=bool(flags & FIN))
        if flags & FIN:
            self._inflater = None

    def on_drained(self) -> bytes:
        """The backlog went below ``PONG_BACKLOG``: the pong owed to the latest ping, if any."""
        payload, self._owed_pong = self._owed_pong, None
        if payload is None or self.state is not State.OPEN:
            return b""
        return frame(Opcode.PONG, payload)

    def on_tick(self, now: float, timeout: float) -> tuple[bytes, After]:
        """About once per keepalive interval: ping the client, unless the last ping is still
        unanswered; after ``timeout`` seconds unanswered (a phone that left without a word), fail
        the connection so that it does not hold its resources for hours."""
        if self.state is not State.OPEN:
            return _NOTHING
        if not self._pong_due:
            self._pong_due, self._pinged_at = True, now
            return frame(Opcode.PING, _ping_payload(now)), After.NOTHING
        if now - self._pinged_at >= timeout:
            return self._fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
        return _NOTHING

    def on_close(self, code: int, reason: str) -> tuple[bytes, After]:
        """The server closes: a close frame, sent behind what is queued."""
        if self.state is not State.OPEN:
            return _NOTHING
        self.state, self.close_code = State.CLOSING, code
        return close_frame(code, reason), After.AWAIT_CLOSE

    def on_shutdown(self, retry_ms: int | None = None) -> tuple[bytes, After]:
        """The process stops: tell the reader to come back (1012), after ``retry_ms`` if given
        (:func:`restart_reason`), and hang up."""
        if self.state is State.CLOSED:
            return _NOTHING
        written = b""
        if self.state is State.OPEN:
            written = restart_frame(retry_ms)
            self.close_code = CloseCode.SERVICE_RESTART
        self.state = State.CLOSING
        return written, After.HANG_UP

    def on_lost(self) -> None:
        self.state = State.CLOSED
        self._inflater = None

    def _answer_close(self, payload: bytes) -> tuple[bytes, After]:
        """The client's close frame: echo it (unless it answers ours), then hang up."""
        if self.state is not State.OPEN:
            return b"", After.HANG_UP
        try:
            code = parse_close(payload)
        except FrameError as error:
            return self._fail(error.code, error.reason)
        self.state, self.close_code = State.CLOSING, code
        return (close_frame(code) if code is not None else EMPTY_CLOSE_FRAME), After.HANG_UP

    def _fail(self, code: CloseCode, reason: str) -> tuple[bytes, After]:
        written = b""
        if self.state is State.OPEN:
            written = close_frame(code, reason)
            self.state, self.close_code = State.CLOSING, code
        return written, After.HANG_UP


#: The close reason of a 1012 without a suggested delay.
RESTART_REASON = "server restarting; reconnect with your cursor"


def restart_reason(retry_ms: int | None) -> str:
    """The reason of a restart's 1012 (and of SSE's final ``close`` record): with a suggested
    delay, a JSON object ``{"retry_ms": N, "reason": "…"}`` (well under the 123 bytes a close
    reason may take), so that a reader can parse it; without one, plain words."""
    if retry_ms is None:
        return RESTART_REASON
    return '{"retry_ms":%d,"reason":"%s"}' % (retry_ms, RESTART_REASON)


@functools.lru_cache(maxsize=256)
def restart_frame(retry_ms: int | None) -> bytes:
    """A restart's 1012 close frame: made once for every reader told the same delay (a deploy
    tells 10k readers in one go, about 3 per millisecond of the spread, in order of their delay,
    so the frame just made is the next reader's too); bounded, as delays go up to a minute."""
    return close_frame(CloseCode.SERVICE_RESTART, restart_reason(retry_ms))


def reconnect_delays(count: int, spread_ms: int, floor_ms: int = 0) -> list[int]:
    """``count`` reconnect delays (ms) spread uniformly over ``[floor_ms, floor_ms + spread_ms)``,
    in random order: one per slot of ``spread_ms / count``, jittered inside it, so that a storm of
    reconnects arrives at an even rate instead of in the random clumps of independent draws, and
    readers get distinct delays while the slots are a millisecond wide or more. The floor keeps
    every reader away for as long as a restart leaves the port closed."""
    width = spread_ms / count if count else 0.0
    delays = [floor_ms + int((slot + random.random()) * width) for slot in range(count)]
    random.shuffle(delays)
    return delays


def _ping_payload(pinged_at: float) -> bytes:
    # The time of the ping is its payload: a pong is matched to it without keeping more state.
    return struct.pack("!d", pinged_at)


class LiveConnection(Rules, asyncio.Protocol):
    """The transport's protocol from ``websocket.accept`` on; the reader's sink for the hub."""

    __slots__ = ("_transport", "_held", "_head", "_head_bytes", "_timer", "_release", "_registry", "_on_lost")

    def __init__(self, max_size: int, compressed: bool = False):
        super().__init__(max_size, compressed)
        self._transport: asyncio.Transport | None = None
        #: The transport while the handshake's response and the frames after it in the same
        #: step of the loop (``_head``) are not written yet.
        self._held: asyncio.Transport | None = None
        self._head: list[bytes] = []
        self._head_bytes = 0
        self._timer: asyncio.TimerHandle | None = None  # only while closing: the grace period
        self._release: Callable[[], None] | None = None
        self._registry: Connections | None = None
        self._on_lost: Callable[[int | None], None] | None = None

    # -- ownership

    def take_over(self, transport: asyncio.Transport, head: bytes = b"") -> None:
        """Become ``transport``'s protocol, with ``head`` (the handshake's response) still to
        write: it goes out at the end of this step of the loop, in one write with every frame
        sent to the reader until then. A joining reader's snapshot (and the blog's viewer count)
        is most often sent in the step that accepted it: one write and one wake-up of the client
        for all of it, instead of one each (those writes were a visible share of a join storm)."""
        transport.set_protocol(self)
        transport.set_write_buffer_limits(high=PONG_BACKLOG)  # resume_writing: time to send owed pongs
        if head:
            self._held, self._head, self._head_bytes = transport, [head], len(head)
            asyncio.get_running_loop().call_soon(self._write_head)
        else:
            self._transport = transport
        if transport.is_closing():  # the client left during the handshake
            self.connection_lost(None)

    def _write_head(self) -> None:
        """Write the handshake's response and the frames sent since, if still due; from now on
        the transport is in ``_transport``."""
        transport, head = self._held, self._head
        if transport is None:
            return
        self._held, self._head = None, []
        if self.state is State.CLOSED:
            return  # the client left before it was answered
        self._transport = transport
        transport.write(head[0] if len(head) == 1 else b"".join(head))

    def adopt(self, release: Callable[[], None], registry: Connections) -> None:
        """Call ``release`` once, when the connection ends (at once if it already has), and be
        pinged by ``registry`` until then: the app call that joined the reader returns and
        leaves the rest of the reader's life to us."""
        if self.state is State.CLOSED:
            release()
            return
        self._release = release
        self._registry = registry
        registry.watch(self)

    def when_lost(self, callback: Callable[[int | None], None]) -> None:
        """Call ``callback(close_code)`` once, when the connection ends (at once if it has);
        one callback per connection (the access log's)."""
        if self.state is State.CLOSED:
            callback(self.close_code)
            return
        if self._on_lost is not None:
            raise RuntimeError("a LiveConnection takes one when_lost callback")
        self._on_lost = callback

    @property
    def adopted(self) -> bool:
        return self._registry is not None or self._release is not None

    # -- the hub's sink

    def send(self, message: Message) -> int:
        # The hot path: once per reader per message. Attribute checks and C calls only.
        transport = self._transport
        if self.state is not State.OPEN or transport is None or transport.is_closing():
            return self._send_first(message.ws_frame)
        transport.write(message.ws_frame)
        return transport.get_write_buffer_size()

    def _send_first(self, frame: bytes) -> int:
        """``send`` off its hot path: a frame in the step that accepted the reader, written with
        the handshake's response at the end of it (the bytes so far are the reader's backlog),
        or none (the connection is closing)."""
        if self._held is None or self.state is not State.OPEN or self._held.is_closing():
            return 0
        self._head.append(frame)
        self._head_bytes += len(frame)
        if self._head_bytes <= HEAD_HELD_BYTES:
            return self._head_bytes
        # A big first send (a long catch-up): out now, so that what the kernel takes at once does
        # not count against the reader's backlog limit, as it would not once the reader is open.
        self._write_head()
        return self._transport.get_write_buffer_size() if self._transport is not None else 0

    def send_frame(self, data: bytes) -> None:
        """Write an already-framed message (an ASGI ``websocket.send`` from the handshake's app)."""
        if self._held is not None:
            self._write_head()
        if self.state is State.OPEN and self._transport is not None:
            self._transport.write(data)

    def close(self, code: int, reason: str) -> None:
        """Send a close frame now, behind what is queued; cut the reader off if it has not
        answered within ``CLOSE_GRACE`` (a stalled reader never drains its backlog)."""
        self._do(*self.on_close(code, reason))

    def shutdown(self, retry_ms: int | None = None) -> None:
        """The process stops: 1012 (suggesting ``retry_ms``), and hang up once what is queued is
        sent (or after ``CLOSE_GRACE`` if the reader is not reading)."""
        self._do(*self.on_shutdown(retry_ms))

    def ping(self, now: float, timeout: float) -> None:
        self._do(*self.on_tick(now, timeout))

    # -- asyncio.Protocol

    def data_received(self, data: bytes) -> None:
        if self._held is not None:
            self._write_head()  # before any answer (a pong, a close)
        assert self._transport is not None
        self._do(*self.on_data(data, self._transport.get_write_buffer_size()))

    def resume_writing(self) -> None:
        if pong := self.on_drained():
            self._do(pong, After.NOTHING)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state is State.CLOSED:
            return
        self.on_lost()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._registry is not None:
            self._registry.forget(self)
        if self._release is not None:
            release, self._release = self._release, None
            release()
        if self._on_lost is not None:
            on_lost, self._on_lost = self._on_lost, None
            on_lost(self.close_code)

    # -- the adapter

    def _do(self, written: bytes, after: After) -> None:
        if self._held is not None:
            self._write_head()
        transport = self._transport
        if transport is None or self.state is State.CLOSED:
            return
        if written:
            transport.write(written)
        if after is not After.NOTHING:
            if after is After.HANG_UP:
                transport.close()
            if self._timer is not None:
                self._timer.cancel()
            self._timer = asyncio.get_running_loop().call_later(CLOSE_GRACE, transport.abort)


class DeflatingConnection(LiveConnection):
    """A connection that agreed on permessage-deflate: it writes each message's compressed frame,
    made once for every reader with the same ``window_bits`` (:meth:`Message.deflated_frame`)."""

    __slots__ = ("window_bits",)

    def __init__(self, max_size: int, window_bits: int):
        super().__init__(max_size, compressed=True)
        self.window_bits = window_bits

    def send(self, message: Message) -> int:
        transport = self._transport
        if self.state is not State.OPEN or transport is None or transport.is_closing():
            return self._send_first(message.deflated_frame(self.window_bits))
        transport.write(message.deflated_frame(self.window_bits))
        return transport.get_write_buffer_size()


class Closable(Protocol):
    def shutdown(self, retry_ms: int | None = None) -> None:
        """Tell the reader the process is stopping (1012; come back after ``retry_ms``) and end
        the connection."""


class Connections:
    """The process's live connections: each WebSocket is pinged about once per ``interval``
    seconds and dropped when a ping is unanswered for ``interval`` seconds (noticed at the next
    visit: within two intervals); at shutdown every reader, WebSocket or SSE, is told to come back
    elsewhere (1012) at once, before anything else stops, each at its own moment
    (:func:`reconnect_delays` over ``reconnect_spread_ms``, none sooner than
    ``reconnect_floor_ms``), so that a deploy's readers come back at an even rate rather than all
    in the same moment, and not before the port listens again. Those moments count from the start
    of the shutdown, not from when each reader is told: telling 10k readers takes a few hundred
    milliseconds of a core that the readers coming back need too, so each is told the delay left
    until its moment (``clock``: seconds, monotonic), in the order they are due.

    One task pings all connections, not a timer per reader (five more objects each for the
    garbage collector to walk), spread over the interval in ``TICKS`` slices, because 10k pings at
    once would hold up an entry's fan-out as long as 10k entries would. Connections are pinged in
    the order they came (a dict keeps it), so each one's pings stay about an interval apart.
    """

    TICKS = 20

    def __init__(
        self,
        interval: float,
        reconnect_spread_ms: int = 0,
        reconnect_floor_ms: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._interval = interval
        self._clock = clock
        self._spread_ms = reconnect_spread_ms
        self._floor_ms = reconnect_floor_ms
        self._connections: dict[LiveConnection, None] = {}
        self._streams: set[Closable] = set()
        self._stopping = False
        self._empty = asyncio.Event()

    def __len__(self) -> int:
        return len(self._connections) + len(self._streams)

    def __iter__(self) -> Iterator[LiveConnection]:
        """The WebSocket connections being pinged."""
        return iter(list(self._connections))

    def watch(self, connection: LiveConnection) -> None:
        self._connections[connection] = None
        if self._stopping:  # it joined while the process stops: it is told at once, and waited for
            connection.shutdown(self._late_delay())

    def forget(self, connection: LiveConnection) -> None:
        self._connections.pop(connection, None)
        self._check_empty()

    def watch_stream(self, stream: Closable) -> None:
        """An SSE reader: not pinged (its heartbeat is its own), but told at shutdown."""
        self._streams.add(stream)
        if self._stopping:
            stream.shutdown(self._late_delay())

    def forget_stream(self, stream: Closable) -> None:
        self._streams.discard(stream)
        self._check_empty()

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

    def begin_shutdown(self) -> None:
        """Tell every reader, and every one that joins from now on, to come back elsewhere."""
        self._stopping = True
        readers: list[Closable] = [*self._connections, *self._streams]
        due = reconnect_delays(len(readers), self._spread_ms, self._floor_ms)  # in random order
        started = self._clock()
        for index in sorted(range(len(readers)), key=due.__getitem__):
            waited_ms = int((self._clock() - started) * 1000)
            readers[index].shutdown(max(0, due[index] - waited_ms))
        self._check_empty()

    def _late_delay(self) -> int:
        """A reader that joined after the shutdown began: anywhere in the spread."""
        return reconnect_delays(1, self._spread_ms, self._floor_ms)[0]

    async def wait_closed(self) -> None:
        """Once the shutdown has begun, until every reader told so has gone (each is cut off
        within ``CLOSE_GRACE``), those that joined since included."""
        while not self._stopping or self._connections or self._streams:
            self._empty.clear()
            await self._empty.wait()

    def _check_empty(self) -> None:
        if self._stopping and not self._connections and not self._streams:
            self._empty.set()
