"""Limits that keep one client from costing everyone: connections, connect rate, write rate."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import httpx
import pytest
import websockets
from conftest import UNLIMITED, receive, running_service

from liveblog.limits import RateLimiter


async def test_too_many_connections_from_one_address_are_closed_with_4429(redis_server):
    async with running_service(redis_server.url, replace(UNLIMITED, max_readers_per_ip=2)) as service:
        await service.create_blog()
        async with service.live() as first, service.live() as second:
            await receive(first), await receive(second)
            async with service.live() as third:
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await receive(third)
            assert closed.value.rcvd.code == 4429
            response = await service.http.get("/api/v1/blogs/ukraine/events")
            assert response.status_code == 429
            assert response.json()["error"]["code"] == "too_many_connections"
        async with service.live() as again:  # the count went down when the others left
            assert (await receive(again))["type"] == "snapshot"


async def test_a_burst_of_sse_readers_from_one_address_gets_exactly_its_share(redis_server):
    """Counted at admission: twenty requests at once cannot all pass before any is counted."""
    async with running_service(redis_server.url, replace(UNLIMITED, max_readers_per_ip=5)) as service:
        await service.create_blog()
        url = "/api/v1/blogs/ukraine/events"
        host, port = service.base_url.removeprefix("http://").split(":")
        connections = [await asyncio.open_connection(host, int(port)) for _ in range(20)]
        request = f"GET {url} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        for _, writer in connections:  # all twenty sent before the server reads any
            writer.write(request)
        statuses = [(await reader.readline()).split()[1] for reader, _ in connections]
        assert sorted(statuses) == [b"200"] * 5 + [b"429"] * 15
        for _, writer in connections:
            writer.close()
        async with httpx.AsyncClient(base_url=service.base_url, timeout=10) as client:
            await until_admitted(client, url)  # the count came back down, whichever way each ended


async def until_admitted(client: httpx.AsyncClient, url: str) -> None:
    """The next SSE request is admitted: the streams just closed were released."""
    for _ in range(200):
        async with client.stream("GET", url) as response:
            if response.status_code == 200:
                return
        await asyncio.sleep(0.05)  # the server notices the closed streams on its next event-loop turns
    raise AssertionError("the closed streams were never released")


async def test_a_full_server_refuses_new_readers_with_503_before_the_upgrade(redis_server):
    async with running_service(redis_server.url, replace(UNLIMITED, max_readers=1)) as service:
        await service.create_blog()
        async with service.live() as reader:
            await receive(reader)
            with pytest.raises(websockets.InvalidStatus) as refused:
                async with service.live():
                    pass
    assert refused.value.response.status_code == 503
    assert b'"code":"full"' in refused.value.response.body


class Clock:
    """Seconds that pass only when the test says so: a limiter on it refills only then."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_gives_its_burst_then_one_token_per_second_and_never_more_than_the_burst():
    limiter = RateLimiter(1.0, 10)
    assert [limiter.wait_time("phone", now=0.0) for _ in range(10)] == [0.0] * 10
    assert limiter.wait_time("phone", now=0.0) == 1.0  # empty: the next token is a second away
    assert limiter.wait_time("phone", now=0.4) == 0.6  # a refused try takes nothing
    assert limiter.wait_time("phone", now=1.0) == 0.0  # one second, one token
    assert limiter.wait_time("phone", now=1.0) == 1.0
    assert limiter.wait_time("laptop", now=1.0) == 0.0, "each key has a bucket of its own"
    assert [limiter.wait_time("phone", now=3.0) for _ in range(3)] == [0.0, 0.0, 1.0]  # two seconds, two tokens
    assert [limiter.wait_time("phone", now=1000.0) for _ in range(11)] == [0.0] * 10 + [1.0]  # idle: the burst again


def test_a_bucket_refills_at_its_rate():
    limiter = RateLimiter(4.0, 2)
    assert [limiter.wait_time("token", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.25]
    assert limiter.wait_time("token", now=0.25) == 0.0
    assert limiter.wait_time("token", now=0.25) == 0.25


def test_the_limiter_forgets_the_least_recently_seen_keys_first():
    limiter = RateLimiter(1.0, 1, max_keys=2)
    for key in ("a", "b"):
        assert limiter.wait_time(key, now=0.0) == 0.0
    assert limiter.wait_time("a", now=0.0) == 1.0  # "a" is now the most recently seen
    assert limiter.wait_time("c", now=0.0) == 0.0  # a third key: "b" is forgotten, "a" is kept
    assert limiter.wait_time("a", now=0.0) == 1.0
    assert limiter.wait_time("b", now=0.0) == 0.0, "a forgotten key starts with a full bucket"


async def test_reconnecting_in_a_tight_loop_is_refused_with_429_and_retry_after(redis_server):
    async with running_service(redis_server.url, replace(UNLIMITED, connects_per_ip_per_second=1.0)) as service:
        clock = service.services.connects.clock = Clock()  # no second passes unless the test says so
        await service.create_blog()
        for _ in range(10):  # the burst allowance
            async with service.live() as reader:
                await receive(reader)
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with service.live():
                pass
        assert refused.value.response.status_code == 429
        assert refused.value.response.headers["Retry-After"] == "1"
        clock.now += 1.0  # the reader waited as it was told: one connection more, and only one
        async with service.live() as reader:
            assert (await receive(reader))["type"] == "snapshot"
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with service.live():
                pass
        assert refused.value.response.status_code == 429


async def test_a_token_writing_too_fast_gets_429_while_another_token_still_writes(redis_server):
    async with running_service(redis_server.url, replace(UNLIMITED, writes_per_token_per_second=1.0)) as service:
        clock = service.services.writes.clock = Clock()  # no second passes unless the test says so
        await service.create_blog()
        token = (await service.mint())["token"]
        for _ in range(5):  # the burst allowance
            await service.post(token=token)

        async def one_too_many() -> httpx.Response:
            return await service.http.post(
                "/api/v1/blogs/ukraine/entries", json={"body": "<p>one too many</p>"}, headers=service.auth(token)
            )

        response = await one_too_many()
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "1"
        assert response.json()["error"]["code"] == "rate_limited"
        await service.post()  # the admin's own budget is untouched
        clock.now += 1.0  # the reporter waited as it was told: one write more, and only one
        await service.post(token=token)
        assert (await one_too_many()).status_code == 429
        listed = (await service.http.get("/api/v1/blogs/ukraine/entries")).json()["entries"]
    assert len(listed) == 7, "the refused writes changed nothing"


async def test_a_crowd_joining_at_once_is_served_not_refused(service):
    """A push alert sends readers in all at once: more joins than Redis connections in the pool."""
    await service.create_blog()
    await service.post(body="<p>Breaking</p>")

    async def join() -> str:
        async with service.live() as reader:
            return (await receive(reader, timeout=20))["type"]

    assert await asyncio.gather(*(join() for _ in range(400))) == ["snapshot"] * 400
