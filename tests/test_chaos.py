"""The chaos story: 100 readers that come and go, 1,000 changes, one app restart and one Redis
restart in the middle, and at the end every reader holds exactly the log from where it joined.

Set LIVEBLOG_CHAOS_SEED to replay a failing run; the seed is printed either way.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from pathlib import Path

import httpx
import pytest
import websockets
from conftest import ADMIN_TOKEN, Served
from test_faults import raise_failed, reconnect_after, stop

from liveblog.embedded import EmbeddedRedis

pytestmark = pytest.mark.slow

READERS = 100
CHANGES = 1000
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


class FlakyReader:
    """A phone on a bad network: joins late, drops at random, resumes with its last cursor. It
    is dropped by the server only as the contract says (see :func:`test_faults.reconnect_after`;
    ``cut``: the servers the test took down)."""

    def __init__(self, urls: list[str], cut: set[str], rng: random.Random):
        self.urls = urls
        self.cut = cut
        self.rng = rng
        self.cursor: str | None = None
        self.joined_at: str | None = None
        self.snapshots = 0
        self.received: list[tuple[str, str, dict]] = []
        self.connections = 0

    async def run(self) -> None:
        await asyncio.sleep(self.rng.random() * 2)
        while True:
            url = f"{self.urls[-1]}/api/v1/blogs/chaos/live" + (f"?cursor={self.cursor}" if self.cursor else "")
            try:
                async with websockets.connect(url, open_timeout=5) as ws:
                    self.connections += 1
                    try:
                        async with asyncio.timeout(self.rng.uniform(0.2, 3.0)):
                            while True:
                                self._take(json.loads(await ws.recv()))
                    except TimeoutError:
                        pass  # time to drop, as phones do
            except Exception as error:  # sorted out by reconnect_after
                reconnect_after(error, url, self.cut)
            await asyncio.sleep(self.rng.random() * 0.3)

    def _take(self, message: dict) -> None:
        if message["type"] == "viewers":
            return
        if message["type"] == "snapshot":
            self.snapshots += 1
            self.joined_at = self.joined_at or message["cursor"]
        elif message["type"] == "event":
            self.received.append((message["cursor"], message["event"], message.get("entry") or message.get("blog")))
        self.cursor = message["cursor"]


class Reporter:
    """Posts, edits and deletes through whatever is up, retrying each change until it lands once:
    after a 503 (Redis is away) or when the test took the server it tried down (``cut``)."""

    def __init__(self, urls: list[str], cut: set[str], rng: random.Random):
        self.urls = urls
        self.cut = cut
        self.rng = rng
        self.live: dict[str, int] = {}  # entry id -> version
        self.retries = 0
        self.done = 0
        self.http = httpx.AsyncClient(timeout=5)

    async def _send(self, method: str, path: str, **kwargs) -> httpx.Response:
        while True:
            url = self.urls[-1]
            try:
                response = await self.http.request(method, url.replace("ws://", "http://") + path, **kwargs)
                if response.status_code != 503:
                    return response
            except httpx.TransportError:
                if url not in self.cut:
                    raise
            self.retries += 1
            await asyncio.sleep(0.05)

    async def run(self) -> None:
        async with self.http:
            for i in range(CHANGES):
                await self.change(i)
                self.done += 1

    async def change(self, i: int) -> None:
        roll = self.rng.random()
        if self.live and roll < 0.15:
            entry_id = self.rng.choice(sorted(self.live))
            version = self.live[entry_id]
            headers = {**ADMIN, "If-Match": f'"{version}"'}
            path = f"/api/v1/blogs/chaos/entries/{entry_id}"
            response = await self._send("PATCH", path, json={"body": f"<p>correction {i}</p>"}, headers=headers)
            assert response.status_code in (200, 412), response.text  # 412: our earlier try had landed
            self.live[entry_id] = version + 1
        elif self.live and roll < 0.2:
            entry_id = self.rng.choice(sorted(self.live))
            headers = {**ADMIN, "If-Match": f'"{self.live.pop(entry_id)}"'}
            response = await self._send("DELETE", f"/api/v1/blogs/chaos/entries/{entry_id}", headers=headers)
            assert response.status_code in (204, 404), response.text  # 404: our earlier try had landed
        else:
            headers = {**ADMIN, "Idempotency-Key": f"change-{i}"}
            body = {"body": f"<p>update {i}</p>", "headline": f"#{i}"}
            response = await self._send("POST", "/api/v1/blogs/chaos/entries", json=body, headers=headers)
            assert response.status_code == 201, response.text
            self.live[response.json()["id"]] = 1


async def _log(base_url: str) -> list[tuple[str, str, dict]]:
    async with httpx.AsyncClient(base_url=base_url) as http:
        epoch = (await http.get("/api/v1/blogs/chaos/entries")).json()["cursor"].split(".")[0]
        cursor, log = f"{epoch}.0-0", []
        while events := (await http.get("/api/v1/blogs/chaos/entries", params={"since": cursor})).json()["events"]:
            log += [(e["cursor"], e["event"], e.get("entry") or e.get("blog")) for e in events]
            cursor = events[-1]["cursor"]
        return log


async def _reached(reporter: Reporter, tasks: list[asyncio.Task], changes: int) -> None:
    while reporter.done < changes:
        raise_failed(tasks)  # the reporter or a reader failed: say why, rather than wait for it forever
        await asyncio.sleep(0.01)


async def test_readers_come_and_go_through_restarts_and_each_ends_with_the_exact_log(tmp_path: Path):
    seed = int(os.environ.get("LIVEBLOG_CHAOS_SEED", random.randrange(2**32)))
    print(f"\nchaos seed: {seed} (replay with LIVEBLOG_CHAOS_SEED={seed})")
    rng = random.Random(seed)
    redis = EmbeddedRedis(tmp_path / "redis").start()
    env = {"LIVEBLOG_REDIS_URL": redis.url, "LIVEBLOG_ADMIN_TOKEN": ADMIN_TOKEN}
    env |= {"LIVEBLOG_CONNECTS_PER_IP_PER_SECOND": "100000", "LIVEBLOG_WRITES_PER_TOKEN_PER_SECOND": "100000"}
    app = await asyncio.to_thread(Served, tmp_path / "app", env)
    apps = [app]
    urls, cut = [app.ws_url], set()
    readers = [FlakyReader(urls, cut, random.Random(rng.random())) for _ in range(READERS)]
    reporter = Reporter(urls, cut, random.Random(rng.random()))
    tasks: list[asyncio.Task] = []
    try:
        assert app.http.post("/api/v1/blogs", json={"id": "chaos", "title": "Chaos"}, headers=ADMIN).status_code == 201
        tasks = [asyncio.create_task(reader.run()) for reader in readers]
        reporting = asyncio.create_task(reporter.run())
        tasks.append(reporting)
        await _reached(reporter, tasks, CHANGES // 3)  # a deploy: the app stops gracefully, a new one starts
        cut.add(app.ws_url)
        await asyncio.to_thread(app.stop)  # in a thread: readers and the reporter carry on meanwhile
        app = await asyncio.to_thread(Served, tmp_path / "app", env)
        apps.append(app)
        urls.append(app.ws_url)
        await _reached(reporter, tasks, 2 * CHANGES // 3)  # Redis crashes, and is back on its AOF a little later
        redis.kill()
        await asyncio.sleep(0.5)
        redis.start()
        await _reached(reporter, tasks, CHANGES)
        await reporting
        log = await _log(app.url)
        last = log[-1][0]
        for _ in range(600):
            raise_failed(tasks)
            if all(r.cursor == last for r in readers):
                break
            await asyncio.sleep(0.05)
    finally:
        try:
            await stop(tasks)  # a reader or the reporter that had failed fails the test here
        finally:
            app.stop()
            redis.stop()
            print("app logs:\n" + "\n".join(served.text for served in apps))  # shown when the test fails

    cursors = [cursor for cursor, _, _ in log]
    lost = duplicated = out_of_order = 0
    for reader in readers:
        expected = log[cursors.index(reader.joined_at) + 1 :] if reader.joined_at in cursors else log
        got = [c for c, _, _ in reader.received]
        lost += len(set(c for c, _, _ in expected) - set(got))
        duplicated += len(got) - len(set(got))
        out_of_order += got != sorted(got, key=cursors.index)
    print(
        f"chaos: {len(log)} events, {READERS} readers, {sum(r.connections for r in readers)} connections, "
        f"{sum(len(r.received) for r in readers)} deliveries, {reporter.retries} reporter retries; "
        f"lost {lost}, duplicated {duplicated}, out of order {out_of_order}"
    )
    assert (lost, duplicated, out_of_order) == (0, 0, 0)
    for reader in readers:
        expected = log[cursors.index(reader.joined_at) + 1 :] if reader.joined_at in cursors else log
        assert reader.received == expected, f"reader diverged from the log (seed {seed})"
        assert reader.snapshots == 1, "a reader with a resumable cursor never needs a second snapshot"
