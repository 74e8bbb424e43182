"""The HTTP protocol liveblog gives uvicorn: its httptools protocol, behind a guard at the door.

httptools accepts request heads of any size; a client sending megabytes of headers would cost that
much memory per connection. The guard reads the same bytes with an httptools parser of its own
(counting) and refuses a head over ``MAX_HEAD_BYTES`` with 431, in the contract's error shape,
before uvicorn's protocol has buffered it. Everything else is uvicorn's: the guard forwards every
call of the ``asyncio.Protocol`` interface to it unchanged, and makes it only for a connection's
first request that needs it. Plugged in through uvicorn's ``http`` setting, which takes a
protocol class built with ``config``, ``server_state`` and ``app_state`` as keywords.

Except for a WebSocket upgrade as a connection's first request: the guard has parsed that head
already, so it hands it, parsed, to the WebSocket protocol (:meth:`liveblog.server.LiveProtocol.upgrade`)
as uvicorn would hand it over as bytes, and neither uvicorn's protocol nor a second parse is paid
for; a join storm is thousands of such heads a second.

The guard also keeps time: a connection must bring a whole request head within ``head_timeout``
seconds of opening, and each later request within ``head_timeout`` of its first byte. A client
that connects and says nothing, or sends its head a byte at a time (slowloris), is cut off
then, instead of holding a connection and a descriptor for as long as it likes. (Between
requests, uvicorn's ``timeout_keep_alive`` closes an idle connection.)

And while a response is being written, a client that reads none of it for ``send_timeout``
seconds (the transport stays paused: the kernel's buffers are full) is cut off. uvicorn waits on
such a client for ever, and so would a Server-Sent Events stream that the hub has closed with
4408: its final record cannot reach a reader that does not read, so the response never ends and
the reader's connection, descriptor and slot would be held until the client went away.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any, cast

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .deadlines import Deadlines
from .doors import Doors
from .errors import error_body
from .handshake import Upgrade, Upgrades, closing_response, is_websocket

log = logging.getLogger(__name__)

#: Request line plus headers; browsers send a few KiB, proxies refuse beyond 8-16 KiB.
MAX_HEAD_BYTES = 16 * 1024
#: The kernel's send buffer per connection (Linux doubles it). Left to itself it grows to
#: several MiB for a reader that stopped reading, out of the reach of the live channel's and
#: SSE's backlog limits, which count what waits in user space; capped, a stalled reader pins at
#: most this (twice) plus ``LIVEBLOG_READER_BUFFER_BYTES``. Set on the listening socket
#: (:func:`cap_send_buffer`), which Linux copies to every connection it accepts.
SEND_BUFFER = 64 * 1024
#: Seconds a request head may take to arrive (see the module's docstring); a subclass made by
#: :func:`guarded` sets another.
HEAD_TIMEOUT = 10.0
#: Seconds a response may wait on a client that reads nothing (see the module's docstring).
SEND_TIMEOUT = 60.0
#: Seconds a refused connection (408, 431) is kept half-open after its answer, reading and
#: dropping what the client still sends, so that its kernel does not answer those bytes with a
#: reset that could destroy the answer before the client reads it (RFC 9112 §9.6).
LINGER = 2.0


class HeadTooLarge(Exception):
    pass


class GuardedHttp(asyncio.Protocol):
    """uvicorn's httptools protocol, refusing request heads over ``MAX_HEAD_BYTES`` with 431
    and heads slower than ``head_timeout`` with 408, and cutting off a client that reads nothing
    of a response for ``send_timeout`` seconds."""

    head_timeout = HEAD_TIMEOUT
    #: Every connection's head deadline, on one timer (:func:`guarded` gives each server its own).
    heads = Deadlines(HEAD_TIMEOUT)
    send_timeout = SEND_TIMEOUT
    #: Who may connect (None: everyone); :func:`guarded` sets the server's.
    doors: Doors | None = None
    #: The protocol WebSocket upgrades are handed to, parsed (None: uvicorn hands them over).
    websocket: type[Upgrades] | None = None

    def __init__(self, config: uvicorn.Config, server_state: Any, app_state: dict[str, Any], **more: Any):
        # ``more``: what else a uvicorn release passes its protocol classes (the loop, in some)
        self._made = (config, server_state, app_state)
        #: uvicorn's protocol, made for the first request that is not a WebSocket upgrade.
        self._inner: HttpToolsProtocol | None = None
        self._parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._head_bytes = 0  # the head's parts httptools has reported
        self._head_received = 0  # bytes received while the head was incomplete
        self._in_head = False
        self._requests = 0
        self._target = b""  # the head being parsed: what an upgrade is handed over with
        self._headers: list[tuple[bytes, bytes]] = []
        self._upgrade: Upgrade | None = None
        self._linger: asyncio.TimerHandle | None = None
        self._send_timer: asyncio.TimerHandle | None = None
        self._turned_away = False  # refused at the door: uvicorn's protocol never saw it
        self._lingering = False  # answered and half-closed: what still arrives is dropped

    # -- asyncio.Protocol, forwarded

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        if self.doors is not None and not self.doors.admit(transport):
            self._turned_away = True
            transport.close()  # its address has all the connections it may have
            return
        self._start_clock()  # the first request's head is due from now

    def data_received(self, data: bytes) -> None:
        if self._lingering or (self._transport is not None and self._transport.is_closing()):
            return  # refused
        if self._parser is None:  # an Upgrade that uvicorn did not take (else it has the transport now)
            self._parser = httptools.HttpRequestParser(self)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._parser = None
            upgrade, self._upgrade = self._upgrade, None
            if upgrade is not None and self._inner is None and self.websocket is not None:
                self._hand_over(self.websocket, upgrade)
                return
        except httptools.HttpParserCallbackError:
            self._refuse()
            return
        except httptools.HttpParserError:
            pass  # malformed: uvicorn's parser sees the same bytes and answers 400
        if self._in_head:
            # The head is still incomplete: httptools reports a header only once it is whole, so
            # what arrived counts now, or one endless header would be buffered without limit.
            # (If the head began in this chunk, the end of the request before it counts too.)
            self._head_received += len(data)
            if self._head_received > MAX_HEAD_BYTES:
                self._refuse()
                return
        self._http().data_received(data)

    def _http(self) -> HttpToolsProtocol:
        """uvicorn's protocol for this connection, made (and given the transport) on first use."""
        if self._inner is None:
            config, server_state, app_state = self._made
            self._inner = HttpToolsProtocol(config=config, server_state=server_state, app_state=app_state)
            self._inner.connection_made(self._transport)  # type: ignore[arg-type]
        return self._inner

    def _hand_over(self, websocket: type[Upgrades], upgrade: Upgrade) -> None:
        """Give the transport to the WebSocket protocol with the head parsed here, as uvicorn
        would with the head as bytes (made the same way, then the transport, then the head);
        what came after the head is dropped, as uvicorn drops it (RFC 6455 §4.1: nothing is
        sent before the response)."""
        transport = self._transport
        assert transport is not None
        config, server_state, app_state = self._made
        protocol = websocket(config=config, server_state=server_state, app_state=app_state)
        protocol.connection_made(transport)
        transport.set_protocol(cast(asyncio.BaseProtocol, protocol))  # an asyncio.Protocol, as uvicorn's are
        protocol.upgrade(upgrade)

    def eof_received(self) -> None:
        # Returning None lets asyncio close the transport: a lingering client is done sending.
        if self._inner is not None and not self._lingering:
            self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_clock()
        self._stop_send_clock()
        if self._linger is not None:
            self._linger.cancel()
        if self._inner is not None:
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._send_timer is None:
            self._send_timer = asyncio.get_running_loop().call_later(self.send_timeout, self._not_reading)
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._stop_send_clock()
        if self._inner is not None:
            self._inner.resume_writing()

    # -- httptools callbacks (of the guard's own parser), for heads complete within one chunk

    def on_message_begin(self) -> None:
        self._head_bytes = self._head_received = 0
        self._target, self._headers = b"", []
        self._in_head = True
        self._requests += 1
        if self._requests > 1:
            self._start_clock()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        self._target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # ": " and CRLF
        # As uvicorn reads them: names in lower case, no trailing whitespace (RFC 9110 §5.5).
        self._headers.append((name.lower(), value.rstrip(b" \t")))

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self._parser
        if parser is not None and parser.should_upgrade() and is_websocket(self._headers):
            method = parser.get_method().decode("ascii")
            self._upgrade = Upgrade(method, self._target, parser.get_http_version(), self._headers)
        # Not kept past the head: a keep-alive connection would hold its last request's headers.
        self._target, self._headers = b"", []
        self._stop_clock()  # the body, the response and any WebSocket after it keep their own time

    # -- the head's clock

    def _start_clock(self) -> None:
        self.heads.start(self)

    def _stop_clock(self) -> None:
        self.heads.stop(self)

    def overdue(self) -> None:
        """The head did not arrive in time (called by :attr:`heads`)."""
        if self._transport is None or self._transport.is_closing():
            return
        if self._requests == 1 and self._in_head:  # else nothing was asked, or a response may be under way
            body = error_body("request_timeout", f"the request head did not arrive within {self.head_timeout:g} s")
            self._answer_and_close(408, body)
        else:
            self._transport.close()

    # -- the response's clock

    def _stop_send_clock(self) -> None:
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    def _not_reading(self) -> None:
        self._send_timer = None
        if self._transport is None:
            return
        peer = self._transport.get_extra_info("peername")
        log.info("cutting off %s: it read nothing of its response for %g s", peer, self.send_timeout)
        # abort, not close: close would wait for the buffered response to be read, i.e. for ever.
        self._transport.abort()

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_HEAD_BYTES:
            raise HeadTooLarge  # httptools raises HttpParserCallbackError from feed_data

    def _refuse(self) -> None:
        assert self._transport is not None
        if self._requests == 1:
            body = error_body("head_too_large", f"request line and headers are over {MAX_HEAD_BYTES} bytes")
            self._answer_and_close(431, body)
        else:  # an earlier request's response may still be on its way: a 431 would land inside it
            self._transport.close()

    def _answer_and_close(self, status: int, body: bytes) -> None:
        """Answer the connection's first request with ``status`` and close it the staged way:
        write side first, then, after the client's end or ``LINGER`` seconds, the rest."""
        transport = self._transport
        assert transport is not None
        transport.write(closing_response(status, [(b"Content-Type", b"application/json")], body))
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self._lingering = True
        self._stop_clock()
        self._linger = asyncio.get_running_loop().call_later(LINGER, transport.close)


def cap_send_buffer(sock: socket.socket) -> None:
    """Cap the kernel's send buffer of every connection ``sock`` (a listening socket, before it
    accepts any) will accept at :data:`SEND_BUFFER`: Linux copies a listener's ``SO_SNDBUF`` to
    the sockets it accepts, so a join storm pays no system call per connection for it (it was a
    visible share of each accept: the transport's socket object, then the setsockopt)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)


def guarded(
    head_timeout: float, doors: Doors, send_timeout: float = SEND_TIMEOUT, websocket: type[Upgrades] | None = None
) -> type[GuardedHttp]:
    """:class:`GuardedHttp` allowing ``head_timeout`` seconds for a request head, ``send_timeout``
    for a client to read some of a response, admitting connections through ``doors`` and handing
    WebSocket upgrades, parsed, to ``websocket`` (uvicorn's ``http`` setting takes a class, so
    the settings become one)."""
    attributes = {
        "head_timeout": head_timeout,
        "heads": Deadlines(head_timeout),
        "send_timeout": send_timeout,
        "doors": doors,
        "websocket": websocket,
    }
    return type("GuardedHttp", (GuardedHttp,), attributes)
