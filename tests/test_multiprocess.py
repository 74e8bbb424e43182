"""More than one process on one Redis: readers anywhere see writes made anywhere, in order, and
a process that dies loses nothing for readers who move to another."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import ADMIN_TOKEN, RECV_TIMEOUT, UNLIMITED, Served, receive, running_service
from test_faults import Reader, _async, _post_with_retries, _stream, stop, until

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.mark.slow
async def test_readers_on_one_process_get_posts_made_through_another_and_survive_its_death(
    tmp_path: Path, redis_server
):
    env = {"LIVEBLOG_REDIS_URL": redis_server.url, "LIVEBLOG_ADMIN_TOKEN": ADMIN_TOKEN}
    a = await asyncio.to_thread(Served, tmp_path / "a", env)
    b = await asyncio.to_thread(Served, tmp_path / "b", env)
    following: list[asyncio.Task] = []
    try:
        assert b.http.post("/api/v1/blogs", json={"id": "ukraine", "title": "Live"}, headers=ADMIN).status_code == 201
        urls, cut = [a.ws_url], set()  # the readers' balancer sends them to A
        readers = [Reader(urls, cut) for _ in range(4)]
        following = [asyncio.create_task(reader.follow()) for reader in readers]
        await until(lambda: _async(all(r.joined_at for r in readers)), tasks=following)
        posting_through_b = [b.ws_url]
        for i in range(20):
            await _post_with_retries(posting_through_b, f"<p>via B {i}</p>", key=f"b-{i}")
        stream = await _stream(b.url)
        await until(lambda: _async(all(r.cursor == stream[-1]["cursor"] for r in readers)), tasks=following)

        cut.add(a.ws_url)
        a.kill()
        urls.append(b.ws_url)  # the balancer now sends everyone to B
        for i in range(20, 40):
            await _post_with_retries(posting_through_b, f"<p>via B {i}</p>", key=f"b-{i}")
        stream = await _stream(b.url)
        await until(lambda: _async(all(r.cursor == stream[-1]["cursor"] for r in readers)), timeout=30, tasks=following)
    finally:
        try:
            await stop(following)
        finally:
            b.stop()
    log = [e["cursor"] for e in stream]
    assert len(log) == 40
    for reader in readers:
        expected = log[log.index(reader.joined_at) + 1 :] if reader.joined_at in log else log
        assert [m["cursor"] for m in reader.events] == expected, "every event once, in order, across processes"
        assert reader.connections == 2


async def test_viewer_count_adds_up_readers_on_every_process(redis_server):
    fast = replace(UNLIMITED, viewers_interval=0.1)
    async with running_service(redis_server.url, fast) as one, running_service(redis_server.url, fast) as two:
        await one.create_blog()
        async with one.live() as on_one, two.live() as on_two, two.live() as also_on_two:
            for reader in (on_one, on_two, also_on_two):
                assert (await receive(reader))["type"] == "snapshot"

            async def count_seen_by(reader) -> int:
                while True:
                    message = await receive(reader)
                    if message["type"] == "viewers" and message["count"] == 3:
                        return 3

            counts = await asyncio.gather(*(count_seen_by(r) for r in (on_one, on_two, also_on_two)))
    assert counts == [3, 3, 3]


async def test_viewer_count_is_sent_when_it_changes_and_to_each_reader_as_it_joins(redis_server, monkeypatch):
    fast = replace(UNLIMITED, viewers_interval=0.05)
    async with running_service(redis_server.url, fast) as service:
        store = service.services.store
        await service.create_blog()
        async with service.live() as first:
            assert (await receive(first))["type"] == "snapshot"
            assert await receive(first) == {"type": "viewers", "count": 1}
            async with service.live() as second:
                assert (await receive(second))["type"] == "snapshot"
                assert await receive(first) == {"type": "viewers", "count": 2}
                # the joiner is told the last count at once (1, or 2 if a round came in between)
                told = [await receive(second)]
                if told[-1]["count"] != 2:
                    told.append(await receive(second))
                assert told[-1] == {"type": "viewers", "count": 2}
                # An unchanged count is not sent again: across a dozen counting rounds, the
                # next thing either reader gets is the entry posted after them.
                count_viewers, rounds, dozen_counted = store.count_viewers, [], asyncio.Event()

                async def counting(*args):
                    rounds.append(args)
                    if len(rounds) == 13:  # the 12th round is over (and sent whatever it sends)
                        dozen_counted.set()
                    return await count_viewers(*args)

                monkeypatch.setattr(store, "count_viewers", counting)
                await asyncio.wait_for(dozen_counted.wait(), RECV_TIMEOUT)
                await service.post(headline="Next")
                assert (await receive(first))["type"] == "event"
                assert (await receive(second))["type"] == "event"
            # the second reader left: the first is told
            assert await receive(first) == {"type": "viewers", "count": 1}
