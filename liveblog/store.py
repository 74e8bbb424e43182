"""The storage contract: blogs, entries, tokens and change logs in Redis.

Every mutation is one Lua script that checks its precondition, writes the state and appends the
event to the blog's log, so state and log never disagree. Reads that must be consistent with a
log position (snapshot, page, catch-up) are one script too. Positions come back as cursors
(epoch + stream id). This module knows Redis; it knows nothing of HTTP or WebSockets.

A blog's keys share one hash slot (:mod:`liveblog.keys`), so all of this works on one Redis or
on a Redis Cluster (``redis+cluster://``); only the global indexes live elsewhere.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from importlib import resources
from typing import Any, NamedTuple

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.crc import key_slot
from redis.exceptions import AskError, ClusterDownError, TryAgainError

from . import keys
from .cursor import Cursor, stream_id_key
from .entries import score
from .models import Blog, Entry, Token, Tombstone, decoders, encoder


class NotFound(LookupError):
    """The blog or entry does not exist."""


class Conflict(Exception):
    """The precondition failed: the thing exists already, or another writer changed it first."""

    def __init__(self, message: str, current_version: int | None = None):
        super().__init__(message)
        self.current_version = current_version


class BlogEnded(Exception):
    """The blog's coverage has ended; it takes no new entries."""


class CursorGone(Exception):
    """The cursor can no longer be resumed (other epoch, or trimmed from the log)."""


class Snapshot(NamedTuple):
    cursor: Cursor
    blog: bytes
    entries: list[bytes]
    pinned: list[bytes]


class Page(NamedTuple):
    cursor: Cursor
    entries: list[bytes]
    next: str | None


class LogEvent(NamedTuple):
    """One change-log entry: its stream id, the event JSON (``{"event": …, …}``) and the epoch
    of the log it was written to."""

    stream_id: str
    payload: bytes
    epoch: str

    def with_cursor(self, epoch: str, head: bytes = b"") -> bytes:
        """The event's JSON with ``head`` and its cursor (under the reader's ``epoch``) as the
        first members, spliced in without decoding it: ``{<head>"cursor":"…","event":…}``."""
        return b'{%s"cursor":"%s",%s' % (head, str(Cursor(epoch, self.stream_id)).encode(), self.payload[1:])


class Written(NamedTuple):
    """What a mutation returns: the stored JSON and the log position of its event."""

    json: bytes
    stream_id: str | None


def _script(name: str) -> str:
    folder = resources.files("liveblog") / "lua"
    return (folder / "_prelude.lua").read_text() + "\n" + (folder / f"{name}.lua").read_text()


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _event(kind: str, field: str, body: bytes) -> bytes:
    return b'{"event":"%s","%s":%s}' % (kind.encode(), field.encode(), body)


#: Connections per process. When all are busy (a thousand readers joining at once), callers
#: wait up to POOL_WAIT seconds for one instead of failing.
POOL_SIZE = 256
POOL_WAIT = 5.0
#: The node name of a single (non-cluster) Redis.
STANDALONE = "redis"
#: How often a cluster node's logs are polled while idle (see LogReader).
CLUSTER_POLL = 0.02


CLUSTER_SCHEME = "redis+cluster://"
#: What a cluster node answers while its slots move (MOVED/ASK, CLUSTERDOWN, TRYAGAIN).
LAYOUT_CHANGED = (AskError, ClusterDownError, TryAgainError)
_TIMEOUTS = {"socket_connect_timeout": 2, "socket_timeout": 5}


async def connect(url: str) -> redis.Redis | redis.RedisCluster:
    """A client pool for ``url`` that fails fast when Redis is away (callers turn that into 503).

    ``redis+cluster://host:port`` connects to a Redis Cluster through any of its nodes; the
    cluster's layout is read now, so that the hub knows which nodes to tail.
    """
    if url.startswith(CLUSTER_SCHEME):
        cluster = redis.RedisCluster.from_url(
            "redis://" + url.removeprefix(CLUSTER_SCHEME), max_connections=POOL_SIZE, **_TIMEOUTS
        )
        return await cluster.initialize()
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=POOL_SIZE,
        timeout=POOL_WAIT,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
        health_check_interval=30,
        **_TIMEOUTS,
    )
    return redis.Redis(connection_pool=pool)


