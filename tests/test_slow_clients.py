"""A client that holds a connection without sending a request is let go (issue 13, point 2).

Silent connections and heads sent a byte at a time (slowloris) each hold a descriptor; a few
thousand of them would leave a bare ``liveblog serve`` unable to answer anyone. Every story here
runs against a real server on loopback with a short ``head_timeout``, and waits on what the
client sees: the server closing the connection.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest_asyncio
from conftest import RECV_TIMEOUT, UNLIMITED, Service, receive, running_service

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
