"""Soak: one ``liveblog serve`` (and its embedded Redis) for ``--minutes`` under churn, sampled every 10 s.

Run it from the repository, in the project's virtualenv with the ``bench`` extra
(``pip install -e '.[bench]'``, for matplotlib)::

    python bench/soak.py                          # 30 minutes, 200 joins/s
    python bench/soak.py --minutes 3 --json /tmp/soak.json --plot /tmp/soak.png

The workload, all against one blog:

- **Readers come and go**: ``--churn`` new readers a second (WebSocket, and ``--sse-share`` of them
  Server-Sent Events), each staying a random 0.2-1.8 x ``--stay`` seconds, so about churn x stay are
  connected at any time. Two reference readers (one of each kind) stay for the whole run.
- **The newsroom**: one new entry a second (~``--body-bytes``), an edit of a recent entry every
  other second, a retraction every fifth, and a purge of the oldest once ``--keep`` entries exist, so
  that what Redis holds has a steady state (the change log and the audit trail are capped lower
  than the defaults for the same reason, see ``SETTINGS``).
- **Stalled readers**: ``--stallers`` connections at any time (WebSocket and SSE in turn) that stop
  reading after their handshake, with a 4 KiB receive buffer. The server must drop each (4408, or
  its SSE ``event: close``; a reset or a bare end of stream also counts) within ``--stall-seconds``;
  then the slot opens a new one.

Every 10 s it samples the server's RSS and open descriptors (/proc), Redis ``INFO memory``
``used_memory``, the event loop's responsiveness (``GET /healthz``, 5 requests one after the
other on a kept-alive connection: their median and max; this process is idle apart from posting,
so the time is the server's), readers connected (the server's ``liveblog_readers`` gauge) and
errors so far. It fails (exit 1, naming the series) when a series grows without levelling off:
the median of the last third of the run over the median of the middle third by more than that
series' tolerance (``TOLERANCES``), with the second half's least-squares slope pointing up too.
It also fails on any error: a failed post, a reader that could not join (or, for more than
1 % of joins, had no snapshot within 10 s) or was closed by the server, a reader whose events
were not exactly the reference reader's from its snapshot on (in order, none missing, none
twice), an event the reference readers saw that a reader who stayed 3 s longer missed, or a
stalled reader the server kept.

The server is pinned to core 0 and the readers' process (this file's ``--generator`` mode, uvloop,
hand-written WebSocket and SSE clients) to core 1; this process posts and samples. Everything talks
to 127.0.0.1 only, every wait has a timeout, and every process it starts is stopped at the end, on
Ctrl-C or SIGTERM too. It writes every sample to ``--json`` and a plot to ``--plot`` (matplotlib).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fanout import (  # noqa: E402  (the liveblog-only benchmark's server process and WebSocket reader)
    ADMIN_TOKEN,
    CLK_TCK,
    FILLER,
    HOST,
    OP_CLOSE,
    SNAPSHOT,
    Server,
    WebSocketReader,
    raise_nofile,
)

BLOG = "soak"
SAMPLE_EVERY = 10.0
JOIN_TIMEOUT = 10.0
HTTP_TIMEOUT = 10.0
CHECK_DELAY = 5.0  # a reader's record is checked this long after it left: the reference has caught up
MISS_GRACE = 3.0  # an event the reference had this long before a reader left must have reached it
LAG_PROBES = 5
#: Readers that may wait over JOIN_TIMEOUT for their snapshot (a share of all joins): a busy
#: shared machine stalls the server now and then; a leak or a stuck loop fails far more.
SLOW_JOINS_ALLOWED = 0.01
#: Over the defaults: a whole run's readers and stallers come from one address; the log and audit
#: caps are lowered so that Redis reaches its steady state within minutes (the log holds ~1.7
#: events/s: the 10,000 default would take 100 min to fill); a stalled reader passes a 64 KiB
#: buffer within a minute at this blog's ~3 KB/s, and pings come every 60 s so that a stalled
#: WebSocket meets the buffer limit (4408) before its missing pong (1011).
SETTINGS = {
    "LIVEBLOG_MAX_CONNECTIONS_PER_IP": "5000",  # the most doors.per_address allows at 20k descriptors
    "LIVEBLOG_ACCESS_LOG": "0",  # a line per join would be ~100 MB over 30 minutes
    "LIVEBLOG_LOG_MAXLEN": "1000",
    "LIVEBLOG_AUDIT_MAXLEN": "1000",
    "LIVEBLOG_READER_BUFFER_BYTES": "65536",
    "LIVEBLOG_WS_PING_INTERVAL": "60",
}
#: Series -> (absolute, relative) growth allowed from the middle third's median to the last's.
TOLERANCES: dict[str, tuple[float, float]] = {
    "rss_mib": (4.0, 0.05),
    "fds": (30.0, 0.05),
    "redis_used_mib": (1.0, 0.05),
    "lag_p50_ms": (5.0, 0.5),
    "readers": (100.0, 0.10),
}
WS_REQUEST = (
    f"GET /api/v1/blogs/{BLOG}/live HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: c29hay1iZW5jaG1hcmsxMg==\r\nSec-WebSocket-Version: 13\r\n\r\n"
).encode()
SSE_REQUEST = (
    f"GET /api/v1/blogs/{BLOG}/events HTTP/1.1\r\nHost: {HOST}\r\nAccept: text/event-stream\r\n\r\n"
).encode()
CURSOR_MARK = b'"cursor":"'
EVENT_HEAD = b'{"type":"event"'


# --------------------------------------------------------------------------- readers (generator side)


def cursor_in(buffer: bytes, start: int, end: int) -> bytes:
    """The first ``"cursor":"…"`` value in ``buffer[start:end]``: a message's own (it comes first)."""
    mark = buffer.find(CURSOR_MARK, start, end) + len(CURSOR_MARK)
    return buffer[mark : buffer.find(b'"', mark, end)]


