"""The staff channel: ``GET /api/v1/blogs/{blog}/staff/live`` over WebSocket (DESIGN §6).

Each console follows its blog's audit trail live: every create, edit, status change, review
note, retraction, restore and purge, within ``LIVEBLOG_STAFF_POLL_INTERVAL``, each with the entry
as it is now (``null`` once purged). So co-workers see each other's drafts and edits without a
reload. A caller sees what it may see through the API: editors everything in their blogs,
reporters and contributors published entries and their own work; records about others'
unpublished work are left out.

Server → client, one JSON text frame each:
``{"type":"ready","cursor":C}`` first, then ``{"type":"audit","cursor":C,"record":{…},"entry":{…}|null}``.
``?cursor=<C>`` resumes after a record (a console that reconnects misses nothing the trail
still holds). The connection is authenticated by the session cookie (or a bearer header) and
refused (403) from any origin but the service's own.

Staff are few, so each connection polls the trail (one ``XRANGE`` per interval, no blocking
Redis connection held); the connections are counted against ``LIVEBLOG_MAX_STAFF_READERS``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.websockets import WebSocket

from . import auth, sessions, tasks
from .connection import CONNECTION_EXTENSION, LiveConnection, State
from .errors import ApiError
from .models import AuditRecord, Entry, Raw, decode, encoder
from .services import services
from .storage import NotFound, Storage
from .wire import CloseCode, Message

log = logging.getLogger(__name__)
_RECORD_ID = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}\Z")
BATCH = 100


class StaffChannels:
    """The staff connections of one process, and the task that follows each one's blog.

    Owns those tasks: a task that fails is logged with its blog and the connection closed with
    1011; :meth:`close` cancels them all (the app's shutdown).
    """

    def __init__(self, store: Storage, limit: int, poll_interval: float, buffer_limit: int):
        self._store = store
        self._limit = limit
        self._interval = poll_interval
        self._buffer_limit = buffer_limit
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def full(self) -> bool:
        return len(self._tasks) >= self._limit

    def follow(self, connection: LiveConnection, who: auth.Principal, blog_id: str, after: str) -> asyncio.Task[None]:
        task = asyncio.create_task(self._follow(connection, who, blog_id, after), name=f"liveblog-staff-{blog_id}")
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._done(done, connection, blog_id))
        return task

    def _done(self, task: asyncio.Task[None], connection: LiveConnection, blog_id: str) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        if (error := task.exception()) is not None:
            log.error("staff channel of blog %r failed", blog_id, exc_info=error)
            connection.close(CloseCode.INTERNAL_ERROR, "internal error; reconnect with your cursor")

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _follow(self, connection: LiveConnection, who: auth.Principal, blog_id: str, after: str) -> None:
        while connection.state is State.OPEN:
            tasks.checkpoint()
            try:
                records = await self._store.audit_after(blog_id, after, BATCH)
                for record_id, raw in records:
                    message = await self._message(who, blog_id, record_id, raw)
                    after = record_id
                    if message is not None and connection.send(Message(None, message)) > self._buffer_limit:
                        connection.close(CloseCode.TOO_SLOW, "too slow; reconnect with your cursor")
                        return
            except (RedisConnectionError, RedisTimeoutError) as exc:
                log.warning("staff channel of blog %r: Redis unavailable (%s)", blog_id, exc)
                connection.close(CloseCode.SERVICE_RESTART, "storage unavailable; reconnect with your cursor")
                return
            if len(records) < BATCH:
                await asyncio.sleep(self._interval)

    async def _message(self, who: auth.Principal, blog_id: str, record_id: str, raw: bytes) -> bytes | None:
        """The frame for one audit record, or None if ``who`` may not see what it is about."""
        record = decode(AuditRecord, raw)
        entry: Entry | None = None
        if record.action != "purge":
            try:
                entry, owner = await self._store.get_entry(blog_id, record.entry)
            except NotFound:
                entry = owner = None  # purged since: the purge's own record follows
            if entry is not None and entry.status != "published" and not who.can_see_work(blog_id, owner):
                return None
        document = {"type": "audit", "cursor": record_id, "record": Raw(raw), "entry": entry}
        return encoder.encode(document)


def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()


async def staff_live(websocket: WebSocket) -> None:
    state = services(websocket)
    connection: LiveConnection | None = websocket.scope.get("extensions", {}).get(CONNECTION_EXTENSION)
    if connection is None:
        raise RuntimeError("the staff channel needs liveblog's server protocol: run it with `liveblog serve`")
    blog_id = websocket.path_params["blog"]
    try:
        if websocket.headers.get("origin", sessions.own_origin(websocket)) != sessions.own_origin(websocket):
            raise ApiError(403, "cross_origin", "the staff channel opens only from this service's own pages")
        who = await sessions.principal(websocket)
        if not who.can_post(blog_id):
            raise ApiError(403, "forbidden", f"this token has no access to {blog_id!r}")
        await state.store.get_blog_json(blog_id)
        if state.staff.full:
            raise ApiError(503, "full", "this server has all the staff connections it can take")
        requested = websocket.query_params.get("cursor")
        if requested is not None and not (_RECORD_ID.match(requested) and max(map(int, requested.split("-"))) < 2**64):
            raise ApiError(400, "bad_cursor", "cursor must be the cursor of an audit record", "cursor")
        after = requested or await state.store.audit_position(blog_id)
    except ApiError as exc:
        await websocket.send_denial_response(exc.response())
        return
    except NotFound as exc:
        await websocket.send_denial_response(ApiError(404, "not_found", str(exc)).response())
        return
    await websocket.accept()
    connection.send(Message(None, encoder.encode({"type": "ready", "cursor": after})))
    task = state.staff.follow(connection, who, blog_id, after)
    connection.adopt(functools.partial(_stop, task), state.connections)
