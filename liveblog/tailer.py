"""The tailer: one task per Redis node reads every active blog's log on it, for the hub.

Each loop reads all active logs on its node with a blocking XREAD from the position the hub has
delivered up to, and hands each blog's new events to :meth:`Hub.dispatch`. Readers never talk to
Redis on the hot path. There is one node unless Redis Cluster; a cluster's layout may change (a
failover, resharding): loops start for new nodes as blogs turn up on them, and a loop whose node
no longer holds a blog just waits.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterable
from typing import TYPE_CHECKING

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import tasks
from .cursor import stream_id_key, waited
from .gathering import Gathering, GatherRules
from .logreader import LogReader
from .metrics import Metrics
from .storage import LogEvent, NotReplicated, Storage
from .topology import LAYOUT_CHANGED, Topology

if TYPE_CHECKING:
    from .hub import Hub

log = logging.getLogger(__name__)
#: Seconds between looks while replicas do not confirm what was read (on top of WAIT's timeout).
HOLD_BACK = 0.02
#: A clock sample whose round trip took longer is dropped (a retry, a busy loop): it would make
#: every event look that much older until the next one.
CLOCK_ROUND_TRIP = 0.005


class Tailer:
    """Reads the active logs for ``hub``; :meth:`start` its loops in a task group that owns them."""

    def __init__(
        self,
        store: Storage,
        topology: Topology,
        metrics: Metrics,
        hub: Hub,
        *,
        block_ms: int,
        verify_every: float,
        gathering: GatherRules,
    ):
        self._store = store
        self._topology = topology
        self._metrics = metrics
        self._hub = hub
        self._block_ms = block_ms
        self._verify_every = verify_every
        self._gathering = gathering
        self._changed: dict[str, asyncio.Event] = {node: asyncio.Event() for node in topology.nodes()}
        self._client_ids: dict[str, int] = {}
        self._tasks: asyncio.TaskGroup | None = None

    def start(self, tasks: asyncio.TaskGroup) -> None:
        """Start a loop per known node in ``tasks``, and later ones there as nodes turn up."""
        self._tasks = tasks
        for node in self._changed:
            tasks.create_task(self._tail(node), name=f"liveblog-tail-{node}")

    async def wake(self, node: str) -> None:
        """Make a node's loop include a new blog now rather than after its block times out.

        Once per round of the loop: if a wake since the loop last read the positions has set
        its flag, that wake's unblock ends the read, and the loop reads the positions again
        after this blog's feed has started: it includes this one too. (A join storm over a
        hundred blogs unblocked the read, and restarted it, once per blog.)"""
        self._follow(node)
        changed = self._changed[node]
        if changed.is_set():
            return
        changed.set()
        if (client_id := self._client_ids.get(node)) is not None:
            try:
                await self._topology.unblock(node, client_id)
            except (RedisConnectionError, RedisTimeoutError):
                pass  # the loop is reconnecting; it re-reads the positions when it is back

    def _follow(self, node: str) -> None:
        """Make sure a loop reads ``node`` (a node that came with a cluster's new layout)."""
        if node in self._changed:
            return
        self._changed[node] = asyncio.Event()
        if self._tasks is not None:  # else start() starts it with the others
            log.warning("tailing Redis node %s too (the cluster's layout changed)", node)
            self._tasks.create_task(self._tail(node), name=f"liveblog-tail-{node}")

    def _positions(self, node: str) -> dict[str, str]:
        positions = {}
        for blog_id, cursor in self._hub.positions():
            owner = self._topology.node_of(blog_id)
            if owner == node:
                positions[blog_id] = cursor.stream_id
            elif owner not in self._changed:
                self._follow(owner)
        return positions

    async def _tail(self, node: str) -> None:
        """Read every active log on ``node``; survives Redis outages by retrying with backoff.

        Every ``verify_every`` seconds, and after every outage, it checks that each active log is
        still the one it was reading (see :meth:`_verify`).

        Under overload it batches on purpose: while its reads are behind (see
        :mod:`liveblog.gathering`) it waits a short window before each read, and what it finds
        goes to each reader in one write per blog. A loop that keeps up never waits.
        """
        backoff, holding = 0.05, False
        gathering, returned, offset = Gathering(self._gathering), 0.0, None
        loop = asyncio.get_running_loop()
        verify_at = loop.time() + self._verify_every
        changed = self._changed[node]
        async with self._topology.log_reader(node) as reader:
            while True:
                tasks.checkpoint()
                changed.clear()
                positions = self._positions(node)
                if not positions:
                    await changed.wait()
                    continue
                try:
                    if node not in self._client_ids:
                        self._client_ids[node] = await reader.client_id()
                        offset = await _clock_offset(reader, None)
                        if changed.is_set():  # a wake while it was asked: it had no read to end
                            continue
                    issued = loop.time()
                    batch = await reader.read(positions, self._block_ms)
                    # Away: handing out, a window; and waiting for replicas is not lag either.
                    away = issued - (returned or issued) + reader.replicated_in  # 0 before the first
                    returned = loop.time()
                    window = gathering.after_read(returned, _age(batch, offset or 0.0), away)
                    if loop.time() >= verify_at:
                        await self._verify(positions)
                        offset = await _clock_offset(reader, offset)  # a clock stepped since
                        verify_at = loop.time() + self._verify_every
                except (RedisConnectionError, RedisTimeoutError) as exc:
                    self._metrics.redis_errors.labels("tailer").inc()
                    self._client_ids.pop(node, None)
                    verify_at = 0.0  # whatever Redis comes back may have lost data
                    log.warning("tailer lost Redis %s (%s); retrying in %.2fs", node, exc, backoff)
                    await asyncio.sleep(backoff * (0.5 + random.random()))
                    backoff = min(backoff * 2, 5.0)
                    continue
                except NotReplicated as exc:
                    # Read, but not yet on enough replicas: readers get it once it is (the next
                    # read starts from the same positions), never before. WAIT itself paces this
                    # loop; no backoff, so that readers have it as soon as a replica is back.
                    self._metrics.redis_errors.labels("tailer").inc()
                    if not holding:
                        log.warning("tailer of %s holds back new events until replicas have them (%s)", node, exc)
                    holding = True
                    await asyncio.sleep(HOLD_BACK)
                    continue
                except LAYOUT_CHANGED as exc:
                    # MOVED from a primary that was demoted, or CLUSTERDOWN / TRYAGAIN while a
                    # failover settles: learn the new layout; the blogs that moved leave this loop.
                    self._metrics.redis_errors.labels("tailer").inc()
                    log.warning("Redis cluster layout changed under the tailer of %s (%s); re-reading it", node, exc)
                    await asyncio.sleep(backoff * (0.5 + random.random()))
                    backoff = min(backoff * 2, 5.0)
                    try:
                        await self._topology.refresh_layout()
                    except (RedisConnectionError, RedisTimeoutError) as error:
                        log.warning("could not re-read the Redis cluster layout (%s); retrying", error)
                    continue
                backoff = 0.05
                if holding:
                    log.warning("tailer of %s hands out new events again: replicas have them", node)
                holding = False
                for blog_id, events in batch:
                    await self._hub.dispatch(blog_id, events, clock_offset=offset or 0.0)
                if window:
                    self._metrics.tailer_gathers.inc()
                    await asyncio.sleep(window)

    async def _verify(self, blogs: Iterable[str]) -> None:
        """Restart the readers of any blog whose log was lost or recreated under us.

        A flush, or a Redis restart without (or with lagging) persistence, gives a blog a new epoch
        or a log that ends before where we read. Readers would otherwise wait silently on a log
        that is gone. Every blog's position is read in one round trip: this loop delivers nothing
        while it waits, and a hundred reads one after another held every blog's readers up by
        about that many round trips (bench/RESULTS.md, "many blogs").
        """
        feeds = {blog_id: feed for blog_id in blogs if (feed := self._hub.feeds.get(blog_id)) is not None}
        cursors = {blog_id: feed.position for blog_id, feed in feeds.items() if feed.position is not None}
        if not cursors:
            return
        found = await self._store.positions(list(cursors))
        for blog_id, cursor in cursors.items():
            current = found[blog_id]
            if current is not None and current.epoch == cursor.epoch:
                if stream_id_key(current.stream_id) >= stream_id_key(cursor.stream_id):
                    continue
            if self._hub.feeds.get(blog_id) is feeds[blog_id]:  # not a feed started since
                self._hub.reset(blog_id, current)


def _age(batch: list[tuple[str, list[LogEvent]]], offset: float) -> float | None:
    """Seconds the oldest event of ``batch`` has waited, None if it has none. By its stream id,
    i.e. the Redis node's clock, ``offset`` seconds ahead of ours: a node on another host whose
    clock is behind would otherwise make every event look late, and the loop gather for good."""
    oldest = min((events[0].stream_id for _, events in batch if events), key=stream_id_key, default=None)
    return None if oldest is None else waited(oldest, offset)


async def _clock_offset(reader: LogReader, current: float | None) -> float | None:
    """The node's clock offset from a fresh sample, or ``current`` if the sample's round trip was
    long (the first sample is kept whatever it took). None while the node refuses ``TIME`` (an
    ACL, a proxy): ages are then by our own clock."""
    try:
        sample, round_trip = await reader.clock_offset()
    except ResponseError as exc:
        if current is None:
            log.warning("Redis refused TIME (%s): the tailer judges how late events are by its own clock", exc)
        return current
    return sample if current is None or round_trip <= CLOCK_ROUND_TRIP else current
