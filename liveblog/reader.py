"""A reader's session, whichever channel it came by (WebSocket or SSE): who may join, which blog,
from where, and how it is brought up to date without a gap.
"""

from __future__ import annotations

import functools
import math
import re

from starlette.requests import HTTPConnection

from .config import MAX_SNAPSHOT
from .cursor import BadCursor, Cursor, stream_id_key
from .errors import ApiError
from .hub import Subscription
from .models import SLUG_PATTERN, Blog, decode
from .services import Services, services
from .snapshots import SnapshotReads
from .storage import CursorGone, NotFound, Storage
from .wire import CloseCode, Message

_SLUG = re.compile(SLUG_PATTERN)
CATCH_UP_BATCH = 500


def client_address(connection: HTTPConnection) -> str:
    return connection.client.host if connection.client else "unknown"


def admission(state: Services, client: str) -> ApiError | None:
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
        message = "too many open connections from your address"
        return ApiError(CloseCode.TOO_MANY_CONNECTIONS, "too_many_connections", message)
    return None


async def get_blog(state: Services, blog_id: str) -> Blog:
    """The blog a reader asked for; an id that cannot be a blog is simply not found.

    Kept in the page cache for its second, and read once for everyone who asks while it is not
    there (:meth:`~liveblog.caching.ShortCache.fetched`): readers joining in a storm ask for it
    thousands of times. Changes through this process are seen at once, through others within
    that second.
    """
    if not _SLUG.match(blog_id):
        raise NotFound(f"blog {blog_id!r} does not exist")
    body = await state.pages.fetched(blog_id, "blog", functools.partial(_blog_json, state, blog_id))
    return decode(Blog, body)


async def _blog_json(state: Services, blog_id: str) -> bytes:
    """The blog's record from the store, read with every other blog's asked for meanwhile: a
    storm over a hundred cold blogs is then one round trip, not a hundred at once."""
    body = await state.blog_records.get(blog_id)
    if body is None:
        raise NotFound(f"blog {blog_id!r} does not exist")
    return body


def origin_allowed(blog: Blog, connection: HTTPConnection) -> bool:
    """Browsers send Origin; an empty ``embed_origins`` allows any page to embed the blog, and
    this service's own pages (the public page, the iframe page) may always show it."""
    origin = connection.headers.get("origin")
    if not blog.embed_origins or origin is None or origin in blog.embed_origins:
        return True
    scheme = {"ws": "http", "wss": "https"}.get(connection.url.scheme, connection.url.scheme)
    return origin == f"{scheme}://{connection.headers.get('host', '')}"


def parse_cursor(text: str | None) -> Cursor | None:
    """A reader's cursor, or None (start from a snapshot) when absent or not one of ours."""
    try:
        return Cursor.parse(text or "")
    except BadCursor:
        return None


def snapshot_size(connection: HTTPConnection) -> int:
    """The reader's ``?limit=`` (1-100) for its snapshot, else the configured size."""
    raw = connection.query_params.get("limit", "")
    if raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_SNAPSHOT:
        return int(raw)
    return services(connection).settings.snapshot_size


async def join(
    store: Storage, snapshots: SnapshotReads, subscription: Subscription, blog_id: str, cursor: Cursor | None, size: int
) -> None:
    """Bring a registered reader up to date: the missed events after ``cursor``, else a snapshot."""
    if cursor is not None:
        try:
            subscription.seek(stream_id_key(cursor.stream_id))
            # The first batch is shared by everyone coming back from this cursor (a deploy).
            caught = await snapshots.catch_up(blog_id, cursor, CATCH_UP_BATCH)
            if caught.message is not None:
                subscription.send(caught.message)
            if caught.complete or caught.last is None or subscription.closed:
                return
            after = caught.last
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