class Record:
    """What one reader saw: its snapshot's cursor, then every event's cursor, in arrival order."""

    __slots__ = ("kind", "snapshot", "cursors", "left", "on_event")

    def __init__(self, kind: str):
        self.kind = kind
        self.snapshot: bytes | None = None
        self.cursors: list[bytes] = []
        self.left = 0.0
        self.on_event: Any = None  # the reference readers: also keep each event's JSON and time


class WsReader(WebSocketReader):
    def __init__(self, record: Record):
        super().__init__(WS_REQUEST, 0, lambda _latency: None)
        self.record = record

    def _text(self, buffer: bytes, start: int, end: int, now: float) -> None:
        if buffer.startswith(EVENT_HEAD, start):
            cursor = cursor_in(buffer, start, end)
            self.record.cursors.append(cursor)
            if self.record.on_event is not None:
                self.record.on_event(cursor, buffer[start:end], now)
        elif buffer.startswith(SNAPSHOT, start) and not self.ready.done():
            self.record.snapshot = cursor_in(buffer, start, end)
            self.ready.set_result(None)


class SseReader(asyncio.Protocol):
    """An EventSource without the browser: the response's chunked body, split into records."""

    def __init__(self, record: Record):
        self.record = record
        self.transport: asyncio.Transport | None = None
        self.ready = asyncio.get_running_loop().create_future()
        self.head = True
        self.raw = b""
        self.text = b""
        self.close_code: int | None = None
        self.lost_connection = False
        self.stopping = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport
        transport.write(SSE_REQUEST)

    def data_received(self, data: bytes) -> None:
        raw = self.raw + data
        if self.head:
            end = raw.find(b"\r\n\r\n")
            if end < 0:
                self.raw = raw
                return
            if not raw.startswith(b"HTTP/1.1 200"):
                self._fail(raw[: raw.find(b"\r\n")].decode(errors="replace"))
                return
            self.head = False
            raw = raw[end + 4 :]
        pos, chunks = 0, [self.text]
        while True:  # Transfer-Encoding: chunked
            line_end = raw.find(b"\r\n", pos)
            if line_end < 0:
                break
            size = int(raw[pos:line_end], 16)
            if len(raw) < line_end + 2 + size + 2:
                break
            chunks.append(raw[line_end + 2 : line_end + 2 + size])
            pos = line_end + 2 + size + 2
        self.raw = raw[pos:]
        text = b"".join(chunks)
        now = time.time()
        start = 0
        while (end := text.find(b"\n\n", start)) >= 0:
            self._record(text, start, end, now)
            start = end + 2
        self.text = text[start:]

    def _record(self, text: bytes, start: int, end: int, now: float) -> None:
        data = text.find(b"data: ", start, end)
        if data < 0:
            return  # retry:, a heartbeat comment
        data += 6
        if text.startswith(b"event: close", start):
            self.close_code = msgspec.json.decode(text[data:end])["code"]
            self._fail(f"closed by server with {self.close_code}")
        elif text.startswith(EVENT_HEAD, data):
            cursor = cursor_in(text, data, end)
            self.record.cursors.append(cursor)
            if self.record.on_event is not None:
                self.record.on_event(cursor, text[data:end], now)
        elif text.startswith(SNAPSHOT, data) and not self.ready.done():
            self.record.snapshot = cursor_in(text, data, end)
            self.ready.set_result(None)

    def _fail(self, reason: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(reason))
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost_connection = not self.stopping
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"connection lost: {exc}"))

    @property
    def disconnected(self) -> bool:
        return self.close_code is not None or self.lost_connection


