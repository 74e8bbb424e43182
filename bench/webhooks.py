"""Webhook benchmark: what webhooks cost a reporter's POST, and how fast events reach a receiver.

Run it by hand from the repository, in the project's virtualenv::

    python bench/webhooks.py [--posts 500] [--rate 50] [--webhooks 3]

What happens: ``liveblog serve --port 0`` starts in a temporary data dir (its own embedded
redis-server) with ``LIVEBLOG_WEBHOOK_HOSTS=127.0.0.1`` and the default poll interval. A local
HTTP receiver (asyncio, keep-alive, answers 204) listens on 127.0.0.1. Blog ``plain`` has no
webhook, blog ``hooked`` has ``--webhooks`` of them (every event type). ``--posts`` entries are
posted to each blog at ``--rate`` per second. It prints the POST latency of each blog (p50/p99),
and for ``hooked`` the post-to-receipt latency of the events (p50/p99/max) and how many arrived,
once per webhook. Everything is bounded in time and stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ADMIN = "bench-admin-token"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class Receiver:
    def __init__(self) -> None:
        self.arrived: dict[str, list[float]] = {}

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
                event = json.loads(await reader.readexactly(length))
                self.arrived.setdefault(event["entry"]["id"], []).append(time.monotonic())
                writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            writer.close()


async def post_all(http: httpx.AsyncClient, blog: str, posts: int, rate: float) -> tuple[list[float], dict[str, float]]:
    latencies, sent = [], {}
    start = time.monotonic()
    for i in range(posts):
        await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
        began = time.monotonic()
        response = await http.post(f"/api/v1/blogs/{blog}/entries", json={"body": f"<p>update {i}</p>"})
        response.raise_for_status()
        latencies.append(time.monotonic() - began)
        sent[response.json()["id"]] = began
    return latencies, sent


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=500)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--webhooks", type=int, default=3)
    args = parser.parse_args()
    receiver = Receiver()
    port = await receiver.start()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "LIVEBLOG_ADMIN_TOKEN": ADMIN, "LIVEBLOG_WEBHOOK_HOSTS": "127.0.0.1"}
        env["LIVEBLOG_WRITES_PER_TOKEN_PER_SECOND"] = "100000"
        env["LIVEBLOG_ACCESS_LOG"] = "0"
        output = Path(tmp) / "server.out"
        with open(output, "wb") as out:  # a file, not a pipe: a pipe nobody reads would stall the server
            server = subprocess.Popen(
                [sys.executable, "-m", "liveblog.cli", "serve", "--port", "0", "--data-dir", str(Path(tmp) / "data")],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            url = ""
            while not url:
                if server.poll() is not None:
                    raise RuntimeError("liveblog serve exited:\n" + output.read_text())
                if match := re.search(r"serving on (http://\S+)", output.read_text()):
                    url = match.group(1)
                await asyncio.sleep(0.05)
            async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}) as http:
                for blog in ("plain", "hooked"):
                    (await http.post("/api/v1/blogs", json={"id": blog, "title": blog})).raise_for_status()
                for i in range(args.webhooks):
                    hook = {"url": f"http://127.0.0.1:{port}/hook/{i}", "events": ["entry.published"]}
                    (await http.post("/api/v1/blogs/hooked/webhooks", json=hook)).raise_for_status()
                plain, _ = await post_all(http, "plain", args.posts, args.rate)
                hooked, sent = await post_all(http, "hooked", args.posts, args.rate)
                deadline = time.monotonic() + 30
                while (
                    time.monotonic() < deadline and sum(map(len, receiver.arrived.values())) < len(sent) * args.webhooks
                ):
                    await asyncio.sleep(0.05)
        finally:
            server.terminate()
            server.wait(20)
            problems = [line for line in output.read_text().splitlines() if "WARNING" in line or "ERROR" in line]
            print("\n".join(problems[:10]) or "no warnings or errors logged")
    delays = [at - sent[entry] for entry, times in receiver.arrived.items() if entry in sent for at in times]
    ms = 1000
    print(f"{args.posts} posts per blog at {args.rate}/s, {args.webhooks} webhooks on 'hooked'")
    print(f"POST p50/p99, no webhooks:   {percentile(plain, 0.5) * ms:.2f} / {percentile(plain, 0.99) * ms:.2f} ms")
    print(f"POST p50/p99, with webhooks: {percentile(hooked, 0.5) * ms:.2f} / {percentile(hooked, 0.99) * ms:.2f} ms")
    print(f"deliveries arrived: {len(delays)} of {len(sent) * args.webhooks}")
    print(
        f"post -> receipt p50/p99/max: {percentile(delays, 0.5) * ms:.0f} / {percentile(delays, 0.99) * ms:.0f} / "
        f"{max(delays, default=float('nan')) * ms:.0f} ms"
    )


if __name__ == "__main__":
    asyncio.run(main())
