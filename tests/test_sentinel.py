"""Redis high availability: a Sentinel-managed primary with a replica, and writes acknowledged only
once a replica has them (``LIVEBLOG_REDIS_MIN_REPLICAS``).

Everything is real: redis-server processes for the primary, the replica and three sentinels (the
embedded binary, ``--sentinel``), ``liveblog serve`` in a child process, WebSocket readers and a
reporter that retries as liveblog's own client does.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis as sync_redis
import redis.asyncio as async_redis
import yaml
from conftest import ADMIN_TOKEN, UNLIMITED, Served, free_port, receive, running_service

from liveblog import keys
from liveblog.client import AsyncClient, BlogCreate, EntryCreate, EntryEvent, Retry, Snapshot
from liveblog.config import Settings
from liveblog.config import sentinel_url as config_sentinel_url
from liveblog.embedded import EmbeddedRedis, die_with_parent, redis_server_binary
from liveblog.logreader import LogReader

SERVICE = "liveblog-primary"
#: How long the setup may take to settle (replication, sentinels finding each other, a failover):
#: a bound against hanging, not a measure of speed.
SETTLE = 60.0


def wait_until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + SETTLE
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.05)


def info(port: int, section: str) -> dict[str, object]:
    try:
        with sync_redis.Redis(port=port, socket_timeout=1) as client:
            return dict(client.info(section))
    except sync_redis.ConnectionError:
        return {}


def replica_of(data_dir: Path, port: int, primary: int) -> EmbeddedRedis:
    return EmbeddedRedis(data_dir, port=port, extra=("--replicaof", "127.0.0.1", str(primary)))


def linked(replica: int) -> bool:
    return info(replica, "replication").get("master_link_status") == "up"


class SentinelProcess:
    """One ``redis-server --sentinel`` watching the primary, with failover timeouts kept small."""

    def __init__(self, data_dir: Path, primary: int):
        data_dir.mkdir(parents=True)
        self.port = free_port()
        config = data_dir / "sentinel.conf"
        config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {data_dir}\nlogfile {data_dir / 'sentinel.log'}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {primary} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 2000\n"
        )
        self.process = subprocess.Popen(
            [redis_server_binary(), str(config), "--sentinel"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )

    def primary(self) -> int | None:
        try:
            with sync_redis.Redis(port=self.port, socket_timeout=1) as client:
                address = client.sentinel_get_master_addr_by_name(SERVICE)
        except sync_redis.ConnectionError:
            return None
        return int(address[1]) if address else None

    def sees_everyone(self) -> bool:
        try:
            with sync_redis.Redis(port=self.port, socket_timeout=1) as client:
                state = client.sentinel_master(SERVICE)
        except (sync_redis.ConnectionError, sync_redis.ResponseError):
            return False
        return int(state["num-slaves"]) >= 1 and int(state["num-other-sentinels"]) >= 2

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture
def sentinels_topology(tmp_path: Path) -> Iterator[tuple[EmbeddedRedis, EmbeddedRedis, list[SentinelProcess]]]:
    """A primary, its replica, and three sentinels that agree on both."""
    primary_port, replica_port = free_port(), free_port()
    with EmbeddedRedis(tmp_path / "primary", port=primary_port) as primary:
        replica = replica_of(tmp_path / "replica", replica_port, primary_port).start()
        sentinels: list[SentinelProcess] = []
        try:
            wait_until(lambda: linked(replica_port), "the replica is in sync")
            sentinels = [SentinelProcess(tmp_path / f"sentinel{n}", primary_port) for n in range(3)]
            for sentinel in sentinels:
                wait_until(sentinel.sees_everyone, f"sentinel {sentinel.port} knows the replica and its peers")
            yield primary, replica, sentinels
        finally:
            for sentinel in sentinels:
                sentinel.stop()
            replica.stop()


def write_only_on(primary: EmbeddedRedis, replica: EmbeddedRedis) -> socket.socket:
    """Cut the replica off: stall it (DEBUG SLEEP, shorter than the sentinels' down-after) so that
    it cannot reconnect at once, and drop its link on the primary, so that nothing written now
    leaves the primary (not even into the replica's socket buffer). Return once the primary has
    logged an event since; the stalled replica's connection is returned, to close."""
    with sync_redis.Redis(port=primary.port) as direct:
        stall = socket.create_connection(("127.0.0.1", replica.port))
        stall.sendall(b"DEBUG SLEEP 0.8\r\n")  # not read: it answers when it wakes
        direct.client_kill_filter(_type="slave")  # "replica" is unknown to redis-py 6.0
        before = direct.xlen(keys.log("ukraine"))
        while direct.xlen(keys.log("ukraine")) == before:
            time.sleep(0.002)
    return stall


def sentinel_url(sentinels: list[SentinelProcess]) -> str:
    return "redis+sentinel://" + ",".join(f"127.0.0.1:{s.port}" for s in sentinels) + f"/{SERVICE}"


async def follow(client: AsyncClient, seen: list[str], snapshots: list[Snapshot]) -> None:
    """A reader: every snapshot and entry.created it is handed, in order, until cancelled."""
    async for message in client.follow("ukraine"):
        if isinstance(message, Snapshot):
            snapshots.append(message)
        elif isinstance(message, EntryEvent) and message.event == "entry.created":
            seen.append(message.entry.id)


@pytest.mark.slow
async def test_primary_killed_mid_stream_loses_no_acknowledged_entry_and_readers_see_each_once(
    sentinels_topology: tuple[EmbeddedRedis, EmbeddedRedis, list[SentinelProcess]], tmp_path: Path
) -> None:
    primary, replica, sentinels = sentinels_topology
    env = {
        "LIVEBLOG_REDIS_URL": sentinel_url(sentinels),
        "LIVEBLOG_REDIS_MIN_REPLICAS": "1",
        "LIVEBLOG_ADMIN_TOKEN": ADMIN_TOKEN,
        "LIVEBLOG_WRITES_PER_TOKEN_PER_SECOND": "1000",
        "LIVEBLOG_CONNECTS_PER_IP_PER_SECOND": "1000",
    }
    served = Served(tmp_path / "data", env=env)
    # Clients that keep retrying through the failover and the wait for a replica, as a patient
    # reporter's and reader's would.
    patient = Retry(attempts=80, base=0.05, cap=1.0)
    acknowledged: list[str] = []
    readers: list[tuple[list[str], list[Snapshot]]] = [([], []) for _ in range(3)]
    try:
        async with AsyncClient(served.url, ADMIN_TOKEN, retry=patient) as reporter:
            await reporter.create_blog(BlogCreate(id="ukraine", title="Live"))
            following = [asyncio.create_task(follow(reporter, seen, snaps)) for seen, snaps in readers]
            while not all(snaps for _, snaps in readers):  # each reader has its snapshot: it is live
                await asyncio.sleep(0.01)

            async def post(numbers: range) -> None:
                for n in numbers:
                    entry = await reporter.post(
                        "ukraine", EntryCreate(body=f"<p>update {n}</p>"), idempotency_key=f"update-{n}"
                    )
                    acknowledged.append(entry.id)

            posting = asyncio.create_task(post(range(TOTAL)))
            while len(acknowledged) < 15:
                await asyncio.sleep(0.01)
            # The worst moment: the replica has fallen behind and the primary has taken a write
            # the replica lacks. Then SIGKILL the primary, mid-stream.
            stall = await asyncio.to_thread(write_only_on, primary, replica)
            primary.kill()
            stall.close()
            assert len(acknowledged) < TOTAL
            await asyncio.to_thread(
                wait_until, lambda: all(s.primary() == replica.port for s in sentinels), "the replica is promoted"
            )
            # The dead host comes back; the sentinels make it the new primary's replica, and
            # writes are acknowledged again once it has them.
            old = replica_of(primary.data_dir, primary.port, replica.port).start()
            try:
                await asyncio.wait_for(posting, SETTLE)
                # Every acknowledged entry is there, once: no retry made a second one.
                # (The service is another process: a blocking request here holds up nothing it needs.)
                listing = served.http.get("/api/v1/blogs/ukraine/entries", params={"limit": 100})
                assert listing.status_code == 200, listing.text
                listed = listing.json()["entries"]
                assert sorted(entry["id"] for entry in listed) == sorted(acknowledged)
                assert sorted(entry["body"] for entry in listed) == sorted(f"<p>update {n}</p>" for n in range(TOTAL))
                deadline = time.monotonic() + SETTLE
                while not all(len(seen) >= TOTAL for seen, _ in readers):
                    if time.monotonic() > deadline or any(task.done() for task in following):
                        counts = [len(seen) for seen, _ in readers]
                        raise AssertionError(f"readers saw {counts} of {TOTAL}:\n{served.text[-4000:]}")
                    await asyncio.sleep(0.01)
            finally:
                old.stop()
                for task in following:
                    task.cancel()
                await asyncio.gather(*following, return_exceptions=True)
        # Each reader saw each entry exactly once, in the order they were acknowledged (one reporter
        # posting one after another), and was never sent back to a snapshot.
        for seen, snaps in readers:
            assert seen == acknowledged
            assert len(snaps) == 1
        assert "was reset" not in served.text
    finally:
        served.stop()


#: Entries the reporter posts across the failover.
TOTAL = 60


async def test_write_no_replica_confirms_is_503_and_its_retry_returns_the_same_entry(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    primary_port, replica_port = free_port(), free_port()
    settings = replace(UNLIMITED, redis_min_replicas=1, redis_wait_ms=50)
    with EmbeddedRedis(tmp_path / "primary", port=primary_port) as primary:
        replica = replica_of(tmp_path / "replica", replica_port, primary_port).start()
        await asyncio.to_thread(wait_until, lambda: linked(replica_port), "the replica is in sync")
        async with running_service(primary.url, settings) as service:
            await service.create_blog()
            async with service.live() as reader:
                assert (await receive(reader))["type"] == "snapshot"
                replica.stop()
                await asyncio.to_thread(
                    wait_until, lambda: info(primary_port, "replication").get("connected_slaves") == 0, "replica gone"
                )
                post = {"body": "<p>Sirens across the capital.</p>"}
                headers = {**service.auth(), "Idempotency-Key": "sirens-1"}
                refused = await service.http.post("/api/v1/blogs/ukraine/entries", json=post, headers=headers)
                assert refused.status_code == 503, refused.text
                assert refused.json()["error"]["code"] == "not_replicated"
                assert refused.headers["Retry-After"] == "1"
                # So is minting a token (a revocation that a failover lost would bring one back).
                minted = await service.http.post(
                    "/api/v1/tokens",
                    json={"name": "Olena", "role": "reporter", "blogs": ["ukraine"]},
                    headers=service.auth(),
                )
                assert (minted.status_code, minted.json()["error"]["code"]) == (503, "not_replicated")
                # The entry was written on the primary; readers are not handed it yet.
                await asyncio.to_thread(
                    wait_until, lambda: "holds back new events" in caplog.text, "the tailer holds the entry back"
                )
                replica.start()
                await asyncio.to_thread(wait_until, lambda: linked(replica_port), "the replica is back in sync")
                retried = await service.http.post("/api/v1/blogs/ukraine/entries", json=post, headers=headers)
                assert retried.status_code == 201, retried.text
                assert retried.headers["Idempotent-Replayed"] == "true"
                entry = retried.json()
                event = await receive(reader)
                assert (event["event"], event["entry"]["id"]) == ("entry.created", entry["id"])
            listed = (await service.http.get("/api/v1/blogs/ukraine/entries")).json()["entries"]
            assert [item["id"] for item in listed] == [entry["id"]]
        replica.stop()


async def test_waiting_for_replicas_is_not_counted_as_the_tailers_lag(tmp_path: Path) -> None:
    """A read that waits for a replica's WAIT says how long: the tailer leaves that out of a
    read's lag, or a far replica would make every read look behind and the loop gather for good."""
    primary_port, replica_port = free_port(), free_port()
    with EmbeddedRedis(tmp_path / "primary", port=primary_port) as primary:
        replica = replica_of(tmp_path / "replica", replica_port, primary_port).start()
        try:
            await asyncio.to_thread(wait_until, lambda: linked(replica_port), "the replica is in sync")
            writer = sync_redis.Redis.from_url(primary.url)
            writer.xadd(keys.log("b"), {"e": b'{"event":"x"}', "epoch": "e1"})
            async with LogReader(async_redis.Redis.from_url(primary.url), min_replicas=1, wait_ms=500) as reader:
                ((_, events),) = await reader.read({"b": "0-0"}, 0)
                assert len(events) == 1 and reader.replicated_in > 0
                assert await reader.read({"b": events[0].stream_id}, 1) == []
                assert reader.replicated_in == 0.0, "nothing read, nothing waited for"
            writer.close()
        finally:
            replica.stop()


def test_a_malformed_sentinel_url_is_refused_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "LIVEBLOG_REDIS_URL": "redis+sentinel://sentinel-1:26379,sentinel-2:x/mymaster"}
    done = subprocess.run(
        [sys.executable, "-m", "liveblog.cli", "serve", "--data-dir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        "LIVEBLOG_REDIS_URL: sentinel 'sentinel-2:x' is not host[:port] "
        "(redis+sentinel://[user:password@]host[:port][,host2[:port2]…]/service[/db])"
    ]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis+sentinel://a:26379,b:26380/mymaster", ([("a", 26379), ("b", 26380)], "mymaster", 0, None, None)),
        ("redis+sentinel://a,[::1]:1/mymaster/2", ([("a", 26379), ("::1", 1)], "mymaster", 2, None, None)),
        ("redis+sentinel://user:p%40ss@a/mymaster", ([("a", 26379)], "mymaster", 0, "user", "p@ss")),
    ],
)
def test_sentinel_urls_name_the_sentinels_the_service_and_the_database(url: str, expected: tuple) -> None:
    assert tuple(config_sentinel_url(url)) == expected


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://a:26379",
        "redis+sentinel://a,/m",
        "redis+sentinel://a:0/m",
        "redis+sentinel://a/m/x",
        "redis+sentinel://a/m?db=1",
    ],
)
def test_malformed_sentinel_urls_are_refused(url: str) -> None:
    with pytest.raises(SystemExit, match="^LIVEBLOG_REDIS_URL: "):
        Settings.from_env({"LIVEBLOG_REDIS_URL": url})


def test_the_compose_ha_profile_points_liveblog_at_its_three_sentinels() -> None:
    """Docker cannot run here: the ha profile is checked against the settings and itself."""
    compose = yaml.safe_load((Path(__file__).resolve().parent.parent / "docker-compose.yml").read_text())
    ha = {name: svc for name, svc in compose["services"].items() if "ha" in svc.get("profiles", [])}
    environment = {key: str(value) for key, value in ha["app-ha"]["environment"].items()}
    settings = Settings.from_env({**environment, "LIVEBLOG_ADMIN_TOKEN": "x"})
    where = config_sentinel_url(settings.redis_url)
    sentinels = sorted(name for name, svc in ha.items() if "redis-sentinel" in " ".join(svc.get("command", [])))
    assert sorted(host for host, _ in where.sentinels) == sentinels == ["sentinel-1", "sentinel-2", "sentinel-3"]
    for name in sentinels:
        assert f"sentinel monitor {where.service} redis-primary 6379 2" in ha[name]["command"][2]
    assert settings.redis_min_replicas == 1
    assert "redis-primary" in ha["redis-replica"]["command"]
