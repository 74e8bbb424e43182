"""Reading several blogs' logs at once, on one dedicated connection: what the tailer waits on."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import redis.asyncio as redis
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.typing import KeyT, StreamIdT

from . import keys
from .storage import LogEvent, NotReplicated

#: How often a cluster node's logs are polled while idle.
CLUSTER_POLL = 0.02


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class LogReader:
    """A dedicated connection that waits on several blogs' logs at once (``async with``).

    On one Redis that is one blocking XREAD over every log. A cluster node refuses a command
    whose keys are in different slots, so there the logs of different slots are read in one
    pipeline of non-blocking XREADs, repeated every ``CLUSTER_POLL`` seconds while idle.

    With ``min_replicas``, what it read is handed out only once that many replicas confirm they
    have it (``WAIT``, up to ``wait_ms``): readers never see an entry a failover could lose.
    """

    def __init__(self, client: redis.Redis, *, cluster: bool = False, min_replicas: int = 0, wait_ms: int = 500):
        self._client = client
        self._cluster = cluster
        self._min_replicas = min_replicas
        self._wait_ms = wait_ms
        #: Seconds the last read waited for replicas to confirm it: not a busy loop's lag.
        self.replicated_in = 0.0

    async def __aenter__(self) -> LogReader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.aclose(close_connection_pool=True)

    async def client_id(self) -> int:
        """This connection's id, for CLIENT UNBLOCK from another connection."""
        with _lost_while_connecting():
            return int(await self._client.client_id())

    async def clock_offset(self) -> tuple[float, float]:
        """(Seconds this node's clock is ahead of ours, the round trip that measured it.) Its
        stream ids are that clock's milliseconds.

        Measured against our clock when the command left, not the round trip's middle: what
        delays a round trip is mostly a busy loop seeing the reply late, or a retry, and that
        must not count. It still errs towards older by the one-way latency; a caller should
        drop a sample whose round trip was long. ``ResponseError`` if the node refuses ``TIME``.
        """
        sent = time.time()
        with _lost_while_connecting():
            seconds, micros = await self._client.time()
        return seconds + micros / 1_000_000 - sent, time.time() - sent

    async def _replicated(self) -> None:
        # WAIT counts what its connection wrote, and this one wrote nothing: the fence is a write
        # after everything just read, so replicas that have the fence have all of it. Pipelined,
        # so that a reconnect cannot come between the two (a WAIT on a fresh connection waits
        # for nothing).
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.set(keys.FENCE, "1")
            pipe.wait(self._min_replicas, self._wait_ms)
            _, confirmed = await pipe.execute()
        if confirmed < self._min_replicas:
            raise NotReplicated(
                f"{confirmed} of {self._min_replicas} replicas confirmed the log within {self._wait_ms} ms"
            )

    async def read(self, positions: dict[str, str], block_ms: int) -> list[tuple[str, list[LogEvent]]]:
        """Events after each blog's stream id; waits up to ``block_ms`` for the first one.
        :class:`~liveblog.storage.NotReplicated` if fewer than ``min_replicas`` confirm them."""
        slots: dict[int, dict[KeyT, StreamIdT]] = {}
        for blog_id, stream_id in positions.items():
            slots.setdefault(key_slot(keys.log(blog_id).encode()) if self._cluster else 0, {})[keys.log(blog_id)] = (
                stream_id
            )
        replies: list[Any]  # [[stream, [(id, {field: value})]]] per XREAD, or None
        if len(slots) == 1:
            replies = [await self._client.xread(next(iter(slots.values())), count=500, block=block_ms)]
        else:
            async with self._client.pipeline(transaction=False) as pipe:
                for streams in slots.values():
                    pipe.xread(streams, count=500)
                replies = await pipe.execute()
            if not any(replies):
                await asyncio.sleep(CLUSTER_POLL)
        self.replicated_in = 0.0
        if self._min_replicas and any(replies):
            started = time.monotonic()
            await self._replicated()
            self.replicated_in = time.monotonic() - started
        return [
            (
                keys.blog_of(_s(stream)),
                [LogEvent(_s(sid), fields[b"e"], _s(fields[b"epoch"])) for sid, fields in events],
            )
            for reply in replies
            for stream, events in reply or []
        ]


@contextlib.contextmanager
def _lost_while_connecting() -> Iterator[None]:
    # redis-py 6.0 on uvloop: a connection whose socket died while it was being set up writes to
    # the closed transport, and uvloop raises RuntimeError. It is a lost connection, which the
    # tailer rides out like any other.
    try:
        yield
    except RuntimeError as exc:
        raise RedisConnectionError(f"connection lost while connecting: {exc}") from exc
