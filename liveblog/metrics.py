"""Prometheus metrics, served at ``GET /metrics``, one registry per app.

With ``--workers N`` the workers share prometheus-client's multiprocess mode: each writes its
values to files in ``PROMETHEUS_MULTIPROC_DIR`` (``<data dir>/metrics``, wiped when the group
starts) and ``/metrics``, whichever worker answers, reports the group: counters and histograms
summed over every worker that ever ran, ``liveblog_readers`` summed over the live ones,
``liveblog_tailer_lag_seconds`` the largest of the live ones, and the process metrics (RSS,
CPU, file descriptors) per live worker, with a ``pid`` label.

What an operator watches at 3 a.m.: how many readers are connected and how, whether events
still flow (delivered, and the age of the last one delivered), who is too slow, how long
reporters wait for a post, how long one fan-out pass takes, how long the process stood
still collecting garbage, its memory and file descriptors, and whether Redis is answering.
"""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    multiprocess,
)

#: prometheus-client's switch to multiprocess mode; read when it is imported.
SHARED_DIR = "PROMETHEUS_MULTIPROC_DIR"
#: Seconds between a worker's writes of its process metrics (RSS, fds) for the group's /metrics.
PROCESS_EVERY = 5.0


def share_between_workers(path: Path) -> None:
    """Make this process and the workers it forks share their metrics in ``path``.

    prometheus-client chooses multiprocess mode when it is imported, and it has been by now:
    so unless ``PROMETHEUS_MULTIPROC_DIR`` already names ``path``, this sets it and re-executes
    the same command (same pid, same output), as a start-up script would have. Once it does,
    ``path`` is emptied: values of an earlier run must not be added to this one's.
    """
    path = path.resolve()
    if os.environ.get(SHARED_DIR) != str(path):
        os.environ[SHARED_DIR] = str(path)
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, mode=0o700)


def worker_exited(pid: int) -> None:
    """Drop the live gauges (readers, lag, process metrics) of a worker that exited."""
    if SHARED_DIR in os.environ:
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


class Metrics:
    def __init__(self) -> None:
        #: The workers share their values (see the module's docstring): /metrics reports them all.
        self.shared = SHARED_DIR in os.environ
        self.registry = CollectorRegistry()
        self.readers = Gauge(
            "liveblog_readers",
            "Open live connections",
            ["transport"],
            registry=self.registry,
            multiprocess_mode="livesum",
        )
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
            multiprocess_mode="livemax",
        )
        self.tailer_gathers = Counter(
            "liveblog_tailer_gathers",
            "Times a tailer loop was behind and waited to gather more events before its next read",
            registry=self.registry,
        )
        self.scheduled_published = Counter(
            "liveblog_scheduled_published", "Scheduled entries this process published", registry=self.registry
        )
        self.webhook_deliveries = Counter(
            "liveblog_webhook_deliveries",
            "Webhook delivery attempts by outcome: delivered, http_error, connect_error, timeout, "
            "refused (a private address), gave_up (the last retry failed), "
            "purged (the entry was purged: not sent, and forgotten)",
            ["outcome"],
            registry=self.registry,
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
            multiprocess_mode="livesum",
        )
        # RSS, CPU seconds, open file descriptors. A collector does not work across processes:
        # shared, each worker copies its own into gauges labelled with its pid (mode "liveall").
        self._process = ProcessCollector(registry=None if self.shared else self.registry)
        self._process_gauges: dict[str, Gauge] = {}
        self._gc_started = 0.0

    async def share_process_metrics(self) -> None:
        """Shared mode: write this worker's process metrics every ``PROCESS_EVERY`` seconds, so
        that whichever worker answers /metrics reports every worker's (runs until cancelled)."""
        while True:
            self._write_process_metrics()
            await asyncio.sleep(PROCESS_EVERY)

    def _write_process_metrics(self) -> None:
        for family in self._process.collect():
            for sample in family.samples:
                gauge = self._process_gauges.get(sample.name)
                if gauge is None:
                    gauge = Gauge(sample.name, family.documentation, registry=None, multiprocess_mode="liveall")
                    self._process_gauges[sample.name] = gauge
                gauge.set(sample.value)

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
        """The metrics in Prometheus' text format (``CONTENT_TYPE``): this process's, or shared,
        the whole group's."""
        if not self.shared:
            return generate_latest(self.registry)
        self._write_process_metrics()  # this worker's, fresh
        group = CollectorRegistry()
        multiprocess.MultiProcessCollector(group)  # type: ignore[no-untyped-call]
        return generate_latest(group)


CONTENT_TYPE = CONTENT_TYPE_LATEST
