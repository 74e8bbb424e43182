"""Readers on the live channel: snapshot, events in order, gap-free joins, resumption, slow readers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
from dataclasses import replace

import pytest
import redis.asyncio as redis
import websockets
from conftest import RECV_TIMEOUT, UNLIMITED, receive, running_service

import liveblog.hub
import liveblog.snapshots
import liveblog.tailer
from liveblog.cursor import Cursor
from liveblog.gathering import GatherRules
from liveblog.guard import SEND_BUFFER
from liveblog.hub import Hub
from liveblog.logreader import LogReader
from liveblog.metrics import Metrics
from liveblog.snapshots import SnapshotReads
from liveblog.storage import CursorGone
from liveblog.wire import CloseCode


async def test_snapshot_has_latest_entries_newest_first_and_the_pinned_ones(service):
    await service.create_blog()
    pinned = await service.post(body="<p>Key facts so far</p>", pinned=True, time="2026-01-01T08:00:00Z")
    posted = [await service.post(body=f"<p>update {i}</p>") for i in range(25)]

    async with service.live() as ws:
        snapshot = await receive(ws)

    assert snapshot["type"] == "snapshot"
    assert snapshot["blog"]["id"] == "ukraine"
    assert [e["id"] for e in snapshot["entries"]] == [e["id"] for e in reversed(posted)][:20]
    assert [e["id"] for e in snapshot["pinned"]] == [pinned["id"]]
    stream = await service.stream()
    assert snapshot["cursor"] == stream[-1]["cursor"]


async def test_two_readers_see_the_same_events_in_the_same_order(service):
    await service.create_blog()
    async with service.live() as alice, service.live() as bob:
        await receive(alice), await receive(bob)
        first = await service.post(body="<p>first</p>")
        await service.post(body="<p>second</p>", key_event=True)
        response = await service.http.patch(
            f"/api/v1/blogs/ukraine/entries/{first['id']}",
            json={"body": "<p>first, corrected</p>"},
            headers={**service.auth(), "If-Match": '"1"'},
        )
        assert response.status_code == 200
        response = await service.http.delete(
            f"/api/v1/blogs/ukraine/entries/{first['id']}", headers={**service.auth(), "If-Match": '"2"'}
        )
        assert response.status_code == 204
        response = await service.http.patch(
            "/api/v1/blogs/ukraine", json={"title": "Live: day 2"}, headers=service.auth()
        )
        assert response.status_code == 200

        seen_by_alice = [await receive(alice) for _ in range(5)]
        seen_by_bob = [await receive(bob) for _ in range(5)]

    assert seen_by_alice == seen_by_bob
    assert [m["event"] for m in seen_by_alice] == [
        "entry.created",
        "entry.created",
        "entry.updated",
        "entry.deleted",
        "blog.updated",
    ]
    assert seen_by_alice[3]["entry"] == {**seen_by_alice[3]["entry"], "id": first["id"], "deleted": True}
    assert [m["cursor"] for m in seen_by_alice] == [e["cursor"] for e in await service.stream()]


async def _read_until(ws, last_cursor: str) -> list[dict]:
    messages = []
    while not messages or messages[-1].get("cursor") != last_cursor:
        messages.append(await receive(ws))
    return messages


class HandedOut:
    """A live reader in the background: the entries the hub has handed to every reader so far."""

    def __init__(self, ws: websockets.ClientConnection):
        self._seen: dict[str, asyncio.Event] = {}
        self._task = asyncio.create_task(self._read(ws))

    async def _read(self, ws: websockets.ClientConnection) -> None:
        async for raw in ws:
            message = json.loads(raw)
            if message["type"] == "event" and "entry" in message:
                self._event(message["entry"]["id"]).set()

    def _event(self, entry_id: str) -> asyncio.Event:
        return self._seen.setdefault(entry_id, asyncio.Event())

    async def post(self, service, body: str) -> None:
        """Post an entry and return once the hub has handed it out (so every subscribed reader,
        joining or not, has been given it)."""
        entry = await service.post(body=body)
        await asyncio.wait_for(self._event(entry["id"]).wait(), RECV_TIMEOUT)

    def stop(self) -> None:
        self._task.cancel()


@pytest.mark.parametrize("round_", range(3))
async def test_reader_joining_during_a_burst_misses_nothing_and_gets_nothing_twice(service, monkeypatch, round_):
    """Readers join at random points of a burst of posts. Each snapshot read, besides, has an entry
    posted and handed out right before it (the joining readers hold it, and find it in their
    snapshot: it must not come twice) and right after it (they hold it, and their snapshot does
    not have it: it must not be lost)."""
    await service.create_blog()
    rng = random.Random(round_)
    posts, readers = 60, 8
    posted = [asyncio.Event() for _ in range(posts)]
    joined: list[dict] = []
    all_joined = asyncio.Event()
    last_cursor: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def reporter():
        for i in range(posts):
            await service.post(body=f"<p>burst {i}</p>")
            posted[i].set()

    async def reader(after: int):
        await posted[after].wait()  # join while the burst goes on
        async with service.live() as ws:
            snapshot = await receive(ws)
            joined.append(snapshot)
            if len(joined) == readers:
                all_joined.set()
            return snapshot, await _read_until(ws, await last_cursor)

    async with service.live() as control:
        await receive(control)
        handed_out = HandedOut(control)
        store = service.services.store
        read = store.snapshot

        async def snapshot_read_in_a_burst(*args):
            await handed_out.post(service, "<p>just before a snapshot read</p>")
            snapshot = await read(*args)
            await handed_out.post(service, "<p>just after a snapshot read</p>")
            return snapshot

        monkeypatch.setattr(store, "snapshot", snapshot_read_in_a_burst)
        try:
            reading = [asyncio.create_task(reader(rng.randrange(posts - 10))) for _ in range(readers)]
            await reporter()
            await asyncio.wait_for(all_joined.wait(), RECV_TIMEOUT)
            monkeypatch.undo()
            log = [e["cursor"] for e in await service.stream()]
            last_cursor.set_result(log[-1])
            results = await asyncio.gather(*reading)
        finally:
            handed_out.stop()

    for snapshot, events in results:
        assert snapshot["cursor"] in log, "every reader joined after a post"
        expected = log[log.index(snapshot["cursor"]) + 1 :]
        assert expected, "every reader joined before the last post, and so has events to check"
        received = [m["cursor"] for m in events]
        lost = set(expected) - set(received)
        duplicated = len(received) - len(set(received))
        assert (lost, duplicated) == (set(), 0)
        assert received == expected
        in_snapshot = {e["id"] for e in snapshot["entries"]}
        after = {m["entry"]["id"] for m in events}
        assert not in_snapshot & after, "an entry arrived both in the snapshot and as an event"
        assert "<p>just before a snapshot read</p>" in [e["body"] for e in snapshot["entries"]]


async def test_reader_resumes_from_its_cursor_without_a_snapshot(service):
    await service.create_blog()
    async with service.live() as ws:
        await receive(ws)
        await service.post(body="<p>seen</p>")
        last_seen = (await receive(ws))["cursor"]

    missed = [await service.post(body=f"<p>missed {i}</p>") for i in range(3)]

    async with service.live(cursor=last_seen) as ws:
        caught_up = [await receive(ws) for _ in range(3)]
        live_entry = await service.post(body="<p>live again</p>")
        live = await receive(ws)

    assert [m["type"] for m in caught_up] == ["event"] * 3
    assert [m["entry"]["id"] for m in caught_up] == [e["id"] for e in missed]
    assert live["entry"]["id"] == live_entry["id"]


@pytest.mark.parametrize("cursor", ["garbage", "zzzz.1-0", "abc.99999999999999-0"])
async def test_an_unusable_cursor_gets_a_fresh_snapshot(service, cursor):
    await service.create_blog()
    await service.post(body="<p>one</p>")
    async with service.live(cursor=cursor) as ws:
        snapshot = await receive(ws)
    assert snapshot["type"] == "snapshot"
    assert len(snapshot["entries"]) == 1


async def test_unknown_blog_is_closed_with_4404(service):
    async with service.live("no-such-blog") as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await receive(ws)
    assert closed.value.rcvd.code == 4404


async def first_message_from(service, origin: str) -> str | int:
    """What a reader embedded on ``origin`` gets first: a message type, or the close code."""
    async with service.live(origin=origin) as ws:
        try:
            return (await receive(ws))["type"]
        except websockets.ConnectionClosed as closed:
            return closed.rcvd.code


async def test_origin_not_in_embed_origins_is_closed_with_4403(service):
    await service.create_blog(embed_origins=["https://partner.example"])
    assert await first_message_from(service, "https://evil.example") == 4403
    assert await first_message_from(service, "https://partner.example") == "snapshot"


async def test_a_change_of_embed_origins_applies_to_the_next_reader_at_once(service):
    await service.create_blog(embed_origins=["https://partner.example"])
    assert await first_message_from(service, "https://partner.example") == "snapshot"  # now in the page cache
    response = await service.http.patch(
        "/api/v1/blogs/ukraine", json={"embed_origins": ["https://other.example"]}, headers=service.auth()
    )
    assert response.status_code == 200
    assert await first_message_from(service, "https://partner.example") == 4403
    assert await first_message_from(service, "https://other.example") == "snapshot"


async def test_binary_and_oversize_client_messages_close_the_connection(service):
    await service.create_blog()
    async with service.live() as ws:
        await receive(ws)
        await ws.send(b"\x00\x01")
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await receive(ws)
    assert closed.value.rcvd.code == 1003
    async with service.live() as ws:
        await receive(ws)
        await ws.send("x" * 100_000)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await receive(ws)
    assert closed.value.rcvd.code == 1009


def _stalled_socket(port: int) -> socket.socket:
    """A TCP connection whose owner will stop reading: a tiny receive window, like a phone in a tunnel."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    return sock


