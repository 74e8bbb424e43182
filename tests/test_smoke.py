"""The first story, and the ground it runs on."""

import asyncio
import sys

import pytest
import uvloop
from conftest import STDLIB_LOOP, UNLIMITED, receive, running_service


async def test_post_reaches_live_reader(service):
    await service.create_blog()
    async with service.live() as ws:
        snapshot = await receive(ws)
        assert snapshot["type"] == "snapshot"
        entry = await service.post(body="<p>Kyiv: sirens</p>")
        event = await receive(ws)
        assert event["event"] == "entry.created"
        assert event["entry"]["id"] == entry["id"]


async def test_the_suite_runs_on_the_loop_liveblog_serve_runs_on():
    loop = asyncio.get_running_loop()
    if STDLIB_LOOP:
        assert not isinstance(loop, uvloop.Loop), type(loop)
    else:
        assert isinstance(loop, uvloop.Loop), type(loop)


@pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.eager_task_factory is Python 3.12+")
def test_readers_are_served_when_tasks_start_eagerly(redis_server):
    """With an eager task factory a task runs up to its first await as it is created: the live
    channel's app call must find its connection in the scope already (it once got a 500). On the
    standard library's loop: uvloop does not take an eager task factory."""

    def eager_loop() -> asyncio.AbstractEventLoop:
        loop = asyncio.new_event_loop()
        loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
        return loop

    async def story() -> None:
        async with running_service(redis_server.url, UNLIMITED) as service:
            await test_post_reaches_live_reader(service)
            async with service.live() as ws:  # and what the reader sends reaches its connection
                await receive(ws)
                await asyncio.wait_for(await ws.ping(b"still there?"), 5)

    with asyncio.Runner(loop_factory=eager_loop) as runner:
        runner.run(story())
