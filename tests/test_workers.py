"""`liveblog serve --workers N`: one parent process, N workers on one port and one Redis.

Real processes, sockets and Redis throughout. Which worker holds a reader's connection is read
from /proc, as an operator would: the socket inodes each worker has open, matched against the
kernel's TCP table, where the reader's own port identifies its connection.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import websockets
from conftest import ADMIN_TOKEN, Prober, Served
from test_faults import _async, _post_with_retries, _stream, reconnect_after, stop, until

pytestmark = [pytest.mark.skipif(sys.platform != "linux", reason="reads /proc"), pytest.mark.slow]

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
#: Dozens of readers from 127.0.0.1, reconnecting at once: no per-address limit gets in the way.
ENV = {
    "LIVEBLOG_ADMIN_TOKEN": ADMIN_TOKEN,
    "LIVEBLOG_CONNECTS_PER_IP_PER_SECOND": "10000",
    "LIVEBLOG_VIEWERS_INTERVAL": "3600",
}
TWO_WORKERS = ("--workers", "2")


class Reader:
    """A live reader that reconnects with its cursor when the contract says to (see
    :func:`test_faults.reconnect_after`; ``cut``: the servers the test took down), noting each
    connection's local port (which worker it reached) and close code."""

    def __init__(self, url: str, cut: set[str]):
        self.url = url + "/api/v1/blogs/ukraine/live"
        self.cut = cut
        self.task: asyncio.Task | None = None
        self.cursor: str | None = None
        self.joined_at: str | None = None
        self.snapshots = 0
        self.events: list[str] = []
        self.ports: list[int] = []
        self.close_codes: list[int | None] = []

    async def follow(self) -> None:
        while True:
            url = self.url + (f"?cursor={self.cursor}" if self.cursor else "")
            try:
                async with websockets.connect(url, open_timeout=5) as ws:
                    self.ports.append(ws.local_address[1])
                    try:
                        while True:
                            self._receive(json.loads(await ws.recv()))
                    finally:
                        self.close_codes.append(ws.close_code)
            except Exception as error:  # sorted out by reconnect_after
                reconnect_after(error, url, self.cut)
                await asyncio.sleep(0.05)

    def _receive(self, message: dict) -> None:
        if message["type"] == "snapshot":
            self.snapshots += 1
            self.joined_at = message["cursor"]
        elif message["type"] == "event":
            self.events.append(message["cursor"])
        else:
            return
        self.cursor = message["cursor"]


def worker_pids(served: Served) -> list[int]:
    match = re.search(r"2 workers serving, pids (\d+) (\d+)", served.text)
    assert match, served.text
    return [int(pid) for pid in match.groups()]


def connections_held(pids: list[int], port: int) -> dict[int, int]:
    """Client port -> the pid of the worker holding that connection to ``port``."""
    inodes = {}
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue  # closed meanwhile
            if match := re.fullmatch(r"socket:\[(\d+)\]", target):
                inodes[match.group(1)] = pid
    held = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, remote, inode = (field := line.split())[1], field[2], field[9]
            if int(local.rsplit(":", 1)[1], 16) == port and inode in inodes:
                held[int(remote.rsplit(":", 1)[1], 16)] = inodes[inode]
    return held


def port_of(served: Served) -> int:
    return int(served.url.rsplit(":", 1)[1])


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text() if entry.name.isdigit() else ""
        except OSError:
            continue
        if stat and int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def gone(pid: int) -> bool:
    """Exited (possibly a zombie that whoever inherited it has not reaped yet)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes() == b""
    except OSError:
        return True


@asynccontextmanager
async def readers_until_sigterm(served: Served, count: int, cut: set[str] | None = None) -> AsyncIterator[list[Reader]]:
    """``count`` readers following a new blog on ``served``, each on whichever worker the kernel
    gave it (which of them, ``held`` says); on exit, SIGTERM to the parent, then the readers stop
    (and one that had failed fails the test). ``cut``: where the test says it took servers down."""
    cut = set() if cut is None else cut
    following: list[asyncio.Task] = []
    try:
        response = served.http.post("/api/v1/blogs", json={"id": "ukraine", "title": "Live"}, headers=ADMIN)
        assert response.status_code == 201
        readers = [Reader(served.ws_url, cut) for _ in range(count)]
        for reader in readers:
            reader.task = asyncio.create_task(reader.follow())
            following.append(reader.task)
        await until(lambda: _async(all(r.joined_at for r in readers)), tasks=following)
        yield readers
    finally:
        cut.add(served.ws_url)
        await asyncio.to_thread(served.stop)
        await stop(following)


def held(served: Served, readers: list[Reader], workers: list[int]) -> dict[Reader, int]:
    """Each reader's worker (the one holding its latest connection)."""
    connections = connections_held(workers, port_of(served))
    return {reader: connections[reader.ports[-1]] for reader in readers}