async def test_reader_that_stops_reading_is_closed_with_4408_and_others_do_not_wait(redis_server):
    settings = replace(UNLIMITED, reader_buffer_bytes=64 * 1024)
    async with running_service(redis_server.url, settings) as service:
        await service.create_blog()
        hub = service.services.hub
        big_body = "<p>" + "Eyewitness account. " * 900 + "</p>"  # ~18 KB per entry

        async with service.live() as control:
            await receive(control)

            async def post_and_receive() -> str:
                """Post; the control reader receives it before anything else is posted."""
                entry = await service.post(body=big_body)
                message = await receive(control)
                assert message["entry"]["id"] == entry["id"]
                return entry["id"]

            port = int(service.base_url.rsplit(":", 1)[1])
            slow = await websockets.connect(
                f"{service.ws_url}/api/v1/blogs/ukraine/live",
                sock=_stalled_socket(port),
                max_queue=1,
                open_timeout=RECV_TIMEOUT,
                # Compressed, these repetitive 18 KB entries are ~150 bytes each: 400 of them would
                # not fill the limit. The backlog rule is what this test is about.
                compression=None,
            )
            await receive(slow)  # the snapshot; from here on the slow reader reads nothing
            assert hub.readers("ukraine") == 2

            while_stalled = []  # what the control reader received while the stalled one was still served
            for _ in range(400):
                cut_off_at = await post_and_receive()
                if hub.readers("ukraine") == 1:
                    break
                while_stalled.append(cut_off_at)
            assert hub.readers("ukraine") == 1, "the stalled reader was never cut off"
            after_cutoff = [await post_and_receive() for _ in range(10)]

            got_by_slow = []
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    got_by_slow.append((await receive(slow))["entry"]["id"])
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4408
            # It reads now what was written for it while the control reader got each entry before
            # the next was posted: the entries waited for it, the control reader did not. In
            # order, and nothing from after the cut-off.
            assert got_by_slow and got_by_slow == [*while_stalled, cut_off_at][: len(got_by_slow)]
            assert not set(got_by_slow) & set(after_cutoff)
            # What a stalled reader pins: its user-space backlog and the kernel's (capped) send
            # buffer, plus what its own tiny receive window took. Uncapped, 157 entries (2.8 MB).
            pinned = len(while_stalled) * len(big_body)
            assert pinned <= settings.reader_buffer_bytes + 2 * SEND_BUFFER + 64 * 1024, pinned
        print(
            f"\n{len(while_stalled)} entries reached the control reader while a reader stalled; "
            f"the stalled one got {len(got_by_slow)} entries, then 4408"
        )


