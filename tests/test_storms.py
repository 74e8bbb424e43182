"""A deploy, for real: `liveblog serve` is stopped with SIGTERM and a fresh process takes its port
and its Redis. Each live reader is told when to come back, the delays spread over
``LIVEBLOG_RECONNECT_SPREAD_MS``, and every reader resumes from its cursor with nothing lost and
nothing twice: raw WebSocket clients that do what the contract says, and ``liveblog.client``'s
``follow``. With ``--reuse-port`` the new process starts before the old one stops, and the port
never stops listening. (The widget's side of the story is in tests/test_widget.py.)
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
from pathlib import Path

import httpx
import pytest
import websockets
from conftest import ADMIN_TOKEN, RECV_TIMEOUT, Prober, Served, receive

from liveblog.client import AsyncClient, Retry, Viewers
from liveblog.config import Settings
from liveblog.embedded import EmbeddedRedis

SPREAD_MS = 2000
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
pytestmark = pytest.mark.slow


def post(served: Served, body: str) -> dict:
    response = served.http.post("/api/v1/blogs/ukraine/entries", json={"body": body}, headers=ADMIN)
    assert response.status_code == 201, response.text
    return response.json()


async def a_blog_and_four_readers(
    data_dir: Path, env: dict[str, str]
) -> tuple[Served, str, str, list[websockets.ClientConnection]]:
    """`liveblog serve` with a blog, an entry and four raw live readers (their snapshot unread):
    the process, its port, the live URL and the readers."""
    first = await asyncio.to_thread(Served, data_dir, env)
    assert first.http.post("/api/v1/blogs", json={"id": "ukraine", "title": "Live"}, headers=ADMIN).status_code == 201
    post(first, "<p>before the deploy</p>")
    live = f"{first.ws_url}/api/v1/blogs/ukraine/live"
    return first, first.url.rsplit(":", 1)[1], live, [await websockets.connect(live) for _ in range(4)]


async def told_to_come_back(ws: websockets.ClientConnection) -> int:
    """The reader is closed with 1012: the delay it was told to wait (ms)."""
    await asyncio.wait_for(ws.wait_closed(), 10)
    assert ws.close_code == 1012
    return int(json.loads(ws.close_reason)["retry_ms"])


async def come_back(live: str, cursor: str, retry_ms: int, count: int) -> list[str]:
    """What a raw reader does after its 1012: wait as told, reconnect from its cursor; the ids of
    the ``count`` entries it is then sent."""
    await asyncio.sleep(retry_ms / 1000)
    async with websockets.connect(f"{live}?cursor={cursor}") as ws:
        return [(await receive(ws))["entry"]["id"] for _ in range(count)]


class Follower:
    """``AsyncClient.follow`` in a task: what it received, in order."""

    def __init__(self, url: str):
        # patient: the new process may take a while to start, and follow counts failed connects
        self.client = AsyncClient(url, retry=Retry(attempts=30, cap=3.0))
        self.messages: list[dict] = []
        self.snapshot = asyncio.Event()
        self.task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        async for message in self.client.follow("ukraine"):
            if not isinstance(message, Viewers):  # outside the log
                self.messages.append({"type": message.type, "cursor": message.cursor})
                self.snapshot.set()

    async def until(self, cursor: str) -> None:
        while not self.messages or self.messages[-1]["cursor"] != cursor:
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.client.aclose()


async def test_a_deploy_spreads_its_readers_returns_and_each_resumes_with_nothing_lost_or_twice(
    data_dir: Path, redis_server: EmbeddedRedis, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.WARNING, "liveblog.client")
    env = {
        "LIVEBLOG_REDIS_URL": redis_server.url,
        "LIVEBLOG_ADMIN_TOKEN": ADMIN_TOKEN,
        "LIVEBLOG_RECONNECT_SPREAD_MS": str(SPREAD_MS),
    }
    first, port, live, raw = await a_blog_and_four_readers(data_dir, env)
    cursors = [(await receive(ws))["cursor"] for ws in raw]
    followers = [Follower(first.url) for _ in range(2)]
    second: Served | None = None
    try:
        await asyncio.wait_for(asyncio.gather(*(f.snapshot.wait() for f in followers)), 20)

        first.process.send_signal(15)  # SIGTERM, as a deploy's supervisor sends it
        delays = [await told_to_come_back(ws) for ws in raw]
        assert await asyncio.to_thread(first.wait) == 0

        second = await asyncio.to_thread(Served, data_dir, env, ("--port", port))
        missed = [post(second, f"<p>while they were away {i}</p>") for i in range(3)]
        caught_up = await asyncio.gather(
            *(come_back(live, c, d, len(missed)) for c, d in zip(cursors, delays, strict=True))
        )
        last = post(second, "<p>after the deploy</p>")
        stream = second.http.get("/api/v1/blogs/ukraine/entries", params={"since": cursors[0]}).json()["events"]
        await asyncio.wait_for(asyncio.gather(*(f.until(stream[-1]["cursor"]) for f in followers)), 30)
    finally:
        for ws in raw:
            await ws.close()
        for follower in followers:
            await follower.stop()
        if second is not None:
            await asyncio.to_thread(second.stop)

    # Told when to come back: each its own moment, within the spread.
    assert len(set(delays)) == len(delays), delays
    assert all(0 <= delay < SPREAD_MS for delay in delays), delays
    # Came back from their cursors: what they missed, once each, in order.
    assert caught_up == [[entry["id"] for entry in missed]] * len(raw)
    # follow honoured its delay (not its own backoff), and missed nothing, doubled nothing.
    told = [float(m) for m in re.findall(r"the server restarts; reconnecting in ([\d.]+) s", caplog.text)]
    assert len(told) == len(followers), caplog.text
    assert all(0 <= delay < SPREAD_MS / 1000 for delay in told), told
    expected = [event["cursor"] for event in stream]
    assert [e["entry"]["id"] for e in stream] == [e["id"] for e in [*missed, last]]
    for follower in followers:
        assert follower.messages[0]["type"] == "snapshot"
        assert [m["cursor"] for m in follower.messages[1:]] == expected


async def test_a_deploy_with_reuse_port_never_closes_the_port_and_every_reader_resumes(
    data_dir: Path, redis_server: EmbeddedRedis
):
    # Blue/green on one host: the new `liveblog serve` (new code) starts on the port of the
    # running one; once it serves, the old one gets SIGTERM and its readers move over.
    env = {
        "LIVEBLOG_REDIS_URL": redis_server.url,
        "LIVEBLOG_ADMIN_TOKEN": ADMIN_TOKEN,
        "LIVEBLOG_REUSE_PORT": "1",
        "LIVEBLOG_RECONNECT_SPREAD_MS": str(SPREAD_MS),
        "LIVEBLOG_CONNECTS_PER_IP_PER_SECOND": "100000",  # the prober is one address
    }
    first, port, live, raw = await a_blog_and_four_readers(data_dir, env)
    for ws in raw:
        assert (await receive(ws))["type"] == "snapshot"
    prober = Prober(int(port))
    second: Served | None = None
    try:
        second = await asyncio.to_thread(Served, data_dir, env, ("--port", port))
        # Both serve the port now; a post reaches whichever the kernel picks, readers get it.
        with httpx.Client(base_url=first.url, timeout=10) as client:
            response = client.post("/api/v1/blogs/ukraine/entries", json={"body": "<p>both up</p>"}, headers=ADMIN)
            assert response.status_code == 201, response.text
        cursors = [(await receive(ws))["cursor"] for ws in raw]

        first.process.send_signal(15)
        delays = [await told_to_come_back(ws) for ws in raw]
        assert await asyncio.to_thread(first.wait) == 0
        probed_until_the_old_one_exited = prober.tried
        missed = [post(second, f"<p>while they were away {i}</p>") for i in range(3)]
        caught_up = await asyncio.gather(
            *(come_back(live, c, d, len(missed)) for c, d in zip(cursors, delays, strict=True))
        )
    finally:
        prober.stop()
        for ws in raw:
            await ws.close()
        if second is not None:
            await asyncio.to_thread(second.stop)
        if first.process.poll() is None:
            await asyncio.to_thread(first.stop)

    # Every reader resumed from its cursor: what it missed, once each, in order.
    assert caught_up == [[entry["id"] for entry in missed]] * len(raw)
    # The port never stopped listening: probed all along, before and after the old process went.
    assert 0 < probed_until_the_old_one_exited < prober.tried
    assert prober.refused == 0, f"{prober.refused} of {prober.tried} connections refused"


def response(sock: socket.socket) -> bytes:
    """One whole HTTP/1.1 response (a head, and the body its Content-Length says) read off ``sock``."""
    data = b""

    def more() -> bytes:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed after {data!r}"
        return chunk

    while b"\r\n\r\n" not in data:
        data += more()
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?im)^content-length: *(\d+)", head)[1])  # type: ignore[index]
    while len(body) < length:
        body += more()
    return head + b"\r\n\r\n" + body


async def test_a_stopping_process_tells_its_readers_first_then_gives_up_the_core_and_finishes(
    data_dir: Path, redis_server: EmbeddedRedis
):
    # In a deploy the old process and the new one often share a core. Once the old one has told
    # its readers to come back, what it still does (closing their connections, the requests in
    # flight) must not slow the new one down as it seats them: it lowers its CPU priority.
    env = {"LIVEBLOG_REDIS_URL": redis_server.url, "LIVEBLOG_ADMIN_TOKEN": ADMIN_TOKEN}
    first, port, _, raw = await a_blog_and_four_readers(data_dir, env)
    for ws in raw:
        assert (await receive(ws))["type"] == "snapshot"
    idle = socket.create_connection(("127.0.0.1", int(port)), timeout=RECV_TIMEOUT)
    idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert response(idle).startswith(b"HTTP/1.1 200")  # and kept alive, idle
    body = json.dumps({"body": "<p>posted as the deploy began</p>"}).encode()
    in_flight = socket.create_connection(("127.0.0.1", int(port)), timeout=RECV_TIMEOUT)
    head = f"POST /api/v1/blogs/ukraine/entries HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n"
    head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    in_flight.sendall(head.encode() + body[:10])
    try:
        pid = first.process.pid
        before = os.getpriority(os.PRIO_PROCESS, pid)  # not 0 if the tests run under nice
        # Asked again just before the signal, so that uvicorn's 5-s keep-alive cannot close it
        # first on a slow machine (its close is the sign that the shutdown went on).
        idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert response(idle).startswith(b"HTTP/1.1 200")
        first.process.send_signal(15)
        delays = [await told_to_come_back(ws) for ws in raw]
        assert all(0 <= delay < Settings().reconnect_spread_ms for delay in delays), delays
        # The idle connection is closed after the readers are told, as the rest of the shutdown
        # begins: by then the process has stepped back.
        assert await asyncio.to_thread(idle.recv, 1) == b""
        assert os.getpriority(os.PRIO_PROCESS, pid) == min(before + 10, 19)
        # and it still finishes what it was doing: the post in flight is made
        in_flight.sendall(body[10:])
        answer = await asyncio.to_thread(response, in_flight)
        assert answer.startswith(b"HTTP/1.1 201"), answer[:200]
        assert await asyncio.to_thread(first.wait) == 0
    finally:
        idle.close()
        in_flight.close()
        for ws in raw:
            await ws.close()
        if first.process.poll() is None:
            await asyncio.to_thread(first.stop)
