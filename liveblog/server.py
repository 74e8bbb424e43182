"""Serving: uvicorn for HTTP, and liveblog's own protocol for WebSocket upgrades.

ASGI's ``await send(...)`` costs one await per reader per message and, under uvicorn, waits while
that reader's transport is paused, so one stalled phone would hold up the loop that serves
everyone; and an ASGI WebSocket holds a task, its frames and queues for as long as it is open.
So a WebSocket upgrade goes to :class:`LiveProtocol`, plugged in through uvicorn's ``ws``
setting: it checks the handshake (:mod:`liveblog.handshake`) and serves the handshake and the
join as ASGI, like any route; at ``websocket.accept`` it writes the 101 itself and hands the
transport to a :class:`~liveblog.connection.LiveConnection`, which writes already-framed messages
straight to the transport and reports the backlog, the shape ``websockets.broadcast()`` and
picows use.

A join is cheap because its head is parsed once: the guard at the door (:mod:`liveblog.guard`)
parses every request with httptools anyway, and hands an upgrade, parsed, straight to
:meth:`LiveProtocol.upgrade`, without uvicorn's HTTP protocol; and the live route itself is
answered by :class:`~liveblog.live.LiveRoute`, in front of Starlette's middleware and router.
(An upgrade on a connection that served HTTP first still comes the documented way, as bytes
from uvicorn, and is parsed here.)

Only public APIs of uvicorn and websockets are used; ``docs/serving.md`` lists them.
"""

from __future__ import annotations

import asyncio
import http
import logging
import socket
from collections.abc import Callable, MutableMapping
from typing import Any, cast
from urllib.parse import unquote

import httptools
import uvicorn
from starlette.applications import Starlette

from . import deflate, handshake
from .access import AccessLog
from .app import create_app
from .config import Settings
from .connection import CONNECTION_EXTENSION, Connections, DeflatingConnection, LiveConnection
from .doors import Doors, per_address
from .errors import error_body
from .forwarded import ProxyHeaders
from .guard import cap_send_buffer, guarded
from .handshake import HeadParser, Opening, Upgrade
from .live import LiveRoute
from .services import Services
from .wire import CloseCode, Opcode, frame
from .workers import leave_port

log = logging.getLogger(__name__)

ASGIApp = Callable[..., Any]
Message = MutableMapping[str, Any]
_ASGI = {"version": "3.0", "spec_version": "2.4"}


