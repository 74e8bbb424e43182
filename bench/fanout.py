"""Fan-out benchmark: N WebSocket readers of one blog, entries posted at a fixed rate.

Run it by hand from the repository, in the project's virtualenv::

    python bench/fanout.py --readers 1000 --rate 5 --duration 20
    python bench/fanout.py --readers 5000 --rate 5 --duration 30 --no-pin

What happens:

1. ``liveblog serve --port 0`` starts in a temporary data dir (its own embedded redis-server),
   pinned to core 0 with ``taskset`` unless ``--no-pin``; a blog ``bench`` is created.
2. A load generator (pinned to core 1) opens the readers in batches and waits for every snapshot.
   By default it is bench/loadgen.c (one thread, epoll, compiled on demand into bench/.build/);
   ``--generator-impl python`` runs this file again with ``--generator`` instead (each reader a
   minimal hand-written WebSocket client on uvloop). Both speak the same JSON lines.
3. This process posts ``--rate`` entries per second for ``--duration`` seconds. Each entry's
   headline is ``seq=<n> t=<time.time() at send>``; readers extract both with a bytes search
   instead of decoding JSON, and record post-to-receive latency, losses and duplicates.
4. It prints one table: deliveries/s (offered and achieved), latency p50/p99/max; per post, the
   first reader's latency and how much later the last reader got it (the fan-out's spread);
   lost and duplicated events; disconnected readers; server RSS idle and with readers, and RSS
   per reader; CPU over the posting window (% of one core) of the server process, the generator,
   the poster, and everything else on the machine (other load makes figures noisy), and how much
   of all that was softirq (loopback TCP work); then warnings and errors from the server's log.

Everything talks to 127.0.0.1 only, every wait has a timeout, and the server, its Redis and the
generator are stopped (SIGTERM, then SIGKILL) and the temporary directory removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Callable
from pathlib import Path

import httpx
import uvloop

ADMIN_TOKEN = "bench-admin-token"
BLOG = "bench"
HOST = "127.0.0.1"
BATCH = 200
ATTEMPTS = 3  # per batch: readers that fail to join are retried
SERVER_START_TIMEOUT = 30.0
BATCH_TIMEOUT = 60.0
POST_TIMEOUT = 10.0
DRAIN_TIMEOUT = 15.0
STOP_TIMEOUT = 20.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
PROBLEM = re.compile(r"WARNING|ERROR|CRITICAL|^\w+(\.\w+)*(Error|Exception): ")
REDIS_PROBLEM = re.compile(r"taking too long|[Ee]rror|[Ff]ailed|MISCONF")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ")


# --------------------------------------------------------------------------- shared helpers


def raise_nofile() -> None:
    """Allow as many open sockets as the hard limit permits."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def percentile(ordered: list[float], fraction: float) -> float:
    return ordered[round(fraction * (len(ordered) - 1))] if ordered else float("nan")


