"""A client that holds a connection without sending a request is let go (issue 13, point 2).

Silent connections and heads sent a byte at a time (slowloris) each hold a descriptor; a few
thousand of them would leave a bare ``liveblog serve`` unable to answer anyone. Every story here
runs against a real server on loopback with a short ``head_timeout``, and waits on what the
client sees: the server closing the connection.
"""

from __future__ import annotations

import asyncio
import json
import select
import socket
from dataclasses import replace

import httpx
import pytest
import pytest_asyncio
import websockets
from conftest import ADMIN_TOKEN, RECV_TIMEOUT, UNLIMITED, Served, Service, receive, running_service

HEAD_TIMEOUT = 0.3
#: How long a client waits for the server to act; far longer than HEAD_TIMEOUT, only a liveness bound.
PATIENCE = 20


@pytest_asyncio.fixture
async def service(redis_server) -> Service:
    async with running_service(redis_server.url, replace(UNLIMITED, head_timeout=HEAD_TIMEOUT)) as svc:
        yield svc


async def _connect(service: Service) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = service.base_url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


async def test_a_client_that_connects_and_says_nothing_is_closed(service):
    reader, writer = await _connect(service)
    assert await asyncio.wait_for(reader.read(), PATIENCE) == b""  # closed, with nothing to say
    writer.close()


async def test_silent_clients_connecting_one_after_another_are_each_closed_and_the_others_served(service):
    """Every head's deadline is kept by one timer: each silent client is cut off in its turn,
    however many fall due after the first, while clients in between are answered."""
    silent = []
    for _ in range(5):
        silent.append(await _connect(service))
        # A request answered in between: the next silent client's deadline falls a little later.
        assert (await service.http.get("/healthz")).status_code == 200
    for reader, writer in silent:
        assert await asyncio.wait_for(reader.read(), PATIENCE) == b""
        writer.close()
    assert (await service.http.get("/healthz")).status_code == 200


async def test_a_head_sent_a_byte_at_a_time_is_cut_off_with_408(service):
    reader, writer = await _connect(service)
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 10_000

    async def trickle() -> None:
        for byte in head:
            writer.write(bytes([byte]))
            await asyncio.sleep(0.02)  # the attacker's pace, not a wait for the server

    sender = asyncio.create_task(trickle())
    answer = await asyncio.wait_for(reader.read(), PATIENCE)
    assert not sender.done(), "cut off before the head was through"
    sender.cancel()
    status, _, rest = answer.partition(b"\r\n")
    assert status == b"HTTP/1.1 408 Request Timeout"
    assert json.loads(rest.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "request_timeout"
    writer.close()


async def test_a_slow_second_request_on_a_kept_alive_connection_is_cut_off_too(service):
    reader, writer = await _connect(service)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert (await asyncio.wait_for(reader.readline(), PATIENCE)).startswith(b"HTTP/1.1 200")
    while await reader.readline() not in (b"\r\n", b""):
        pass
    await reader.readexactly(len(b'{"status":"ok"}'))
    writer.write(b"GET /healthz HTTP/1.1\r\nHo")  # and no more
    assert await asyncio.wait_for(reader.read(), PATIENCE) == b""
    writer.close()


@pytest.mark.slow
async def test_an_idle_kept_alive_connection_is_closed(service):
    """uvicorn's keep-alive timeout (5 s) after a response; the head clock before one."""
    reader, writer = await _connect(service)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), PATIENCE)  # everything until the server closes
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b'{"status":"ok"}')
    writer.close()


async def test_requests_that_bring_their_head_in_time_and_live_readers_are_served_on(service):
    await service.create_blog()
    async with service.live() as reader:
        assert (await receive(reader))["type"] == "snapshot"
        # Many head timeouts go by on plain requests and on the open live connection.
        for _ in range(10):
            assert (await service.http.get("/healthz")).status_code == 200
            await asyncio.sleep(HEAD_TIMEOUT)  # idle time on the live connection, which must survive it
        await service.post(body="<p>Still here</p>")
        message = await receive(reader, RECV_TIMEOUT)
        while message["type"] != "event":
            message = await receive(reader, RECV_TIMEOUT)
        assert message["event"] == "entry.created"


# --- connections per address -------------------------------------------------------------------

#: An address nothing connects from, as the trusted proxy: loopback clients are then counted.
NO_PROXY = "10.255.255.1"


async def _open_from(service_url: str, source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = service_url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port), local_addr=(source, 0))


async def _closed_at_once(reader: asyncio.StreamReader) -> bool:
    return await asyncio.wait_for(reader.read(), PATIENCE) == b""


async def test_an_address_with_all_its_connections_open_gets_no_more_and_others_are_served(redis_server):
    settings = replace(UNLIMITED, max_connections_per_ip=20, forwarded_allow_ips=NO_PROXY, head_timeout=60)
    async with running_service(redis_server.url, settings) as service:
        held = [await _open_from(service.base_url, "127.0.0.1") for _ in range(20)]
        reader, writer = await _open_from(service.base_url, "127.0.0.1")
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert await _closed_at_once(reader), "the 21st connection from one address is turned away"
        writer.close()
        # Another address is served, and the first one again once it closed what it held.
        other, other_writer = await _open_from(service.base_url, "127.0.0.2")
        other_writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert (await asyncio.wait_for(other.read(), PATIENCE)).startswith(b"HTTP/1.1 200")
        for _, held_writer in held:
            held_writer.close()
            await held_writer.wait_closed()
        assert (await service.http.get("/healthz")).status_code == 200


