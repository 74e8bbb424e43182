"""Fan-out inside one process: one tailer reads every active blog's log; readers never touch Redis.

The hub keeps, per blog with local readers, the set of their subscriptions. One task per Redis
node (one, unless Redis Cluster) reads all active logs on it with a blocking XREAD from the last
id it delivered, encodes each event once into a :class:`Message` (consecutive events of a blog
read together become one batch), and hands that same object to every reader of the blog. Each
reader's :class:`Sink` writes it at once, without awaiting, and reports how much it has not sent
yet; a reader whose backlog passes the limit is closed with 4408 and never delays the others.
A second task pushes the cluster-wide viewer count now and then.

Why push into sinks rather than hand each reader an async iterator: a wake-up per reader per
message costs 2-3x at thousands of readers (DESIGN §4). SSE, written by awaiting, wraps its sink
in an iterator of its own (:class:`liveblog.sse.BufferedSink`).

Joining is gap-free: a subscription is registered first and holds what arrives while the reader
loads its snapshot (or catches up from its cursor); it then goes live, skipping everything at or
before the position it loaded.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from websockets.frames import Frame, Opcode

from .cursor import Cursor, stream_id_key
from .metrics import Metrics
from .store import LAYOUT_CHANGED, LogEvent, NotFound, Store

log = logging.getLogger(__name__)

#: Close code for a reader whose unsent data passed the limit: reconnect with your cursor.
TOO_SLOW = 4408
#: Close code for readers whose blog's log was reset: reconnect (and get a fresh snapshot).
RESTART = 1012
#: A position before every event.
START = (-1, -1)
#: Readers handed a message between two turns of the event loop (a few ms of work).
SLICE = 500


class Message:
    """One message to readers, encoded once; every reader of a blog gets the same object.

    A message may also be a batch: consecutive events of one blog read together, written to each
    reader at once (one write, not one per event, when the tailer is behind). ``first`` and
    ``position`` are the log positions of its first and last event.
    """

    __slots__ = ("first", "position", "cursor", "json", "parts", "_ws_frame", "_sse_frame")

    def __init__(self, cursor: Cursor, json: bytes):
        self.position = self.first = stream_id_key(cursor.stream_id)
        self.cursor = str(cursor).encode()
        self.json = json
        self.parts: tuple[Message, ...] = (self,)
        self._ws_frame: bytes | None = None
        self._sse_frame: bytes | None = None

    @classmethod
    def batch(cls, messages: list[Message]) -> Message:
        if len(messages) == 1:
            return messages[0]
        batch = cls.__new__(cls)
        batch.first, batch.position, batch.cursor = messages[0].position, messages[-1].position, messages[-1].cursor
        batch.parts = tuple(messages)
        batch.json = b"".join(message.json for message in messages)  # what a held batch weighs
        batch._ws_frame = b"".join(message.ws_frame for message in messages)
        batch._sse_frame = b"".join(message.sse_frame for message in messages)
        return batch

    @classmethod
    def viewers(cls, count: int) -> Message:
        """How many read the blog now, across every process: not part of the log, no cursor."""
        message = cls(Cursor("", "0-0"), b'{"type":"viewers","count":%d}' % count)
        message.position = message.cursor = None
        return message

    @classmethod
    def event(cls, epoch: str, event: LogEvent) -> Message:
        return cls(Cursor(epoch, event.stream_id), event.with_cursor(epoch, b'"type":"event",'))

    @property
    def ws_frame(self) -> bytes:
        """The whole WebSocket frame (unmasked text, no extensions): the same bytes for everyone."""
        if self._ws_frame is None:
            self._ws_frame = Frame(Opcode.TEXT, self.json).serialize(mask=False)
        return self._ws_frame

    @property
    def sse_frame(self) -> bytes:
        """The Server-Sent Events record; its ``id`` is the cursor, so ``Last-Event-ID`` resumes."""
        if self._sse_frame is None:
            # No id for messages without a cursor: Last-Event-ID must keep the last real cursor.
            record_id = b"id: %s\n" % self.cursor if self.cursor is not None else b""
            self._sse_frame = b"%sdata: %s\n\n" % (record_id, self.json)
        return self._sse_frame


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
        self.close(TOO_SLOW, "too slow: reconnect with your last cursor")


class _Feed:
    """The local readers of one blog, whether its log is being read, and the last viewer count."""

    def __init__(self) -> None:
        self.subscriptions: set[Subscription] = set()
        self.started: asyncio.Future[Cursor] = asyncio.get_running_loop().create_future()
        self.viewers: Message | None = None


class Hub:
    """Fan-out of every active blog's log to this process's readers; run :meth:`run` as a task."""

    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        *,
        reader_limit: int = 1 << 20,
        block_ms: int = 250,
        verify_every: float = 5.0,
        viewers_every: float = 5.0,
    ):
        self._store = store
        self._metrics = metrics
        self._limit = reader_limit
        self._block_ms = block_ms
        self._verify_every = verify_every
        self._viewers_every = viewers_every
        self._process_id = secrets.token_hex(6)
        self._feeds: dict[str, _Feed] = {}
        self._positions: dict[str, Cursor] = {}
        # One tail loop per Redis node (one node unless Redis Cluster); each blog's log is on one.
        # A cluster's layout may change (a failover, resharding): loops start for new nodes as
        # blogs turn up on them, and a loop whose node no longer holds a blog just waits.
        self._changed: dict[str, asyncio.Event] = {node: asyncio.Event() for node in store.nodes()}
        self._tasks: asyncio.TaskGroup | None = None
        self._tailer_client_ids: dict[str, int] = {}

    def readers(self, blog_id: str) -> int:
        feed = self._feeds.get(blog_id)
        return len(feed.subscriptions) if feed else 0

    async def subscribe(self, blog_id: str, sink: Sink) -> Subscription:
        """Register a reader of ``blog_id``; messages are held until ``go_live()``. Whoever
        subscribes must :meth:`unsubscribe` when the reader leaves.

        Raises :class:`~liveblog.store.NotFound` if the blog does not exist.
        """
        subscription = Subscription(blog_id, sink, self._limit, self._metrics)
        feed = self._feeds.get(blog_id)
        first = feed is None
        if feed is None:
            feed = self._feeds[blog_id] = _Feed()
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
                first = feed.started is started and self._feeds.get(blog_id) is feed
                if first:
                    feed.started = asyncio.get_running_loop().create_future()
                elif self._feeds.get(blog_id) is not feed:
                    break
            if first:
                await self._start(blog_id, feed)
        except BaseException:
            self.unsubscribe(subscription)
            raise
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """The reader left; a blog nobody here reads any more is no longer tailed."""
        feed = self._feeds.get(subscription.blog_id)
        if feed is None:
            return
        feed.subscriptions.discard(subscription)
        if not feed.subscriptions:
            del self._feeds[subscription.blog_id]
            self._positions.pop(subscription.blog_id, None)

    async def _start(self, blog_id: str, feed: _Feed) -> None:
        try:
            cursor = await self._store.position(blog_id)
        except asyncio.CancelledError:
            feed.started.cancel()  # our reader left; another joiner starts the feed (wait_shared)
            raise
        except BaseException as exc:
            feed.started.set_exception(exc)
            feed.started.exception()  # retrieved here; later joiners re-raise it themselves
            raise
        feed.started.set_result(cursor)
        self._positions[blog_id] = cursor
        await self._wake(self._store.node_of(blog_id))

    async def _wake(self, node: str) -> None:
        """Make a node's tailer include a new blog now rather than after its block times out."""
        self._tail_node(node)
        self._changed[node].set()
        if (client_id := self._tailer_client_ids.get(node)) is not None:
            try:
                await self._store.unblock(node, client_id)
            except (RedisConnectionError, RedisTimeoutError):
                pass  # the tailer is reconnecting; it re-reads the positions when it is back

    async def run(self) -> None:
        """Tail the logs and count viewers until cancelled; if either task fails, both stop and
        the error propagates to whoever owns this one."""
        async with asyncio.TaskGroup() as tasks:
            self._tasks = tasks
            for node in self._changed:
                tasks.create_task(self._tail(node), name=f"liveblog-tail-{node}")
            tasks.create_task(self._count_viewers(), name="liveblog-viewers")

    def _tail_node(self, node: str) -> None:
        """Make sure a tail loop reads ``node`` (a node that came with a cluster's new layout)."""
        if node in self._changed:
            return
        self._changed[node] = asyncio.Event()
        if self._tasks is not None:  # else run() starts it with the others
            log.warning("tailing Redis node %s too (the cluster's layout changed)", node)
            self._tasks.create_task(self._tail(node), name=f"liveblog-tail-{node}")

    async def _count_viewers(self) -> None:
        """Every ``viewers_every`` seconds, count each blog's readers cluster-wide, and tell them
        if the count changed (a reader who joins is told the last count when it goes live).

        Sending an unchanged count to 10k readers would cost as much as an entry does."""
        fresh_ms = int(self._viewers_every * 3000)  # a process missing three reports has stopped
        while True:
            await asyncio.sleep(self._viewers_every)
            for blog_id, feed in list(self._feeds.items()):
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
                await _hand_out(list(feed.subscriptions), Subscription.push_ephemeral, message)

    async def _tail(self, node: str) -> None:
        """Read every active log on ``node``; survives Redis outages by retrying with backoff.

        Every ``verify_every`` seconds, and after every outage, it checks that each active log is
        still the one it was reading (see :meth:`_verify`).
        """
        backoff = 0.05
        loop = asyncio.get_running_loop()
        verify_at = loop.time() + self._verify_every
        changed = self._changed[node]
        async with self._store.log_reader(node) as reader:
            while True:
                changed.clear()
                positions = {}
                for blog, cursor in self._positions.items():
                    owner = self._store.node_of(blog)
                    if owner == node:
                        positions[blog] = cursor.stream_id
                    elif owner not in self._changed:
                        self._tail_node(owner)
                if not positions:
                    await changed.wait()
                    continue
                try:
                    if node not in self._tailer_client_ids:
                        self._tailer_client_ids[node] = await reader.client_id()
                    batch = await reader.read(positions, self._block_ms)
                    if loop.time() >= verify_at:
                        await self._verify(positions)
                        verify_at = loop.time() + self._verify_every
                except (RedisConnectionError, RedisTimeoutError) as exc:
                    self._metrics.redis_errors.labels("tailer").inc()
                    self._tailer_client_ids.pop(node, None)
                    verify_at = 0.0  # whatever Redis comes back may have lost data
                    log.warning("tailer lost Redis %s (%s); retrying in %.2fs", node, exc, backoff)
                    await asyncio.sleep(backoff * (0.5 + random.random()))
                    backoff = min(backoff * 2, 5.0)
                    continue
                except LAYOUT_CHANGED as exc:
                    # MOVED from a primary that was demoted, or CLUSTERDOWN / TRYAGAIN while a
                    # failover settles: learn the new layout; the blogs that moved leave this loop.
                    self._metrics.redis_errors.labels("tailer").inc()
                    log.warning("Redis cluster layout changed under the tailer of %s (%s); re-reading it", node, exc)
                    await asyncio.sleep(backoff * (0.5 + random.random()))
                    backoff = min(backoff * 2, 5.0)
                    try:
                        await self._store.refresh_layout()
                    except (RedisConnectionError, RedisTimeoutError) as error:
                        log.warning("could not re-read the Redis cluster layout (%s); retrying", error)
                    continue
                backoff = 0.05
                for blog_id, events in batch:
                    await self._dispatch(blog_id, events)

    async def _verify(self, blogs: Iterable[str]) -> None:
        """Restart the readers of any blog whose log was lost or recreated under us.

        A flush, or a Redis restart without (or with lagging) persistence, gives a blog a new epoch
        or a log that ends before where we read. Readers would otherwise wait silently on a log
        that is gone; closed with 1012, they reconnect with their cursor and, the cursor being
        unusable now, get a fresh snapshot.
        """
        for blog_id in blogs:
            if (cursor := self._positions.get(blog_id)) is None:
                continue
            try:
                current: Cursor | None = await self._store.position(blog_id)
            except NotFound:
                current = None
            if current is not None and current.epoch == cursor.epoch:
                if stream_id_key(current.stream_id) >= stream_id_key(cursor.stream_id):
                    continue
            self._reset(blog_id, cursor, current)

    def _reset(self, blog_id: str, was: Cursor, now: Cursor | None) -> None:
        log.warning("log of blog %r was reset (read up to %s, now %s); restarting its readers", blog_id, was, now)
        feed = self._feeds.pop(blog_id, None)
        self._positions.pop(blog_id, None)
        for subscription in list(feed.subscriptions if feed else ()):
            subscription.close(RESTART, "the blog's log was reset; reconnect with your cursor")

    async def _dispatch(self, blog_id: str, events: Iterable[LogEvent]) -> None:
        cursor = self._positions.get(blog_id)
        feed = self._feeds.get(blog_id)
        if cursor is None or feed is None:
            return  # the last reader left while we were reading
        last = stream_id_key(cursor.stream_id)
        messages = []
        for event in events:
            if event.epoch != cursor.epoch:
                self._reset(blog_id, cursor, Cursor(event.epoch, event.stream_id))
                return
            if stream_id_key(event.stream_id) <= last:
                continue  # read under an older position of a feed that was re-created
            messages.append(Message.event(cursor.epoch, event))
            cursor = Cursor(cursor.epoch, event.stream_id)
        if not messages:
            return
        batch = Message.batch(messages)
        started = time.perf_counter()
        readers = list(feed.subscriptions)
        await _hand_out(readers, Subscription.push, batch)
        feed.subscriptions.difference_update([subscription for subscription in readers if subscription.closed])
        self._metrics.fanout_seconds.observe(time.perf_counter() - started)
        self._metrics.delivered.inc(len(messages) * len(readers))
        # Readers who came while the batch was handed out have it from their snapshot or catch-up
        # (it was in the log before they subscribed). The feed may be gone by now (reset, or its
        # last reader left): its position must not come back then.
        # Only forward: after a cluster failover two tail loops may briefly read the same blog.
        if self._feeds.get(blog_id) is feed and (
            (known := self._positions.get(blog_id)) is None
            or stream_id_key(known.stream_id) < stream_id_key(cursor.stream_id)
        ):
            self._positions[blog_id] = cursor
        self._metrics.tailer_lag.set(max(0.0, time.time() - stream_id_key(cursor.stream_id)[0] / 1000))


async def wait_shared(future: asyncio.Future) -> bool:
    """Wait for work that another reader's call does for this one too. False if that call was
    cancelled (its reader left) while this one was not: the caller then does the work itself."""
    try:
        await asyncio.shield(future)
    except asyncio.CancelledError:
        if future.cancelled() and not asyncio.current_task().cancelling():
            return False
        raise
    return True


async def _hand_out(
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