class LiveProtocol(asyncio.Protocol):
    """A WebSocket upgrade, from the request head to the ``websocket.accept``.

    uvicorn creates it with its config, server state and the lifespan state, gives it the
    transport, then the request head as bytes (its documented ``ws`` protocol-class interface);
    liveblog's guard creates it the same way and gives it the head already parsed
    (:meth:`upgrade`). The app runs as ASGI with a ``websocket`` scope: ``websocket.accept``
    hands the transport to the :class:`LiveConnection` found in the scope extension
    ``liveblog.connection``; a refusal (``websocket.close`` before accepting: 403; or a
    ``websocket.http.response``) is sent as an HTTP response. The connection outlives the app
    call if the app adopted it (:meth:`LiveConnection.adopt`), and is closed (1000) when the call
    returns otherwise. Messages from the client are not passed to the app (the channel is server
    push): ``receive`` gives ``websocket.connect`` once and raises after that.
    """

    def __init__(self, config: uvicorn.Config, server_state: object, app_state: dict[str, Any], **more: Any):
        # ``more``: whatever else a uvicorn release passes its protocol classes
        self._app = cast(ASGIApp, config.app)
        self._root_path = config.root_path
        self._max_size = config.ws_max_size
        #: uvicorn's documented switch for permessage-deflate (``LIVEBLOG_COMPRESSION``).
        self._deflate = config.ws_per_message_deflate
        self._agreement: deflate.Agreement | None = None
        self._app_state = app_state
        self._parser: HeadParser | None = None  # only for a head that comes as bytes
        self._opening: Opening | None = None
        self._transport: asyncio.Transport | None = None
        self._connection: LiveConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._started = False  # the request head has been seen
        self._connected_sent = False
        self._accepted = False
        self._responded = False  # an HTTP response (a refusal) was sent instead
        self._refusal: tuple[int, list[tuple[bytes, bytes]]] | None = None
        self._refusal_body: list[bytes] = []

    # -- asyncio.Protocol, until the handshake is answered

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._accepted and self._connection is not None:
            # uvicorn makes this the transport's protocol after feeding it the request: with an
            # eager task factory the app has accepted (and taken the transport) by then.
            self._connection.data_received(data)
            return
        if self._started:
            return  # nothing but the request is expected before the response (RFC 6455 §4.1)
        if self._parser is None:
            self._parser = HeadParser()
        try:
            request = self._parser.feed(data)
        except httptools.HttpParserError:
            self._started = True
            self._respond(http.HTTPStatus.BAD_REQUEST, "bad_request", "not a valid HTTP request")
            return
        if request is not None:
            self._parser = None
            self.upgrade(request)

    def resume_writing(self) -> None:
        if self._accepted and self._connection is not None:
            self._connection.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        # Before the handshake was answered the app call, if any, is for nobody now. (Or after:
        # see data_received.)
        if self._connection is not None:
            self._connection.connection_lost(exc)
        if self._task is not None and not self._accepted:
            self._task.cancel()

    # -- the handshake

    def upgrade(self, request: Upgrade) -> None:
        """Answer ``request``, the whole head of a WebSocket upgrade (the transport is this
        protocol's): refused at once if it is not a valid handshake, else the app is called."""
        self._started = True
        try:
            opening = self._opening = handshake.check(request)
        except handshake.Refusal as refusal:
            if refusal.status == 431:
                message = f"the WebSocket request's head is too large: {refusal.message}"
                self._respond(431, "head_too_large", message)
            else:
                message = f"Failed to open a WebSocket connection: {refusal.message}."
                self._respond(refusal.status, "bad_handshake", message, refusal.headers)
            return
        # permessage-deflate is agreed here, and its frames made by liveblog.wire, compressed
        # once for every reader.
        if self._deflate:
            self._agreement = deflate.negotiate(opening.extensions)
        if self._agreement is None:
            self._connection = LiveConnection(self._max_size)
        else:
            self._connection = DeflatingConnection(self._max_size, self._agreement.window_bits)
        scope = self._scope(request, opening)
        # The scope is complete before the task exists: an eager task factory runs the app at once.
        self._task = asyncio.get_running_loop().create_task(self._run(scope))

    def _scope(self, request: Upgrade, opening: Opening) -> dict[str, Any]:
        transport = self._transport
        assert transport is not None
        path, _, query = request.target.partition(b"?")
        text = path.decode("latin-1")
        return {
            "type": "websocket",
            "asgi": _ASGI,
            "http_version": "1.1",
            "scheme": "wss" if transport.get_extra_info("sslcontext") else "ws",
            "server": _address(transport.get_extra_info("sockname")),
            "client": _address(transport.get_extra_info("peername")),
            "root_path": self._root_path,
            "path": unquote(text) if "%" in text else text,
            "raw_path": path,
            "query_string": query,
            "headers": request.headers,
            "subprotocols": opening.subprotocols,
            "state": self._app_state.copy(),
            "extensions": {"websocket.http.response": {}, CONNECTION_EXTENSION: self._connection},
        }

    async def _run(self, scope: dict[str, Any]) -> None:
        connection = self._connection
        assert connection is not None

        async def send(message: Message) -> None:
            self._send(message)

        try:
            await self._app(scope, self._receive, send)
        except Exception:
            log.exception("live WebSocket app failed on %s", scope["path"])
            if self._accepted:
                connection.close(CloseCode.INTERNAL_ERROR, "internal error")
            elif not self._responded:
                self._respond(500, "internal", "internal server error")
            return
        if self._accepted:
            if not connection.adopted:
                connection.close(CloseCode.NORMAL, "")
        elif not self._responded:
            log.error("live WebSocket app returned without accepting or refusing %s", scope["path"])
            self._respond(500, "internal", "internal server error")

    async def _receive(self) -> Message:
        if self._connected_sent:
            raise RuntimeError(
                "liveblog's WebSocket protocol passes no client messages to the app: after accepting, "
                "use the LiveConnection in the scope's 'liveblog.connection' extension"
            )
        self._connected_sent = True
        return {"type": "websocket.connect"}

    def _send(self, message: Message) -> None:
        kind = message["type"]
        connection, transport = self._connection, self._transport
        assert connection is not None and transport is not None
        if self._responded:
            raise RuntimeError(f"{kind!r} after the handshake was refused")
        if kind == "websocket.accept" and not self._accepted:
            self._accepted = True
            assert self._opening is not None
            headers: list[tuple[bytes, bytes]] = []
            if subprotocol := message.get("subprotocol"):
                headers.append((b"Sec-WebSocket-Protocol", subprotocol.encode("latin-1")))
            headers += message.get("headers", [])
            if self._agreement is not None:
                headers.append((b"Sec-WebSocket-Extensions", self._agreement.response.encode("latin-1")))
            # From here on the transport belongs to the connection (and to the app, through it),
            # which writes the 101 with the first frame (see LiveConnection.take_over).
            connection.take_over(transport, handshake.switching(self._opening, headers))
        elif kind == "websocket.send" and self._accepted:
            text, data = message.get("text"), message.get("bytes")
            if text is not None:
                connection.send_frame(frame(Opcode.TEXT, text.encode()))
            elif data is not None:
                connection.send_frame(frame(Opcode.BINARY, data))
            else:
                raise RuntimeError("websocket.send carries neither text nor bytes")
        elif kind == "websocket.close":
            if self._accepted:
                connection.close(message.get("code", CloseCode.NORMAL), message.get("reason") or "")
            else:
                self._respond(http.HTTPStatus.FORBIDDEN, "forbidden", "the WebSocket was refused")
        elif kind == "websocket.http.response.start" and not self._accepted and self._refusal is None:
            self._refusal = (message["status"], list(message.get("headers", [])))
        elif kind == "websocket.http.response.body" and self._refusal is not None:
            self._refusal_body.append(message.get("body", b""))
            if not message.get("more_body", False):
                status, headers = self._refusal
                self._send_response(status, headers, b"".join(self._refusal_body))
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} in this state of the WebSocket handshake")

    def _respond(self, status: int, code: str, message: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        """An HTTP response in the contract's error shape instead of the upgrade."""
        extra = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]
        extra.append((b"Content-Type", b"application/json"))
        self._send_response(status, extra, error_body(code, message))

    def _send_response(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """An HTTP response instead of the upgrade, and the connection closed."""
        self._responded = True
        if self._transport is None:
            return
        self._transport.write(handshake.closing_response(status, headers, body))
        self._transport.close()


def _address(value: object) -> tuple[str, int] | None:
    if isinstance(value, tuple) and len(value) >= 2:
        return str(value[0]), int(value[1])
    return None


class Server(uvicorn.Server):
    """uvicorn's server, telling live readers to come back elsewhere (1012) as soon as it stops,
    before it waits for requests in flight to finish: readers are the connections that never
    finish by themselves. ``app`` is the liveblog app it serves; ``on_readers_told`` is called
    once every reader has been told, before the rest of the shutdown (what is left is no hurry:
    closing those connections, requests in flight, the app's lifespan)."""

    def __init__(
        self,
        config: uvicorn.Config,
        app: Starlette,
        connections: Connections,
        on_readers_told: Callable[[], None] | None = None,
    ):
        super().__init__(config)
        self.app = app
        self.connections = connections
        self.on_readers_told = on_readers_told

    @property
    def services(self) -> Services:
        """The app's services, once it has started."""
        found: Services = self.app.state.services
        return found

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for sock in sockets or []:
            leave_port(sock)
        self.connections.begin_shutdown()
        if self.on_readers_told is not None:
            self.on_readers_told()
        await super().shutdown(sockets)
        await self.connections.wait_closed()


def build(
    settings: Settings,
    redis_url: str,
    on_fatal: Callable[[], None] | None = None,
    on_readers_told: Callable[[], None] | None = None,
    **overrides: Any,
) -> Server:
    """The liveblog app for ``redis_url`` and the server for it (``overrides``: uvicorn settings;
    ``on_readers_told``: see :class:`Server`)."""
    connections = Connections(settings.ws_ping_interval, settings.reconnect_spread_ms, settings.reconnect_floor_ms)
    app = create_app(settings, redis_url, connections, on_fatal)
    return Server(uvicorn_config(app, settings, **overrides), app, connections, on_readers_told)


def uvicorn_config(app: ASGIApp, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """uvicorn's settings for ``app``; proxy headers are handled by a middleware around the app,
    so that HTTP requests and WebSocket upgrades see the same client address."""
    options: dict[str, Any] = dict(
        host=settings.host,
        port=settings.port,
        ws=LiveProtocol,
        http=guarded(
            settings.head_timeout,
            Doors(per_address(settings.max_connections_per_ip), settings.forwarded_allow_ips),
            settings.send_timeout,
            websocket=LiveProtocol,
        ),
        loop="none",  # the caller's loop: uvloop for `liveblog serve`
        lifespan="on",
        backlog=settings.backlog,  # uvicorn's listen() on the socket it is given
        ws_max_size=settings.ws_max_message_bytes,
        ws_per_message_deflate=bool(settings.compression),
        h11_max_incomplete_event_size=16 * 1024,
        timeout_graceful_shutdown=10,
        server_header=False,
        proxy_headers=False,
        access_log=False,
        log_level="warning",  # not a line per connection at 10k readers; liveblog logs what matters
    )
    options.update(overrides)
    # The live route in front of Starlette's middleware and router (it needs none of them: a
    # join storm paid for each), behind the access log, and that inside the proxy-headers
    # middleware: it logs the client address the app sees.
    served: ASGIApp = LiveRoute(app) if isinstance(app, Starlette) else app
    if settings.access_log:
        served = AccessLog(served)
    return uvicorn.Config(ProxyHeaders(served, trusted_hosts=settings.forwarded_allow_ips), **options)


def bind(host: str, port: int, backlog: int, reuse_port: bool = False) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: any free one) queueing up to ``backlog``
    connections; its port is the server's.

    ``reuse_port``: the socket joins the port's ``SO_REUSEPORT`` group (other processes of this
    user that asked for it too), and is only bound: uvicorn makes it listen once the app has
    started, so the kernel sends it no connection before this process can serve it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say so, and without it
    # every response waits out the client's delayed ACK (40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        cap_send_buffer(sock)
        sock.bind((host, port))
        if not reuse_port:
            sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
