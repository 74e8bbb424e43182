"""Serving: uvicorn, with a WebSocket protocol that hands live readers to a lean connection.

ASGI's ``await send(...)`` costs one await per reader per message and, under uvicorn, waits while
that reader's transport is paused, so one stalled phone would hold up the loop that serves
everyone; and an ASGI WebSocket holds a task, its frames and queues for as long as it is open.
The live channel therefore runs its handshake and join as ASGI, then continues on a
:class:`~liveblog.connection.LiveConnection` that writes already-framed messages straight to the
transport and reports the backlog, the shape ``websockets.broadcast()`` and picows use.
Everything else is plain ASGI under uvicorn.
"""

from __future__ import annotations

import uvicorn
from httptools import HttpParserCallbackError
from uvicorn._types import ASGISendEvent
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request

from .config import Settings
from .connection import LiveConnection

CONNECTION_EXTENSION = "liveblog.connection"
#: Request line plus headers; browsers send a few KiB, proxies refuse beyond 8-16 KiB.
MAX_HEAD_BYTES = 16 * 1024


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
    """uvicorn's sans-I/O websockets protocol, handing accepted connections to a LiveConnection.

    The app finds the connection in the scope extension ``liveblog.connection``; from
    ``websocket.accept`` on, it is the transport's protocol and the app talks to the reader only
    through it. The connection then outlives the app call: uvicorn would close it when the app
    returns, this protocol leaves that to the LiveConnection.
    """

    connection: LiveConnection | None = None
    handed_over = False

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        if self.response.status_code == 101:
            self.connection = LiveConnection(self.connections, self.config.ws_max_size)
            self.scope["extensions"][CONNECTION_EXTENSION] = self.connection

    async def send(self, message: ASGISendEvent) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept":
            self.stop_keepalive()
            self.request = self.response = None  # the handshake's headers are not needed again
            if self.handshake_complete and not self.transport.is_closing():
                self.connections.discard(self)
                self.connection.take_over(self.transport)
                self.handed_over = True
            else:  # the client left during the handshake: the app finds its connection closed
                self.connection.connection_lost(None)
        elif message["type"] == "websocket.http.response.body" and not message.get("more_body", False):
            # A denial response (429, 503) ends the handshake too; uvicorn would log it as an error.
            self.handshake_complete = True

    async def run_asgi(self) -> None:
        """uvicorn's, except that a connection handed over to its LiveConnection is left open."""
        try:
            await self.app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            pass
        except BaseException:
            self.logger.exception("Exception in ASGI application\n")
            if self.handed_over:
                self.connection.close(1011, "internal error")
            else:
                self.send_500_response()
        else:
            if not self.handshake_complete:
                self.logger.error("ASGI callable returned without completing handshake.")
                self.send_500_response()
        if not self.handed_over and self.close_timer is None:
            self.transport.close()


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
