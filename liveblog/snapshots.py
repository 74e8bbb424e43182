"""Snapshots for joining readers: one read of a blog serves everyone who joins at the same time.

After a restart or a network blip, thousands of readers of one blog reconnect within seconds and
each needs the blog's latest entries. One read serves every reader that was already subscribed
when it started (the hub holds, for each, whatever comes after the read's cursor; see
:mod:`liveblog.hub`). A reader that subscribed while a read was under way waits for it to end
and shares the next one. A reconnect storm then costs Redis about one snapshot per blog per
round trip instead of one per reader, and the frame is encoded once for all of them.

And while nothing happens on the blog, no read at all: the last snapshot is kept with the
generation of the blog's feed (:meth:`liveblog.hub.Hub.generation`) when its read started. As
long as the feed is at that generation, it has handed out no event since the read began, so
whatever the log got after the snapshot's cursor is still to be handed out, to every reader
subscribed by then: the kept snapshot is gap-free for a reader that subscribed since, as a new
read would be. A join storm on a quiet blog (breaking news: everyone opens the page at once)
then costs no Redis round trip and no encoding per reader at all; each event that comes
makes the next joiner read again. Kept snapshots have a byte budget.

Catch-ups are shared the same way (:meth:`SnapshotReads.catch_up`): after a deploy, thousands
of readers come back with the same cursor (the last event before the restart), and each used to
read and decode the same events from Redis and encode them again. Now the first of them reads,
the others wait for that read, and its events, encoded once into one message, serve each of
them whose blog's feed is still at the generation the read started at.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import NamedTuple

from . import models
from .caching import Lru
from .cursor import Cursor
from .hub import wait_shared
from .models import Snapshot
from .storage import Storage
from .wire import Message

#: Bytes of kept snapshots (the largest, 100 long entries, weigh about 1 MB).
KEPT_BUDGET = 16 << 20


class _Read(NamedTuple):
    started: int
    result: asyncio.Future[Message]


class _Kept(NamedTuple):
    generation: int
    message: Message


class CatchUp(NamedTuple):
    """The first events after a cursor, as one message (None: there are none), and whether
    they are all there are (else read on from the last one's cursor)."""

    message: Message | None
    last: Cursor | None
    complete: bool


class _KeptCatchUp(NamedTuple):
    generation: int
    catch_up: CatchUp


class SnapshotReads:
    """Shared snapshot reads of one process (one per app); ``generation`` is the hub's
    :meth:`~liveblog.hub.Hub.generation`."""

    def __init__(self, store: Storage, generation: Callable[[str], int | None]):
        self._store = store
        self._generation = generation
        self._reads: dict[tuple[str, int], _Read] = {}
        self._kept: Lru[tuple[str, int], _Kept] = Lru(KEPT_BUDGET, lambda kept: weight(kept.message))
        self._catching: dict[tuple[str, str], asyncio.Future[tuple[int | None, CatchUp]]] = {}
        self._caught: Lru[tuple[str, str], _KeptCatchUp] = Lru(KEPT_BUDGET, _catch_up_size)
        self._clock = itertools.count()

    def forget(self, blog_id: str) -> None:
        """Keep nothing read of ``blog_id`` before now. A purge calls it: a kept snapshot or
        catch-up holds the entry's text until the tailer hands out the tombstone, and after the
        purge's answer nothing this process serves may have it. (Another process keeps its own
        until its tailer hands the tombstone out: its lag, milliseconds.)"""
        self._kept.drop(lambda key: key[0] != blog_id)
        self._caught.drop(lambda key: key[0] != blog_id)

    def stamp(self) -> int:
        """A point in this process's order of events; take it once the reader has subscribed."""
        return next(self._clock)

    async def read(self, blog_id: str, size: int, subscribed: int) -> Message:
        """The snapshot message (the latest ``size`` entries, the pinned ones, the cursor) from a
        read that started after ``subscribed``."""
        key = (blog_id, size)
        while True:
            kept = self._kept.get(key)
            if kept is not None and kept.generation == self._generation(blog_id):
                return kept.message
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
        generation = self._generation(key[0])  # before the read: see the module's docstring
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
            if generation is not None:
                self._kept.put(key, _Kept(generation, message))
            return message
        finally:
            del self._reads[key]

    async def catch_up(self, blog_id: str, cursor: Cursor, limit: int) -> CatchUp:
        """Up to ``limit`` events after ``cursor``, for a reader subscribed to the blog: from a
        read that began at the feed's current generation, shared with every reader that comes
        back from the same cursor meanwhile. Raises :class:`~liveblog.storage.CursorGone` as
        :meth:`~liveblog.storage.Storage.since` does."""
        key = (blog_id, str(cursor))
        while True:
            kept = self._caught.get(key)
            if kept is not None and kept.generation == self._generation(blog_id):
                return kept.catch_up
            current = self._catching.get(key)
            if current is None:
                return await self._lead_catch_up(key, cursor, limit)
            await asyncio.wait([current])
            if current.cancelled():
                continue  # its reader left mid-read: lead the next one
            failure = current.exception()
            if failure is not None:
                raise failure  # the cursor is gone, or Redis is: for every reader of this cursor
            generation, caught = current.result()
            if generation is not None and generation == self._generation(blog_id):
                return caught

    async def _lead_catch_up(self, key: tuple[str, str], cursor: Cursor, limit: int) -> CatchUp:
        done = self._catching[key] = asyncio.get_running_loop().create_future()
        generation = self._generation(key[0])  # before the read, as for snapshots
        try:
            events = await self._store.since(key[0], cursor, limit)
            messages = [Message.event(cursor.epoch, event) for event in events]
            last = Cursor(cursor.epoch, events[-1].stream_id) if events else None
            caught = CatchUp(Message.batch(messages) if messages else None, last, len(events) < limit)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                done.cancel()
            else:
                done.set_exception(exc)
                done.exception()  # retrieved here: the readers sharing it raise it themselves
            raise
        else:
            done.set_result((generation, caught))
            if generation is not None:
                self._caught.put(key, _KeptCatchUp(generation, caught))
            return caught
        finally:
            del self._catching[key]


def weight(message: Message) -> int:
    """About what a kept message holds: its JSON, its WebSocket and SSE frames, the compressed
    copies made on first use (smaller), and for a batch each event's own JSON and frames too."""
    return len(message.json) * (4 if len(message.parts) == 1 else 7)


def _catch_up_size(kept: _KeptCatchUp) -> int:
    message = kept.catch_up.message
    return weight(message) if message is not None else 0


def _raws(bodies: list[bytes]) -> list[models.Raw]:
    return [models.Raw(body) for body in bodies if body is not None]
