"""Faults injected for real: Redis dies and returns, the app is SIGKILLed or SIGTERMed, Redis
loses its data. Each story checks what readers and reporters notice: nothing lost, nothing
doubled, order kept, and clear answers while something is down."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from collections.abc import Collection, Iterable
from pathlib import Path

import httpx
import pytest
import redis as sync_redis
import websockets
from conftest import ADMIN_TOKEN, UNLIMITED, Served, receive, running_service

from liveblog import keys
from liveblog.embedded import EmbeddedRedis

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

#: Close codes after which the contract has a live reader reconnect with its cursor.
RECONNECT_CODES = frozenset({1001, 1012, 4408})


def reconnect_after(error: Exception, url: str, cut: Collection[str]) -> None:
    """Return if the contract has a live reader reconnect after ``error`` on ``url``; else raise it.

    A reader reconnects when the server closed with 1001, 1012 or 4408, or when its connection
    broke, was refused or never answered because the test itself took that server down (``url``
    starts with one in ``cut``: a process it killed or stopped). Any other close code (1011,
    1002, 4404...), an HTTP answer instead of the upgrade (a 500), or a connection that broke
    while nobody took its server down, fails the test.
    """
    if isinstance(error, websockets.ConnectionClosed) and error.rcvd is not None:
        if error.rcvd.code in RECONNECT_CODES:
            return
    elif isinstance(error, websockets.ConnectionClosed | websockets.InvalidMessage | OSError | TimeoutError):
        if any(url.startswith(server) for server in cut):
            return
    raise error


def raise_failed(tasks: Iterable[asyncio.Task]) -> None:
    """Fail with the error of the first of ``tasks`` that failed (a reader that gave up)."""
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()


async def stop(tasks: list[asyncio.Task]) -> None:
    """Cancel ``tasks`` and wait for them; one that had failed fails the test with its error."""
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()  # again, for a task that swallowed the last one (wait_for in Python 3.11 may)
        _, pending = await asyncio.wait(pending, timeout=1)
    raise_failed(tasks)


async def until(condition, timeout: float = 15.0, interval: float = 0.05, tasks: Iterable[asyncio.Task] = ()):
    """Poll ``condition`` (an async callable) until it returns something true; fail at once with
    the error of any of ``tasks`` that fails meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raise_failed(tasks)
        if result := await condition():
            return result
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


async def test_redis_dies_and_returns_reporters_get_503_readers_miss_nothing(tmp_path: Path):
    redis = EmbeddedRedis(tmp_path / "redis").start()
    try:
        async with running_service(redis.url, UNLIMITED) as service:
            await service.create_blog()
            before = await service.post(body="<p>before the outage</p>")
            async with service.live() as reader:
                await receive(reader)
                redis.kill()

                # Redis comes back only once this is answered: a write waiting for it would never be
                refused = await service.http.post(
                    "/api/v1/blogs/ukraine/entries", json={"body": "<p>during</p>"}, headers=service.auth()
                )
                assert refused.status_code == 503, "writes fail while Redis is away, they do not wait for it"
                assert refused.json()["error"]["code"] == "unavailable"
                assert (await service.http.get("/readyz")).status_code == 503
                assert 'liveblog_redis_errors_total{where="api"} 1.0' in (await service.http.get("/metrics")).text
                await asyncio.wait_for(await reader.ping(), 5)  # the reader is still connected and served

                redis.start()

                async def ready():
                    return (await service.http.get("/readyz")).status_code == 200

                await until(ready)
                after = await service.post(body="<p>after the outage</p>")
                event = await receive(reader, timeout=15)  # the tailer came back by itself
                assert event["entry"]["id"] == after["id"]

            listed = (await service.http.get("/api/v1/blogs/ukraine/entries")).json()["entries"]
            assert [e["id"] for e in listed] == [after["id"], before["id"]]
    finally:
        redis.stop()


class Reader:
    """A reader that reconnects with its last cursor, to whichever server is current, when the
    contract says to (see :func:`reconnect_after`; ``cut``: the servers the test took down)."""

    def __init__(self, urls: list[str], cut: set[str]):
        self.urls = urls
        self.cut = cut
        self.cursor: str | None = None
        self.joined_at: str | None = None
        self.events: list[dict] = []
        self.connections = 0

    async def follow(self) -> None:
        while True:
            url = self.urls[-1] + "/api/v1/blogs/ukraine/live" + (f"?cursor={self.cursor}" if self.cursor else "")
            try:
                async with websockets.connect(url, open_timeout=5) as ws:
                    self.connections += 1
                    while True:
                        message = json.loads(await ws.recv())
                        if message["type"] == "viewers":
                            continue
                        if message["type"] == "snapshot":
                            assert self.joined_at is None, "a resumable cursor never gets a second snapshot"
                            self.joined_at = message["cursor"]
                        else:
                            self.events.append(message)
                        self.cursor = message["cursor"]
            except Exception as error:  # sorted out by reconnect_after
                reconnect_after(error, url, self.cut)
                await asyncio.sleep(0.05)