async def post_and_catch_up(served: Served, readers: list[Reader], numbers: range) -> list[str]:
    """Post through the shared port (each post reaches either worker); wait until every reader has
    everything; the log's cursors, in order."""
    for i in numbers:
        await _post_with_retries([served.url], f"<p>update {i}</p>", key=f"update-{i}")
    log = [event["cursor"] for event in await _stream(served.url)]
    await until(lambda: _async(all(r.cursor == log[-1] for r in readers)), timeout=20, tasks=[r.task for r in readers])
    return log


def assert_each_got_every_event_once_in_order(readers: list[Reader], log: list[str]) -> None:
    for reader in readers:
        assert reader.snapshots == 1, "a reader resuming with its cursor never gets a second snapshot"
        expected = log[log.index(reader.joined_at) + 1 :] if reader.joined_at in log else log
        assert reader.events == expected, "every event once, in order, whichever worker it was posted through"


async def test_workers_share_one_port_and_one_redis_and_every_reader_gets_every_post_once_in_order(data_dir: Path):
    served = await asyncio.to_thread(Served, data_dir, ENV, TWO_WORKERS)
    workers = worker_pids(served)
    redis_pid = int((data_dir / "redis" / "redis.pid").read_text())
    async with readers_until_sigterm(served, 24) as readers:
        assert sorted(children(served.process.pid)) == sorted([*workers, redis_pid]), "the parent started one Redis"
        assert set(held(served, readers, workers).values()) == set(workers), "both workers serve readers"
        log = await post_and_catch_up(served, readers, range(20))
        assert all(len(r.ports) == 1 for r in readers)
    assert served.process.returncode == 0
    assert len(log) == 20
    assert_each_got_every_event_once_in_order(readers, log)


async def test_a_killed_worker_is_replaced_and_its_readers_resume_losing_nothing(data_dir: Path, redis_server):
    served = await asyncio.to_thread(Served, data_dir, {**ENV, "LIVEBLOG_REDIS_URL": redis_server.url}, TWO_WORKERS)
    workers = worker_pids(served)
    cut: set[str] = set()
    async with readers_until_sigterm(served, 16, cut) as readers:
        on = held(served, readers, workers)
        victim = max(workers, key=lambda pid: list(on.values()).count(pid))
        await post_and_catch_up(served, readers, range(10))

        cut.add(served.ws_url)  # its readers are cut off: they reconnect (to the other worker)
        os.kill(victim, signal.SIGKILL)
        warning = f"liveblog.workers [{served.process.pid}]: worker {victim} exited with exit code -9 (SIGKILL)"
        replaced = await until(
            lambda: _async(warning in served.text and re.search(r"worker (\d+) started", served.text))
        )
        replacement = int(replaced.group(1))
        log = await post_and_catch_up(served, readers, range(10, 20))

        async def a_new_reader_lands_on_the_replacement() -> bool:
            async with websockets.connect(readers[0].url, open_timeout=5) as ws:
                await ws.recv()
                return connections_held([replacement], port_of(served)).get(ws.local_address[1]) == replacement

        await until(a_new_reader_lands_on_the_replacement)
        assert sorted(children(served.process.pid)) == sorted({*workers, replacement} - {victim})
        for reader, worker in on.items():
            if worker == victim:
                assert len(reader.ports) == 2 and reader.close_codes == [1006], "cut off, then reconnected"
            else:
                assert len(reader.ports) == 1, "readers of the other worker never noticed"
    assert served.process.returncode == 0
    assert len(log) == 20
    assert_each_got_every_event_once_in_order(readers, log)


