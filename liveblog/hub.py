"""Fan-out inside one process: every reader of a blog gets the same encoded message, at once.

The hub keeps, per blog with local readers, a :class:`Feed`: the set of their subscriptions and
the log position the feed has delivered up to. The :class:`~liveblog.tailer.Tailer` reads every
active blog's log and hands the hub each batch of new events; the hub encodes it once into a
:class:`~liveblog.wire.Message` and hands that same object to every reader of the blog. Each
reader's :class:`Sink` writes it at once, without awaiting, and reports how much it has not sent
yet; a reader whose backlog passes the limit is closed with 4408 and never delays the others.
:class:`~liveblog.presence.Presence` pushes the cluster-wide viewer count now and then.

Why push into sinks rather than hand each reader an async iterator: a wake-up per reader per
message costs 2-3x at thousands of readers (DESIGN §4). SSE, written by awaiting, wraps its sink
in an iterator of its own (:class:`liveblog.sse.BufferedSink`).

Joining is gap-free: a subscription is registered first and holds what arrives while the reader
loads its snapshot (or catches up from its cursor); it then goes live, skipping everything at or
before the position it loaded.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from .batches import Batched
from .cursor import Cursor, stream_id_key, waited
from .gathering import RULES, GatherRules
from .metrics import Metrics
from .presence import Presence
from .storage import LogEvent, NotFound, Storage
from .tailer import Tailer
from .topology import Topology
from .wire import CloseCode, Message

log = logging.getLogger(__name__)

#: A position before every event.
START = (-1, -1)
#: Readers handed a message between two turns of the event loop (a few ms of work).
SLICE = 500


class Sink(Protocol):
    """Where a subscription writes: one reader's connection."""

    def send(self, message: Message) -> int:
        """Queue ``message`` for the reader without waiting; return the bytes not yet sent."""

    def close(self, code: int, reason: str) -> None:
        """Close the connection now, whatever is still queued."""


class Subscription:
    """One reader's place in the hub: joining (holding messages) until :meth:`go_live`."""

    # Slots: one of these lives as long as each reader, and a process holds thousands.
    __slots__ = (
        "blog_id",
        "_sink",
        "_limit",
        "_metrics",
        "_held",
        "_held_bytes",
        "_held_ephemeral",
        "_position",
        "closed",
    )

    def __init__(self, blog_id: str, sink: Sink, limit: int, metrics: Metrics):
        self.blog_id = blog_id
        self._sink = sink
        self._limit = limit
        self._metrics = metrics
        self._held: list[Message] | None = []
        self._held_bytes = 0
        self._held_ephemeral: Message | None = None
        self._position = START
        self.closed = False

    def seek(self, position: tuple[int, int]) -> None:
        """From now on deliver only messages after ``position`` (the reader has the rest)."""
        self._position = position

    def send(self, message: Message) -> None:
        """Deliver ``message`` unless the reader already has it (it is at or before our position)."""
        if self.closed or message.position <= self._position:
            return
        if message.first <= self._position:  # a batch the reader has the start of (it caught up)
            for part in message.parts:
                self.send(part)
            return
        self._position = message.position
        if self._sink.send(message) > self._limit:
            self._overflow()

    def send_snapshot(self, message: Message) -> None:
        """The reader's snapshot, which restarts it from the snapshot's position. Up to 100 long
        entries can weigh more than the reader limit on their own: the reader gets that much
        more room, so that a slow phone is not cut off (and rejoining, in a loop) for its join."""
        self._limit += len(message.json)
        self.seek(START)
        self.send(message)

    def go_live(self) -> None:
        """Deliver what arrived while joining, then everything as it comes."""
        held, self._held = self._held or [], None
        for message in held:
            self.send(message)
        if self._held_ephemeral is not None:
            self.push_ephemeral(self._held_ephemeral)
            self._held_ephemeral = None

    def push_ephemeral(self, message: Message) -> None:
        """A message outside the log (a viewer count): sent now if the reader is live, else the
        latest one is kept and sent after what it holds."""
        if self._held is not None:
            self._held_ephemeral = message
        elif not self.closed and self._sink.send(message) > self._limit:
            self._overflow()

    def push(self, message: Message) -> None:
        """Called by the hub for every new event of the blog."""
        if self._held is None:
            self.send(message)
            return
        self._held.append(message)
        self._held_bytes += len(message.json)
        if self._held_bytes > self._limit:
            self._overflow()

    def close(self, code: int, reason: str) -> None:
        self.closed = True
        self._held = None
        self._sink.close(code, reason)

    def _overflow(self) -> None:
        self._metrics.slow_closes.inc()
        self.close(CloseCode.TOO_SLOW, "too slow: reconnect with your last cursor")


