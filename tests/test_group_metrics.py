"""`liveblog serve --workers 2`: /metrics, whichever worker answers, reports the whole group."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import httpx
import pytest
from conftest import Served
from prometheus_client.parser import text_string_to_metric_families
from test_workers import ENV, TWO_WORKERS, held, post_and_catch_up, readers_until_sigterm, worker_pids

pytestmark = [pytest.mark.skipif(sys.platform != "linux", reason="reads /proc"), pytest.mark.slow]

#: Scrapes, each on a new connection (the kernel picks the worker), before both must have answered.
MAX_SCRAPES = 200


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    response = httpx.get(f"{url}/metrics", headers={"Connection": "close"})
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def answered_metrics_by(served: Served) -> set[int]:
    """The workers whose access log has a line for GET /metrics."""
    return {int(pid) for pid in re.findall(r"liveblog\.access \[(\d+)\]: http GET /metrics 200 ", served.text)}


async def test_metrics_from_either_worker_count_every_reader_and_every_post_of_the_group(data_dir: Path, redis_server):
    stale = data_dir / "metrics" / "counter_1.db"  # an earlier run's: wiped at start, never added in
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"left over")
    served = await asyncio.to_thread(Served, data_dir, {**ENV, "LIVEBLOG_REDIS_URL": redis_server.url}, TWO_WORKERS)
    assert not stale.exists()
    workers = worker_pids(served)
    async with readers_until_sigterm(served, 16) as readers:
        assert set(held(served, readers, workers).values()) == set(workers), "readers on both workers"
        await post_and_catch_up(served, readers, range(6))
        scrapes = 0
        while answered_metrics_by(served) != set(workers):
            assert scrapes < MAX_SCRAPES, f"only {answered_metrics_by(served)} of {workers} answered /metrics"
            seen = await asyncio.to_thread(scrape, served.url)
            scrapes += 1
            assert seen[("liveblog_readers", (("transport", "websocket"),))] == 16, "every worker's readers"
            assert seen[("liveblog_post_seconds_count", ())] == 6, "posts through either worker"
            assert seen[("liveblog_events_delivered_total", ())] >= 6 * 16
            rss = {dict(labels)["pid"] for (name, labels) in seen if name == "process_resident_memory_bytes"}
            assert rss == {str(pid) for pid in workers}, "each worker's memory, by pid"
            # The worker's access-log line reaches us through the pipe after its response: wait.
            await asyncio.to_thread(
                served.wait_for_line, lambda line, done=scrapes: "GET /metrics 200 " in line and _count(served) >= done
            )
    assert served.process.returncode == 0
    assert not list((data_dir / "metrics").glob("gauge_live*")), "the stopped workers' live gauges are gone"


def _count(served: Served) -> int:
    return len(re.findall(r"http GET /metrics 200 ", served.text))