def machine_seconds() -> tuple[float, float]:
    """CPU time of all cores, from /proc/stat: busy (anything but idle), and in softirq.

    Softirq time (here mostly loopback TCP work done during a sender's write) is also charged to
    the process it interrupted.
    """
    user, nice, system, idle, iowait, irq, softirq, steal = map(
        int, Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / CLK_TCK, softirq / CLK_TCK


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


LOADGEN_SOURCE = Path(__file__).resolve().parent / "loadgen.c"
BUILD_DIR = LOADGEN_SOURCE.parent / ".build"


def loadgen_binary() -> Path:
    """The C load generator (bench/loadgen.c), compiled into bench/.build/ when missing or older than its source."""
    binary = BUILD_DIR / "loadgen"
    if not binary.exists() or binary.stat().st_mtime < LOADGEN_SOURCE.stat().st_mtime:
        BUILD_DIR.mkdir(exist_ok=True)
        partial = BUILD_DIR / f"loadgen.{os.getpid()}"  # renamed into place: concurrent builds do not collide
        command = [os.environ.get("CC", "cc"), "-O2", "-Wall", "-Wextra", "-o", str(partial), str(LOADGEN_SOURCE)]
        command += ["-lz"]  # inflating for --deflate
        subprocess.run(command, check=True, timeout=120)
        os.replace(partial, binary)
    return binary


def generator_command(args: argparse.Namespace, script: str) -> list[str]:
    """How to start the load generator: bench/loadgen.c's binary, or ``script --generator`` (Python)."""
    if args.generator_impl == "c":
        deflate = ["--deflate", "1"] if args.deflate else []
        return [str(loadgen_binary()), "--nap-us", str(args.generator_nap_us), *deflate]
    if args.deflate:
        raise SystemExit("--deflate needs the C generator (--generator-impl c)")
    return [sys.executable, script, "--generator"]


def entry_bytes(result: dict) -> str:
    """Bytes per delivered entry, from the C generator's counts: its frame on the wire, its JSON."""
    frames = result.get("entry_frames")
    if not frames:
        return "n/a (the C generator counts them)"
    return (
        f"{result['entry_wire_bytes'] / frames:,.0f} on the wire ({result['entry_text_bytes'] / frames:,.0f} as JSON); "
        f"{result['compressed_frames']:,} compressed frames, {result['inflations']:,} distinct; "
        f"{result['agreed']:,} readers agreed on permessage-deflate"
    )


def add_generator_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--generator-impl",
        choices=("c", "python"),
        default="c",
        help="load generator: bench/loadgen.c (default; compiled on demand with cc into bench/.build/) "
        "or the Python/uvloop one",
    )
    parser.add_argument(
        "--generator-nap-us",
        type=int,
        default=100,
        help="C generator: while events keep coming, poll epoll and sleep this long when none is ready "
        "instead of blocking in epoll_wait, whose wake-ups the server would pay for on loopback "
        "(default 100; 0: always block, as the Python one does)",
    )
    parser.add_argument(
        "--deflate",
        action="store_true",
        help="readers offer permessage-deflate as browsers do, and inflate what comes compressed "
        "(C generator only; each distinct frame is inflated once, see bench/loadgen.c)",
    )


# --------------------------------------------------------------------------- load generator

HANDSHAKE = (
    f"GET /api/v1/blogs/{BLOG}/live HTTP/1.1\r\n"
    "Host: {host}\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: ZmFub3V0LWJlbmNobWFyaw==\r\n"
    "Sec-WebSocket-Version: 13\r\n\r\n"
)
OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x8, 0x9, 0xA
SNAPSHOT = b'{"type":"snapshot"'
SEQ_MARK = b'"headline":"seq='
NO_MASK = b"\0\0\0\0"  # client frames must be masked; an all-zero key leaves the payload as is


class Samples:
    """Every delivery's sequence number and post-to-receive latency (seconds), in arrival order."""

    def __init__(self) -> None:
        self.seqs = array("l")
        self.latencies = array("d")

    def per_post(self) -> tuple[list[float], list[float]]:
        """Per post, sorted: the first reader's latency, and how much later the last reader got it."""
        low: dict[int, float] = {}
        high: dict[int, float] = {}
        for seq, latency in zip(self.seqs, self.latencies, strict=True):
            if latency < low.get(seq, math.inf):
                low[seq] = latency
            if latency > high.get(seq, -math.inf):
                high[seq] = latency
        return sorted(low.values()), sorted(high[seq] - low[seq] for seq in low)


