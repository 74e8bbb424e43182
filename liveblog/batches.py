"""Lookups asked for in one turn of the event loop, made as one call for all of them.

When a join storm hits a hundred blogs at once, the first reader of each starts its blog's feed,
and each start read the log's position with a Redis round trip of its own: a hundred commands in
flight together, each taking a pooled connection (the pool grew by as many, each a connect and a
handshake) and a turn of a busy loop. Asked through :class:`Batched`, everything asked for in
the same turn is fetched at the end of it with one call (one pipeline), and every caller gets
its own answer from it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Generic, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Batched(Generic[K, V]):
    """``get(key)`` from ``fetch(keys)``, which answers every key it is given (a mapping of
    each to its value), called once for all the keys asked for in one turn of the loop.

    The fetch runs as a task of its own, shielded: a caller that gives up (its reader left)
    stops neither it nor the others' answers. A failed fetch (or one that leaves a key out)
    fails every caller of its batch still waiting, each raising its exception; nothing is kept
    after a batch is answered.
    """

    def __init__(self, fetch: Callable[[list[K]], Awaitable[Mapping[K, V]]]):
        self._fetch = fetch
        self._batch: dict[K, asyncio.Future[V]] | None = None
        self._running: set[asyncio.Task[None]] = set()  # held: the loop keeps only weak references

    async def get(self, key: K) -> V:
        """``key``'s value, fetched with every other key asked for in this turn of the loop."""
        loop = asyncio.get_running_loop()
        batch = self._batch
        if batch is None:
            batch = self._batch = {}
            loop.call_soon(self._launch, batch)  # after every caller already due in this turn
        future = batch.get(key)
        if future is None:
            future = batch[key] = loop.create_future()
        return await asyncio.shield(future)

    def _launch(self, batch: dict[K, asyncio.Future[V]]) -> None:
        if self._batch is batch:
            self._batch = None
        task = asyncio.get_running_loop().create_task(self._answer(batch), name="liveblog-batched-fetch")
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _answer(self, batch: dict[K, asyncio.Future[V]]) -> None:
        try:
            found = await self._fetch(list(batch))
            for key, future in batch.items():
                if not future.done():
                    future.set_result(found[key])
        except BaseException as exc:
            # Closing cancels the fetch, not its callers: they are told that storage went away,
            # which each caller already handles (a reader gets 1012, a request 503).
            failure = RedisConnectionError("shutting down") if isinstance(exc, asyncio.CancelledError) else exc
            for future in batch.values():
                if not future.done():
                    future.set_exception(failure)
                    future.exception()  # retrieved here: each caller raises it itself
            if not isinstance(exc, Exception):
                raise

    async def aclose(self) -> None:
        """Cancel the fetches under way (their callers get a Redis ConnectionError) and wait for them."""
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