class Store:
    """Blogs, entries and tokens. ``log_maxlen`` bounds each change log; entries are never trimmed."""

    def __init__(self, client: redis.Redis, *, log_maxlen: int = 10_000, idempotency_ttl: int = 86_400):
        self.redis = client
        self.log_maxlen = log_maxlen
        self.idempotency_ttl = idempotency_ttl
        self._scripts = {
            name: client.register_script(_script(name))
            for name in (
                "create_blog",
                "update_blog",
                "create_entry",
                "update_entry",
                "delete_entry",
                "snapshot",
                "page",
                "since",
                "position",
                "viewers",
            )
        }

    async def _run(self, name: str, blog_id: str, args: Sequence[Any], extra_keys: Sequence[str] = ()) -> list:
        reply = await self._scripts[name](keys=[*keys.blog_keys(blog_id), *extra_keys], args=args)
        status = _s(reply[0])
        if status == "not_found":
            raise NotFound(f"blog {blog_id!r} does not exist")
        return [status, *reply[1:]]

    # --- blogs ---------------------------------------------------------------------------------

    async def create_blog(self, blog: Blog, epoch: str) -> bytes:
        body = encoder.encode(blog)
        # The index lives in another cluster slot than the blog, so it cannot be in the script.
        # Indexed first (NX keeps an existing blog's place): an id indexed without a blog, should
        # the script then fail, is skipped by list_blogs; a blog missing from the index is not.
        await self.redis.zadd(keys.BLOGS, {blog.id: int(blog.created_at.timestamp() * 1000)}, nx=True)
        status, *_ = await self._run("create_blog", blog.id, [blog.id, body, epoch])
        if status == "exists":
            raise Conflict(f"blog {blog.id!r} already exists")
        return body

    async def get_blog_json(self, blog_id: str) -> bytes:
        body = await self.redis.hget(keys.meta(blog_id), "blog")
        if body is None:
            raise NotFound(f"blog {blog_id!r} does not exist")
        return body

    async def get_blog(self, blog_id: str) -> Blog:
        return decoders[Blog].decode(await self.get_blog_json(blog_id))

    async def replace_blog(self, read: bytes, blog: Blog) -> Written:
        """Write ``blog`` if the stored blog is still exactly ``read``; else raise :class:`Conflict`."""
        body = encoder.encode(blog)
        status, *rest = await self._run(
            "update_blog", blog.id, [read, body, _event("blog.updated", "blog", body), self.log_maxlen]
        )
        if status == "conflict":
            raise Conflict("the blog changed while it was being edited")
        return Written(body, _s(rest[0]))

    async def list_blogs(self, limit: int = 100) -> list[bytes]:
        ids = await self.redis.zrevrange(keys.BLOGS, 0, limit - 1)
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for blog_id in ids:
                pipe.hget(keys.meta(_s(blog_id)), "blog")
            return [body for body in await pipe.execute() if body is not None]

    # --- entries -------------------------------------------------------------------------------

    async def create_entry(self, entry: Entry, owner: str, idempotency: tuple[str, str] | None = None) -> Written:
        """Store a new entry. With ``idempotency=(key digest, request fingerprint)``, a retry gets
        the first result back (``stream_id`` None) and nothing is written; a reused key with a
        different request raises :class:`Conflict`."""
        body = encoder.encode(entry)
        extra = [keys.idempotency(entry.blog, idempotency[0])] if idempotency else []
        fingerprint = idempotency[1] if idempotency else ""
        status, *rest = await self._run(
            "create_entry",
            entry.blog,
            [
                entry.id,
                body,
                score(entry),
                "1" if entry.pinned else "0",
                owner,
                _event("entry.created", "entry", body),
                self.log_maxlen,
                self.idempotency_ttl,
                fingerprint,
            ],
            extra,
        )
        if status == "ended":
            raise BlogEnded(f"blog {entry.blog!r} has ended; it takes no new entries")
        if status == "replay":
            first_fingerprint, _, first = rest[0].partition(b"\n")
            if first_fingerprint.decode() != fingerprint:
                raise Conflict("this Idempotency-Key was already used for a different request")
            return Written(first, None)
        return Written(body, _s(rest[0]))

    async def get_entry(self, blog_id: str, entry_id: str) -> tuple[Entry, str | None]:
        """The entry and the id of the token that created it."""
        async with self.redis.pipeline(transaction=False) as pipe:  # an entry's owner never changes
            pipe.hget(keys.entries(blog_id), entry_id)
            pipe.hget(keys.owners(blog_id), entry_id)
            body, owner = await pipe.execute()
        if body is None:
            raise NotFound(f"entry {entry_id!r} does not exist in blog {blog_id!r}")
        return decoders[Entry].decode(body), _s(owner) if owner is not None else None

    async def replace_entry(self, expected_version: int, entry: Entry) -> Written:
        body = encoder.encode(entry)
        status, *rest = await self._run(
            "update_entry",
            entry.blog,
            [
                entry.id,
                expected_version,
                body,
                score(entry),
                "1" if entry.pinned else "0",
                _event("entry.updated", "entry", body),
                self.log_maxlen,
            ],
        )
        return self._checked(status, rest, entry.id, body)

    async def delete_entry(self, expected_version: int, tombstone: Tombstone) -> Written:
        body = encoder.encode(tombstone)
        status, *rest = await self._run(
            "delete_entry",
            tombstone.blog,
            [tombstone.id, expected_version, _event("entry.deleted", "entry", body), self.log_maxlen],
        )
        return self._checked(status, rest, tombstone.id, body)

    @staticmethod
    def _checked(status: str, rest: list, entry_id: str, body: bytes) -> Written:
        if status == "no_entry":
            raise NotFound(f"entry {entry_id!r} does not exist")
        if status == "conflict":
            current = decoders[Entry].decode(rest[0])
            raise Conflict("the entry was changed by someone else first", current_version=current.version)
        return Written(body, _s(rest[0]))

    # --- reading at a log position ------------------------------------------------------------

    async def snapshot(self, blog_id: str, size: int) -> Snapshot:
        """The latest ``size`` entries and the pinned ones, consistent with the returned cursor."""
        _, blog, epoch, last_id, latest, pinned = await self._run("snapshot", blog_id, [size])
        return Snapshot(Cursor(_s(epoch), _s(last_id)), blog, latest, pinned)

    async def page(self, blog_id: str, limit: int, before: str | None) -> Page:
        reply = await self._run("page", blog_id, [limit, before or ""])
        if reply[0] == "no_entry":
            raise NotFound(f"entry {before!r} does not exist in blog {blog_id!r}")
        _, epoch, last_id, entries, next_id = reply
        return Page(Cursor(_s(epoch), _s(last_id)), entries, _s(next_id) or None)

    async def since(self, blog_id: str, cursor: Cursor, limit: int) -> list[LogEvent]:
        """Up to ``limit`` events after ``cursor``, in log order.

        Raises :class:`CursorGone` when the cursor's epoch is not the blog's, when events after it
        were trimmed from the log, or when it points past the log's end (Redis lost the newest
        events): the caller must start over from a snapshot.
        """
        _, epoch, trimmed, last_id, events = await self._run("since", blog_id, [cursor.stream_id, limit])
        if _s(epoch) != cursor.epoch:
            raise CursorGone("the blog's log was recreated since this cursor was issued")
        if stream_id_key(cursor.stream_id) > stream_id_key(_s(last_id)):
            raise CursorGone("this cursor is past the end of the log, which lost its latest events")
        if trimmed and stream_id_key(cursor.stream_id) < stream_id_key(_s(trimmed)):
            raise CursorGone("events after this cursor were trimmed from the log")
        return [LogEvent(_s(stream_id), fields[1], _s(fields[3])) for stream_id, fields in events]

    async def position(self, blog_id: str) -> Cursor:
        """Where the blog's log is now."""
        _, epoch, last_id = await self._run("position", blog_id, [])
        return Cursor(_s(epoch), _s(last_id))

    async def count_viewers(self, blog_id: str, process_id: str, readers: int, fresh_ms: int) -> int:
        """Report this process's ``readers`` of a blog; the total over every process that reported
        within ``fresh_ms``."""
        script = self._scripts["viewers"]
        return int(await script(keys=[keys.viewers(blog_id)], args=[process_id, readers, fresh_ms]))

    # --- where logs live --------------------------------------------------------------------------

    def nodes(self) -> list[str]:
        """The Redis nodes that hold logs: one, or each primary of a cluster (``host:port``)."""
        if isinstance(self.redis, redis.RedisCluster):
            return sorted(node.name for node in self.redis.get_primaries())
        return [STANDALONE]

    def node_of(self, blog_id: str) -> str:
        if isinstance(self.redis, redis.RedisCluster):
            return self.redis.get_node_from_key(keys.log(blog_id)).name
        return STANDALONE

    async def refresh_layout(self) -> None:
        """Re-read which node holds which slots (after MOVED: a failover or resharding)."""
        if isinstance(self.redis, redis.RedisCluster):
            await self.redis.nodes_manager.initialize()

    def log_reader(self, node: str) -> LogReader:
        """A dedicated connection to ``node``, for blocking reads of its logs."""
        if isinstance(self.redis, redis.RedisCluster):
            host, _, port = node.rpartition(":")
            node_client = redis.Redis(host=host, port=int(port), single_connection_client=True, **_TIMEOUTS)
            return LogReader(node_client, cluster=True)
        # Outside the shared pool: a join storm must never starve the tailer.
        shared = self.redis.connection_pool
        own = redis.ConnectionPool(
            connection_class=shared.connection_class, max_connections=1, **shared.connection_kwargs
        )
        return LogReader(redis.Redis(connection_pool=own, single_connection_client=True))

    async def unblock(self, node: str, client_id: int) -> None:
        """End a tailer's blocking read on ``node`` now (it then reads again, with new blogs)."""
        if isinstance(self.redis, redis.RedisCluster):
            target = self.redis.get_node(node_name=node)
            await self.redis.execute_command("CLIENT UNBLOCK", client_id, target_nodes=target)
        else:
            await self.redis.client_unblock(client_id)

    # --- tokens --------------------------------------------------------------------------------

    async def add_token(self, token: Token) -> None:
        await self.redis.hset(keys.TOKENS, token.id, encoder.encode(token))

    async def get_token(self, token_id: str) -> Token | None:
        body = await self.redis.hget(keys.TOKENS, token_id)
        return None if body is None else decoders[Token].decode(body)

    async def revoke_token(self, token_id: str) -> bool:
        return bool(await self.redis.hdel(keys.TOKENS, token_id))


