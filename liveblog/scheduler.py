"""The scheduler: scheduled entries go out at their time, once, whichever process is alive.

Every process runs one. No timer in a process's memory is the record of a schedule: the entry's
own record (status ``scheduled``, ``publish_at``) is, and a global index in Redis
(:data:`liveblog.keys.SCHEDULE`) says when to look at it. Each look reads the entry and
publishes it with a version-checked write, so with N processes looking at once exactly one
write succeeds; the others see a conflict and, next round, a published entry. The index is
only ever moved earlier by writers (see :meth:`liveblog.storage.Storage.schedule`), so a stale
member costs one look and is dropped; a missed one cannot happen short of a lost index.

Time is the storage's clock, the same for every process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import entries, tasks
from .metrics import Metrics
from .storage import BlogEnded, Conflict, Due, NotFound, NotReplicated, Storage

log = logging.getLogger(__name__)
#: Members looked at per round; more wait for the next round (a fraction of a second).
BATCH = 100


class Scheduler:
    """Looks every ``interval`` seconds for scheduled entries that are due, and publishes them.

    ``published(blog_id)`` is called after each publication (to forget cached pages).
    """

    def __init__(self, store: Storage, metrics: Metrics, interval: float, published: Callable[[str], None]):
        self._store = store
        self._metrics = metrics
        self._interval = interval
        self._published = published

    async def run(self) -> None:
        """Forever. A Redis outage is logged and ridden out; any other error ends the task (its
        owner, the app's lifespan, sees it)."""
        down = False
        while True:
            tasks.checkpoint()
            try:
                await self.tick()
                if down:
                    log.info("scheduler: Redis is back")
                down = False
            except (RedisConnectionError, RedisTimeoutError, NotReplicated) as exc:
                # NotReplicated: published, but no replica has it yet; the next round sees it so.
                if not down:
                    log.warning("scheduler: Redis unavailable, scheduled entries wait: %s", exc)
                self._metrics.redis_errors.labels("scheduler").inc()
                down = True
            await asyncio.sleep(self._interval)

    async def tick(self) -> int:
        """One round: publish what is due; how many entries this process published."""
        now, due = await self._store.due(BATCH)
        published = 0
        for member in due:
            published += await self._look(member, now)
        return published

    async def _look(self, due: Due, now: datetime) -> int:
        store = self._store
        try:
            entry, _ = await store.get_entry(due.blog, due.entry)
        except NotFound:
            await store.settle(due, None)  # purged, or its first write failed
            return 0
        if entry.status != "scheduled" or entry.publish_at is None:
            await store.settle(due, None)  # published by another process, or unscheduled
            return 0
        if entry.publish_at > now:
            await store.settle(due, entry.publish_at)  # rescheduled later
            return 0
        try:
            await store.write(entries.publish_due(entry, now), owner="")
        except Conflict:
            return 0  # moved meanwhile (by another process or an editor): looked at again next round
        except (NotFound, BlogEnded) as exc:
            log.warning("scheduler: entry %s of blog %s stays unpublished: %s", entry.id, entry.blog, exc)
            await store.settle(due, None)
            return 0
        await store.settle(due, None)
        self._metrics.scheduled_published.inc()
        self._published(entry.blog)
        log.info("scheduler: published entry %s of blog %s", entry.id, entry.blog)
        return 1