async def test_the_services_own_pages_may_show_a_blog_restricted_to_partner_origins(service):
    await service.create_blog(embed_origins=["https://partner.example"])
    async with service.live(origin=service.base_url) as ws:
        assert (await receive(ws))["type"] == "snapshot"


async def test_behind_a_tls_proxy_the_services_own_https_pages_may_show_a_restricted_blog(service):
    """The trusted proxy (loopback here) says the reader came over https: the service's own page
    is then ``https://<host>``, and a plain ``http`` one is another origin."""
    await service.create_blog(embed_origins=["https://partner.example"])
    own = service.base_url.replace("http://", "https://")
    async with service.live(origin=own, additional_headers={"X-Forwarded-Proto": "https"}) as ws:
        assert (await receive(ws))["type"] == "snapshot"
    async with service.live(origin=service.base_url, additional_headers={"X-Forwarded-Proto": "https"}) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await receive(ws)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == CloseCode.ORIGIN_NOT_ALLOWED


async def test_a_reader_may_ask_for_a_bigger_snapshot_up_to_100(service):
    await service.create_blog()
    for i in range(30):
        await service.post(body=f"<p>{i}</p>")
    async with service.live(query="limit=25") as ws:
        assert len((await receive(ws))["entries"]) == 25
    async with service.live(query="limit=5000") as ws:
        assert len((await receive(ws))["entries"]) == 20, "out of range falls back to the default"