def problem(counts: dict[str, int], what: str) -> None:
    counts[what] = counts.get(what, 0) + 1


class Reference:
    """The two readers that stay all run: the log as delivered, each event's cursor and arrival."""

    def __init__(self) -> None:
        self.index: dict[bytes, int] = {}
        self.cursors: list[bytes] = []
        self.arrived: list[float] = []
        self.events: dict[str, list[list[Any]]] = {"ws": [], "sse": []}

    def keeper(self, kind: str) -> Any:
        def keep(cursor: bytes, message: bytes, now: float) -> None:
            event = msgspec.json.decode(message)
            entry = event.get("entry") or {}
            self.events[kind].append([event["event"], entry.get("id"), entry.get("version")])
            if kind == "ws":
                self.index[cursor] = len(self.cursors)
                self.cursors.append(cursor)
                self.arrived.append(now)

        return keep

    def check(self, record: Record, problems: dict[str, int]) -> None:
        """``record``'s events must be the reference's right after its snapshot, in order, and
        none the reference had ``MISS_GRACE`` before it left may be missing."""
        first = self.index.get(record.snapshot or b"", -2) + 1
        if first < 0:
            problem(problems, f"{record.kind}: snapshot cursor the reference never saw")
            return
        seen = record.cursors
        if seen != self.cursors[first : first + len(seen)]:
            problem(problems, f"{record.kind}: events not the log's, in order, from the snapshot on")
            return
        due = first + len(seen)
        if due < len(self.arrived) and self.arrived[due] < record.left - MISS_GRACE:
            problem(problems, f"{record.kind}: missed events the reference had {MISS_GRACE:.0f} s before it left")


