"""Anonymous reads cannot grow the process without bound (issue 13, point 1).

A real ``liveblog serve`` holds a blog of long entries; anonymous readers then ask for every
page, feed, embed and API listing with every combination of parameters (each one a new cache
key). The process's resident memory stays within a budget above what it used when idle, and
after the flood the caches give back what they held and the process shrinks back.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import httpx
import pytest
from conftest import ADMIN_TOKEN, Served

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
#: Above idle, whatever the flood; the caches' budgets add up to less (pages 32 MiB, rendered
#: entries 32 MiB), the rest is the allocator's slack.
BUDGET_BYTES = 100 << 20
REQUESTS = 4000


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _cache_bytes(metrics: str, cache: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(f'liveblog_cache_bytes{{cache="{cache}"}}'):
            return float(line.split()[-1])
    raise AssertionError(f"no liveblog_cache_bytes for {cache}")


def _urls(entry_ids: list[str], cursor: str, rng: random.Random) -> list[tuple[str, dict[str, str]]]:
    def word() -> str:
        return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(1, 40)))

    urls: list[tuple[str, dict[str, str]]] = []
    for _ in range(REQUESTS):
        before = rng.choice([*entry_ids, word()])
        choice = rng.randrange(8)
        if choice == 0:
            urls.append(("/blogs/live", {"before": before, "tag": word()}))
        elif choice == 1:
            urls.append(("/blogs/live", {"tag": word()}))
        elif choice == 2:
            limit = str(rng.randint(1, 100))
            urls.append(("/api/v1/blogs/live/entries", {"limit": limit, "before": before, "tag": word()}))
        elif choice == 3:
            urls.append(("/api/v1/blogs/live/entries", {"since": cursor, "limit": str(rng.randint(1, 1000))}))
        elif choice == 4:
            options = {"theme": rng.choice(["light", "dark", "auto"]), "order": rng.choice(["newest", "oldest"])}
            urls.append(("/embed/live", {**options, "limit": str(rng.randint(1, 100))}))
        elif choice == 5:
            urls.append((f"/blogs/live/entries/{rng.choice(entry_ids)}", {"x": word()}))
        elif choice == 6:
            urls.append((rng.choice(["/blogs/live/feed.atom", "/blogs/live/feed.json"]), {"cursor": word()}))
        else:
            urls.append(
                ("/oembed", {"url": f"http://127.0.0.1/blogs/live?{word()}", "maxwidth": str(rng.randint(1, 9999))})
            )
    return urls


@pytest.mark.slow
async def test_a_flood_of_anonymous_reads_over_every_parameter_stays_within_the_memory_budget(
    tmp_path: Path, redis_server
):
    env = {"LIVEBLOG_REDIS_URL": redis_server.url, "LIVEBLOG_ADMIN_TOKEN": ADMIN_TOKEN}
    served = await asyncio.to_thread(Served, tmp_path / "data", env)
    try:
        async with httpx.AsyncClient(base_url=served.url, timeout=30) as http:
            assert (await http.post("/api/v1/blogs", json={"id": "live", "title": "Live"}, headers=ADMIN)).is_success
            long_body = "<p>" + "Witnesses describe the scene near the station. " * 300 + "</p>"  # ~14 KB
            entry_ids = []
            for i in range(20):
                body = {"body": long_body, "headline": f"Update {i}", "tags": [f"tag{i % 4}"]}
                posted = await http.post("/api/v1/blogs/live/entries", json=body, headers=ADMIN)
                entry_ids.append(posted.json()["id"])
            cursor = (await http.get("/api/v1/blogs/live/entries", params={"limit": "1"})).json()["cursor"]
            urls = _urls(entry_ids, cursor, random.Random(13))
            for path, params in urls[:40]:  # warm up: every kind of response has been made once
                await http.get(path, params=params)
            idle = _rss(served.process.pid)

            statuses: list[int] = []
            peak = idle
            pending = iter(urls)

            async def reader() -> None:
                nonlocal peak
                for path, params in pending:
                    statuses.append((await http.get(path, params=params)).status_code)
                    if len(statuses) % 100 == 0:
                        peak = max(peak, _rss(served.process.pid))

            await asyncio.gather(*(reader() for _ in range(16)))
            assert all(status < 500 for status in statuses), sorted(set(statuses))
            assert sum(status == 200 for status in statuses) > REQUESTS // 2
            grown = peak - idle
            print(f"\nRSS idle {idle >> 20} MiB, peak {peak >> 20} MiB (+{grown >> 20} MiB) over {REQUESTS} reads")
            assert grown <= BUDGET_BYTES, f"RSS grew by {grown >> 20} MiB"
            assert (await http.get("/healthz")).status_code == 200

            # The flood is over and nobody asks again: the sweeper frees every page it left.
            while _cache_bytes((await http.get("/metrics")).text, "pages") > 0:
                await asyncio.sleep(0.2)  # poll the gauge: waiting for the sweep, not for time
            after = _rss(served.process.pid)
            print(f"RSS after the sweep {after >> 20} MiB")
            assert after - idle <= grown // 2, f"RSS {after >> 20} MiB after the flood, {idle >> 20} MiB before"
    finally:
        await asyncio.to_thread(served.stop)