async def test_readers_joining_together_share_snapshot_reads(service, monkeypatch):
    """A reconnect storm after a restart: one snapshot read serves many readers, not one each."""
    await service.create_blog()
    for n in range(3):
        await service.post(headline=f"Entry {n}")
    async with service.live() as first:  # the blog's feed is started: what follows are joins only
        await receive(first)
        await service.post(headline="Entry 3")  # the snapshot the first reader got is old now
        assert (await receive(first))["entry"]["headline"] == "Entry 3"
        store, hub = service.services.store, service.services.hub
        # The first read is held until all 40 have subscribed: they join "at the same time".
        gate = Gate(store.snapshot)
        monkeypatch.setattr(store, "snapshot", gate)
        subscribed, all_in, subscribe = [], asyncio.Event(), hub.subscribe

        async def counted(*args):
            subscribed.append(await subscribe(*args))
            if len(subscribed) == 40:
                all_in.set()
            return subscribed[-1]

        monkeypatch.setattr(hub, "subscribe", counted)
        url = f"{service.ws_url}/api/v1/blogs/ukraine/live"
        readers = await asyncio.gather(*(websockets.connect(url) for _ in range(40)))
        try:
            await asyncio.wait_for(all_in.wait(), RECV_TIMEOUT)
            gate.open.set()
            snapshots = [await receive(ws) for ws in readers]
        finally:
            await asyncio.gather(*(ws.close() for ws in readers))
    assert all(
        s["type"] == "snapshot"
        and [e["headline"] for e in s["entries"]] == ["Entry 3", "Entry 2", "Entry 1", "Entry 0"]
        for s in snapshots
    )
    # One read for all 40 (40 without sharing), though most subscribed after it began: nothing
    # was handed out to the blog's readers since it began, so it misses nothing they would get.
    # (Counted at the store: Redis's own script count also has the scheduler's looks for due
    # entries, every 0.25 s, as many as a busy machine holds the read for.)
    assert gate.calls == 1, gate.calls


async def test_a_join_storm_on_a_quiet_blog_costs_no_snapshot_read(service, monkeypatch):
    """Breaking news: everyone opens the page at once, and nothing was posted since the last
    reader joined. They all get the snapshot that reader got, without reading it again."""
    await service.create_blog()
    for n in range(3):
        await service.post(headline=f"Entry {n}")
    async with service.live() as first:
        snapshot = await receive(first)
        store = service.services.store
        reads = Gate(store.snapshot)
        reads.open.set()  # not held: counted
        monkeypatch.setattr(store, "snapshot", reads)
        url = f"{service.ws_url}/api/v1/blogs/ukraine/live"
        readers = await asyncio.gather(*(websockets.connect(url) for _ in range(40)))
        try:
            snapshots = [await receive(ws) for ws in readers]
            scripts = reads.calls
            await service.post(headline="Entry 3")  # and from there on they are live
            live = [await receive(ws) for ws in [first, *readers]]
        finally:
            await asyncio.gather(*(ws.close() for ws in readers))
    assert snapshots == [snapshot] * 40
    assert scripts == 0
    assert [m["entry"]["headline"] for m in live] == ["Entry 3"] * 41


