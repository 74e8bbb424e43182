"""Limits that keep one client from costing everyone: connections, connect rate, write rate."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
import websockets
from conftest import UNLIMITED, receive, running_service


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


async def test_reconnecting_in_a_tight_loop_is_refused_with_429_and_retry_after(redis_server):
    async with running_service(redis_server.url, replace(UNLIMITED, connects_per_ip_per_second=1.0)) as service:
        await service.create_blog()
        for _ in range(10):  # the burst allowance
            async with service.live() as reader:
                await receive(reader)
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with service.live():
                pass
    assert refused.value.response.status_code == 429
    assert int(refused.value.response.headers["Retry-After"]) >= 1


async def test_a_token_writing_too_fast_gets_429_while_another_token_still_writes(redis_server):
    async with running_service(redis_server.url, replace(UNLIMITED, writes_per_token_per_second=1.0)) as service:
        await service.create_blog()
        token = (await service.mint())["token"]
        for _ in range(5):  # the burst allowance
            await service.post(token=token)
        response = await service.http.post(
            "/api/v1/blogs/ukraine/entries", json={"body": "<p>one too many</p>"}, headers=service.auth(token)
        )
        assert response.status_code == 429
        assert int(response.headers["Retry-After"]) >= 1
        assert response.json()["error"]["code"] == "rate_limited"
        await service.post()  # the admin's own budget is untouched
        listed = (await service.http.get("/api/v1/blogs/ukraine/entries")).json()["entries"]
    assert len(listed) == 6, "the refused write changed nothing"


async def test_a_crowd_joining_at_once_is_served_not_refused(service):
    """A push alert sends readers in all at once: more joins than Redis connections in the pool."""
    await service.create_blog()
    await service.post(body="<p>Breaking</p>")

    async def join() -> str:
        async with service.live() as reader:
            return (await receive(reader, timeout=20))["type"]

    assert await asyncio.gather(*(join() for _ in range(400))) == ["snapshot"] * 400
