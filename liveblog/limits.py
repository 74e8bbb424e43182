"""Admission limits, per process: connection counts and token-bucket rates. No I/O here.

They protect a process from one client (a runaway script reconnecting in a loop, a reporter
tool stuck retrying) before that client costs memory. They are per process, not cluster-wide:
with N processes behind a balancer, a client gets at most N times the rate.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable


class RateLimiter:
    """A token bucket per key: ``rate`` per second on average, bursts up to ``burst``.

    ``clock`` is where the seconds come from (a monotonic clock; a test may hand it its own).
    """

    def __init__(
        self, rate: float, burst: int, *, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic
    ):
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def wait_time(self, key: str, now: float | None = None) -> float:
        """Take one token for ``key``: 0.0 if there was one, else seconds until there will be."""
        now = self.clock() if now is None else now
        tokens, last = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, now)  # most recently used last, so the oldest go first
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return wait


class ConnectionLimiter:
    """Counts open live connections, in total and per client address."""

    def __init__(self, total: int, per_client: int):
        self.total = total
        self.per_client = per_client
        self._open: Counter[str] = Counter()
        self._count = 0

    def refusal(self, client: str) -> str | None:
        """Why ``client`` may not open another connection now (``"total"``/``"client"``), or None."""
        if self._count >= self.total:
            return "total"
        if self._open[client] >= self.per_client:
            return "client"
        return None

    def opened(self, client: str) -> None:
        self._open[client] += 1
        self._count += 1

    def closed(self, client: str) -> None:
        self._count -= 1
        self._open[client] -= 1
        if self._open[client] <= 0:
            del self._open[client]

    @property
    def count(self) -> int:
        return self._count