async def test_a_join_storm_on_a_cold_blog_reads_the_blog_once(service, monkeypatch):
    """Breaking news on a blog nobody has read for a while: every reader that joins while the
    blog's record is being read waits for that read instead of making its own."""
    await service.create_blog()
    await service.post(headline="Entry 0")
    service.services.pages.forget("ukraine")  # cold: nothing of it in the page cache
    store = service.services.store
    reads = Gate(store.get_blogs_json)  # held: every reader joins while the first read is in flight
    monkeypatch.setattr(store, "get_blogs_json", reads)
    url = f"{service.ws_url}/api/v1/blogs/ukraine/live"
    # A reader is past its 101 only once its join is waiting on the blog's record: the handshake
    # and the join up to that read are one step of the server's loop.
    readers = await asyncio.gather(*(websockets.connect(url) for _ in range(30)))
    try:
        held = reads.calls
        reads.open.set()
        snapshots = [await receive(ws) for ws in readers]
    finally:
        await asyncio.gather(*(ws.close() for ws in readers))
    assert held == 1, "every joiner waits on the read under way"
    assert reads.calls == 1
    assert [[e["headline"] for e in s["entries"]] for s in snapshots] == [["Entry 0"]] * 30


async def test_a_join_storm_over_many_cold_blogs_starts_their_feeds_with_one_round_trip(service, monkeypatch):
    """Breaking news on many blogs at once: the first reader of each starts its blog's feed, and
    the feeds that start together read where their logs are with one Redis call, not one each,
    and end the tailer's blocking read (to read their logs too) once, not once each."""
    await service.create_blog("warm")
    blogs = [f"blog-{n}" for n in range(20)]
    for blog_id in blogs:
        await service.create_blog(blog_id)
        await service.post(blog_id, headline=f"On {blog_id}")
    store = service.services.store
    bodies = {blog_id: await store.get_blog_json(blog_id) for blog_id in blogs}
    for blog_id in blogs:
        service.services.pages.forget(blog_id)
    opened, all_waiting = asyncio.Event(), asyncio.Event()
    waiting = []

    async def get_blogs_json(blog_ids: list[str]) -> dict[str, bytes | None]:
        # Every reader waits here on its blog's record, then all go on in the same step.
        waiting.extend(blog_ids)
        if len(waiting) == len(blogs):
            all_waiting.set()
        await opened.wait()
        return {blog_id: bodies[blog_id] for blog_id in blog_ids}

    reads: list[list[str]] = []
    positions, position = store.positions, store.position

    # Only reads of the storm's blogs count: the tailer's every-5-s check of the logs it already
    # reads ("warm") may fall inside the storm on a slow machine.
    async def counted_positions(blog_ids):
        if set(blog_ids) & set(blogs):
            reads.append(list(blog_ids))
        return await positions(blog_ids)

    async def counted_position(blog_id):
        if blog_id in blogs:
            reads.append([blog_id])
        return await position(blog_id)

    topology = service.services.topology
    unblocks = []
    unblock = topology.unblock

    async def counted_unblock(node: str, client_id: int) -> None:
        unblocks.append(client_id)
        await unblock(node, client_id)

    # A blog already read here: the tailer is blocked reading its log when the storm comes.
    warm = await websockets.connect(f"{service.ws_url}/api/v1/blogs/warm/live")
    await receive(warm)
    await service.post("warm", headline="Tailed")
    assert (await receive(warm))["entry"]["headline"] == "Tailed"
    monkeypatch.setattr(topology, "unblock", counted_unblock)
    monkeypatch.setattr(store, "get_blogs_json", get_blogs_json)
    monkeypatch.setattr(store, "positions", counted_positions)
    monkeypatch.setattr(store, "position", counted_position)
    readers = await asyncio.gather(*(websockets.connect(f"{service.ws_url}/api/v1/blogs/{b}/live") for b in blogs))
    try:
        await asyncio.wait_for(all_waiting.wait(), RECV_TIMEOUT)
        assert sorted(waiting) == sorted(blogs)
        opened.set()
        snapshots = [await receive(ws) for ws in readers]
    finally:
        await asyncio.gather(*(ws.close() for ws in [warm, *readers]))
    assert [s["entries"][0]["headline"] for s in snapshots] == [f"On {b}" for b in blogs]
    assert len(reads) == 1 and sorted(reads[0]) == sorted(blogs), reads
    assert len(unblocks) == 1, unblocks