def fingerprint(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def key_digest(token_id: str, idempotency_key: str) -> str:
    """Idempotency keys are per token: two reporters may pick the same key without colliding."""
    return hashlib.sha256(f"{token_id}\0{idempotency_key}".encode()).hexdigest()[:32]


class LogReader:
    """A dedicated connection that waits on several blogs' logs at once (``async with``).

    On one Redis that is one blocking XREAD over every log. A cluster node refuses a command
    whose keys are in different slots, so there the logs of different slots are read in one
    pipeline of non-blocking XREADs, repeated every ``CLUSTER_POLL`` seconds while idle.
    """

    def __init__(self, client: redis.Redis, *, cluster: bool = False):
        self._client = client
        self._cluster = cluster

    async def __aenter__(self) -> LogReader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.aclose(close_connection_pool=True)

    async def client_id(self) -> int:
        """This connection's id, for CLIENT UNBLOCK from another connection."""
        return int(await self._client.client_id())

    async def read(self, positions: dict[str, str], block_ms: int) -> list[tuple[str, list[LogEvent]]]:
        """Events after each blog's stream id; waits up to ``block_ms`` for the first one."""
        slots: dict[int, dict[str, str]] = {}
        for blog_id, stream_id in positions.items():
            slots.setdefault(key_slot(keys.log(blog_id).encode()) if self._cluster else 0, {})[keys.log(blog_id)] = (
                stream_id
            )
        if len(slots) == 1:
            replies = [await self._client.xread(next(iter(slots.values())), count=500, block=block_ms)]
        else:
            async with self._client.pipeline(transaction=False) as pipe:
                for streams in slots.values():
                    pipe.xread(streams, count=500)
                replies = await pipe.execute()
            if not any(replies):
                await asyncio.sleep(CLUSTER_POLL)
        return [
            (
                keys.blog_of(_s(stream)),
                [LogEvent(_s(sid), fields[b"e"], _s(fields[b"epoch"])) for sid, fields in events],
            )
            for reply in replies
            for stream, events in reply or []
        ]