async def _post_with_retries(urls: list[str], body: str, key: str, cut: Collection[str] = ()) -> dict:
    """A reporter on a shaky connection: retry with the same Idempotency-Key until it lands, when
    the server it tried was taken down by the test (``cut``) or said it is unavailable (503)."""
    headers = {**ADMIN, "Idempotency-Key": key}
    for _ in range(400):
        url = urls[-1]
        try:
            async with httpx.AsyncClient(base_url=url.replace("ws://", "http://"), timeout=5) as http:
                response = await http.post("/api/v1/blogs/ukraine/entries", json={"body": body}, headers=headers)
            if response.status_code == 201:
                return response.json()
            assert response.status_code == 503, (response.status_code, response.text)
        except httpx.TransportError:
            if url not in cut:
                raise
        await asyncio.sleep(0.05)
    raise AssertionError("the post never landed")


@pytest.mark.slow
async def test_app_killed_mid_stream_readers_resume_on_a_new_process_with_nothing_lost(
    data_dir: Path, redis_server: EmbeddedRedis
):
    env = {"LIVEBLOG_REDIS_URL": redis_server.url, "LIVEBLOG_ADMIN_TOKEN": ADMIN_TOKEN}
    first = await asyncio.to_thread(Served, data_dir, env)
    urls, cut = [first.ws_url], set()
    assert first.http.post("/api/v1/blogs", json={"id": "ukraine", "title": "Live"}, headers=ADMIN).status_code == 201
    readers = [Reader(urls, cut) for _ in range(5)]
    following = [asyncio.create_task(r.follow()) for r in readers]
    second = None
    try:
        await until(lambda: _async(all(r.joined_at for r in readers)), tasks=following)
        for i in range(40):
            await _post_with_retries(urls, f"<p>update {i}</p>", key=f"update-{i}", cut=cut)
            if i == 15:
                cut.add(first.ws_url)
                first.kill()
                second = await asyncio.to_thread(Served, data_dir, env)
                urls.append(second.ws_url)
        stream = await _stream(second.url)
        await until(lambda: _async(all(r.cursor == stream[-1]["cursor"] for r in readers)), timeout=30, tasks=following)
    finally:
        try:
            await stop(following)
        finally:
            if second is not None:
                second.stop()
    log = [e["cursor"] for e in stream]
    assert len(stream) == 40, "each retried post made exactly one entry"
    for reader in readers:
        received = [m["cursor"] for m in reader.events]
        expected = log[log.index(reader.joined_at) + 1 :] if reader.joined_at in log else log
        assert received == expected, "every event once, in order, across the crash"
        assert reader.connections >= 2


async def _async(value):
    return value


async def _stream(base_url: str) -> list[dict]:
    async with httpx.AsyncClient(base_url=base_url) as http:
        epoch = (await http.get("/api/v1/blogs/ukraine/entries")).json()["cursor"].split(".")[0]
        cursor, events = f"{epoch}.0-0", []
        while page := (await http.get("/api/v1/blogs/ukraine/entries", params={"since": cursor})).json()["events"]:
            events += page
            cursor = page[-1]["cursor"]
        return events


