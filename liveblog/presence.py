"""Presence: how many read each blog, across every process, pushed to its readers when it changes."""

from __future__ import annotations

import asyncio
import secrets
from typing import TYPE_CHECKING

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import tasks
from .metrics import Metrics
from .storage import Storage
from .wire import Message

if TYPE_CHECKING:
    from .hub import Hub


class Presence:
    """Every ``every`` seconds, report this process's readers of each blog and read the total."""

    def __init__(self, store: Storage, metrics: Metrics, hub: Hub, *, every: float):
        self._store = store
        self._metrics = metrics
        self._hub = hub
        self._every = every
        self._process_id = secrets.token_hex(6)

    async def run(self) -> None:
        """Count until cancelled; a reader who joins is told the last count when it goes live.

        Sending an unchanged count to 10k readers would cost as much as an entry does."""
        fresh_ms = int(self._every * 3000)  # a process missing three reports has stopped
        while True:
            tasks.checkpoint()
            await asyncio.sleep(self._every)
            for blog_id, feed in list(self._hub.feeds.items()):
                try:
                    total = await self._store.count_viewers(
                        blog_id, self._process_id, len(feed.subscriptions), fresh_ms
                    )
                except (RedisConnectionError, RedisTimeoutError):
                    self._metrics.redis_errors.labels("viewers").inc()
                    continue  # the tailer logs the outage; counts resume with Redis
                message = Message.viewers(total)
                if feed.viewers is not None and feed.viewers.json == message.json:
                    continue
                feed.viewers = message
                await self._hub.announce(feed, message)
