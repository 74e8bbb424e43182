"""Prometheus metrics, served at ``GET /metrics``, one registry per app.

What an operator watches at 3 a.m.: how many readers are connected and how, whether events
still flow (delivered, and the age of the last one delivered), who is too slow, how long
reporters wait for a post, how long one fan-out pass takes, how long the process stood
still collecting garbage, its memory and file descriptors, and whether Redis is answering.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.readers = Gauge("liveblog_readers", "Open live connections", ["transport"], registry=self.registry)
        self.delivered = Counter(
            "liveblog_events_delivered", "Event messages handed to readers' connections", registry=self.registry
        )
        self.slow_closes = Counter(
            "liveblog_slow_reader_closes", "Readers closed with 4408 for falling behind", registry=self.registry
        )
        self.post_seconds = Histogram(
            "liveblog_post_seconds",
            "Time to answer a reporter's POST of an entry",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self.fanout_seconds = Histogram(
            "liveblog_fanout_seconds",
            "Time to hand one read of a blog's new events to all its readers in this process",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=self.registry,
        )
        self.tailer_lag = Gauge(
            "liveblog_tailer_lag_seconds",
            "Age of the last event the tailer delivered, when it delivered it",
            registry=self.registry,
        )
        self.scheduled_published = Counter(
            "liveblog_scheduled_published", "Scheduled entries this process published", registry=self.registry
        )
        self.redis_errors = Counter(
            "liveblog_redis_errors", "Redis connection errors and timeouts", ["where"], registry=self.registry
        )
        self.gc_pause_seconds = Histogram(
            "liveblog_gc_pause_seconds",
            "Full (generation 2) garbage collections: the whole process stands still meanwhile",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=self.registry,
        )
        self.cache_bytes = Gauge(
            "liveblog_cache_bytes",
            "Bytes held by each in-process cache, as its budget counts them (set once a second)",
            ["cache"],
            registry=self.registry,
        )
        ProcessCollector(registry=self.registry)  # RSS, CPU seconds, open file descriptors
        self._gc_started = 0.0

    @contextmanager
    def timing_gc(self) -> Iterator[None]:
        """Time full collections while the app runs (``gc.callbacks`` is process-wide)."""
        gc.callbacks.append(self._on_gc)
        try:
            yield
        finally:
            gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_pause_seconds.observe(time.perf_counter() - self._gc_started)

    def render(self) -> bytes:
        """The registry in Prometheus' text format (``CONTENT_TYPE``)."""
        return generate_latest(self.registry)


CONTENT_TYPE = CONTENT_TYPE_LATEST