@pytest.mark.slow
async def test_a_flood_of_idle_connections_from_one_address_leaves_the_service_working_for_everyone_else(
    tmp_path, redis_server
):
    """The process has 256 descriptors; one address opens 600 connections and sends nothing. The
    default cap (1,000 per address) is more than the process could hold: it gets a quarter."""
    env = {"LIVEBLOG_REDIS_URL": redis_server.url, "LIVEBLOG_ADMIN_TOKEN": ADMIN_TOKEN}
    env["LIVEBLOG_FORWARDED_ALLOW_IPS"] = NO_PROXY
    served = await asyncio.to_thread(Served, tmp_path / "data", env, (), 256)
    flood: list[asyncio.StreamWriter] = []
    try:
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with httpx.AsyncClient(
            base_url=served.url, transport=httpx.AsyncHTTPTransport(local_address="127.0.0.2"), timeout=10
        ) as everyone_else:
            assert (
                await everyone_else.post("/api/v1/blogs", json={"id": "kyiv", "title": "Live"}, headers=admin)
            ).status_code == 201
            for _ in range(600):
                try:
                    flood.append((await _open_from(served.url, "127.0.0.1"))[1])
                except OSError:
                    break  # the attacker's own limits; the point is the server's
            assert len(flood) > 256, "the flood outnumbers the server's descriptors"
            assert (await everyone_else.get("/healthz")).status_code == 200
            ws_url = served.url.replace("http://", "ws://") + "/api/v1/blogs/kyiv/live"
            host, port = served.url.removeprefix("http://").split(":")
            sock = socket.create_connection((host, int(port)), source_address=("127.0.0.2", 0))
            async with websockets.connect(ws_url, sock=sock, open_timeout=RECV_TIMEOUT) as live_reader:
                assert (await receive(live_reader))["type"] == "snapshot"
                posted = await everyone_else.post(
                    "/api/v1/blogs/kyiv/entries", json={"body": "<p>Still served</p>"}, headers=admin
                )
                assert posted.status_code == 201
                message = await receive(live_reader)
                while message["type"] != "event":
                    message = await receive(live_reader)
                assert message["entry"]["id"] == posted.json()["id"]
        assert "each address gets 64" in served.text
    finally:
        for writer in flood:
            writer.close()
        await asyncio.to_thread(served.stop)


# --- a client that stops reading a response ----------------------------------------------------


async def test_a_stalled_sse_reader_is_let_go_though_it_never_reads_its_4408(redis_server):
    """An SSE reader that stops reading gets 4408 from the hub, but that record cannot reach it:
    the server cuts its connection off after ``send_timeout``, and its slot is free again."""
    settings = replace(UNLIMITED, reader_buffer_bytes=64 * 1024, send_timeout=0.5)
    async with running_service(redis_server.url, settings) as service:
        await service.create_blog()
        state = service.services
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a phone in a tunnel
        sock.connect(("127.0.0.1", int(service.base_url.rsplit(":", 1)[1])))
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(b"GET /api/v1/blogs/ukraine/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await asyncio.wait_for(reader.readuntil(b"retry: "), PATIENCE)  # subscribed
        writer.transport.pause_reading()  # from here on it reads nothing
        assert state.readers.count == 1
        big_body = "<p>" + "Eyewitness account. " * 900 + "</p>"  # ~18 KB an event
        for _ in range(400):  # 7 MB: far more than the buffers between server and reader hold
            await service.post(body=big_body)
            if state.readers.count == 0:
                break
            await asyncio.sleep(0.05)  # the posting pace: the cut-off comes send_timeout after the buffers filled
        assert (state.readers.count, state.hub.readers("ukraine")) == (0, 0), "the stalled reader is still held"
        writer.transport.resume_reading()
        tail = b""
        try:  # what the kernel still held for it, then the end; never the response's end
            while chunk := await asyncio.wait_for(reader.read(1 << 16), PATIENCE):
                tail = (tail + chunk)[-4096:]
        except ConnectionResetError:
            pass
        assert not tail.endswith(b"\r\n0\r\n\r\n"), "the response ended: it was not cut off"
        writer.close()


async def test_a_client_still_sending_when_cut_off_reads_its_408(service):
    """The 408 is not lost to a reset: a client whose bytes are still arriving when the server
    gives up (a slow phone mid-upload) reads the answer, then the end of the connection."""
    host, port = service.base_url.removeprefix("http://").split(":")

    def client() -> bytes:
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a")
            select.select([sock], [], [], PATIENCE)  # the answer has arrived, unread
            for _ in range(3):
                # The client, not knowing yet, sends on. Closed outright, the server's kernel
                # would answer with a reset and these would fail (a browser: "connection reset").
                sock.sendall(b"aaaa")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
            return answer

    answer = await asyncio.to_thread(client)
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
