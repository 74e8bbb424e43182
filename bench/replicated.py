"""What ``LIVEBLOG_REDIS_MIN_REPLICAS`` costs a reporter: POST latency with and without WAIT.

Run it by hand from the repository, in the project's virtualenv::

    python bench/replicated.py [--posts 2000]

A primary and one replica (the embedded redis-server, on 127.0.0.1 ports) and the service in
this process, once with ``LIVEBLOG_REDIS_MIN_REPLICAS=0`` and once with ``1``; one reporter posts
``--posts`` entries one after another, each with an Idempotency-Key, while one live reader
follows. It prints POST p50/p99/max and the post-to-reader p50/p99 (the tailer's fence) for both.
Everything is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import httpx
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import ADMIN_TOKEN, UNLIMITED, running_service  # noqa: E402

from liveblog.embedded import EmbeddedRedis  # noqa: E402


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _quantiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    return (
        f"p50 {statistics.median(ordered) * 1000:6.2f} ms  p99 {p99 * 1000:6.2f} ms  max {ordered[-1] * 1000:6.2f} ms"
    )


async def _run(url: str, min_replicas: int, posts: int) -> tuple[list[float], list[float]]:
    settings = replace(UNLIMITED, redis_min_replicas=min_replicas)
    async with running_service(url, settings) as service:
        blog = f"bench{min_replicas}"
        await service.create_blog(blog)
        sent: dict[str, float] = {}
        delivered: list[float] = []
        async with websockets.connect(f"{service.ws_url}/api/v1/blogs/{blog}/live") as reader:
            await reader.recv()  # the snapshot

            async def read() -> None:
                while len(delivered) < posts:
                    message = json.loads(await reader.recv())
                    if message.get("event") == "entry.created":
                        delivered.append(time.perf_counter() - sent[message["entry"]["body"]])

            reading = asyncio.create_task(read())
            latencies = []
            auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            async with httpx.AsyncClient(base_url=service.base_url) as http:
                for n in range(posts):
                    body = f"<p>post {n}</p>"
                    sent[body] = started = time.perf_counter()
                    response = await http.post(
                        f"/api/v1/blogs/{blog}/entries",
                        json={"body": body},
                        headers={**auth, "Idempotency-Key": f"p{n}"},
                    )
                    latencies.append(time.perf_counter() - started)
                    response.raise_for_status()
            await asyncio.wait_for(reading, 30)
        return latencies, delivered


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        primary_port, replica_port = _port(), _port()
        with (
            EmbeddedRedis(Path(tmp) / "primary", port=primary_port) as primary,
            EmbeddedRedis(
                Path(tmp) / "replica", port=replica_port, extra=("--replicaof", "127.0.0.1", str(primary_port))
            ),
        ):
            for min_replicas in (0, 1):
                posted, delivered = await _run(primary.url, min_replicas, args.posts)
                print(f"MIN_REPLICAS={min_replicas}  POST        {_quantiles(posted)}")
                print(f"MIN_REPLICAS={min_replicas}  to reader   {_quantiles(delivered)}")


if __name__ == "__main__":
    asyncio.run(main())