def not_yet_read(client: socket.socket) -> int:
    """Bytes sent on ``client`` (a local TCP connection) that the other end has not read yet, as
    the kernel's TCP table counts them: unacknowledged at our end, or waiting in the peer's."""
    ours, theirs = client.getsockname()[1], client.getpeername()[1]
    unread = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, queues = fields[1], fields[2], fields[4]
        ports = (int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16))
        tx_queue, rx_queue = (int(size, 16) for size in queues.split(":"))
        if ports == (ours, theirs):
            unread += tx_queue
        elif ports == (theirs, ours):
            unread += rx_queue
    return unread


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
async def test_sigterm_finishes_requests_in_flight_closes_readers_with_1012_and_stops_redis(data_dir: Path):
    served = await asyncio.to_thread(Served, data_dir, {"LIVEBLOG_ADMIN_TOKEN": ADMIN_TOKEN})
    assert served.http.post("/api/v1/blogs", json={"id": "ukraine", "title": "Live"}, headers=ADMIN).status_code == 201
    host, port = served.url.removeprefix("http://").split(":")
    body = json.dumps({"body": "<p>filed just as the deploy began</p>"}).encode()
    async with websockets.connect(served.ws_url + "/api/v1/blogs/ukraine/live") as reader:
        await receive(reader)
        in_flight = socket.create_connection((host, int(port)))
        in_flight.sendall(
            b"POST /api/v1/blogs/ukraine/entries HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            % (ADMIN_TOKEN.encode(), len(body))
            + body[:10]
        )
        await until(lambda: _async(not_yet_read(in_flight) == 0))  # the server has read what was sent
        served.process.send_signal(15)
        try:
            await asyncio.wait_for(reader.wait_closed(), 5)
        finally:
            in_flight.sendall(body[10:])
        assert reader.close_code == 1012
        in_flight.settimeout(10)
        assert in_flight.recv(4096).startswith(b"HTTP/1.1 201")
        in_flight.close()
    exit_code = await asyncio.to_thread(served.wait)
    assert exit_code == 0
    # Nothing was cut short (no shutdown timeout ran out, no error): once it was serving (the
    # banner ends with the console's address), all it said is what it served (the access log:
    # the reader told 1012) and that its Redis stopped.
    serving = next(n for n, line in enumerate(served.output) if line.startswith("Reporter console:"))
    after = served.output[serving + 1 :]
    assert [line for line in after if " liveblog.access: " not in line] == ["Embedded redis-server stopped.\n"], (
        served.text
    )
    assert any("websocket GET /api/v1/blogs/ukraine/live 101 " in line and "close=1012" in line for line in after)
    again = await asyncio.to_thread(Served, data_dir, {"LIVEBLOG_ADMIN_TOKEN": ADMIN_TOKEN})
    try:
        entries = again.http.get("/api/v1/blogs/ukraine/entries").json()["entries"]
        assert [e["body"] for e in entries] == ["<p>filed just as the deploy began</p>"]
    finally:
        again.stop()


async def test_a_blog_whose_log_is_lost_with_nothing_posted_after_restarts_only_its_readers(service, redis_server):
    """The tailer's periodic check (every blog's position, read together in one round trip)
    finds the lost log by itself: no new post has to reveal it. Readers of the other blogs,
    checked in the same round trip, stay connected and keep getting their entries."""
    blogs = ["ukraine", "gaza", "sudan"]
    for blog_id in blogs:
        await service.create_blog(blog_id)
    async with service.live("ukraine") as lost, service.live("gaza") as kept, service.live("sudan") as other:
        for reader in (lost, kept, other):
            assert (await receive(reader))["type"] == "snapshot"
        with sync_redis.Redis.from_url(redis_server.url) as client:
            client.delete(*keys.blog_keys("ukraine"))  # as a restore from an older backup would
        await asyncio.wait_for(lost.wait_closed(), 15)  # within a check interval (5 s)
        assert lost.close_code == 1012, "readers of a lost log are told to reconnect"
        for blog_id, reader in (("gaza", kept), ("sudan", other)):
            posted = await service.post(blog_id, body=f"<p>still live in {blog_id}</p>")
            assert (await receive(reader))["entry"]["id"] == posted["id"]


async def test_redis_losing_its_data_gives_readers_a_fresh_snapshot_never_a_silent_gap(service, redis_server):
    await service.create_blog()
    await service.post(body="<p>lost in the flush</p>")
    async with service.live() as reader:
        old_cursor = (await receive(reader))["cursor"]
        with sync_redis.Redis.from_url(redis_server.url) as client:
            client.flushall()  # as a restart without persistence would
        await service.create_blog()  # the desk recreates the blog
        fresh = await service.post(body="<p>after the loss</p>")
        await asyncio.wait_for(reader.wait_closed(), 10)
        assert reader.close_code == 1012, "readers of a reset log are told to reconnect"

    async with service.live(cursor=old_cursor) as reader:
        snapshot = await receive(reader)
    assert snapshot["type"] == "snapshot"
    assert [e["id"] for e in snapshot["entries"]] == [fresh["id"]]
    gone = await service.http.get("/api/v1/blogs/ukraine/entries", params={"since": old_cursor})
    assert gone.status_code == 410 and gone.json()["error"]["code"] == "cursor_gone"