class WebSocketReader(asyncio.Protocol):
    """One WebSocket reader: send ``request`` (the upgrade), then parse unmasked server frames and
    answer pings; subclasses say what a text frame means (``_text``). Also used by compare.py."""

    def __init__(self, request: bytes, seen_size: int, record_latency: Callable[[float], None]):
        self.request = request
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.upgraded = False
        self.ready = asyncio.get_running_loop().create_future()
        self.seen = bytearray(seen_size)
        self.received = 0
        self.duplicates = 0
        self.unexpected = 0
        self.last_receive = 0.0
        self.close_code: int | None = None
        self.lost_connection = False
        self.stopping = False
        self.record_latency = record_latency

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buffer
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                self._fail(buffer[: buffer.find(b"\r\n")].decode(errors="replace"))
                return
            self.upgraded = True
            buffer = buffer[end + 4 :]
        self.buffer = self._frames(buffer, time.time())

    def _frames(self, buffer: bytes, now: float) -> bytes:
        """Handle every complete frame in ``buffer``; return the incomplete rest."""
        pos, size = 0, len(buffer)
        while size - pos >= 2:
            length = buffer[pos + 1] & 0x7F
            start = pos + 2
            if length >= 126:
                extra = 2 if length == 126 else 8
                if size < start + extra:
                    break
                length, start = int.from_bytes(buffer[start : start + extra], "big"), start + extra
            end = start + length
            if end > size:
                break
            opcode = buffer[pos] & 0x0F
            if opcode == OP_TEXT:
                self._text(buffer, start, end, now)
            elif opcode == OP_PING:
                self._send_frame(OP_PONG, buffer[start:end])
            elif opcode == OP_CLOSE:
                self._closed_by_server(buffer[start:end])
                return b""
            pos = end
        return buffer[pos:]

    def _text(self, buffer: bytes, start: int, end: int, now: float) -> None:
        raise NotImplementedError

    def _count(self, index: int) -> None:
        """One more event received, ``index`` into ``seen``: lost, duplicated or unexpected?"""
        if index >= len(self.seen):
            self.unexpected += 1
        elif self.seen[index]:
            self.duplicates += 1
        else:
            self.seen[index] = 1

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        self.transport.write(bytes((0x80 | opcode, 0x80 | len(payload))) + NO_MASK + payload)

    def _closed_by_server(self, payload: bytes) -> None:
        self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
        self._send_frame(OP_CLOSE, payload[:2])
        self._fail(f"closed by server with {self.close_code}")

    def _fail(self, reason: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(reason))
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost_connection = not self.stopping
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"connection lost: {exc}"))

    @property
    def disconnected(self) -> bool:
        return self.close_code is not None or self.lost_connection


class Reader(WebSocketReader):
    """A liveblog reader of the one blog ``bench``."""

    def __init__(self, host: str, max_seq: int, samples: Samples):
        super().__init__(HANDSHAKE.format(host=host).encode(), max_seq, samples.latencies.append)
        self.record_seq = samples.seqs.append

    def _text(self, buffer: bytes, start: int, end: int, now: float) -> None:
        """An event: its sequence number and send time are found by a bytes search, not JSON."""
        mark = buffer.find(SEQ_MARK, start, end)
        if mark < 0:
            if not self.ready.done() and buffer.startswith(SNAPSHOT, start):
                self.ready.set_result(None)
            return
        mark += len(SEQ_MARK)
        space = buffer.find(b" ", mark, end)
        quote = buffer.find(b'"', space, end)
        seq = int(buffer[mark:space])
        self.record_seq(seq)
        self.record_latency(now - float(buffer[space + 3 : quote]))
        self.received += 1
        self.last_receive = now
        self._count(seq)


async def open_batch(port: int, count: int, max_seq: int, samples: Samples, failures: dict[str, int]) -> list[Reader]:
    """Connect ``count`` readers at once; return those that got their snapshot, count the others."""
    loop = asyncio.get_running_loop()
    readers = [Reader(f"{HOST}:{port}", max_seq, samples) for _ in range(count)]
    outcomes = await asyncio.gather(
        *(loop.create_connection(lambda r=r: r, HOST, port) for r in readers), return_exceptions=True
    )
    connected = [r for r, outcome in zip(readers, outcomes, strict=True) if not isinstance(outcome, BaseException)]
    reasons = [repr(outcome) for outcome in outcomes if isinstance(outcome, BaseException)]
    if connected:
        await asyncio.wait([r.ready for r in connected], timeout=BATCH_TIMEOUT)
    ready = []
    for reader in connected:
        if reader.ready.done() and reader.ready.exception() is None:
            ready.append(reader)
        else:
            reasons.append(repr(reader.ready.exception()) if reader.ready.done() else "no snapshot in time")
            reader.transport.abort()
    for reason in reasons:
        failures[reason] = failures.get(reason, 0) + 1
    return ready