class Generator:
    """The ``--generator`` process: churning readers, stalled readers, the reference; JSON lines out."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.loop = asyncio.get_running_loop()
        self.reference = Reference()
        self.connected = {"ws": 0, "sse": 0}
        self.joins = 0
        self.leaves = 0
        self.checked = 0
        self.problems: dict[str, int] = {}
        self.stalls: dict[str, int] = {}
        self.pending: list[Record] = []
        self.visits: set[asyncio.Task[None]] = set()

    async def open(self, record: Record) -> WsReader | SseReader:
        protocol: WsReader | SseReader
        _, protocol = await self.loop.create_connection(
            lambda: WsReader(record) if record.kind == "ws" else SseReader(record), HOST, self.args.port
        )
        try:
            async with asyncio.timeout(JOIN_TIMEOUT):
                await protocol.ready
        except BaseException:
            protocol.stopping = True
            if protocol.transport is not None:
                protocol.transport.abort()
            raise
        return protocol

    async def visit(self, kind: str, stay: float) -> None:
        record = Record(kind)
        try:
            reader = await self.open(record)
        except (OSError, TimeoutError) as exc:
            problem(self.problems, f"{kind}: join failed: {str(exc)[:80] or type(exc).__name__}")
            return
        self.joins += 1
        self.connected[kind] += 1
        try:
            await asyncio.sleep(stay)
        finally:
            self.connected[kind] -= 1
            record.left = time.time()
            if reader.disconnected:
                problem(self.problems, f"{kind}: dropped by the server (close {reader.close_code})")
            reader.stopping = True
            assert reader.transport is not None
            reader.transport.close()
            self.leaves += 1
            self.pending.append(record)

    async def churn(self) -> None:
        """``--churn`` visits a second, started in ticks of 20 ms; at most ``--max-readers`` at once."""
        args, owed, tick = self.args, 0.0, 0.02
        start = self.loop.time()
        for step in range(1, 1 << 62):
            await asyncio.sleep(max(0.0, start + step * tick - self.loop.time()))
            owed += args.churn * tick
            while owed >= 1:
                owed -= 1
                if len(self.visits) >= args.max_readers:
                    problem(self.problems, "join skipped: --max-readers visits open (the server is slow)")
                    continue
                kind = "sse" if random.random() < args.sse_share else "ws"
                task = asyncio.create_task(self.visit(kind, args.stay * random.uniform(0.2, 1.8)))
                self.visits.add(task)
                task.add_done_callback(self.visits.discard)

    async def stall(self, slot: int) -> None:
        """Slot ``slot``'s stalled readers, one after another: connect, stop reading, see it dropped."""
        for turn in range(1 << 62):
            kind = ("ws", "sse")[(slot + turn) % 2]
            with socket.socket() as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window
                sock.setblocking(False)
                await self.loop.sock_connect(sock, (HOST, self.args.port))
                await self.loop.sock_sendall(sock, WS_REQUEST if kind == "ws" else SSE_REQUEST)
                await asyncio.sleep(self.args.stall_seconds)
                problem(self.stalls, f"{kind}: {await self.drain(sock, kind)}")

    async def drain(self, sock: socket.socket, kind: str) -> str:
        """Read what the server sent a stalled reader: how it ended, or that it has not."""
        received = bytearray()
        try:
            while True:
                async with asyncio.timeout(2.0):
                    data = await self.loop.sock_recv(sock, 1 << 16)
                if not data:
                    break
                received += data
        except TimeoutError:
            return "not dropped"
        except ConnectionResetError:
            return "reset"
        if kind == "sse":
            close = received.rfind(b"event: close\ndata: ")
            if close < 0:
                return "end of stream"
            data = received[close + 19 :].split(b"\n", 1)[0]
            return f"event: close {msgspec.json.decode(data)['code']}"
        # The last frame, if it is a close: 2-byte header (the payload is short) then the code.
        tail = received[-64:]
        close = tail.rfind(bytes((0x80 | OP_CLOSE,)))
        if close >= 0 and close + 4 <= len(tail):
            return f"close {int.from_bytes(tail[close + 2 : close + 4], 'big')}"
        return "end of stream"

    def check_pending(self, everything: bool = False) -> None:
        cutoff = time.time() - CHECK_DELAY
        keep = []
        for record in self.pending:
            if everything or record.left < cutoff:
                self.reference.check(record, self.problems)
                self.checked += 1
            else:
                keep.append(record)
        self.pending = keep

    def stats(self) -> dict[str, Any]:
        return {
            "connected": dict(self.connected),
            "joins": self.joins,
            "leaves": self.leaves,
            "checked": self.checked,
            "reference_events": len(self.reference.cursors),
            "problems": dict(self.problems),
            "stalls": dict(self.stalls),
        }

    async def run(self) -> None:
        references = []
        for kind in ("ws", "sse"):
            record = Record(kind)
            record.on_event = self.reference.keeper(kind)
            references.append((record, await self.open(record)))
        self.reference.index[references[0][0].snapshot or b""] = -1
        if references[0][0].snapshot != references[1][0].snapshot:
            raise RuntimeError("the reference readers' snapshots differ: was something posted already?")
        emit({"ready": True})
        async with asyncio.TaskGroup() as group:
            workers = [group.create_task(self.churn())]
            workers += [group.create_task(self.stall(slot)) for slot in range(self.args.stallers)]
            workers.append(group.create_task(self.report()))
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # "stop"
            for worker in workers:
                worker.cancel()
        for task in list(self.visits):
            task.cancel()
        await asyncio.gather(*self.visits, return_exceptions=True)
        self.check_pending(everything=True)
        for record, reader in references:
            if reader.disconnected:
                problem(self.problems, f"{record.kind}: the reference reader was dropped")
            reader.stopping = True
            assert reader.transport is not None
            reader.transport.close()
        emit({"final": self.stats(), "reference": self.reference.events})

    async def report(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.check_pending()
            emit({"stats": self.stats()})


def emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def generate(args: argparse.Namespace) -> None:
    raise_nofile()
    await Generator(args).run()


# --------------------------------------------------------------------------- the newsroom and the samples


def body(seq: int, size: int) -> dict[str, Any]:
    return {"headline": f"soak {seq}", "body": "<p>" + (FILLER * (size // len(FILLER) + 1))[:size] + "</p>"}


class Newsroom:
    """Posts, edits, retracts and purges; remembers what the public log should carry, in order."""

    def __init__(self, client: httpx.AsyncClient, args: argparse.Namespace):
        self.client = client
        self.args = args
        self.versions: dict[str, int] = {}  # entry id -> version, oldest first (dicts keep order)
        self.published: list[str] = []  # ids still public
        self.created: list[str] = []
        self.counts = {"posted": 0, "edited": 0, "retracted": 0, "purged": 0}
        self.failures: dict[str, int] = {}

    async def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response | None:
        try:
            response = await self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            problem(self.failures, f"{method} {type(exc).__name__}")
            return None
        if response.status_code >= 300:
            problem(self.failures, f"{method} {response.status_code}: {response.text[:120]}")
            return None
        return response

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        entries = f"/api/v1/blogs/{BLOG}/entries"
        for seq in range(1 << 62):
            await asyncio.sleep(max(0.0, start + seq - loop.time()))
            if response := await self.call("POST", entries, json=body(seq, self.args.body_bytes)):
                entry = response.json()
                self.versions[entry["id"]] = entry["version"]
                self.published.append(entry["id"])
                self.created.append(entry["id"])
                self.counts["posted"] += 1
            recent = self.published[-20:]
            if seq % 2 == 1 and recent:
                entry_id = random.choice(recent)
                headers = {"If-Match": f'"{self.versions[entry_id]}"'}
                edit = body(seq, self.args.body_bytes)
                if response := await self.call("PATCH", f"{entries}/{entry_id}", json=edit, headers=headers):
                    self.versions[entry_id] = response.json()["version"]
                    self.counts["edited"] += 1
            if seq % 5 == 4 and len(recent) > 1:
                entry_id = random.choice(recent[:-1])
                headers = {"If-Match": f'"{self.versions[entry_id]}"'}
                if await self.call("DELETE", f"{entries}/{entry_id}", headers=headers):
                    self.published.remove(entry_id)
                    self.counts["retracted"] += 1
            if len(self.versions) > self.args.keep:
                entry_id = next(iter(self.versions))
                if await self.call("DELETE", f"{entries}/{entry_id}", params={"purge": "true"}):
                    del self.versions[entry_id]
                    if entry_id in self.published:
                        self.published.remove(entry_id)
                    self.counts["purged"] += 1


def metric_values(text: str, name: str) -> float:
    """The sum of a Prometheus text family's samples named ``name`` (any labels)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def run_queue_seconds(pid: int) -> float:
    """Seconds process ``pid``'s main thread was runnable but waited for a CPU (schedstat): on a
    shared machine, the stalls that are other processes' doing."""
    return int(Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()[1]) / 1e9


class Sampler:
    def __init__(self, server: Server, client: httpx.AsyncClient, redis_socket: Path, generator_pid: int):
        self.server = server
        self.client = client
        self.redis_socket = redis_socket
        self.generator_pid = generator_pid
        self.samples: list[dict[str, Any]] = []
        self.probe_failures = 0
        self.last_metrics = ""
        self.last = (time.monotonic(), server.cpu_seconds(), cpu_of(generator_pid))
        self.last_wait = run_queue_seconds(server.pid)

    def redis_used(self) -> int:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(HTTP_TIMEOUT)
            sock.connect(str(self.redis_socket))
            sock.sendall(b"INFO memory\r\n")
            reply = b""
            while (head := reply.find(b"\r\n")) < 0 or len(reply) < head + 2 + int(reply[1:head]) + 2:
                data = sock.recv(1 << 16)
                if not data:
                    raise RuntimeError("Redis closed the connection before answering INFO memory")
                reply += data
        for line in reply.decode().splitlines():
            if line.startswith("used_memory:"):
                return int(line.split(":")[1])
        raise RuntimeError("no used_memory in Redis INFO memory")

    async def sample(self, elapsed: float, generator: dict[str, Any], newsroom: Newsroom) -> dict[str, Any]:
        lags = []
        for _ in range(LAG_PROBES):
            started = time.perf_counter()
            try:
                (await self.client.get("/healthz")).raise_for_status()
            except httpx.HTTPError as exc:  # a series of its own, not the end of the run
                self.probe_failures += 1
                print(f"GET /healthz failed: {type(exc).__name__}", flush=True)
            lags.append(1000 * (time.perf_counter() - started))
        try:
            metrics = (await self.client.get("/metrics")).text
        except httpx.HTTPError as exc:
            self.probe_failures += 1
            print(f"GET /metrics failed: {type(exc).__name__}", flush=True)
            metrics = self.last_metrics
        self.last_metrics = metrics
        now, server_cpu, generator_cpu = time.monotonic(), self.server.cpu_seconds(), cpu_of(self.generator_pid)
        wall = now - self.last[0]
        server_pct, generator_pct = (
            100 * (server_cpu - self.last[1]) / wall,
            100 * (generator_cpu - self.last[2]) / wall,
        )
        self.last = (now, server_cpu, generator_cpu)
        waited = run_queue_seconds(self.server.pid)
        waiting_pct, self.last_wait = 100 * (waited - self.last_wait) / wall, waited
        problems = sum(generator.get("problems", {}).values()) + sum(newsroom.failures.values())
        problems += generator.get("stalls", {}).get("ws: not dropped", 0)
        problems += generator.get("stalls", {}).get("sse: not dropped", 0)
        sample = {
            "t": round(elapsed, 1),
            "rss_mib": self.server.rss_kib() / 1024,
            "fds": len(os.listdir(f"/proc/{self.server.pid}/fd")),
            "redis_used_mib": self.redis_used() / (1 << 20),
            "lag_p50_ms": statistics.median(lags),
            "lag_max_ms": max(lags),
            "readers": metric_values(metrics, "liveblog_readers"),
            "slow_closes": metric_values(metrics, "liveblog_slow_reader_closes_total"),
            "gc_pause_s": metric_values(metrics, "liveblog_gc_pause_seconds_sum"),
            "gc_full": metric_values(metrics, "liveblog_gc_pause_seconds_count"),
            "cache_bytes": metric_values(metrics, "liveblog_cache_bytes"),
            "generator_connected": sum(generator.get("connected", {}).values()),
            "joins": generator.get("joins", 0),
            "errors": problems,
            "load1": os.getloadavg()[0],
            "server_cpu_pct": server_pct,
            "generator_cpu_pct": generator_pct,
            "server_runnable_waiting_pct": waiting_pct,
            "probe_failures": self.probe_failures,
        }
        self.samples.append(sample)
        return sample


def judge(samples: list[dict[str, Any]]) -> list[str]:
    """The series that grow without levelling off: last third's median over the middle third's by
    more than the series' tolerance, and the second half's slope upwards."""
    failures = []
    third = len(samples) // 3
    if third < 2:
        return ["too few samples to judge growth: run for at least a minute"]
    for name, (absolute, relative) in TOLERANCES.items():
        values = [sample[name] for sample in samples]
        middle, last = statistics.median(values[third : 2 * third]), statistics.median(values[2 * third :])
        half = samples[len(samples) // 2 :]
        slope = statistics.linear_regression([s["t"] for s in half], [s[name] for s in half]).slope
        allowed = max(absolute, relative * abs(middle))
        if last - middle > allowed and slope > 0:
            failures.append(
                f"{name} grows: last third's median {last:.2f} vs middle third's {middle:.2f} "
                f"(+{last - middle:.2f}, allowed {allowed:.2f}); second half's slope {slope * 600:+.2f} per 10 min"
            )
    return failures


def summary_table(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per series: first, middle third's median, last third's median, max, second half's slope/10 min."""
    third = len(samples) // 3
    rows = []
    for name in ("rss_mib", "fds", "redis_used_mib", "lag_p50_ms", "lag_max_ms", "readers", "cache_bytes"):
        values = [sample[name] for sample in samples]
        half = samples[len(samples) // 2 :]
        slope = (
            statistics.linear_regression([s["t"] for s in half], [s[name] for s in half]).slope if len(half) > 1 else 0
        )
        rows.append(
            {
                "series": name,
                "first": values[0],
                "middle_median": statistics.median(values[third : 2 * third] or values),
                "last_median": statistics.median(values[2 * third :] or values),
                "max": max(values),
                "slope_per_10min": slope * 600,
            }
        )
    return rows


def plot(samples: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [sample["t"] / 60 for sample in samples]
    panels = [
        ("server RSS (MiB)", ["rss_mib"]),
        ("open descriptors", ["fds"]),
        ("Redis used_memory (MiB)", ["redis_used_mib"]),
        ("GET /healthz (ms)", ["lag_p50_ms", "lag_max_ms"]),
        ("readers connected", ["readers"]),
        ("errors so far / load", ["errors", "load1"]),
        ("server CPU, and runnable but waiting (%)", ["server_cpu_pct", "server_runnable_waiting_pct"]),
        ("full GC pauses so far (s)", ["gc_pause_s"]),
    ]
    figure, axes = plt.subplots(2, 4, figsize=(15, 6), sharex=True)
    for axis, (label, names) in zip(axes.flat, panels, strict=True):
        for name in names:
            axis.plot(minutes, [sample[name] for sample in samples], label=name, linewidth=1)
        axis.set_title(label, fontsize=9)
        axis.tick_params(labelsize=8)
        if names[0] == "lag_p50_ms":
            axis.set_yscale("log")  # the spikes are seconds, the median milliseconds
        else:
            axis.set_ylim(bottom=0)
        if len(names) > 1:
            axis.legend(fontsize=7)
    for axis in axes[1]:
        axis.set_xlabel("minutes", fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=72)
    plt.close(figure)


async def soak(args: argparse.Namespace) -> int:
    data_dir = Path(tempfile.mkdtemp(prefix="liveblog-soak-"))
    os.environ.update(SETTINGS)  # for the server's environment (fanout.Server passes ours on)
    server: Server | None = None
    generator: asyncio.subprocess.Process | None = None
    loop = asyncio.get_running_loop()
    started_at = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    loop.add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)  # stop everything, as for Ctrl-C
    try:
        server = Server(data_dir, args.pin, readers=4000)
        print(f"server pid {server.pid} on port {server.port}, data in {data_dir}", flush=True)
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with (
            httpx.AsyncClient(base_url=f"http://{HOST}:{server.port}", headers=headers, timeout=HTTP_TIMEOUT) as client,
            httpx.AsyncClient(base_url=f"http://{HOST}:{server.port}", timeout=HTTP_TIMEOUT) as probe,
        ):
            (await client.post("/api/v1/blogs", json={"id": BLOG, "title": "Soak"})).raise_for_status()
            command = [sys.executable, __file__, "--generator", "--port", str(server.port)]
            command += ["--churn", str(args.churn), "--stay", str(args.stay), "--sse-share", str(args.sse_share)]
            command += ["--stallers", str(args.stallers), "--stall-seconds", str(args.stall_seconds)]
            command += ["--max-readers", str(args.max_readers)]
            generator = await asyncio.create_subprocess_exec(
                *(["taskset", "-c", "1"] if args.pin else []),
                *command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                limit=1 << 24,
            )
            assert generator.stdout is not None and generator.stdin is not None
            async with asyncio.timeout(60):
                ready = json.loads(await generator.stdout.readline() or b"{}")
            if not ready.get("ready"):
                raise RuntimeError("the readers' process did not start")
            latest: dict[str, Any] = {}
            final: dict[str, Any] = {}

            async def listen() -> None:
                assert generator is not None and generator.stdout is not None
                while line := await generator.stdout.readline():
                    message = json.loads(line)
                    latest.update(message.get("stats") or message.get("final") or {})
                    if "final" in message:
                        final.update(message)

            newsroom = Newsroom(client, args)
            sampler = Sampler(server, probe, data_dir / "data" / "redis" / "redis.sock", generator.pid)
            start = loop.time()
            shown: dict[str, int] = {}
            async with asyncio.TaskGroup() as group:
                listener = group.create_task(listen())
                posting = group.create_task(newsroom.run())
                for tick in range(1, int(args.minutes * 60 / SAMPLE_EVERY) + 1):
                    await asyncio.sleep(max(0.0, start + tick * SAMPLE_EVERY - loop.time()))
                    sample = await sampler.sample(loop.time() - start, latest, newsroom)
                    print(
                        f"{sample['t']:7.0f}s rss {sample['rss_mib']:6.1f} MiB  fds {sample['fds']:5d}  "
                        f"redis {sample['redis_used_mib']:6.2f} MiB  healthz {sample['lag_p50_ms']:5.1f}/"
                        f"{sample['lag_max_ms']:5.1f} ms  readers {sample['readers']:5.0f}  "
                        f"joins {sample['joins']:7d}  errors {sample['errors']}  load {sample['load1']:.2f}  "
                        f"cpu {sample['server_cpu_pct']:3.0f}/{sample['generator_cpu_pct']:3.0f} %  "
                        f"waiting {sample['server_runnable_waiting_pct']:3.0f} %",
                        flush=True,
                    )
                    if (kinds := {**latest.get("problems", {}), **newsroom.failures}) != shown:
                        print("         errors so far:", kinds, flush=True)
                        shown = dict(kinds)
                posting.cancel()
                await asyncio.sleep(MISS_GRACE + 1)  # the last events reach every reader
                generator.stdin.write(b"stop\n")
                await generator.stdin.drain()
                async with asyncio.timeout(120):
                    await listener
            problems = server.problems()
    finally:
        if generator is not None and generator.returncode is None:
            generator.kill()
            await generator.wait()
        if server is not None:
            server.stop()
        if not args.keep_data:
            shutil.rmtree(data_dir, ignore_errors=True)

    failures = judge(sampler.samples)
    stats = final.get("final", {})
    slow_joins = 0
    for what, count in {**stats.get("problems", {}), **newsroom.failures}.items():
        if what.endswith("join failed: TimeoutError"):
            slow_joins += count  # no snapshot within JOIN_TIMEOUT: judged as a share, below
        else:
            failures.append(f"errors: {what} x {count}")
    if slow_joins > SLOW_JOINS_ALLOWED * max(1, stats.get("joins", 0)):
        failures.append(f"slow joins: {slow_joins} readers had no snapshot within {JOIN_TIMEOUT:g} s")
    for what, count in stats.get("stalls", {}).items():
        if what.endswith("not dropped"):
            failures.append(f"stalled readers the server kept: {what} x {count}")
    reference = final.get("reference", {"ws": [], "sse": []})
    if reference["ws"] != reference["sse"]:
        failures.append("the WebSocket and SSE reference readers saw different logs")
    created = [entry_id for event, entry_id, version in reference["ws"] if event == "entry.created"]
    if created != newsroom.created:
        failures.append(
            f"the reference saw {len(created)} entries created, in another order or not all of "
            f"the {len(newsroom.created)} posted"
        )
    report = {
        "started": started_at,
        "args": {key: str(value) for key, value in vars(args).items()},
        "settings": SETTINGS,
        "newsroom": newsroom.counts,
        "generator": stats,
        "reference_events": len(reference["ws"]),
        "server_log_problems": problems,
        "table": summary_table(sampler.samples),
        "failures": failures,
        "samples": sampler.samples,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    if args.plot:
        plot(sampler.samples, args.plot, f"liveblog soak, {started_at}, {args.minutes:g} min, {args.churn:g} joins/s")
    print(
        json.dumps(
            {key: report[key] for key in ("newsroom", "generator", "reference_events", "server_log_problems")}, indent=1
        )
    )
    for row in report["table"]:
        print(
            f"{row['series']:>15}: first {row['first']:10.2f}  middle {row['middle_median']:10.2f}  "
            f"last {row['last_median']:10.2f}  max {row['max']:10.2f}  slope {row['slope_per_10min']:+8.2f}/10 min"
        )
    for failure in failures:
        print("FAIL:", failure)
    print("PASS" if not failures else f"FAIL ({len(failures)})")
    return 1 if failures else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="how long to run (default 30)")
    parser.add_argument("--churn", type=float, default=200.0, help="readers joining a second (default 200)")
    parser.add_argument("--stay", type=float, default=10.0, help="mean seconds a reader stays (default 10)")
    parser.add_argument("--sse-share", type=float, default=0.3, help="share of readers on SSE (default 0.3)")
    parser.add_argument("--stallers", type=int, default=4, help="stalled readers at any time (default 4)")
    parser.add_argument(
        "--stall-seconds", type=float, default=180.0, help="time the server has to drop one (default 180)"
    )
    parser.add_argument("--max-readers", type=int, default=6000, help="most visits open at once (default 6000)")
    parser.add_argument("--body-bytes", type=int, default=2000, help="size of each entry's body (default 2000)")
    parser.add_argument("--keep", type=int, default=100, help="entries kept before the oldest is purged")
    parser.add_argument("--json", type=Path, help="write the samples and the verdict here")
    parser.add_argument("--plot", type=Path, help="write a PNG of the samples here (matplotlib)")
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin to cores 0 and 1")
    parser.add_argument("--keep-data", action="store_true", help="leave the server's data directory")
    parser.add_argument("--generator", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generator:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the controller stops us, in order
        uvloop.run(generate(args))
        return
    raise_nofile()
    try:
        sys.exit(uvloop.run(soak(args)))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted: every process this run started was stopped", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
