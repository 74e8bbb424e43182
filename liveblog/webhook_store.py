"""Webhooks in Redis: the registry, each blog's outbox and its consumer group, deliveries and
their retry schedule. It knows Redis, not HTTP (the deliverer, :mod:`liveblog.deliverer`, does).

A blog's webhook keys share its hash slot (:mod:`liveblog.keys`); every multi-key change is one
script (``lua/*_webhook.lua``, ``fanout``, ``lease``, ``record_delivery``, ``ack``). Events reach the
outbox in the same script as the change that made them (``write_entry``, ``update_blog``).
"""

from __future__ import annotations

from importlib import resources
from typing import Any, cast

import redis.asyncio as redis
from redis.exceptions import ResponseError

from . import keys
from .cursor import stream_id_key
from .models import Delivery, StoredDelivery, Webhook, WebhookInfo, decode, encoder
from .storage import NotFound
from .webhooks import DELIVERIES_KEPT, MAX_PER_BLOG


class TooMany(Exception):
    """The blog has as many webhooks as it may."""


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _script(name: str) -> str:
    return (resources.files("liveblog") / "lua" / f"{name}.lua").read_text()


class WebhookStore:
    """Webhooks and their deliveries on ``client``."""

    def __init__(self, client: redis.Redis | redis.RedisCluster):
        self.redis = client
        self._scripts = {
            name: client.register_script(_script(name))
            for name in (
                "add_webhook",
                "remove_webhook",
                "fanout",
                "lease",
                "record_delivery",
                "forget_delivery",
                "ack",
            )
        }

    # --- the registry (the admin API) ----------------------------------------------------------

    async def add(self, hook: Webhook) -> None:
        """Store ``hook``; :class:`NotFound` without its blog, :class:`TooMany` past the bound."""
        # The index is in another slot, so not in the script. Indexed before, so that a stored
        # webhook is always looked at, and after, since a deliverer that saw no webhooks in
        # between drops the blog from the index (:meth:`forget_blog`).
        await self.redis.sadd(keys.WEBHOOK_BLOGS, hook.blog)
        status = await self._scripts["add_webhook"](
            keys=[keys.meta(hook.blog), keys.webhooks(hook.blog), keys.outbox(hook.blog)],
            args=[hook.id, encoder.encode(hook), MAX_PER_BLOG, keys.DELIVERERS],
        )
        if _s(status) == "not_found":
            raise NotFound(f"blog {hook.blog!r} does not exist")
        if _s(status) == "full":
            raise TooMany(f"blog {hook.blog!r} has {MAX_PER_BLOG} webhooks, the most it may have")
        await self.redis.sadd(keys.WEBHOOK_BLOGS, hook.blog)

    async def webhooks(self, blog_id: str) -> list[Webhook]:
        """The blog's webhooks, oldest first."""
        bodies = cast(list[bytes], await self.redis.hvals(keys.webhooks(blog_id)))
        return sorted((decode(Webhook, body) for body in bodies), key=lambda hook: (hook.created_at, hook.id))

    async def listed(self, blog_id: str) -> list[WebhookInfo]:
        return [
            WebhookInfo(id=hook.id, url=hook.url, events=hook.events, created_at=hook.created_at)
            for hook in await self.webhooks(blog_id)
        ]

    async def get(self, blog_id: str, webhook_id: str) -> Webhook:
        body = await self.redis.hget(keys.webhooks(blog_id), webhook_id)
        if body is None:
            raise NotFound(f"no webhook {webhook_id!r} in blog {blog_id!r}")
        return decode(Webhook, cast(bytes, body))

    async def remove(self, blog_id: str, webhook_id: str) -> None:
        """Forget the webhook and its deliveries (:class:`NotFound` if there is none)."""
        removed = await self._scripts["remove_webhook"](
            keys=[
                keys.webhooks(blog_id),
                keys.recent_deliveries(blog_id, webhook_id),
                keys.deliveries(blog_id),
                keys.retries(blog_id),
            ],
            args=[webhook_id],
        )
        if not removed:
            raise NotFound(f"no webhook {webhook_id!r} in blog {blog_id!r}")

    async def deliveries(self, blog_id: str, webhook_id: str, limit: int) -> list[Delivery]:
        """The webhook's latest ``limit`` deliveries, newest first."""
        ids = cast(list[bytes], await self.redis.lrange(keys.recent_deliveries(blog_id, webhook_id), 0, limit - 1))
        if not ids:
            return []
        fields = [f"{webhook_id} {_s(i)}" for i in ids]
        bodies = cast(list[bytes | None], await self.redis.hmget(keys.deliveries(blog_id), fields))
        found = [decode(StoredDelivery, body).delivery for body in bodies if body is not None]
        # Events are fanned out concurrently, so the list's order is nearly the outbox's; the
        # outbox id is the order the changes happened in.
        return sorted(found, key=lambda delivery: stream_id_key(delivery.id), reverse=True)

    async def delivery(self, blog_id: str, member: str) -> StoredDelivery:
        body = await self.redis.hget(keys.deliveries(blog_id), member)
        if body is None:
            raise NotFound(f"no delivery {member.partition(' ')[2]!r} of this webhook")
        return decode(StoredDelivery, cast(bytes, body))

    # --- delivering (the deliverer) -------------------------------------------------------------

    async def blogs(self) -> list[str]:
        """The blogs whose outboxes the deliverers look at."""
        return sorted(_s(blog) for blog in cast(set[bytes], await self.redis.smembers(keys.WEBHOOK_BLOGS)))

    async def forget_blog(self, blog_id: str) -> None:
        """Stop looking at a blog that has no webhooks (one added meanwhile puts it back)."""
        await self.redis.srem(keys.WEBHOOK_BLOGS, blog_id)
        if await self.redis.hlen(keys.webhooks(blog_id)):
            await self.redis.sadd(keys.WEBHOOK_BLOGS, blog_id)

    async def read_new(self, blog_id: str, consumer: str, count: int) -> list[tuple[str, bytes | None]]:
        """Up to ``count`` outbox events no consumer of the group was given yet, now pending to
        ``consumer``: ``(outbox id, event JSON)``."""
        outbox = keys.outbox(blog_id)
        try:
            reply = await self.redis.xreadgroup(keys.DELIVERERS, consumer, {outbox: ">"}, count=count)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            if await self.redis.hlen(keys.webhooks(blog_id)):
                # The outbox was lost (a flush, a restore without it): start a new one from here.
                await self._create_group(outbox)
            else:
                await self.forget_blog(blog_id)
            return []
        streams = cast(list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]], reply or [])
        return [(_s(i), fields.get(b"e")) for _, entries in streams for i, fields in entries]

    async def claim_stale(
        self, blog_id: str, consumer: str, idle_ms: int, count: int
    ) -> list[tuple[str, bytes | None]]:
        """Up to ``count`` events pending to some consumer for ``idle_ms`` or more (its process
        died mid-delivery, or hangs), now pending to ``consumer``. ``None``: the event was
        trimmed from the outbox meanwhile."""
        try:
            reply = await self.redis.xautoclaim(keys.outbox(blog_id), keys.DELIVERERS, consumer, idle_ms, "0-0", count)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            return []
        claimed = cast(list[tuple[bytes, dict[bytes, bytes] | None]], reply[1])
        return [(_s(i), fields.get(b"e") if fields else None) for i, fields in claimed]

    async def ack(self, blog_id: str, outbox_id: str) -> None:
        """The event's deliveries are made and tried once: it leaves the outbox."""
        await self._scripts["ack"](keys=[keys.outbox(blog_id)], args=[keys.DELIVERERS, outbox_id])

    async def drop_gone_consumers(self, blog_id: str, me: str, idle_ms: int) -> None:
        """Remove consumers of the blog's group that hold nothing and were idle ``idle_ms``."""
        try:
            consumers = await self.redis.xinfo_consumers(keys.outbox(blog_id), keys.DELIVERERS)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc) and "no such key" not in str(exc):
                raise
            return
        for consumer in consumers:
            name = _s(consumer["name"])
            if name != me and consumer["pending"] == 0 and consumer["idle"] >= idle_ms:
                await self.redis.xgroup_delconsumer(keys.outbox(blog_id), keys.DELIVERERS, name)

    async def entry_exists(self, blog_id: str, entry_id: str) -> bool:
        """Whether the entry is stored at all (published or not): a purged one is not."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hexists(keys.entries(blog_id), entry_id)
            pipe.hexists(keys.work(blog_id), entry_id)
            public, work = await pipe.execute()
        return bool(public or work)

    async def _create_group(self, outbox: str) -> None:
        try:
            await self.redis.xgroup_create(outbox, keys.DELIVERERS, "$", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def fan_out(self, blog_id: str, outbox_id: str, made: list[tuple[Webhook, StoredDelivery]]) -> list[Any]:
        """Make each delivery of one event unless it exists; each one's stored JSON as it is
        now (None: its webhook is gone)."""
        args: list[Any] = [outbox_id, DELIVERIES_KEPT]
        for hook, stored in made:
            args += [hook.id, encoder.encode(stored)]
        found = await self._scripts["fanout"](
            keys=[
                keys.webhooks(blog_id),
                keys.deliveries(blog_id),
                keys.retries(blog_id),
                *(keys.recent_deliveries(blog_id, hook.id) for hook, _ in made),
            ],
            args=args,
        )
        return [body or None for body in found]

    async def lease(self, blog_id: str, lease_ms: int, count: int) -> list[tuple[str, bytes]]:
        """Up to ``count`` deliveries due to be tried again, leased for ``lease_ms``:
        ``(member, stored JSON)``."""
        flat = await self._scripts["lease"](
            keys=[keys.retries(blog_id), keys.deliveries(blog_id)], args=[lease_ms, count]
        )
        return [(_s(member), body) for member, body in zip(flat[::2], flat[1::2], strict=True)]

    async def forget(self, blog_id: str, member: str) -> None:
        """Remove a delivery and its retry: it is as if it was never made."""
        await self._scripts["forget_delivery"](keys=[keys.deliveries(blog_id), keys.retries(blog_id)], args=[member])

    async def record(self, blog_id: str, member: str, stored: StoredDelivery, retry_in_ms: int | None) -> None:
        """Keep a delivery's new state; try it again in ``retry_in_ms`` (None: never)."""
        await self._scripts["record_delivery"](
            keys=[keys.deliveries(blog_id), keys.retries(blog_id)],
            args=[member, encoder.encode(stored), "" if retry_in_ms is None else retry_in_ms],
        )