#: Numbers a feed's :attr:`Feed.generation` from: unique across feeds, never reused.
_generations = itertools.count()


class Feed:
    """The local readers of one blog, where its log has been delivered up to (None until the
    feed has started), the last viewer count, and its generation: a number that changes (to
    one no feed ever had) whenever the feed starts handing out events."""

    __slots__ = ("subscriptions", "started", "position", "viewers", "generation")

    def __init__(self) -> None:
        self.subscriptions: set[Subscription] = set()
        self.started: asyncio.Future[Cursor] = asyncio.get_running_loop().create_future()
        self.position: Cursor | None = None
        self.viewers: Message | None = None
        self.generation = next(_generations)


class Hub:
    """Fan-out of every active blog's log to this process's readers; run :meth:`run` as a task."""

    def __init__(
        self,
        store: Storage,
        topology: Topology,
        metrics: Metrics,
        *,
        reader_limit: int = 1 << 20,
        block_ms: int = 250,
        verify_every: float = 5.0,
        viewers_every: float = 5.0,
        gathering: GatherRules = RULES,
    ):
        self._store = store
        self._topology = topology
        self._metrics = metrics
        self._limit = reader_limit
        self.feeds: dict[str, Feed] = {}
        self._tailer = Tailer(
            store, topology, metrics, self, block_ms=block_ms, verify_every=verify_every, gathering=gathering
        )
        self._presence = Presence(store, metrics, self, every=viewers_every)
        #: Where each starting feed's log is: the feeds that start in one turn of the loop (a join
        #: storm over many blogs) read theirs in one round trip (see :mod:`liveblog.batches`).
        self._starts: Batched[str, Cursor | None] = Batched(lambda blog_ids: self._store.positions(blog_ids))

    def readers(self, blog_id: str) -> int:
        feed = self.feeds.get(blog_id)
        return len(feed.subscriptions) if feed else 0

    def generation(self, blog_id: str) -> int | None:
        """The generation of ``blog_id``'s feed (None: no reader here). While it stays the same,
        no event has been handed to its readers: a reader subscribed since misses nothing the
        feed hands out later, so a snapshot read that started at this generation is as good for
        it as a new one (see :mod:`liveblog.snapshots`)."""
        feed = self.feeds.get(blog_id)
        return feed.generation if feed is not None and feed.position is not None else None

    def positions(self) -> Iterator[tuple[str, Cursor]]:
        """Each started feed's blog and the position its log is delivered up to."""
        for blog_id, feed in self.feeds.items():
            if feed.position is not None:
                yield blog_id, feed.position

    async def run(self) -> None:
        """Tail the logs and count viewers until cancelled; if either fails, both stop and the
        error propagates to whoever owns this task."""
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tailer.start(tasks)
                tasks.create_task(self._presence.run(), name="liveblog-viewers")
        finally:
            await self._starts.aclose()

    async def subscribe(self, blog_id: str, sink: Sink) -> Subscription:
        """Register a reader of ``blog_id``; messages are held until ``go_live()``. Whoever
        subscribes must :meth:`unsubscribe` when the reader leaves.

        Raises :class:`~liveblog.store.NotFound` if the blog does not exist.
        """
        subscription = Subscription(blog_id, sink, self._limit, self._metrics)
        feed = self.feeds.get(blog_id)
        first = feed is None
        if feed is None:
            feed = self.feeds[blog_id] = Feed()
        feed.subscriptions.add(subscription)
        if feed.viewers is not None:
            subscription.push_ephemeral(feed.viewers)
        try:
            while not first:
                started = feed.started
                if await wait_shared(started):
                    break
                # The reader that was starting the feed left first: start it ourselves, unless
                # another joiner already does (or the feed was reset and our reader closed).
                first = feed.started is started and self.feeds.get(blog_id) is feed
                if first:
                    feed.started = asyncio.get_running_loop().create_future()
                elif self.feeds.get(blog_id) is not feed:
                    break
            if first:
                await self._start(blog_id, feed)
        except BaseException:
            self.unsubscribe(subscription)
            raise
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """The reader left; a blog nobody here reads any more is no longer tailed."""
        feed = self.feeds.get(subscription.blog_id)
        if feed is None:
            return
        feed.subscriptions.discard(subscription)
        if not feed.subscriptions:
            del self.feeds[subscription.blog_id]

    async def _start(self, blog_id: str, feed: Feed) -> None:
        try:
            cursor = await self._starts.get(blog_id)
            if cursor is None:
                raise NotFound(f"blog {blog_id!r} does not exist")
        except asyncio.CancelledError:
            feed.started.cancel()  # our reader left; another joiner starts the feed (wait_shared)
            raise
        except BaseException as exc:
            feed.started.set_exception(exc)
            feed.started.exception()  # retrieved here; later joiners re-raise it themselves
            raise
        feed.started.set_result(cursor)
        feed.position = cursor
        await self._tailer.wake(self._topology.node_of(blog_id))

    def reset(self, blog_id: str, now: Cursor | None) -> None:
        """The blog's log was lost or recreated under us: its readers reconnect (with 1012) and,
        their cursors being unusable now, get a fresh snapshot."""
        feed = self.feeds.pop(blog_id, None)
        if feed is None:
            return
        log.warning(
            "log of blog %r was reset (read up to %s, now %s); restarting its readers", blog_id, feed.position, now
        )
        for subscription in list(feed.subscriptions):
            subscription.close(CloseCode.SERVICE_RESTART, "the blog's log was reset; reconnect with your cursor")

    async def announce(self, feed: Feed, message: Message) -> None:
        """A message outside the log (a viewer count) to every reader of ``feed``."""
        await hand_out(list(feed.subscriptions), Subscription.push_ephemeral, message)

    async def dispatch(self, blog_id: str, events: Iterable[LogEvent], *, clock_offset: float = 0.0) -> None:
        """New events of ``blog_id``'s log, in order: to every reader of the blog, once.
        ``clock_offset``: seconds the log's Redis clock is ahead of ours (for the lag gauge)."""
        feed = self.feeds.get(blog_id)
        if feed is None or feed.position is None:
            return  # the last reader left while we were reading
        cursor = feed.position
        last = stream_id_key(cursor.stream_id)
        messages = []
        for event in events:
            if event.epoch != cursor.epoch:
                self.reset(blog_id, Cursor(event.epoch, event.stream_id))
                return
            if stream_id_key(event.stream_id) <= last:
                continue  # read under an older position of a feed that was re-created
            messages.append(Message.event(cursor.epoch, event))
            cursor = Cursor(cursor.epoch, event.stream_id)
        if not messages:
            return
        batch = Message.batch(messages)
        started = time.perf_counter()
        feed.generation = next(_generations)  # before anyone can subscribe without getting it
        readers = list(feed.subscriptions)
        await hand_out(readers, Subscription.push, batch)
        feed.subscriptions.difference_update([subscription for subscription in readers if subscription.closed])
        self._metrics.fanout_seconds.observe(time.perf_counter() - started)
        self._metrics.delivered.inc(len(messages) * len(readers))
        # Readers who came while the batch was handed out have it from their snapshot or catch-up
        # (it was in the log before they subscribed). Only forward: after a cluster failover two
        # tail loops may briefly read the same blog.
        if feed.position is None or stream_id_key(feed.position.stream_id) < stream_id_key(cursor.stream_id):
            feed.position = cursor
        self._metrics.tailer_lag.set(waited(cursor.stream_id, clock_offset))


async def wait_shared(future: asyncio.Future[Any]) -> bool:
    """Wait for work that another reader's call does for this one too. False if that call was
    cancelled (its reader left) while this one was not: the caller then does the work itself."""
    try:
        await asyncio.shield(future)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if future.cancelled() and not (task is not None and task.cancelling()):
            return False
        raise
    return True


async def hand_out(
    subscriptions: list[Subscription], push: Callable[[Subscription, Message], None], message: Message
) -> None:
    """``push(subscription, message)`` for each, letting the loop run between slices of ``SLICE``:
    handing a message to 10k readers takes ~100 ms, which reporters' POSTs and other I/O should
    not have to wait out whole."""
    for start in range(0, len(subscriptions), SLICE):
        if start:
            await asyncio.sleep(0)
        for subscription in subscriptions[start : start + SLICE]:
            push(subscription, message)
