"""Serving: uvicorn with a WebSocket protocol that gives the hub a direct, non-awaiting sink.

ASGI's ``await send(...)`` costs one await per reader per message and, under uvicorn, waits while
that reader's transport is paused, so one stalled phone would hold up the loop that serves
everyone. The live channel therefore gets, through an ASGI scope extension, a :class:`DirectSink`
that writes an already-framed message straight to the transport and reports the backlog, the
shape ``websockets.broadcast()`` and picows use. Everything else is plain ASGI under uvicorn.
"""

from __future__ import annotations

import uvicorn
from httptools import HttpParserCallbackError
from uvicorn._types import ASGISendEvent
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request
from websockets.protocol import State

from .config import Settings

SINK_EXTENSION = "liveblog.sink"
#: Request line plus headers; browsers send a few KiB, proxies refuse beyond 8-16 KiB.
MAX_HEAD_BYTES = 16 * 1024
#: After a slow reader is sent its close frame, how long it gets to read its backlog.
SLOW_CLOSE_GRACE = 5.0


class DirectSink:
    """Writes frames to one WebSocket connection without awaiting (see :class:`liveblog.hub.Sink`)."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: LiveProtocol):
        self._protocol = protocol

    def send(self, message) -> int:  # noqa: ANN001 - liveblog.hub.Message; no import cycle
        # The hot path: runs once per reader per message. Plain attribute and C-method checks only
        # (websockets' state property cost more than the rest of this function).
        protocol = self._protocol
        transport = protocol.transport
        if protocol.close_sent or transport.is_closing():
            return 0
        transport.write(message.ws_frame)
        return transport.get_write_buffer_size()

    def close(self, code: int, reason: str) -> None:
        protocol = self._protocol
        if protocol.close_sent or protocol.conn.state is not State.OPEN:
            return
        protocol.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        protocol.conn.send_close(code, reason)
        protocol.transport.write(b"".join(protocol.conn.data_to_send()))
        protocol.close_sent = True
        if protocol.read_paused:
            protocol.read_paused = False
            protocol.transport.resume_reading()
        # The close frame queues behind the backlog; a reader that never drains it is cut off.
        protocol.close_timer = protocol.loop.call_later(SLOW_CLOSE_GRACE, protocol.transport.abort)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing request heads over ``MAX_HEAD_BYTES`` with 431.

    httptools itself accepts headers of any size; a client sending megabytes of them would
    otherwise cost that much memory per connection.
    """

    _head_bytes = 0

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value))
        super().on_header(name, value)

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_HEAD_BYTES:
            raise HttpParserCallbackError("request head too large")  # uvicorn answers via send_400_response

    def send_400_response(self, msg: str) -> None:
        if self._head_bytes <= MAX_HEAD_BYTES:
            super().send_400_response(msg)
            return
        body = b'{"error":{"code":"head_too_large","message":"request line and headers are over %d bytes"}}' % (
            MAX_HEAD_BYTES
        )
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
        )
        self.transport.close()


class LiveProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O websockets protocol, plus the :class:`DirectSink` scope extension."""

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        if self.response.status_code == 101:
            self.scope["extensions"][SINK_EXTENSION] = DirectSink(self)

    async def send(self, message: ASGISendEvent) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept":
            # The handshake's request and response (headers and all) are not needed again; a live
            # reader holds its connection for hours, and thousands of them do.
            self.request = self.response = None
        elif message["type"] == "websocket.http.response.body" and not message.get("more_body", False):
            # A denial response (429, 503) ends the handshake too; uvicorn would log it as an error.
            self.handshake_complete = True


def uvicorn_config(app: object, settings: Settings, **overrides: object) -> uvicorn.Config:
    options: dict = dict(
        host=settings.host,
        port=settings.port,
        ws=LiveProtocol,
        http=HttpProtocol,
        loop="uvloop",
        lifespan="on",
        ws_max_size=settings.ws_max_message_bytes,
        ws_per_message_deflate=False,  # frames are encoded once and shared; deflate is per reader
        ws_ping_interval=settings.ws_ping_interval,
        ws_ping_timeout=settings.ws_ping_interval,
        h11_max_incomplete_event_size=16 * 1024,
        timeout_graceful_shutdown=10,
        server_header=False,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        access_log=False,
        log_level="warning",  # not a line per connection at 10k readers; liveblog logs what matters
    )
    options.update(overrides)
    return uvicorn.Config(app, **options)


def bound_port(server: uvicorn.Server) -> int:
    """The TCP port a started server listens on (useful with port 0)."""
    return server.servers[0].sockets[0].getsockname()[1]
