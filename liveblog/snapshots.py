"""Snapshots for joining readers: one read of a blog serves everyone who joins at the same time.

After a restart or a network blip, thousands of readers of one blog reconnect within seconds and
each needs the blog's latest entries. One read serves every reader that was already subscribed
when it started (the hub holds, for each, whatever comes after the read's cursor; see
:mod:`liveblog.hub`). A reader that subscribed while a read was under way waits for it to end
and shares the next one. A reconnect storm then costs Redis about one snapshot per blog per
round trip instead of one per reader, and the frame is encoded once for all of them.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import NamedTuple

from . import models
from .hub import wait_shared
from .models import Snapshot
from .storage import Storage
from .wire import Message


class _Read(NamedTuple):
    started: int
    result: asyncio.Future[Message]


class SnapshotReads:
    """Shared snapshot reads of one process (one per app)."""

    def __init__(self, store: Storage):
        self._store = store
        self._reads: dict[tuple[str, int], _Read] = {}
        self._clock = itertools.count()

    def stamp(self) -> int:
        """A point in this process's order of events; take it once the reader has subscribed."""
        return next(self._clock)

    async def read(self, blog_id: str, size: int, subscribed: int) -> Message:
        """The snapshot message (the latest ``size`` entries, the pinned ones, the cursor) from a
        read that started after ``subscribed``."""
        key = (blog_id, size)
        while True:
            current = self._reads.get(key)
            if current is None:
                return await self._lead(key)
            if current.started > subscribed:
                if await wait_shared(current.result):
                    return current.result.result()
                continue  # its reader left mid-read: lead the next one
            # Started before this reader subscribed: it may miss what came in between. Wait for
            # it to end (how it ends is its own readers' business) and share the next one.
            await asyncio.wait([current.result])

    async def _lead(self, key: tuple[str, int]) -> Message:
        read = self._reads[key] = _Read(self.stamp(), asyncio.get_running_loop().create_future())
        try:
            snapshot = await self._store.snapshot(*key)
            message = Message(
                snapshot.cursor,
                models.encoder.encode(
                    Snapshot(
                        str(snapshot.cursor), models.Raw(snapshot.blog), _raws(snapshot.entries), _raws(snapshot.pinned)
                    )
                ),
            )
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                read.result.cancel()
            else:
                read.result.set_exception(exc)
                read.result.exception()  # retrieved here: the readers sharing it raise it themselves
            raise
        else:
            read.result.set_result(message)
            return message
        finally:
            del self._reads[key]


def _raws(bodies: list[bytes]) -> list[models.Raw]:
    return [models.Raw(body) for body in bodies if body is not None]
