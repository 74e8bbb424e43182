"""Scheduled entries go out at their time, once, whichever processes are alive.

Three real ``liveblog serve`` processes share one Redis; the one that accepted the schedule is
SIGKILLed before the time comes. A reader connected throughout must get each scheduled entry
exactly once, and the blog's log must hold exactly one ``entry.created`` for each.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import websockets
from conftest import ADMIN_TOKEN, RECV_TIMEOUT, UNLIMITED, Served, receive, running_service
from test_faults import _stream

from liveblog.scheduler import Scheduler

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
#: Poll fast, so the test waits little; the default (0.25 s) is what "within a second" is made of.
FAST = {"LIVEBLOG_SCHEDULE_INTERVAL": "0.05"}


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _metric(served: Served, name: str) -> float:
    for line in httpx.get(f"{served.url}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


@pytest.mark.slow
async def test_three_processes_publish_each_due_entry_once_even_after_the_scheduling_one_died(
    tmp_path: Path, redis_server
):
    env = {"LIVEBLOG_REDIS_URL": redis_server.url, "LIVEBLOG_ADMIN_TOKEN": ADMIN_TOKEN, **FAST}
    servers = await asyncio.gather(*(asyncio.to_thread(Served, tmp_path / name, env) for name in "abc"))
    accepting, *others = servers
    try:
        assert accepting.http.post("/api/v1/blogs", json={"id": "ukraine", "title": "Live"}, headers=ADMIN).is_success
        reader_url = f"{others[-1].ws_url}/api/v1/blogs/ukraine/live"
        async with websockets.connect(reader_url, open_timeout=RECV_TIMEOUT) as reader:
            assert (await receive(reader))["type"] == "snapshot"
            soon = datetime.now(UTC) + timedelta(seconds=2)
            scheduled = []
            for i in range(5):
                body = {
                    "body": f"<p>Summary {i}</p>",
                    "status": "scheduled",
                    "publish_at": _iso(soon + timedelta(milliseconds=100 * i)),
                }
                response = accepting.http.post("/api/v1/blogs/ukraine/entries", json=body, headers=ADMIN)
                assert response.status_code == 201, response.text
                assert response.json()["status"] == "scheduled"
                scheduled.append(response.json())
            await asyncio.to_thread(accepting.kill)  # before any of them is due

            arrived = []
            while len(arrived) < len(scheduled):
                message = await receive(reader, timeout=30)
                if message["type"] == "event":
                    arrived.append(message)
        log = await _stream(others[0].url)
        published_by = [_metric(server, "liveblog_scheduled_published_total") for server in others]
    finally:
        for server in others:
            server.stop()

    ids = [entry["id"] for entry in scheduled]
    assert [m["event"] for m in arrived] == ["entry.created"] * 5
    assert sorted(m["entry"]["id"] for m in arrived) == sorted(ids)
    assert [e["entry"]["id"] for e in log if e["event"] == "entry.created"].count(ids[0]) == 1
    assert sorted(e["entry"]["id"] for e in log) == sorted(ids), "each went out once, and nothing else was logged"
    assert sum(published_by) == 5
    for message, entry in zip(
        sorted(arrived, key=lambda m: m["entry"]["id"]), sorted(scheduled, key=lambda e: e["id"]), strict=True
    ):
        went_out = message["entry"]
        assert went_out["status"] == "published" and went_out["publish_at"] is None
        assert _utc(went_out["published_at"]) >= _utc(entry["publish_at"]), "never early"
        assert went_out["time"] == went_out["published_at"], "shown at the time it went out"


async def test_a_stale_schedule_index_costs_one_look_and_publishes_nothing_twice(redis_server):
    """The index is only a hint: members for entries that went out, were unscheduled or never
    stored are dropped; one for a rescheduled entry moves to its new time."""
    idle = replace(UNLIMITED, schedule_interval=3600)  # the service's own scheduler looks once, at start
    async with running_service(redis_server.url, idle) as service:
        await service.create_blog()
        store = service.services.store
        later = datetime.now(UTC) + timedelta(hours=1)
        entry = await service.post(status="scheduled", publish_at=_iso(later))
        ghost = "0000000000000"
        await store.schedule("ukraine", ghost, datetime.now(UTC) - timedelta(seconds=1))
        # Pretend the index says the real entry is due already (a reschedule raced a look).
        await store.schedule("ukraine", entry["id"], datetime.now(UTC) - timedelta(seconds=1))
        _, due = await store.due(10)
        assert {d.entry for d in due} == {ghost, entry["id"]}

        scheduler = Scheduler(store, service.services.metrics, 1.0, published=lambda blog: None)
        assert await scheduler.tick() == 0
        _, due = await store.due(10)
        assert due == []
        raw = await store.redis.zscore("liveblog:schedule", f"ukraine {entry['id']}")
        assert int(raw) == int(later.timestamp() * 1000), "moved back to the entry's own time"
        assert await store.redis.zscore("liveblog:schedule", f"ukraine {ghost}") is None
