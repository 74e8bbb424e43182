"""The live channel: ``GET /api/v1/blogs/{blog}/live`` over WebSocket.

A reader without a usable cursor gets a snapshot and then every event; a reader with one gets the
events it missed and then every event. Either way each event arrives once, in log order, because
the reader registers with the hub before it reads anything (see :mod:`liveblog.hub`). The server
sends; messages from the reader are not part of the protocol and are ignored (binary ones close
the connection with 1003). Once the reader has joined, the ASGI call returns and the reader's
:class:`~liveblog.connection.LiveConnection` serves it alone.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, MutableMapping
from typing import Any

from prometheus_client import Gauge
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.applications import Starlette
from starlette.websockets import WebSocket

from .connection import CONNECTION_EXTENSION, LiveConnection
from .hub import Hub, Subscription
from .limits import ConnectionLimiter
from .reader import admission, client_address, get_blog, join, origin_allowed, parse_cursor, snapshot_size
from .services import Services, services
from .storage import NotFound
from .wire import CloseCode

log = logging.getLogger(__name__)

#: The live channel's path, as ``api.routes`` declares it (Starlette's ``{blog}``: no slash).
PATH = re.compile(r"/api/v1/blogs/(?P<blog>[^/]+)/live")


class LiveRoute:
    """``app``, except that the live channel's upgrades are answered by :func:`live` directly.

    A join storm is thousands of upgrades a second, and Starlette's middleware stack, router
    and ``websocket_session`` around :func:`live` cost as much as the join itself; none of them
    does anything for it (compression leaves WebSockets alone; the exception handlers see no
    exception of the live channel's). So this ASGI app, in front of Starlette's (and behind the
    access log and the proxy headers, as before), sees the path first; everything else, the
    staff channel's WebSocket included, goes on to ``app``. Under a ``root_path`` it stands
    aside: Starlette's router is what knows how that prefix is matched.
    """

    def __init__(self, app: Starlette):
        self.app = app

    async def __call__(
        self, scope: MutableMapping[str, Any], receive: Callable[..., Any], send: Callable[..., Any]
    ) -> None:
        if scope["type"] == "websocket" and not scope.get("root_path") and (found := PATH.fullmatch(scope["path"])):
            scope["app"] = self.app  # as Starlette sets it: services() finds the app's state through it
            scope["path_params"] = {"blog": found["blog"]}
            await live(WebSocket(scope, receive, send))
        else:
            await self.app(scope, receive, send)


async def live(websocket: WebSocket) -> None:
    """Admit, accept and join a reader, then leave it to its LiveConnection and return."""
    state = services(websocket)
    connection: LiveConnection | None = websocket.scope.get("extensions", {}).get(CONNECTION_EXTENSION)
    if connection is None:
        raise RuntimeError("the live channel needs liveblog's server protocol: run it with `liveblog serve`")
    blog_id = websocket.path_params["blog"]
    client = client_address(websocket)
    refusal = admission(state, client)
    if refusal is not None and refusal.status != CloseCode.TOO_MANY_CONNECTIONS:
        await websocket.send_denial_response(refusal.response())
        return
    await websocket.accept()
    # From here on, the reader is served through `connection` only (see liveblog.server).
    if refusal is not None:
        connection.close(CloseCode.TOO_MANY_CONNECTIONS, refusal.message)
        return
    readers = state.readers
    readers.opened(client)
    connected = state.metrics.readers.labels("websocket")
    connected.inc()
    subscription = None
    try:
        subscription = await _join_reader(state, websocket, connection, blog_id)
    except NotFound:
        connection.close(CloseCode.NO_SUCH_BLOG, "no such blog")
    except (RedisConnectionError, RedisTimeoutError) as exc:
        log.warning("live reader of %r dropped: Redis unavailable (%s)", blog_id, exc)
        state.metrics.redis_errors.labels("live").inc()
        connection.close(CloseCode.SERVICE_RESTART, "storage unavailable; reconnect with your cursor")
    except BaseException:
        _leave(state.hub, None, readers, client, connected)
        raise
    connection.adopt(functools.partial(_leave, state.hub, subscription, readers, client, connected), state.connections)


def _leave(hub: Hub, subscription: Subscription | None, readers: ConnectionLimiter, client: str, gauge: Gauge) -> None:
    """A WebSocket reader is gone: release what it held."""
    if subscription is not None:
        hub.unsubscribe(subscription)
    readers.closed(client)
    gauge.dec()


async def _join_reader(
    state: Services, websocket: WebSocket, connection: LiveConnection, blog_id: str
) -> Subscription | None:
    """Subscribe the reader and bring it up to date; None if it was turned away (and closed)."""
    store, hub = state.store, state.hub
    if not origin_allowed(await get_blog(state, blog_id), websocket):
        connection.close(CloseCode.ORIGIN_NOT_ALLOWED, "this origin may not embed this blog")
        return None
    cursor = parse_cursor(websocket.query_params.get("cursor"))
    subscription = await hub.subscribe(blog_id, connection)
    try:
        await join(store, state.snapshots, subscription, blog_id, cursor, snapshot_size(websocket))
    except BaseException:
        hub.unsubscribe(subscription)
        raise
    subscription.go_live()
    return subscription