async def test_readers_back_from_the_same_cursor_share_one_catch_up_read(service, monkeypatch):
    """After a deploy everyone comes back with the cursor of the last event before it: one read
    of what they missed serves them all, each gets it once and in order, and a reader coming
    back after a newer event gets that one too."""
    await service.create_blog()
    async with service.live() as first:
        cursor = (await receive(first))["cursor"]
    missed = [(await service.post(headline=f"Missed {n}"))["id"] for n in range(3)]
    store = service.services.store
    reads = Gate(store.since)
    reads.open.set()  # not held: counted
    monkeypatch.setattr(store, "since", reads)
    async with service.live() as watcher:  # the blog's feed is started, and stays at its generation
        await receive(watcher)
        readers = await asyncio.gather(*(service.live(cursor=cursor) for _ in range(20)))
        try:
            caught = [[(await receive(ws))["entry"]["id"] for _ in missed] for ws in readers]
            shared_reads = reads.calls
            newer = (await service.post(headline="Newer"))["id"]
            assert (await receive(watcher))["entry"]["id"] == newer  # handed out: a new generation
            async with service.live(cursor=cursor) as late:
                late_caught = [(await receive(late))["entry"]["id"] for _ in range(4)]
            live = [(await receive(ws))["entry"]["id"] for ws in readers]
        finally:
            await asyncio.gather(*(ws.close() for ws in readers))
    assert caught == [missed] * 20
    assert shared_reads == 1
    assert late_caught == [*missed, newer] and reads.calls == 2
    assert live == [newer] * 20, "each once: live, not again from a catch-up"


class Gate:
    """Holds a store call until opened, to cancel its caller mid-call: a reader leaving then."""

    def __init__(self, call):
        self.call = call
        self.calls = 0
        self.entered = asyncio.Event()
        self.open = asyncio.Event()

    async def __call__(self, *args):
        self.calls += 1
        self.entered.set()
        await self.open.wait()
        return await self.call(*args)


class Waits:
    """Wraps ``wait_shared`` (how a reader waits on work another reader's call does for it) to
    say when someone waits: the test then knows that reader is waiting, not that it may be."""

    def __init__(self, wait_shared):
        self._wait_shared = wait_shared
        self.on: list[asyncio.Future] = []
        self.waiting = asyncio.Event()

    async def __call__(self, future: asyncio.Future) -> bool:
        self.on.append(future)
        self.waiting.set()
        # The event wakes the test only after this task has suspended in the real wait.
        return await self._wait_shared(future)


async def test_a_reader_leaving_mid_read_does_not_fail_those_sharing_its_snapshot(service, monkeypatch):
    await service.create_blog()
    await service.post(headline="One")
    store, snapshots = service.services.store, service.services.snapshots
    gate = Gate(store.snapshot)
    monkeypatch.setattr(store, "snapshot", gate)
    waits = Waits(liveblog.snapshots.wait_shared)
    monkeypatch.setattr(liveblog.snapshots, "wait_shared", waits)
    async with asyncio.timeout(5):
        sharer_subscribed = snapshots.stamp()
        leaving = asyncio.create_task(snapshots.read("ukraine", 20, snapshots.stamp()))
        await gate.entered.wait()  # the leaving reader's read is under way, and held
        sharing = asyncio.create_task(snapshots.read("ukraine", 20, sharer_subscribed))
        await waits.waiting.wait()  # the sharer waits on the leaving reader's read
        assert (len(waits.on), gate.calls) == (1, 1), "the sharer waits on the read under way, not a read of its own"
        leaving.cancel()
        gate.open.set()
        snapshot = await sharing
    assert [e["headline"] for e in json.loads(snapshot.json)["entries"]] == ["One"]
    assert gate.calls == 2, "the sharer read the snapshot itself once the read it waited on was gone"
    with pytest.raises(asyncio.CancelledError):
        await leaving


