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
import math
import re

from prometheus_client import Gauge
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.datastructures import State
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket

from .caching import ShortCache
from .connection import SERVICE_RESTART, LiveConnection
from .cursor import BadCursor, Cursor, stream_id_key
from .errors import ApiError
from .hub import Hub, Message, Subscription
from .limits import ConnectionLimiter
from .models import SLUG_PATTERN, Blog, decoders
from .server import CONNECTION_EXTENSION
from .snapshots import SnapshotReads
from .store import CursorGone, NotFound, Store

log = logging.getLogger(__name__)
_SLUG = re.compile(SLUG_PATTERN)

NO_SUCH_BLOG = 4404
TOO_MANY_FROM_CLIENT = 4429
ORIGIN_NOT_ALLOWED = 4403
CATCH_UP_BATCH = 500
MAX_SNAPSHOT = 100


def origin_allowed(blog: Blog, connection: HTTPConnection) -> bool:
    """Browsers send Origin; an empty ``embed_origins`` allows any page to embed the blog, and
    this service's own pages (the public page, the iframe page) may always show it."""
    origin = connection.headers.get("origin")
    if not blog.embed_origins or origin is None or origin in blog.embed_origins:
        return True
    scheme = {"ws": "http", "wss": "https"}.get(connection.url.scheme, connection.url.scheme)
    return origin == f"{scheme}://{connection.headers.get('host', '')}"


def snapshot_size(connection: HTTPConnection) -> int:
    """The reader's ``?limit=`` (1-100) for its snapshot, else the configured size."""
    raw = connection.query_params.get("limit", "")
    if raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_SNAPSHOT:
        return int(raw)
    return connection.app.state.settings.snapshot_size


async def live(websocket: WebSocket) -> None:
    """Admit, accept and join a reader, then leave it to its LiveConnection and return."""
    state = websocket.app.state
    connection: LiveConnection | None = websocket.scope.get("extensions", {}).get(CONNECTION_EXTENSION)
    if connection is None:
        raise RuntimeError("the live channel needs liveblog's server protocol: run it with `liveblog serve`")
    blog_id = websocket.path_params["blog"]
    client = client_address(websocket)
    refusal = admission(state, client)
    if refusal is not None and refusal.status != TOO_MANY_FROM_CLIENT:
        await websocket.send_denial_response(refusal.response())
        return
    await websocket.accept()
    # From here on, the reader is served through `connection` only (see liveblog.server).
    if refusal is not None:
        connection.close(TOO_MANY_FROM_CLIENT, refusal.message)
        return
    readers: ConnectionLimiter = state.readers
    readers.opened(client)
    connected = state.metrics.readers.labels("websocket")
    connected.inc()
    subscription = None
    try:
        subscription = await _join_reader(websocket, connection, blog_id)
    except NotFound:
        connection.close(NO_SUCH_BLOG, "no such blog")
    except (RedisConnectionError, RedisTimeoutError) as exc:
        log.warning("live reader of %r dropped: Redis unavailable (%s)", blog_id, exc)
        state.metrics.redis_errors.labels("live").inc()
        connection.close(SERVICE_RESTART, "storage unavailable; reconnect with your cursor")
    except BaseException:
        _leave(state.hub, None, readers, client, connected)
        raise
    connection.adopt(functools.partial(_leave, state.hub, subscription, readers, client, connected), state.keepalive)


def _leave(hub: Hub, subscription: Subscription | None, readers: ConnectionLimiter, client: str, gauge: Gauge) -> None:
    """A WebSocket reader is gone: release what it held."""
    if subscription is not None:
        hub.unsubscribe(subscription)
    readers.closed(client)
    gauge.dec()


def client_address(connection: HTTPConnection) -> str:
    return connection.client.host if connection.client else "unknown"


def admission(state: State, client: str) -> ApiError | None:
    """Why a new live connection from ``client`` is refused, or None to admit it.

    Checked before anything is allocated for the reader: the connect rate per address (429 with
    Retry-After), the process's total (503), the address's open connections (4429).
    """
    wait = state.connects.wait_time(client)
    if wait:
        retry = str(math.ceil(wait))
        return ApiError(429, "rate_limited", "too many new connections; retry later", headers={"Retry-After": retry})
    refused = state.readers.refusal(client)
    if refused == "total":
        return ApiError(503, "full", "this server has all the readers it can take", headers={"Retry-After": "5"})
    if refused == "client":
        return ApiError(TOO_MANY_FROM_CLIENT, "too_many_connections", "too many open connections from your address")
    return None


async def _join_reader(websocket: WebSocket, connection: LiveConnection, blog_id: str) -> Subscription | None:
    """Subscribe the reader and bring it up to date; None if it was turned away (and closed)."""
    store: Store = websocket.app.state.store
    hub: Hub = websocket.app.state.hub
    if not origin_allowed(await get_blog(websocket.app.state, blog_id), websocket):
        connection.close(ORIGIN_NOT_ALLOWED, "this origin may not embed this blog")
        return None
    cursor = parse_cursor(websocket.query_params.get("cursor"))
    subscription = await hub.subscribe(blog_id, connection)
    try:
        await join(store, websocket.app.state.snapshots, subscription, blog_id, cursor, snapshot_size(websocket))
    except BaseException:
        hub.unsubscribe(subscription)
        raise
    subscription.go_live()
    return subscription


async def get_blog(state: State, blog_id: str) -> Blog:
    """The blog a reader asked for; an id that cannot be a blog is simply not found.

    Kept in the page cache for its second: readers joining in a storm ask for it thousands of
    times. Changes through this process are seen at once, through others within that second.
    """
    if not _SLUG.match(blog_id):
        raise NotFound(f"blog {blog_id!r} does not exist")
    pages: ShortCache = state.pages
    if (body := pages.get(blog_id, "blog")) is None:
        body = await state.store.get_blog_json(blog_id)
        pages.put(blog_id, "blog", body)
    return decoders[Blog].decode(body)


def parse_cursor(text: str | None) -> Cursor | None:
    """A reader's cursor, or None (start from a snapshot) when absent or not one of ours."""
    try:
        return Cursor.parse(text or "")
    except BadCursor:
        return None


async def join(
    store: Store, snapshots: SnapshotReads, subscription: Subscription, blog_id: str, cursor: Cursor | None, size: int
) -> None:
    """Bring a registered reader up to date: the missed events after ``cursor``, else a snapshot."""
    if cursor is not None:
        try:
            subscription.seek(stream_id_key(cursor.stream_id))
            after = cursor
            while True:
                events = await store.since(blog_id, after, CATCH_UP_BATCH)
                for event in events:
                    subscription.send(Message.event(cursor.epoch, event))
                if len(events) < CATCH_UP_BATCH or subscription.closed:
                    return
                after = Cursor(cursor.epoch, events[-1].stream_id)
        except CursorGone:
            pass  # another epoch, or trimmed: the reader starts over from a snapshot
    # Stamped now, after any catch-up: a shared read that started later is newer than all the
    # reader was sent, as well as started after it subscribed.
    snapshot = await snapshots.read(blog_id, size, snapshots.stamp())
    subscription.send_snapshot(snapshot)
