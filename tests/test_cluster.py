"""The core story against a real 3-primary Redis Cluster (redis+cluster://): blogs land on
different shards, and each shard's logs are tailed."""

from __future__ import annotations

import random
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as sync_redis
from conftest import UNLIMITED, receive, running_service

from liveblog.embedded import EmbeddedRedis, redis_server_binary


def _free_port() -> int:
    """A free port whose cluster bus port (+10000) is free and valid too."""
    rng = random.Random()
    while True:
        port = rng.randrange(20_000, 30_000)
        try:
            with socket.socket() as data, socket.socket() as bus:
                data.bind(("127.0.0.1", port))
                bus.bind(("127.0.0.1", port + 10_000))
            return port
        except OSError:
            continue


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[int]]:
    ports = [_free_port() for _ in range(3)]
    nodes = [
        EmbeddedRedis(
            tmp_path_factory.mktemp(f"node{port}"),
            port=port,
            appendonly=False,
            extra=("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
        ).start()
        for port in ports
    ]
    try:
        redis_cli = str(Path(redis_server_binary()).with_name("redis-cli"))
        subprocess.run(
            [redis_cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports), "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=30,
        )
        deadline = time.monotonic() + 20
        while not all(_cluster_ok(port) for port in ports):
            assert time.monotonic() < deadline, "the cluster never reached cluster_state:ok"
            time.sleep(0.1)
        yield ports
    finally:
        for node in nodes:
            node.stop()


def _cluster_ok(port: int) -> bool:
    with sync_redis.Redis(port=port) as client:
        return client.cluster("info").get("cluster_state") == "ok"


async def test_the_core_story_runs_on_a_redis_cluster(cluster):
    async with running_service(f"redis+cluster://127.0.0.1:{cluster[0]}", UNLIMITED) as service:
        blogs = [f"story-{i}" for i in range(8)]
        store = service.app.state.store
        assert len({store.node_of(blog) for blog in blogs}) >= 2, "the blogs should span shards"
        for blog in blogs:
            await service.create_blog(blog)
        token = (await service.mint(role="reporter", blogs=tuple(blogs)))["token"]
        listed = await service.http.get("/api/v1/blogs", headers=service.auth())
        assert sorted(b["id"] for b in listed.json()["blogs"]) == sorted(blogs)

        readers = [await service.live(blog).__aenter__() for blog in blogs]
        try:
            for reader in readers:
                assert (await receive(reader))["type"] == "snapshot"
            posted = {blog: await service.post(blog, token=token, body=f"<p>{blog}</p>") for blog in blogs}
            for blog, reader in zip(blogs, readers, strict=True):
                event = await receive(reader)
                assert event["entry"]["id"] == posted[blog]["id"]

            blog, entry = blogs[0], posted[blogs[0]]
            edited = await service.http.patch(
                f"/api/v1/blogs/{blog}/entries/{entry['id']}",
                json={"body": "<p>corrected</p>"},
                headers={**service.auth(token), "If-Match": '"1"'},
            )
            assert edited.status_code == 200
            assert (await receive(readers[0]))["event"] == "entry.updated"
            replay = await service.http.post(
                f"/api/v1/blogs/{blog}/entries",
                json={"body": "<p>once</p>"},
                headers={**service.auth(token), "Idempotency-Key": "k1"},
            )
            again = await service.http.post(
                f"/api/v1/blogs/{blog}/entries",
                json={"body": "<p>once</p>"},
                headers={**service.auth(token), "Idempotency-Key": "k1"},
            )
            assert replay.json()["id"] == again.json()["id"]
        finally:
            for reader in readers:
                await reader.close()
        stream = await service.stream(blog)
        assert [e["event"] for e in stream] == ["entry.created", "entry.updated", "entry.created"]
