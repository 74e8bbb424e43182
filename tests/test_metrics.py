"""The operator's dashboard: /metrics says who is connected and whether events flow."""

from __future__ import annotations

import gc
import time

from conftest import receive
from prometheus_client.parser import text_string_to_metric_families


async def scrape(service) -> dict[tuple[str, tuple], float]:
    response = await service.http.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


async def test_metrics_show_connected_readers_delivered_events_and_post_latency(service):
    await service.create_blog()
    async with service.live() as first, service.live() as second:
        await receive(first), await receive(second)
        async with service.http.stream("GET", "/api/v1/blogs/ukraine/events") as sse:
            assert sse.status_code == 200
            during = await scrape(service)
        before_post = time.time()
        await service.post(body="<p>one</p>")
        await receive(first), await receive(second)
        after = await scrape(service)
        after_scrape = time.time()

    assert during[("liveblog_readers", (("transport", "websocket"),))] == 2
    assert during[("liveblog_readers", (("transport", "sse"),))] == 1
    assert after[("liveblog_events_delivered_total", ())] >= 2
    assert after[("liveblog_post_seconds_count", ())] == 1
    assert after[("liveblog_fanout_seconds_count", ())] == 1  # one event, read once, for both readers
    # The tailer read the event some time after it was posted, and before we scraped (its log id
    # counts whole milliseconds: the event may look up to 1 ms older than it is).
    assert 0 < after[("liveblog_tailer_lag_seconds", ())] <= after_scrape - before_post + 0.001
    assert after[("liveblog_slow_reader_closes_total", ())] == 0


async def test_metrics_show_the_process_memory_descriptors_and_full_gc_pauses(service):
    before = await scrape(service)
    gc.collect()  # the server runs in this process: a full collection stops it too
    after = await scrape(service)
    assert after[("process_resident_memory_bytes", ())] > 10 * 2**20
    assert after[("process_open_fds", ())] > 3
    assert after[("liveblog_gc_pause_seconds_count", ())] >= before[("liveblog_gc_pause_seconds_count", ())] + 1
