"""The Python client against the real service: posts that survive lost answers, and a follow that
resumes across dropped connections without losing or repeating an event."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import ADMIN_TOKEN, UNLIMITED, Served, Service

from liveblog.client import (
    AsyncClient,
    BlogCreate,
    EntryCreate,
    EntryEvent,
    LiveblogError,
    Retry,
    Snapshot,
    TokenCreate,
)
from liveblog.embedded import EmbeddedRedis

WAIT = 10.0


class Relay:
    """A TCP relay in front of the service, on real sockets, that can lose the service's next
    answers (the request arrived and was done, the client never hears) or cut every connection."""

    def __init__(self, target: str):
        self.target_port = int(target.rsplit(":", 1)[1])
        self.connections = 0
        self.lose_answers = 0
        self.lost = asyncio.Event()
        self._links: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> Relay:
        self.server = await asyncio.start_server(self._link, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cut()
        self.server.close()
        await self.server.wait_closed()

    def cut(self) -> None:
        """Reset every relayed connection, as a dropped network would."""
        for writer in list(self._links):
            writer.transport.abort()

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:  # the service is down: so is this link, as the client would see it direct
            writer.transport.abort()
            return
        self._links |= {writer, up_writer}
        lose = self.lose_answers > 0
        self.lose_answers -= lose
        try:
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer, lose=lose))
        finally:
            self._links -= {writer, up_writer}
            writer.transport.abort()
            up_writer.transport.abort()

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, lose: bool = False) -> None:
        try:
            while data := await source.read(65536):
                if lose:  # the service answered; the client is cut off before it hears a byte
                    self.lost.set()
                    self.cut()
                    return
                sink.write(data)
                await sink.drain()
        except ConnectionError:
            pass  # the other side was cut: the gather's finally closes this side too
        finally:
            sink.transport.abort()


async def test_a_post_whose_answer_is_lost_is_retried_and_made_once(service: Service):
    await service.create_blog()
    async with Relay(service.base_url) as relay, AsyncClient(relay.url, ADMIN_TOKEN) as client:
        relay.lose_answers = 1
        entry = await client.post("ukraine", EntryCreate(body="<p>Sirens across the capital.</p>"))
        assert relay.lost.is_set() and relay.connections == 2
    assert entry.body == "<p>Sirens across the capital.</p>" and entry.version == 1
    events = await service.stream()
    assert [event["entry"]["id"] for event in events] == [entry.id]


@pytest.mark.slow
async def test_a_post_retried_while_the_service_restarts_is_made_once(data_dir: Path, redis_server):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    env = {"LIVEBLOG_ADMIN_TOKEN": ADMIN_TOKEN, "LIVEBLOG_REDIS_URL": redis_server.url}
    served = await asyncio.to_thread(Served, data_dir, env=env, args=("--port", port))
    try:
        blog = {"id": "ukraine", "title": "Live"}
        served.http.post("/api/v1/blogs", json=blog, headers=Service.auth()).raise_for_status()
        retry = Retry(attempts=12, base=0.1, cap=1.0)
        async with Relay(served.url) as relay, AsyncClient(relay.url, ADMIN_TOKEN, retry=retry) as client:
            relay.lose_answers = 1
            posting = asyncio.create_task(client.post("ukraine", EntryCreate(body="<p>once</p>")))
            await relay.lost.wait()  # written, and the answer lost: now the service goes away
            assert await asyncio.to_thread(served.stop) == 0
            served = await asyncio.to_thread(Served, data_dir, env=env, args=("--port", port))
            entry = await posting
        listed = served.http.get("/api/v1/blogs/ukraine/entries").json()["entries"]
        assert [e["id"] for e in listed] == [entry.id]
    finally:
        served.stop()


@pytest.mark.slow
async def test_a_post_made_while_redis_is_down_is_retried_through_the_503s_and_made_once(
    data_dir: Path, tmp_path: Path
):
    store = EmbeddedRedis(tmp_path / "redis").start()
    env = {"LIVEBLOG_ADMIN_TOKEN": ADMIN_TOKEN, "LIVEBLOG_REDIS_URL": store.url}
    served = await asyncio.to_thread(Served, data_dir, env=env)
    try:
        blog = {"id": "ukraine", "title": "Live"}
        served.http.post("/api/v1/blogs", json=blog, headers=Service.auth()).raise_for_status()
        await asyncio.to_thread(store.stop)  # its AOF keeps the blog for when it is back
        retry = Retry(attempts=40, base=0.05, cap=0.5)
        async with AsyncClient(served.url, ADMIN_TOKEN, retry=retry) as client:
            posting = asyncio.create_task(client.post("ukraine", EntryCreate(body="<p>once</p>")))
            # The service answered this post with 503 at least once; the client did not give up.
            await asyncio.to_thread(
                served.wait_for_line, lambda line: "/api/v1/blogs/ukraine/entries" in line and " 503 " in line
            )
            assert not posting.done()
            await asyncio.to_thread(store.start)
            entry = await posting
        listed = served.http.get("/api/v1/blogs/ukraine/entries").json()["entries"]
        assert [e["id"] for e in listed] == [entry.id] and entry.body == "<p>once</p>"
    finally:
        served.stop()
        store.stop()


async def test_follow_resumes_after_its_connection_drops_with_every_event_once_in_order(service: Service):
    await service.create_blog()
    posted = []
    async with Relay(service.base_url) as relay, AsyncClient(relay.url) as client:
        follower = client.follow("ukraine")
        messages = aiter(follower)
        snapshot = await asyncio.wait_for(anext(messages), WAIT)
        assert isinstance(snapshot, Snapshot) and snapshot.entries == [] and snapshot.blog.id == "ukraine"
        seen = []
        for round in range(3):
            if round:
                relay.cut()  # these posts happen while the follower is away, or coming back
            for i in range(3):
                posted.append((await service.post(body=f"<p>{round}.{i}</p>"))["id"])
            while len(seen) < len(posted):
                message = await asyncio.wait_for(anext(messages), WAIT)
                assert isinstance(message, EntryEvent), message
                seen.append(message.entry.id)
                assert follower.cursor == message.cursor
        await messages.aclose()  # type: ignore[attr-defined]
        assert relay.connections >= 3
    assert seen == posted


async def test_follow_resumes_from_a_cursor_a_previous_process_kept(service: Service):
    await service.create_blog()
    first = (await service.post(body="<p>before</p>"))["id"]
    async with AsyncClient(service.base_url) as client:
        messages = aiter(client.follow("ukraine"))
        snapshot = await asyncio.wait_for(anext(messages), WAIT)
        await messages.aclose()  # type: ignore[attr-defined]
        assert isinstance(snapshot, Snapshot) and [e.id for e in snapshot.entries] == [first]
        later = [(await service.post(body=f"<p>after {i}</p>"))["id"] for i in range(2)]
        resumed = aiter(client.follow("ukraine", cursor=snapshot.cursor))
        caught_up = [await asyncio.wait_for(anext(resumed), WAIT) for _ in later]
        await resumed.aclose()  # type: ignore[attr-defined]
    assert [m.entry.id for m in caught_up if isinstance(m, EntryEvent)] == later


async def test_errors_carry_the_contracts_code_message_field_and_status(service: Service):
    async with AsyncClient(service.base_url, ADMIN_TOKEN, retry=Retry(attempts=2, base=0.01)) as client:
        with pytest.raises(LiveblogError) as invalid:
            await client.create_blog(BlogCreate(id="ukraine", title="x" * 201))
        assert (invalid.value.status, invalid.value.code, invalid.value.field) == (422, "invalid", "$.title")
        await client.create_blog(BlogCreate(id="ukraine", title="Live"))
        with pytest.raises(LiveblogError) as exists:
            await client.create_blog(BlogCreate(id="ukraine", title="Live"))
        assert (exists.value.status, exists.value.code) == (409, "exists")
        with pytest.raises(LiveblogError) as missing:
            async for _ in client.follow("nowhere"):
                pass
        assert (missing.value.status, missing.value.code) == (404, "not_found")
        minted = await client.mint_token(TokenCreate(name="Olena", role="reporter", blogs=["ukraine"]))
        assert [t.id for t in await client.list_tokens()] == [minted.id]
    async with AsyncClient(service.base_url, "wrong", retry=Retry(attempts=2, base=0.01)) as stranger:
        with pytest.raises(LiveblogError) as refused:
            await stranger.post("ukraine", EntryCreate(body="<p>x</p>"))
        assert refused.value.status == 401
    async with AsyncClient("http://127.0.0.1:9", retry=Retry(attempts=2, base=0.01)) as nobody:
        with pytest.raises(LiveblogError) as unreachable:
            await nobody.list_blogs()
        assert (unreachable.value.status, unreachable.value.code) == (None, "unreachable")


@pytest.mark.parametrize("settings", [replace(UNLIMITED, writes_per_token_per_second=1)])
async def test_a_post_refused_with_429_waits_as_long_as_retry_after_says(service: Service):
    await service.create_blog()
    # Retries this quick would all be refused again: only waiting out Retry-After gets through.
    async with AsyncClient(service.base_url, ADMIN_TOKEN, retry=Retry(attempts=2, base=0.001)) as client:
        posted = [await client.post("ukraine", EntryCreate(body=f"<p>{i}</p>")) for i in range(7)]
    events = await service.stream()
    assert [event["entry"]["id"] for event in events] == [entry.id for entry in posted]