async def test_sighup_replaces_every_worker_without_closing_the_port_and_readers_resume(data_dir: Path):
    served = await asyncio.to_thread(Served, data_dir, {**ENV, "LIVEBLOG_RECONNECT_SPREAD_MS": "500"}, TWO_WORKERS)
    old = worker_pids(served)
    # cut stays empty: a reader whose reconnect is refused or reset fails the test
    async with readers_until_sigterm(served, 16) as readers:
        await post_and_catch_up(served, readers, range(5))
        prober = Prober(port_of(served))
        try:
            served.process.send_signal(signal.SIGHUP)
            line = await asyncio.to_thread(served.wait_for_line, lambda line: "2 new workers serving" in line)
            new = [int(pid) for pid in re.findall(r"\d+", line.rsplit("pids", 1)[1])]
            await until(lambda: _async(all(gone(pid) for pid in old)))
            probed_until_the_old_ones_exited = prober.tried
            log = await post_and_catch_up(served, readers, range(5, 10))
        finally:
            prober.stop()
        assert sorted(children(served.process.pid)) == sorted(
            [*new, int((data_dir / "redis" / "redis.pid").read_text())]
        )
        assert set(held(served, readers, new).values()) <= set(new), "every reader moved to a new worker"
        assert all(reader.close_codes == [1012] for reader in readers), "told once to come back, then stayed"
    assert not set(new) & set(old)
    assert 0 < probed_until_the_old_ones_exited < prober.tried
    assert prober.refused == 0, f"{prober.refused} of {prober.tried} connections refused"
    assert served.process.returncode == 0
    assert_each_got_every_event_once_in_order(readers, log)


async def test_sigterm_closes_readers_with_1012_stops_every_worker_then_redis_and_exits_0(data_dir: Path):
    served = await asyncio.to_thread(Served, data_dir, ENV, TWO_WORKERS)
    workers = worker_pids(served)
    redis_pid = int((data_dir / "redis" / "redis.pid").read_text())
    async with readers_until_sigterm(served, 20) as readers:
        assert set(held(served, readers, workers).values()) == set(workers)
    assert served.process.returncode == 0
    for reader in readers:
        assert reader.close_codes and set(reader.close_codes) == {1012}, reader.close_codes
    assert all(gone(pid) for pid in [*workers, redis_pid])
    assert "Embedded redis-server stopped." in served.text


async def test_workers_stop_when_their_parent_is_killed(data_dir: Path):
    served = await asyncio.to_thread(Served, data_dir, ENV, TWO_WORKERS)
    workers = worker_pids(served)
    redis_pid = int((data_dir / "redis" / "redis.pid").read_text())
    await asyncio.to_thread(served.kill)
    await until(lambda: _async(all(gone(pid) for pid in [*workers, redis_pid])))


def test_each_log_line_says_which_process_wrote_it(data_dir: Path):
    nowhere = f"unix://{data_dir}/no-redis-here.sock"
    env = {"LIVEBLOG_LOG_FORMAT": "json", "LIVEBLOG_REDIS_URL": nowhere, "LIVEBLOG_ADMIN_TOKEN": "t"}
    served = Served(data_dir, env, TWO_WORKERS)
    workers = worker_pids(served)
    try:
        refused = served.http.post(
            "/api/v1/blogs", json={"id": "x", "title": "X"}, headers={"Authorization": "Bearer t"}
        )
        assert refused.status_code == 503
    finally:
        assert served.stop() == 0
    logged = [json.loads(line) for line in served.output if line.startswith("{")]
    assert next(line for line in logged if "Redis unavailable" in line["message"])["pid"] in workers
    assert next(line for line in logged if "stopping 2 workers" in line["message"])["pid"] == served.process.pid


@pytest.mark.parametrize(
    "args, env",
    [
        (("--workers", "0"), {}),
        (("--workers", "100000"), {}),
        ((), {"LIVEBLOG_WORKERS": "-2"}),
        ((), {"LIVEBLOG_WORKERS": "two"}),
    ],
)
def test_a_worker_count_that_makes_no_sense_is_refused_before_anything_starts(
    data_dir: Path, args: tuple[str, ...], env: dict[str, str]
):
    result = subprocess.run(
        [sys.executable, "-m", "liveblog.cli", "serve", "--port", "0", "--data-dir", str(data_dir), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode != 0
    assert "LIVEBLOG_WORKERS" in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not data_dir.exists()