async def test_a_reader_leaving_while_it_starts_a_feed_does_not_fail_the_others_joining(service, monkeypatch):
    await service.create_blog()
    hub, store = service.services.hub, service.services.store
    gate = Gate(store.positions)  # where a starting feed reads its log's position
    monkeypatch.setattr(store, "positions", gate)
    waits = Waits(liveblog.hub.wait_shared)
    monkeypatch.setattr(liveblog.hub, "wait_shared", waits)
    sink = Recorder()
    async with asyncio.timeout(5):
        leaving = asyncio.create_task(hub.subscribe("ukraine", Recorder()))
        await gate.entered.wait()  # the leaving reader is starting the blog's feed, and is held
        joining = asyncio.create_task(hub.subscribe("ukraine", sink))
        await waits.waiting.wait()  # the joining reader waits on the feed the leaving one starts
        assert (len(waits.on), gate.calls) == (1, 1), "the joiner waits on the start under way, not one of its own"
        leaving.cancel()
        gate.open.set()
        subscription = await joining
        assert hub.readers("ukraine") == 1
        assert gate.calls == 2, "the joiner started the feed itself once the start it waited on was gone"
        subscription.go_live()
        posted = await service.post(headline="After")
        await sink.received.wait()  # the feed was started, and is tailed
    hub.unsubscribe(subscription)
    assert json.loads(sink.messages[0].json)["entry"]["id"] == posted["id"]
    with pytest.raises(asyncio.CancelledError):
        await leaving


class Recorder:
    """A reader's sink for the hub that keeps what it is sent."""

    def __init__(self):
        self.messages = []
        self.received = asyncio.Event()

    def send(self, message) -> int:
        self.messages.append(message)
        self.received.set()
        return 0

    def close(self, code: int, reason: str) -> None:
        pass


def _client_frame(opcode: int, payload: bytes) -> bytes:
    """One masked frame, as a client must send it (RFC 6455 §5.3); a zero mask keeps it readable."""
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


async def test_a_reader_that_sends_pongs_of_its_own_and_never_reads_is_let_go(redis_server):
    """Unsolicited pongs are a legal heartbeat, but they are not an answer: a client that sends
    them and never reads what it is sent is dropped once our ping goes unanswered, while a
    reader that answers is kept."""
    settings = replace(UNLIMITED, ws_ping_interval=0.2)
    async with running_service(redis_server.url, settings) as service:
        await service.create_blog()
        hub = service.services.hub
        async with service.live() as answering:
            await receive(answering)
            port = int(service.base_url.rsplit(":", 1)[1])
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                b"GET /api/v1/blogs/ukraine/live HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\n\r\n"
            )
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
            assert hub.readers("ukraine") == 2
            # from here on it reads nothing: it only says "alive" every 50 ms, for up to 30 s
            for _ in range(600):
                if hub.readers("ukraine") == 1:
                    break
                writer.write(_client_frame(0xA, b"alive"))
                await writer.drain()
                await asyncio.sleep(0.05)  # the attacker's pace, not a wait for the server
            assert hub.readers("ukraine") == 1, "a client that answered no ping is still held"
            writer.close()

            entry = await service.post(body="<p>still live</p>")
            message = await receive(answering)
            while message["type"] != "event":
                message = await receive(answering)
            assert message["entry"]["id"] == entry["id"]


class HeldDispatch:
    """Holds the tailer's hand-outs while closed: the moment between a write and its hand-out,
    made as long as a test needs (a lagging tailer)."""

    def __init__(self, dispatch):
        self.dispatch = dispatch
        self.open = asyncio.Event()
        self.waiting = asyncio.Event()

    async def __call__(self, *args, **kwargs):
        if not self.open.is_set():
            self.waiting.set()
            await self.open.wait()
        return await self.dispatch(*args, **kwargs)


async def test_after_a_purge_no_kept_snapshot_or_catch_up_has_its_text(service, monkeypatch):
    """A takedown's 204 means nothing this process serves has the text any more, even before
    its tailer hands out the tombstone: not the snapshot kept for joiners, not a kept catch-up."""
    await service.create_blog()
    async with service.live() as first:
        cursor = (await receive(first))["cursor"]
    secret = await service.post(headline="SECRET-TEXT")
    async with service.live() as watcher:  # the feed stays at one generation: snapshots are kept
        assert "SECRET-TEXT" in json.dumps(await receive(watcher))
        async with service.live(cursor=cursor) as back:  # a catch-up from before the post, kept
            assert (await receive(back))["entry"]["id"] == secret["id"]
        held = HeldDispatch(service.services.hub.dispatch)
        monkeypatch.setattr(service.services.hub, "dispatch", held)
        purged = await service.http.delete(
            f"/api/v1/blogs/ukraine/entries/{secret['id']}?purge=true", headers=service.auth()
        )
        assert purged.status_code == 204
        await asyncio.wait_for(held.waiting.wait(), RECV_TIMEOUT)  # the tombstone, not handed out
        async with service.live() as late:
            late_snapshot = await receive(late)
        async with service.live(cursor=cursor) as late_back:
            late_caught = await receive(late_back)
        held.open.set()
        assert (await receive(watcher))["event"] == "entry.deleted"
    assert "SECRET-TEXT" not in json.dumps(late_snapshot)
    assert "SECRET-TEXT" not in json.dumps(late_caught)