async def open_readers(port: int, count: int, max_seq: int, samples: Samples) -> tuple[list[Reader], dict[str, int]]:
    """Connect ``count`` readers, ``BATCH`` at a time, retrying failed ones; return them and the failures.

    Stops early when a batch gets no reader at all, however often it is retried.
    """
    ready: list[Reader] = []
    failures: dict[str, int] = {}
    for first in range(0, count, BATCH):
        missing = min(BATCH, count - first)
        for _ in range(ATTEMPTS):
            opened = await open_batch(port, missing, max_seq, samples, failures)
            ready += opened
            missing -= len(opened)
            if not missing:
                break
        if missing == min(BATCH, count - first):
            break
    return ready, failures


async def read_command() -> dict:
    line = await asyncio.to_thread(sys.stdin.readline)
    if not line:
        raise SystemExit("generator: the controller went away")
    return json.loads(line)


def reply(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def drain(readers: list[Reader], expected: int) -> None:
    """Wait until every connected reader has ``expected`` events, or ``DRAIN_TIMEOUT``.

    What has not arrived by then counts as lost.
    """
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while time.monotonic() < deadline:
        if all(r.received >= expected or r.disconnected for r in readers):
            return
        await asyncio.sleep(0.05)


def summarize(readers: list[Reader], posted: list[int], samples: Samples) -> dict:
    """The generator's figures. Posts that failed (a timeout, say) may still have been delivered."""
    got = [sum(r.seen[seq] for seq in posted) for r in readers]
    lost = [len(posted) - n for n in got]
    distinct = sum(r.received - r.duplicates - r.unexpected for r in readers)
    codes: dict[str, int] = {}
    for reader in readers:
        if reader.disconnected:
            key = str(reader.close_code or "dropped")
            codes[key] = codes.get(key, 0) + 1
    ordered = sorted(samples.latencies)
    first, spread = samples.per_post()
    return {
        "deliveries": sum(r.received for r in readers),
        "of_failed_posts": distinct - sum(got),
        "last_receive": max((r.last_receive for r in readers), default=0.0),
        "lost": sum(lost),
        "readers_with_loss": sum(1 for n in lost if n),
        "duplicates": sum(r.duplicates for r in readers),
        "unexpected": sum(r.unexpected for r in readers),
        "disconnected": codes,
        "latency_ms": [1000 * percentile(ordered, f) for f in (0.5, 0.99, 1.0)],
        "first_reader_ms": [1000 * percentile(first, f) for f in (0.5, 1.0)],
        "spread_ms": [1000 * percentile(spread, f) for f in (0.5, 1.0)],
    }


async def generate(args: argparse.Namespace) -> None:
    """The ``--generator`` process: JSON lines in on stdin (commands), out on stdout (results)."""
    raise_nofile()
    samples = Samples()
    started = time.monotonic()
    readers, failures = await open_readers(args.port, args.readers, args.max_seq, samples)
    reply({"ready": len(readers), "failures": failures, "connect_s": time.monotonic() - started})
    await read_command()  # "go": the poster starts now
    cpu_start, wall_start = cpu_seconds(), time.monotonic()
    posted = (await read_command())["posted"]
    await drain(readers, len(posted))
    cpu, wall = cpu_seconds() - cpu_start, time.monotonic() - wall_start
    reply({"drained": True})
    result = summarize(readers, posted, samples)
    reply({**result, "cpu_s": cpu, "cpu_pct": 100 * cpu / wall})
    for reader in readers:
        reader.stopping = True
        reader.transport.abort()


# --------------------------------------------------------------------------- server process


def server_settings(readers: int) -> dict[str, str]:
    """The admin token, and admission limits lifted: every reader and post comes from one address."""
    room = str(readers + 1000)
    return {
        "LIVEBLOG_ADMIN_TOKEN": ADMIN_TOKEN,
        "LIVEBLOG_MAX_READERS": room,
        "LIVEBLOG_MAX_READERS_PER_IP": room,
        "LIVEBLOG_CONNECTS_PER_IP_PER_SECOND": "1e6",
        "LIVEBLOG_WRITES_PER_TOKEN_PER_SECOND": "1e6",
    }


class Server:
    """``liveblog serve --port 0`` in ``data_dir``, stdout and stderr kept in files there."""

    def __init__(self, data_dir: Path, pin: bool, readers: int):
        self.data_dir = data_dir
        self.stdout = data_dir / "server.out"
        self.stderr = data_dir / "server.err"
        env = {**os.environ, **server_settings(readers)}
        command = ["liveblog", "serve", "--port", "0", "--data-dir", str(data_dir / "data")]
        with open(self.stdout, "wb") as out, open(self.stderr, "wb") as err:
            self.process = subprocess.Popen(
                (["taskset", "-c", "0"] if pin else []) + command,
                env=env,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
            )
        self.pid = self.process.pid  # taskset execs the command: same pid
        self.port = self._wait_for_port()

    def _wait_for_port(self) -> int:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            for line in self.stdout.read_text().splitlines():
                if line.startswith("liveblog is serving on http://"):
                    return int(line.rsplit(":", 1)[1])
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.stderr.read_text()}")
            time.sleep(0.05)
        raise RuntimeError("server did not start in time")

    def rss_kib(self) -> int:
        if self.process.poll() is not None:
            raise RuntimeError(f"the server exited with {self.process.returncode} during the run")
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError(f"no VmRSS in /proc/{self.pid}/status")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)

    def children(self) -> list[int]:
        path = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        return [int(pid) for pid in path.read_text().split()] if path.exists() else []

    def problems(self) -> dict[str, int]:
        """Warnings and errors logged by the server and its redis-server: message -> count."""
        found: dict[str, int] = {}
        for line in self.stderr.read_text(errors="replace").splitlines():
            if PROBLEM.search(line):
                message = TIMESTAMP.sub("", line)
                found[message] = found.get(message, 0) + 1
        redis_log = self.data_dir / "data" / "redis" / "redis.log"
        for line in redis_log.read_text(errors="replace").splitlines() if redis_log.exists() else ():
            if REDIS_PROBLEM.search(line):
                message = "redis-server: " + line.split(" # ", 1)[-1]
                found[message] = found.get(message, 0) + 1
        return found

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL (and its redis-server) if it does not exit in time."""
        if self.process.poll() is None:
            children = self.children()
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                for pid in children:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        return self.process.returncode


# --------------------------------------------------------------------------- controller


FILLER = "Live from the scene. "


def entry_body(seq: int, body_bytes: int) -> bytes:
    """A POST body of about ``body_bytes``; the headline carries ``seq`` and the send time."""
    text = {"body": "<p></p>", "headline": f"seq={seq} t={time.time():.6f}"}
    filler = max(1, body_bytes - len(json.dumps(text)))
    text["body"] = "<p>" + (FILLER * (filler // len(FILLER) + 1))[:filler] + "</p>"
    return json.dumps(text).encode()


async def post_entries(
    client: httpx.AsyncClient, rate: float, duration: float, body_bytes: int
) -> tuple[list[int], list[float], dict[str, int]]:
    """Post at a fixed rate, each post its own task so a slow reply does not delay the next."""
    loop = asyncio.get_running_loop()

    async def post(seq: int) -> tuple[int, str, float]:
        started = loop.time()
        try:
            response = await client.post(f"/api/v1/blogs/{BLOG}/entries", content=entry_body(seq, body_bytes))
            outcome = str(response.status_code)
        except httpx.HTTPError as exc:
            outcome = type(exc).__name__
        return seq, outcome, loop.time() - started

    start = loop.time()
    tasks = []
    for seq in range(int(rate * duration)):
        await asyncio.sleep(max(0.0, start + seq / rate - loop.time()))
        tasks.append(asyncio.create_task(post(seq)))
    results = await asyncio.gather(*tasks)
    posted = [seq for seq, outcome, _ in results if outcome == "201"]
    failed: dict[str, int] = {}
    for _, outcome, _ in results:
        if outcome != "201":
            failed[outcome] = failed.get(outcome, 0) + 1
    return posted, sorted(elapsed for _, _, elapsed in results), failed


class Generator:
    """The ``--generator`` child process, driven by JSON lines."""

    def __init__(self, process: asyncio.subprocess.Process):
        self.process = process

    @classmethod
    async def start(cls, args: argparse.Namespace, port: int) -> Generator:
        command = generator_command(args, __file__)
        command += ["--port", str(port), "--readers", str(args.readers)]
        command += ["--max-seq", str(int(args.rate * args.duration) + 1)]
        if args.pin:
            command = ["taskset", "-c", "1", *command]
        process = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        return cls(process)

    def send(self, message: dict) -> None:
        self.process.stdin.write((json.dumps(message) + "\n").encode())

    async def receive(self, timeout: float) -> dict:
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"generator exited with {await self.process.wait()}")
        return json.loads(line)

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.stdin.close()
            try:
                await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


class CpuWindow:
    """CPU use from now until :meth:`percentages`: the server, this process, the machine, softirq."""

    NAMES = ("server", "poster", "machine", "softirq")

    def __init__(self, server: Server):
        self.server = server
        self.start = self._sample()

    def _sample(self) -> tuple[float, ...]:
        return (time.time(), self.server.cpu_seconds(), cpu_seconds(), *machine_seconds())

    def percentages(self) -> dict[str, float]:
        """``<name>_cpu_pct``: percent of one core, for each of ``NAMES``."""
        now = self._sample()
        wall = now[0] - self.start[0]
        return {
            f"{name}_cpu_pct": 100 * (end - start) / wall
            for name, end, start in zip(self.NAMES, now[1:], self.start[1:], strict=True)
        }


async def measure(args: argparse.Namespace, server: Server) -> dict:
    """Create the blog, connect the readers, post, and collect every figure."""
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(
        base_url=f"http://{HOST}:{server.port}", headers=headers, timeout=POST_TIMEOUT
    ) as client:
        (await client.post("/api/v1/blogs", json={"id": BLOG, "title": "Bench"})).raise_for_status()
        await asyncio.sleep(0.5)
        figures: dict = {"rss_before_kib": server.rss_kib()}
        generator = await Generator.start(args, server.port)
        try:
            connected = await generator.receive(BATCH_TIMEOUT * (args.readers // BATCH + 2))
            if not connected["ready"]:
                raise RuntimeError(f"no reader connected: {connected['failures']}")
            await asyncio.sleep(1.0)
            figures.update(connected=connected, rss_readers_kib=server.rss_kib())
            generator.send({"go": True})
            window = CpuWindow(server)
            posted, post_times, failed = await post_entries(client, args.rate, args.duration, args.body_bytes)
            generator.send({"posted": posted})
            await generator.receive(DRAIN_TIMEOUT + 10)  # every reader has every post, or timed out
            figures.update(window.percentages())
            figures.update(
                result=await generator.receive(60),
                posted=len(posted),
                post_failures=failed,
                post_times=post_times,
                wall_start=window.start[0],
                rss_end_kib=server.rss_kib(),
            )
        finally:
            await generator.stop()
    return figures


def report(args: argparse.Namespace, figures: dict) -> None:
    result, connected = figures["result"], figures["connected"]
    readers = connected["ready"]
    window = max(result["last_receive"] - figures["wall_start"], 1e-9)
    p50, p99, worst = result["latency_ms"]
    post_times = figures["post_times"]
    per_reader = (figures["rss_readers_kib"] - figures["rss_before_kib"]) / readers
    ours = figures["server_cpu_pct"] + result["cpu_pct"] + figures["poster_cpu_pct"]
    others = figures["machine_cpu_pct"] - ours
    rows = [
        (
            "readers connected",
            f"{readers} / {args.readers} in {connected['connect_s']:.1f} s"
            + (f"  failed attempts (retried): {connected['failures']}" if connected["failures"] else ""),
        ),
        (
            "posts",
            f"{figures['posted']} ok at {args.rate:g}/s for {args.duration:g} s"
            + (f"  failed: {figures['post_failures']}" if figures["post_failures"] else "")
            + f"  (POST p50 {1000 * percentile(post_times, 0.5):.1f} ms, max {1000 * post_times[-1]:.1f} ms)",
        ),
        (
            "deliveries",
            f"{result['deliveries']} (expected {figures['posted'] * readers}"
            + (f"; {result['of_failed_posts']} of posts that failed" if result["of_failed_posts"] else "")
            + ")",
        ),
        ("deliveries/s", f"{result['deliveries'] / window:,.0f} achieved, {readers * args.rate:,.0f} offered"),
        ("latency ms", f"p50 {p50:.1f}  p99 {p99:.1f}  max {worst:.1f}"),
        ("bytes per entry", entry_bytes(result)),
        (
            "per post, ms",
            "first reader p50 {:.1f} max {:.1f}; last reader later by p50 {:.1f} max {:.1f}".format(
                *result["first_reader_ms"], *result["spread_ms"]
            ),
        ),
        (
            "lost events",
            f"{result['lost']} (readers with loss: {result['readers_with_loss']}; "
            f"not received {DRAIN_TIMEOUT:g} s after the last post = lost)",
        ),
        ("duplicated events", f"{result['duplicates']}  (unexpected seq: {result['unexpected']})"),
        ("readers disconnected", f"{sum(result['disconnected'].values())} {result['disconnected'] or ''}"),
        (
            "server RSS",
            f"{figures['rss_before_kib'] / 1024:.1f} MiB idle, {figures['rss_readers_kib'] / 1024:.1f} MiB "
            f"with readers, {figures['rss_end_kib'] / 1024:.1f} MiB after the run",
        ),
        ("RSS per reader", f"{per_reader:.1f} KiB"),
        ("server CPU", f"{figures['server_cpu_pct']:.0f}% of one core over the window"),
        ("generator CPU", f"{result['cpu_pct']:.0f}% of one core ({result['cpu_s']:.1f} s)"),
        ("poster CPU", f"{figures['poster_cpu_pct']:.0f}% of one core"),
        (
            "softirq CPU",
            f"{figures['softirq_cpu_pct']:.0f}% of one core (loopback TCP work, mostly inside the rows above)",
        ),
        ("other CPU", f"{others:.0f}% of one core: the rest of the machine ({os.cpu_count()} cores), redis included"),
    ]
    width = max(len(name) for name, _ in rows)
    print(
        f"\nliveblog fan-out: {readers} readers, {args.rate:g} posts/s, {args.body_bytes}-byte posts, "
        f"pinned={args.pin}, generator={args.generator_impl}, deflate={args.deflate}"
        + (f" (nap {args.generator_nap_us} us)" if args.generator_impl == "c" else "")
    )
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readers", type=int, default=1000, help="WebSocket readers (default 1000)")
    parser.add_argument("--rate", type=float, default=5.0, help="posts per second (default 5)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of posting (default 20)")
    parser.add_argument("--body-bytes", type=int, default=600, help="size of each POST body (default 600)")
    parser.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2,
        help="server on core 0, load generator on core 1 (default: on if taskset exists and there are 2 cores)",
    )
    add_generator_options(parser)
    parser.add_argument("--generator", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--max-seq", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.readers < 1 or args.rate <= 0 or args.rate * args.duration < 1:
        parser.error("need at least one reader and one post")
    return args


def prepare_controller(args: argparse.Namespace) -> None:
    """Before any server starts: sockets to spare, the C generator built (a compile error stops
    the run here), and this process (the poster) on the generator's core when pinning."""
    raise_nofile()
    if args.generator_impl == "c":
        loadgen_binary()
    if args.pin:
        os.sched_setaffinity(0, {1})


def main() -> None:
    args = parse_args()
    if args.generator:
        uvloop.run(generate(args))
        return
    prepare_controller(args)
    with tempfile.TemporaryDirectory(prefix="liveblog-fanout-") as tmp:
        server = Server(Path(tmp), args.pin, args.readers)
        try:
            report(args, uvloop.run(asyncio.wait_for(measure(args, server), args.duration + 600)))
        finally:
            code = server.stop()
            problems = server.problems()
            print(f"  server exit code {code}; warnings and errors in its log: {sum(problems.values()) or 'none'}")
            for line, count in problems.items():
                print(f"    {count:>5} x {line}")


if __name__ == "__main__":
    main()
