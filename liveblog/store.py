"""The store: :class:`~liveblog.storage.Storage` on Redis (blogs, entries, tokens, change logs).

Every mutation is one Lua script that checks its precondition, writes the state and appends the
event to the blog's log, so state and log never disagree. Reads that must be consistent with a
log position (snapshot, page, catch-up) are one script too. Positions come back as cursors
(epoch + stream id). This module knows Redis; it knows nothing of HTTP or WebSockets.

A blog's keys share one hash slot (:mod:`liveblog.keys`), so all of this works on one Redis or
on a Redis Cluster (``redis+cluster://``); only the global indexes live elsewhere.

With ``min_replicas``, every mutating script (and a token's minting or revocation) is followed by
``WAIT`` on its own connection, and a write that fewer replicas confirm in time raises
:class:`~liveblog.storage.NotReplicated` instead of being acknowledged: :meth:`Store._run`, the
script runner, and :meth:`Store._replicated` under it are the one place that does this.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from importlib import resources
from typing import Any, TypeVar, cast

import redis.asyncio as redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline

from . import keys, webhooks
from .cursor import Cursor, stream_id_key
from .entries import score
from .models import Actor, AuditRecord, Blog, Entry, Token, TokenInfo, decode, encoder
from .storage import (
    BlogEnded,
    Change,
    Conflict,
    CursorGone,
    Due,
    Imported,
    LogEvent,
    NotFound,
    NotReplicated,
    Page,
    Purge,
    Purged,
    Snapshot,
    Written,
)


def _script(name: str) -> str:
    folder = resources.files("liveblog") / "lua"
    return (folder / "_prelude.lua").read_text() + "\n" + (folder / f"{name}.lua").read_text()


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


#: The scripts that change what clients are told was written; the rest read, or keep indexes.
_WRITES = frozenset({"create_blog", "update_blog", "write_entry", "purge_entry", "import_blog"})
#: Their answers for a write made (or, for a replay, made before): anything else changed nothing.
_WRITTEN = frozenset({"ok", "replay"})


def _event(kind: str, field: str, body: bytes) -> bytes:
    return b'{"event":"%s","%s":%s}' % (kind.encode(), field.encode(), body)


class Store:
    """:class:`~liveblog.storage.Storage` on ``client``. ``log_maxlen`` bounds each change log;
    entries are never trimmed. A write is acknowledged once ``min_replicas`` replicas confirm it
    within ``wait_ms`` (0: at once)."""

    def __init__(
        self,
        client: redis.Redis | redis.RedisCluster,
        *,
        log_maxlen: int = 10_000,
        idempotency_ttl: int = 86_400,
        audit_maxlen: int = 100_000,
        versions_kept: int = 100,
        outbox_maxlen: int = 10_000,
        min_replicas: int = 0,
        wait_ms: int = 500,
    ):
        if min_replicas and not isinstance(client, redis.Redis):
            raise ValueError("min_replicas works with one Redis or Sentinel, not with Redis Cluster")
        self.redis = client
        self.min_replicas = min_replicas
        self.wait_ms = wait_ms
        self.log_maxlen = log_maxlen
        self.idempotency_ttl = idempotency_ttl
        self.audit_maxlen = audit_maxlen
        self.versions_kept = versions_kept
        #: Webhook events kept per blog's outbox, delivered or not (about: Redis trims whole nodes).
        self.outbox_maxlen = outbox_maxlen
        self._used: dict[str, datetime] = {}
        self._scripts = {
            name: client.register_script(_script(name))
            for name in (
                "create_blog",
                "update_blog",
                "write_entry",
                "purge_entry",
                "due",
                "settle",
                "snapshot",
                "page",
                "since",
                "position",
                "viewers",
                "import_blog",
            )
        }

    async def _run(self, name: str, blog_id: str, args: Sequence[Any], extra_keys: Sequence[str] = ()) -> list[Any]:
        script, script_keys = self._scripts[name], [*keys.blog_keys(blog_id), *extra_keys]
        if self.min_replicas and name in _WRITES and isinstance(self.redis, redis.Redis):
            async with self.redis.pipeline(transaction=False) as pipe:
                await script(keys=script_keys, args=args, client=pipe)
                (reply,) = await self._replicated(
                    pipe, f"the write to blog {blog_id!r}", lambda replies: _s(replies[0][0]) in _WRITTEN
                )
        else:
            reply = await script(keys=script_keys, args=args)
        status = _s(reply[0])
        if status == "not_found":
            raise NotFound(f"blog {blog_id!r} does not exist")
        return [status, *reply[1:]]

    async def _replicated(
        self, pipe: Pipeline | ClusterPipeline, what: str, made: Callable[[list[Any]], bool] = lambda _: True
    ) -> list[Any]:
        """``pipe``'s replies; with ``min_replicas``, once that many replicas confirm its writes
        (WAIT counts the writes of its own connection: the pipeline keeps both on one), else
        :class:`NotReplicated` if ``made(replies)`` says it wrote something (a refusal did not)."""
        if not self.min_replicas:
            return await pipe.execute()
        pipe.wait(self.min_replicas, self.wait_ms)
        *replies, confirmed = await pipe.execute()
        if confirmed < self.min_replicas and made(replies):
            raise NotReplicated(
                f"{what} reached {confirmed} of {self.min_replicas} replicas within {self.wait_ms} ms; "
                "retry it (a POST with the same Idempotency-Key)"
            )
        return replies

    async def ping(self) -> None:
        await self.redis.ping()

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
        body = cast(bytes | None, await self.redis.hget(keys.meta(blog_id), "blog"))  # the client returns bytes
        if body is None:
            raise NotFound(f"blog {blog_id!r} does not exist")
        return body

    async def get_blogs_json(self, blog_ids: Sequence[str]) -> dict[str, bytes | None]:
        """Each blog's stored JSON (None: not found). On one Redis, one pipeline; a cluster's
        blogs are in as many slots, read one after another."""
        if not isinstance(self.redis, redis.Redis):
            return await _one_by_one(self.get_blog_json, blog_ids)
        async with self.redis.pipeline(transaction=False) as pipe:
            for blog_id in blog_ids:
                pipe.hget(keys.meta(blog_id), "blog")
            replies = await pipe.execute()
        return dict(zip(blog_ids, cast(list[bytes | None], replies), strict=True))

    async def get_blog(self, blog_id: str) -> Blog:
        return decode(Blog, await self.get_blog_json(blog_id))

    async def replace_blog(self, read: bytes, blog: Blog) -> Written:
        """Write ``blog`` if the stored blog is still exactly ``read``; else raise :class:`Conflict`."""
        body = encoder.encode(blog)
        ends = blog.status == "ended" and decode(Blog, read).status != "ended"
        alerts = [webhooks.event_body("blog.ended", blog.id, blog.updated_at)] if ends else []
        status, *rest = await self._run(
            "update_blog",
            blog.id,
            [read, body, _event("blog.updated", "blog", body), self.log_maxlen, self.outbox_maxlen, *alerts],
            [keys.outbox(blog.id), keys.webhooks(blog.id)],
        )
        if status == "conflict":
            raise Conflict("the blog changed while it was being edited")
        return Written(body, _s(rest[0]))

    async def list_blogs(self, limit: int = 100) -> list[bytes]:
        ids = cast(list[bytes], await self.redis.zrevrange(keys.BLOGS, 0, limit - 1))
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for blog_id in ids:
                pipe.hget(keys.meta(_s(blog_id)), "blog")
            return [body for body in await pipe.execute() if body is not None]

    # --- entries -------------------------------------------------------------------------------

    async def write(self, change: Change, owner: str, idempotency: tuple[str, str] | None = None) -> Written:
        entry = change.entry
        body = encoder.encode(entry)
        event = b""
        if change.event == "entry.deleted":
            event = _event(change.event, "entry", encoder.encode(change.tombstone))
        elif change.event is not None:
            event = _event(change.event, "entry", body)
        now_tagged = list(dict.fromkeys(entry.tags))
        lost = [name for name in dict.fromkeys(change.previous_tags) if name not in now_tagged]
        extra = [keys.versions(entry.blog, entry.id), *(keys.tag(entry.blog, name) for name in now_tagged + lost)]
        extra += [keys.outbox(entry.blog), keys.webhooks(entry.blog), keys.alerts(entry.blog)]
        if idempotency and change.expected_version == 0:
            extra.append(keys.idempotency(entry.blog, idempotency[0]))
        fingerprint = idempotency[1] if idempotency else ""
        status, *rest = await self._run(
            "write_entry",
            entry.blog,
            [
                entry.id,
                change.expected_version,
                body,
                "public" if entry.status == "published" else "work",
                score(entry),
                "1" if entry.pinned else "0",
                event,
                encoder.encode(change.version) if change.version is not None else b"",
                encoder.encode(change.audit),
                self.log_maxlen,
                self.audit_maxlen,
                owner,
                self.idempotency_ttl,
                fingerprint,
                self.versions_kept,
                "1" if change.opens else "0",
                len(now_tagged) + len(lost),
                len(now_tagged),
                self.outbox_maxlen,
                *self._alerts(change, body),
            ],
            extra,
        )
        if status == "ended":
            raise BlogEnded(f"blog {entry.blog!r} has ended; it takes no new entries")
        if status == "purged":
            raise Purged(f"the entry this Idempotency-Key made in blog {entry.blog!r} was purged")
        if status == "replay":
            first_fingerprint, _, first = rest[0].partition(b"\n")
            if first_fingerprint.decode() != fingerprint:
                raise Conflict("this Idempotency-Key was already used for a different request")
            return Written(first, None, replayed=True)
        return self._checked(status, rest, entry.id, body)

    @staticmethod
    def _alerts(change: Change, body: bytes) -> list[bytes]:
        entry = encoder.encode(change.tombstone) if change.event == "entry.deleted" else body
        at = change.audit.at
        return [webhooks.event_body(kind, change.entry.blog, at, entry) for kind in change.alerts]

    async def get_entry(self, blog_id: str, entry_id: str) -> tuple[Entry, str | None]:
        async with self.redis.pipeline(transaction=False) as pipe:  # an entry moves in one script
            pipe.hget(keys.entries(blog_id), entry_id)
            pipe.hget(keys.work(blog_id), entry_id)
            pipe.hget(keys.owners(blog_id), entry_id)
            public, work, owner = await pipe.execute()
        body = public if public is not None else work
        if body is None:
            raise NotFound(f"entry {entry_id!r} does not exist in blog {blog_id!r}")
        return decode(Entry, body), _s(owner) if owner is not None else None

    async def get_public_entry(self, blog_id: str, entry_id: str) -> bytes:
        body = await self.redis.hget(keys.entries(blog_id), entry_id)
        if body is None:
            raise NotFound(f"entry {entry_id!r} does not exist in blog {blog_id!r}")
        return cast(bytes, body)

    async def list_work(self, blog_id: str) -> list[tuple[Entry, str | None]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hvals(keys.work(blog_id))
            pipe.hgetall(keys.owners(blog_id))
            bodies, owners = await pipe.execute()
        work = [decode(Entry, body) for body in bodies]
        work.sort(key=lambda entry: entry.created_at, reverse=True)
        return [(entry, _s(owners[entry.id.encode()]) if entry.id.encode() in owners else None) for entry in work]

    async def versions(self, blog_id: str, entry_id: str) -> list[bytes]:
        return cast(list[bytes], await self.redis.lrange(keys.versions(blog_id, entry_id), 0, -1))

    async def purge(self, blog_id: str, entry_id: str, expected_version: int | None, purge: Purge) -> Written:
        tombstone = encoder.encode(purge.tombstone)
        for _ in range(5):  # the idempotency key is named by a read; a retry of its write moves it
            idem = await self.redis.hget(keys.idempotency_of(blog_id), entry_id)
            tags = [keys.tag(blog_id, name) for name in dict.fromkeys(purge.tags)]
            hooks = [keys.outbox(blog_id), keys.webhooks(blog_id), keys.deliveries(blog_id), keys.retries(blog_id)]
            extra = [
                keys.versions(blog_id, entry_id),
                *tags,
                *hooks,
                keys.alerts(blog_id),
                *([_s(idem)] if idem is not None else []),
            ]
            status, *rest = await self._run(
                "purge_entry",
                blog_id,
                [
                    entry_id,
                    "" if expected_version is None else expected_version,
                    _event("entry.deleted", "entry", tombstone),
                    encoder.encode(purge.audit),
                    self.log_maxlen,
                    self.audit_maxlen,
                    len(tags),
                ],
                extra,
            )
            if status != "retry":
                return self._checked(status, rest, entry_id, tombstone)
        raise Conflict("the entry kept changing while it was being purged")

    async def audit(self, blog_id: str, limit: int, before: str | None) -> tuple[list[bytes], str | None]:
        if before is not None and stream_id_key(before) == (0, 0):
            return [], None  # nothing is older than the first possible id (and "(0-0" is no range)
        top = f"({before}" if before else "+"
        records = cast(
            list[tuple[bytes, dict[bytes, bytes]]],
            await self.redis.xrevrange(keys.audit(blog_id), top, "-", count=limit + 1),
        )
        more = len(records) > limit
        records = records[:limit]
        return [fields[b"r"] for _, fields in records], _s(records[-1][0]) if more else None

    @staticmethod
    def _checked(status: str, rest: list[Any], entry_id: str, body: bytes) -> Written:
        if status == "no_entry":
            raise NotFound(f"entry {entry_id!r} does not exist")
        if status == "conflict":
            current = decode(Entry, rest[0])
            raise Conflict("the entry was changed by someone else first", current_version=current.version)
        return Written(body, _s(rest[0]) or None)

    async def audit_after(self, blog_id: str, after: str, limit: int) -> list[tuple[str, bytes]]:
        records = cast(
            list[tuple[bytes, dict[bytes, bytes]]],
            await self.redis.xrange(keys.audit(blog_id), f"({after}", "+", count=limit),
        )
        return [(_s(record_id), fields[b"r"]) for record_id, fields in records]

    async def audit_position(self, blog_id: str) -> str:
        newest = cast(list[tuple[bytes, Any]], await self.redis.xrevrange(keys.audit(blog_id), "+", "-", count=1))
        return _s(newest[0][0]) if newest else "0-0"

    async def import_blog(self, blog: Blog, epoch: str, entries: Sequence[Imported], actor: Actor) -> int:
        """Restore ``blog`` and ``entries`` (ordered by display time) in one atomic script: an
        entry stored exactly so already is left alone, so a second import writes nothing. Each
        entry that changes is logged as readers would have seen it, and gets an ``import`` audit
        record naming ``actor`` (so open consoles show it). Returns how many records changed;
        raises :class:`Conflict` (writing nothing) if an entry is stored at a newer version than
        the import's."""
        body = encoder.encode(blog)
        now = datetime.now(UTC)
        await self.redis.zadd(keys.BLOGS, {blog.id: int(blog.created_at.timestamp() * 1000)}, nx=True)
        args: list[Any] = [
            body,
            epoch,
            _event("blog.updated", "blog", body),
            self.log_maxlen,
            self.audit_maxlen,
            len(entries),
        ]
        extra: list[str] = []
        for item in entries:
            entry = item.entry
            tags = list(dict.fromkeys(entry.tags))
            extra += [keys.versions(blog.id, entry.id), *(keys.tag(blog.id, name) for name in tags)]
            tombstone = b""
            if item.tombstone is not None:
                tombstone = _event("entry.deleted", "entry", encoder.encode(item.tombstone))
            args += [
                entry.id,
                encoder.encode(entry),
                "public" if entry.status == "published" else "work",
                score(entry),
                "1" if entry.pinned else "0",
                item.owner or "",
                tombstone,
                encoder.encode(
                    AuditRecord(
                        at=now, actor=actor, action="import", entry=entry.id, version=entry.version, status=entry.status
                    )
                ),
                len(tags),
                len(item.versions),
                *(encoder.encode(version) for version in item.versions),
            ]
        status, *rest = await self._run("import_blog", blog.id, args, extra)
        if status == "conflict":
            raise Conflict(f"entry {_s(rest[0])!r} of blog {blog.id!r} is stored at a newer version than the import's")
        return int(rest[0])

    # --- browser sessions -----------------------------------------------------------------------

    async def start_session(self, digest: str, mark: str, idle_seconds: int) -> None:
        await self.redis.set(keys.session(digest), mark, ex=idle_seconds)

    async def session(self, digest: str, idle_seconds: int) -> str | None:
        mark = await self.redis.getex(keys.session(digest), ex=idle_seconds)
        return None if mark is None else _s(mark)

    async def end_session(self, digest: str) -> None:
        await self.redis.delete(keys.session(digest))

    # --- the schedule ---------------------------------------------------------------------------

    async def schedule(self, blog_id: str, entry_id: str, at: datetime) -> None:
        # LT: only ever earlier, so a failed or raced write leaves an early look, never a late one.
        await self.redis.zadd(keys.SCHEDULE, {f"{blog_id} {entry_id}": _ms(at)}, lt=True)

    async def due(self, limit: int) -> tuple[datetime, list[Due]]:
        now_ms, flat = await self._scripts["due"](keys=[keys.SCHEDULE], args=[limit])
        found = []
        for member, at in zip(flat[::2], flat[1::2], strict=True):
            blog_id, _, entry_id = _s(member).partition(" ")
            found.append(Due(blog_id, entry_id, int(float(at))))
        return datetime.fromtimestamp(int(now_ms) / 1000, UTC), found

    async def settle(self, due: Due, at: datetime | None) -> None:
        member = f"{due.blog} {due.entry}"
        await self._scripts["settle"](keys=[keys.SCHEDULE], args=[member, due.at_ms, "" if at is None else _ms(at)])

    # --- reading at a log position ------------------------------------------------------------

    async def snapshot(self, blog_id: str, size: int) -> Snapshot:
        """The latest ``size`` entries and the pinned ones, consistent with the returned cursor."""
        _, blog, epoch, last_id, latest, pinned = await self._run("snapshot", blog_id, [size])
        return Snapshot(Cursor(_s(epoch), _s(last_id)), blog, latest, pinned)

    async def page(self, blog_id: str, limit: int, before: str | None, tag: str | None = None) -> Page:
        extra = [keys.tag(blog_id, tag)] if tag is not None else []
        reply = await self._run("page", blog_id, [limit, before or ""], extra)
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

    async def positions(self, blog_ids: Sequence[str]) -> dict[str, Cursor | None]:
        """Where each blog's log is now (None: not found). On one Redis, one pipeline of the
        position script; a cluster's blogs are in as many slots, read one after another."""
        if not isinstance(self.redis, redis.Redis):
            return await _one_by_one(self.position, blog_ids)
        script = self._scripts["position"]
        async with self.redis.pipeline(transaction=False) as pipe:
            for blog_id in blog_ids:
                await script(keys=keys.blog_keys(blog_id), args=[], client=pipe)
            replies = await pipe.execute()
        return {
            blog_id: Cursor(_s(reply[1]), _s(reply[2])) if _s(reply[0]) == "ok" else None
            for blog_id, reply in zip(blog_ids, replies, strict=True)
        }

    async def count_viewers(self, blog_id: str, process_id: str, readers: int, fresh_ms: int) -> int:
        """Report this process's ``readers`` of a blog; the total over every process that reported
        within ``fresh_ms``."""
        script = self._scripts["viewers"]
        return int(await script(keys=[keys.viewers(blog_id)], args=[process_id, readers, fresh_ms]))

    # --- tokens --------------------------------------------------------------------------------

    async def add_token(self, token: Token) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(keys.TOKENS, token.id, encoder.encode(token))
            await self._replicated(pipe, f"token {token.id!r}")

    async def get_token(self, token_id: str) -> Token | None:
        body = await self.redis.hget(keys.TOKENS, token_id)
        return None if body is None else decode(Token, body)

    async def revoke_token(self, token_id: str) -> bool:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hdel(keys.TOKENS, token_id)
            pipe.hdel(keys.TOKENS_USED, token_id)
            # A revocation a failover lost would bring the token back: it is waited on too.
            removed, _ = await self._replicated(pipe, f"revoking token {token_id!r}")
        return bool(removed)

    async def list_tokens(self) -> list[TokenInfo]:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hvals(keys.TOKENS)
            pipe.hgetall(keys.TOKENS_USED)
            bodies, used = await pipe.execute()
        tokens = sorted((decode(Token, body) for body in bodies), key=lambda token: token.created_at)
        return [
            TokenInfo(
                id=token.id,
                name=token.name,
                role=token.role,
                blogs=token.blogs,
                created_at=token.created_at,
                last_used_at=datetime.fromisoformat(_s(used[token.id.encode()])) if token.id.encode() in used else None,
            )
            for token in tokens
        ]

    async def token_used(self, token_id: str, at: datetime) -> None:
        # At most once a minute per token and process: a busy reporter's token costs no extra write
        # per request. Bounded: tokens are minted by admins only.
        last = self._used.get(token_id)
        if last is not None and (at - last).total_seconds() < 60:
            return
        self._used[token_id] = at
        await self.redis.hset(keys.TOKENS_USED, token_id, at.isoformat())


T = TypeVar("T")


async def _one_by_one(read: Callable[[str], Awaitable[T]], blog_ids: Sequence[str]) -> dict[str, T | None]:
    """``read`` of each blog in turn (None: not found): how a cluster, whose blogs are in as
    many slots, answers what one Redis answers with one pipeline."""
    found: dict[str, T | None] = {}
    for blog_id in blog_ids:
        try:
            found[blog_id] = await read(blog_id)
        except NotFound:
            found[blog_id] = None
    return found


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def fingerprint(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def key_digest(token_id: str, idempotency_key: str) -> str:
    """Idempotency keys are per token: two reporters may pick the same key without colliding."""
    return hashlib.sha256(f"{token_id}\0{idempotency_key}".encode()).hexdigest()[:32]