async def test_readers_back_from_a_gone_cursor_share_the_one_answer(service, monkeypatch):
    """Everyone coming back with a cursor of a log that was recreated (say) learns it from one
    read, not from one read each in turn while the rest queue behind it."""
    await service.create_blog()
    async with service.live() as first:
        cursor = (await receive(first))["cursor"]
    gone = Cursor("gone", Cursor.parse(cursor).stream_id)
    store = service.services.store
    reads = Gate(store.since)
    monkeypatch.setattr(store, "since", reads)
    snapshots = SnapshotReads(store, lambda blog: 1)
    back = [asyncio.create_task(snapshots.catch_up("ukraine", gone, 10)) for _ in range(20)]
    await asyncio.wait_for(reads.entered.wait(), RECV_TIMEOUT)
    for _ in range(3):
        await asyncio.sleep(0)  # not a wait for time: one turn of the loop for each to queue
    reads.open.set()
    answers = await asyncio.gather(*back, return_exceptions=True)
    assert all(isinstance(answer, CursorGone) for answer in answers)
    assert reads.calls == 1


async def test_a_tailer_that_is_behind_gathers_the_next_events_into_one_write_per_reader(service):
    """Under overload a tail loop whose reads are behind (here: every read that finds an event)
    waits a window before its next read, and what was posted meanwhile reaches the reader in one
    write, once and in order."""
    await service.create_blog()
    services = service.services
    metrics = Metrics()
    rules = GatherRules(behind=float("-inf"), span=0.0, window=2.0, hold=60.0, max_hold=60.0)
    hub = Hub(services.store, services.topology, metrics, gathering=rules)
    running = asyncio.create_task(hub.run())
    sink = Recorder()
    try:
        async with asyncio.timeout(10):
            subscription = await hub.subscribe("ukraine", sink)
            subscription.go_live()
            first = await service.post(headline="One")
            await sink.received.wait()
            sink.received.clear()
            later = [await service.post(headline=headline) for headline in ("Two", "Three", "Four")]
            await sink.received.wait()
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    assert [[json.loads(part.json)["entry"]["id"] for part in message.parts] for message in sink.messages] == [
        [first["id"]],
        [posted["id"] for posted in later],
    ]
    assert (metrics.registry.get_sample_value("liveblog_tailer_gathers_total") or 0) >= 1


async def test_a_tailer_reads_a_redis_clock_it_can_judge_ages_by(service):
    """Stream ids are the Redis node's milliseconds; the tailer judges how late a read is by them
    against its own clock, less the node's offset. On one host the offset is about nothing, and a
    just-posted event is about as old as the time since it was posted."""
    await service.create_blog()
    async with service.services.topology.log_reader(next(iter(service.services.topology.nodes()))) as reader:
        offset, round_trip = await reader.clock_offset()
        posted = await service.post(headline="Now")
        ((_, events),) = await reader.read({"ukraine": "0-0"}, 0)
    assert abs(offset) < 0.5 and 0 <= round_trip < 0.5
    assert [json.loads(event.payload)["entry"]["id"] for event in events] == [posted["id"]]
    age = liveblog.tailer._age([("ukraine", events)], offset)
    assert age is not None and age < 0.5


async def test_a_redis_that_refuses_time_leaves_the_tailer_judging_by_its_own_clock(redis_server, caplog):
    """An ACL or a proxy that refuses TIME must not stop the tailer: it logs why, once, and
    judges ages by its own clock (offset None), keeping whatever offset it already had."""
    admin = redis.Redis.from_url(redis_server.url)
    await admin.acl_setuser("no-time", enabled=True, nopass=True, keys="*", commands=["+@all", "-time"])
    try:
        async with LogReader(redis.Redis.from_url(redis_server.url, username="no-time")) as reader:
            assert await liveblog.tailer._clock_offset(reader, None) is None
            assert await liveblog.tailer._clock_offset(reader, 0.25) == 0.25
        assert caplog.text.count("Redis refused TIME") == 1
    finally:
        await admin.acl_deluser("no-time")
        await admin.aclose()
