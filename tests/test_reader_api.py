"""Readers and widgets using the public reader API (DESIGN §3, "Reader API").

A reader pages through a blog, comes back later with a cursor to catch up, revalidates with
ETags, and reads from another site (CORS). Nothing here needs a token.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
import redis
from conftest import UNLIMITED, Service, assert_error, receive, running_service

#: One running service for the whole file; conftest's autouse fixture flushes Redis before each test.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def service(redis_server) -> Service:
    async with running_service(redis_server.url, UNLIMITED) as svc:
        yield svc


# --- helpers ----------------------------------------------------------------------------------------


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def page(service, blog_id: str = "ukraine", **params) -> dict:
    response = await service.http.get(f"/api/v1/blogs/{blog_id}/entries", params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def since(service, cursor: str, blog_id: str = "ukraine") -> dict:
    response = await service.http.get(f"/api/v1/blogs/{blog_id}/entries", params={"since": cursor})
    assert response.status_code == 200, response.text
    return response.json()


async def walk(service, limit: int) -> tuple[list[dict], int]:
    """Every entry, page by page, following ``next``; and how many pages that took."""
    seen, before, pages = [], None, 0
    while True:
        params = {"limit": limit} | ({"before": before} if before else {})
        body = await page(service, **params)
        pages += 1
        assert isinstance(body["cursor"], str) and body["cursor"]
        assert len(body["entries"]) <= limit
        seen += body["entries"]
        before = body["next"]
        if before is None:
            return seen, pages
        assert pages < 100, "paging does not end"


async def next_event(ws) -> dict:
    while True:
        message = await receive(ws)
        if message["type"] != "viewers":
            return message


def other_epoch(cursor: str) -> str:
    epoch, dot, stream_id = cursor.partition(".")
    assert dot, cursor
    replacement = "0" * len(epoch) if epoch != "0" * len(epoch) else "1" * len(epoch)
    return f"{replacement}.{stream_id}"


# --- paging -------------------------------------------------------------------------------------------


async def test_entries_come_newest_first_by_display_time(service):
    await service.create_blog("ukraine")
    now = datetime.now(UTC)
    latest = await service.post(body="<p>Now</p>")
    an_hour_ago = await service.post(body="<p>Backdated an hour</p>", time=rfc3339(now - timedelta(hours=1)))
    last_year = await service.post(body="<p>Backdated a year</p>", time=rfc3339(now - timedelta(days=365)))
    half_hour_ago = await service.post(body="<p>Backdated half an hour</p>", time=rfc3339(now - timedelta(minutes=30)))

    body = await page(service)
    assert isinstance(body["cursor"], str) and body["cursor"]
    assert body["next"] is None
    assert [e["id"] for e in body["entries"]] == [latest["id"], half_hour_ago["id"], an_hour_ago["id"], last_year["id"]]
    assert body["entries"][2]["time"] == an_hour_ago["time"]
    assert datetime.fromisoformat(an_hour_ago["time"]) == now - timedelta(hours=1)


async def test_a_backdated_time_is_kept_as_sent(service):
    await service.create_blog("ukraine")
    entry = await service.post(time="2024-02-24T04:00:00Z")
    assert datetime.fromisoformat(entry["time"]) == datetime(2024, 2, 24, 4, 0, tzinfo=UTC)
    assert datetime.fromisoformat(entry["created_at"]) > datetime(2024, 2, 24, 4, 0, tzinfo=UTC)
    assert (await page(service))["entries"] == [entry]


async def test_an_edited_time_moves_the_entry(service):
    await service.create_blog("ukraine")
    older = await service.post(body="<p>older</p>", time="2024-01-01T10:00:00Z")
    newer = await service.post(body="<p>newer</p>", time="2024-01-01T11:00:00Z")
    response = await service.http.patch(
        f"/api/v1/blogs/ukraine/entries/{older['id']}",
        json={"time": "2024-01-01T12:00:00Z"},
        headers={**service.auth(), "If-Match": '"1"'},
    )
    assert response.status_code == 200, response.text
    assert [e["id"] for e in (await page(service))["entries"]] == [older["id"], newer["id"]]


@pytest.mark.parametrize(
    ("count", "limit", "pages"),
    [(7, 3, 3), (6, 3, 2), (5, 1, 5), (3, 20, 1), (0, 20, 1)],
)
async def test_paging_with_before_walks_every_entry_exactly_once(service, count, limit, pages):
    await service.create_blog("ukraine")
    start = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
    posted = [
        await service.post(body=f"<p>entry {n}</p>", time=rfc3339(start + timedelta(minutes=n))) for n in range(count)
    ]
    seen, taken = await walk(service, limit)
    assert [e["id"] for e in seen] == [e["id"] for e in reversed(posted)]
    assert taken == pages


async def test_paging_walks_entries_that_share_a_display_time(service):
    await service.create_blog("ukraine")
    posted = [await service.post(body=f"<p>{n}</p>", time="2024-05-01T08:00:00Z") for n in range(7)]
    seen, _ = await walk(service, 2)
    assert sorted(e["id"] for e in seen) == sorted(e["id"] for e in posted)
    assert len(seen) == len(posted)


async def test_the_first_page_holds_the_newest_and_points_to_the_rest(service):
    await service.create_blog("ukraine")
    posted = [await service.post(body=f"<p>{n}</p>") for n in range(5)]
    body = await page(service, limit=2)
    assert [e["id"] for e in body["entries"]] == [posted[4]["id"], posted[3]["id"]]
    assert body["next"] is not None
    rest = await page(service, limit=20, before=body["next"])
    assert [e["id"] for e in rest["entries"]] == [posted[2]["id"], posted[1]["id"], posted[0]["id"]]
    assert rest["next"] is None


async def test_the_default_page_is_twenty_entries(service):
    await service.create_blog("ukraine")
    for n in range(21):
        await service.post(body=f"<p>{n}</p>")
    body = await page(service)
    assert len(body["entries"]) == 20
    assert body["next"] is not None


async def test_reading_entries_of_a_blog_that_does_not_exist_is_404(service):
    assert_error(await service.http.get("/api/v1/blogs/nowhere/entries"), 404)
    assert_error(await service.http.get("/api/v1/blogs/nowhere/entries/abc"), 404)


# --- catching up with a cursor ------------------------------------------------------------------------


async def test_since_a_cursor_returns_exactly_what_happened_after_it_in_order(service):
    await service.create_blog("ukraine")
    before = await service.post(body="<p>already seen</p>")
    cursor = (await page(service))["cursor"]

    first = await service.post(body="<p>first</p>")
    second = await service.post(body="<p>second</p>")
    edited = await service.http.patch(
        f"/api/v1/blogs/ukraine/entries/{first['id']}",
        json={"headline": "Update"},
        headers={**service.auth(), "If-Match": '"1"'},
    )
    deleted = await service.http.delete(
        f"/api/v1/blogs/ukraine/entries/{second['id']}", headers={**service.auth(), "If-Match": '"1"'}
    )
    retitled = await service.http.patch("/api/v1/blogs/ukraine", json={"title": "Live: day 2"}, headers=service.auth())
    assert (edited.status_code, deleted.status_code, retitled.status_code) == (200, 204, 200)

    body = await since(service, cursor)
    events = body["events"]
    assert [e["event"] for e in events] == [
        "entry.created",
        "entry.created",
        "entry.updated",
        "entry.deleted",
        "blog.updated",
    ]
    assert events[0]["entry"] == first
    assert events[1]["entry"] == second
    assert events[2]["entry"] == edited.json()
    assert events[3]["entry"]["id"] == second["id"] and events[3]["entry"]["deleted"] is True
    assert events[4]["blog"] == retitled.json()
    assert before["id"] not in [e.get("entry", {}).get("id") for e in events]

    cursors = [e["cursor"] for e in events]
    assert all(isinstance(c, str) and c for c in cursors)
    assert len(set(cursors)) == len(cursors) and cursor not in cursors
    assert body["cursor"] == cursors[-1]

    # resuming from any event's cursor yields exactly the events after it
    for n, event_cursor in enumerate(cursors):
        assert (await since(service, event_cursor))["events"] == events[n + 1 :]


async def test_since_the_latest_cursor_returns_nothing_and_the_same_cursor(service):
    await service.create_blog("ukraine")
    await service.post()
    cursor = (await page(service))["cursor"]
    body = await since(service, cursor)
    assert body == {"cursor": cursor, "events": []}


async def test_since_cursors_are_the_ones_live_readers_get(service):
    await service.create_blog("ukraine")
    async with service.live() as ws:
        snapshot = await receive(ws)
        assert snapshot["type"] == "snapshot"
        first = await service.post(body="<p>first</p>")
        second = await service.post(body="<p>second</p>")
        live = [await next_event(ws), await next_event(ws)]
    assert [e["entry"]["id"] for e in live] == [first["id"], second["id"]]
    caught_up = (await since(service, snapshot["cursor"]))["events"]
    assert [(e["cursor"], e["event"], e["entry"]) for e in caught_up] == [
        (e["cursor"], e["event"], e["entry"]) for e in live
    ]


async def test_a_cursor_from_another_epoch_is_gone(service):
    await service.create_blog("ukraine")
    await service.post()
    cursor = (await page(service))["cursor"]
    response = await service.http.get("/api/v1/blogs/ukraine/entries", params={"since": other_epoch(cursor)})
    assert_error(response, 410)


async def test_a_cursor_of_a_recreated_blog_is_gone(service, redis_server):
    """Redis lost everything (a flush): the blog is created again and old cursors must not resume."""
    import redis as sync_redis

    await service.create_blog("ukraine")
    await service.post()
    cursor = (await page(service))["cursor"]
    with sync_redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    await service.create_blog("ukraine")
    await service.post()
    assert_error(await service.http.get("/api/v1/blogs/ukraine/entries", params={"since": cursor}), 410)


@pytest.mark.parametrize(
    "garbage",
    [
        "garbage",
        "",
        ".",
        "abc.",
        ".1-0",
        "abc.def",
        "abc.1-x",
        "ABC.1-0",
        "abc.1-0.2",
        "x" * 500,
        "abc.99999999999999999999999-0",
        "abc.18446744073709551616-0",  # 2**64: past any stream id Redis takes
        "abc.0-99999999999999999999",
    ],
)
async def test_a_garbage_cursor_is_a_bad_request(service, garbage):
    await service.create_blog("ukraine")
    response = await service.http.get("/api/v1/blogs/ukraine/entries", params={"since": garbage})
    assert_error(response, 400)


@pytest.mark.parametrize("stream_id", ["\u0663-0", "1-\u0663", "\uff11-0"])
async def test_a_cursor_with_non_ascii_digits_is_a_bad_request(service, stream_id):
    """Real cursors hold ASCII digits only; a look-alike must not reach Redis as a stream id."""
    await service.create_blog("ukraine")
    epoch = (await page(service))["cursor"].partition(".")[0]
    response = await service.http.get("/api/v1/blogs/ukraine/entries", params={"since": f"{epoch}.{stream_id}"})
    assert_error(response, 400)


@pytest.mark.parametrize("stream_id", ["\u0663-0", "garbage", "18446744073709551616-0", "0-99999999999999999999"])
async def test_a_live_reader_with_an_unusable_cursor_gets_a_snapshot(service, stream_id):
    await service.create_blog("ukraine")
    entry = await service.post()
    epoch = (await page(service))["cursor"].partition(".")[0]
    async with service.live(cursor=f"{epoch}.{stream_id}") as ws:
        snapshot = await receive(ws)
        assert snapshot["type"] == "snapshot"
        assert [e["id"] for e in snapshot["entries"]] == [entry["id"]]


async def test_a_live_reader_with_a_cursor_of_another_epoch_gets_a_snapshot(service):
    await service.create_blog("ukraine")
    entry = await service.post()
    cursor = (await page(service))["cursor"]
    async with service.live(cursor=other_epoch(cursor)) as ws:
        snapshot = await receive(ws)
        assert snapshot["type"] == "snapshot"
        assert [e["id"] for e in snapshot["entries"]] == [entry["id"]]


# --- caching and cross-origin -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/api/v1/blogs/ukraine", "/api/v1/blogs/ukraine/entries", "/api/v1/blogs/ukraine/entries/{entry}"]
)
async def test_revalidating_with_the_etag_is_not_modified(service, path):
    await service.create_blog("ukraine")
    entry = await service.post()
    url = path.format(entry=entry["id"])
    first = await service.http.get(url)
    assert first.status_code == 200
    etag = first.headers["etag"]
    again = await service.http.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""


async def test_an_etag_goes_stale_when_the_blog_changes(service):
    await service.create_blog("ukraine")
    await service.post(body="<p>one</p>")
    first = await service.http.get("/api/v1/blogs/ukraine/entries")
    await service.post(body="<p>two</p>")
    again = await service.http.get("/api/v1/blogs/ukraine/entries", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 200
    assert len(again.json()["entries"]) == 2
    assert again.headers["etag"] != first.headers["etag"]


async def test_a_catch_up_revalidates_too(service):
    await service.create_blog("ukraine")
    await service.post()
    cursor = (await page(service))["cursor"]
    first = await service.http.get("/api/v1/blogs/ukraine/entries", params={"since": cursor})
    again = await service.http.get(
        "/api/v1/blogs/ukraine/entries", params={"since": cursor}, headers={"If-None-Match": first.headers["etag"]}
    )
    assert again.status_code == 304


@pytest.mark.parametrize(
    "path",
    ["/api/v1/blogs/ukraine", "/api/v1/blogs/ukraine/entries", "/api/v1/blogs/ukraine/entries/{entry}", "since"],
)
async def test_reader_endpoints_may_be_read_from_any_site(service, path):
    await service.create_blog("ukraine")
    entry = await service.post()
    if path == "since":
        cursor = (await page(service))["cursor"]
        response = await service.http.get(
            "/api/v1/blogs/ukraine/entries", params={"since": cursor}, headers={"Origin": "https://partner.example"}
        )
    else:
        response = await service.http.get(path.format(entry=entry["id"]), headers={"Origin": "https://partner.example"})
    assert response.status_code == 200
    assert response.headers.get("access-control-allow-origin") == "*"


async def test_reporter_endpoints_are_not_open_to_other_sites(service):
    await service.create_blog("ukraine")
    origin = {"Origin": "https://evil.example"}
    entry_response = await service.http.post(
        "/api/v1/blogs/ukraine/entries", json={"body": "<p>x</p>"}, headers={**service.auth(), **origin}
    )
    assert entry_response.status_code == 201
    entry = entry_response.json()
    responses = [
        entry_response,
        await service.http.get("/api/v1/blogs", headers={**service.auth(), **origin}),
        await service.http.patch(
            f"/api/v1/blogs/ukraine/entries/{entry['id']}",
            json={"pinned": True},
            headers={**service.auth(), **origin, "If-Match": '"1"'},
        ),
        await service.http.patch("/api/v1/blogs/ukraine", json={"title": "T"}, headers={**service.auth(), **origin}),
        await service.http.post(
            "/api/v1/tokens",
            json={"name": "x", "role": "reporter", "blogs": ["ukraine"]},
            headers={**service.auth(), **origin},
        ),
        await service.http.post(
            "/api/v1/blogs", json={"id": "gaza", "title": "G"}, headers={**service.auth(), **origin}
        ),
    ]
    for response in responses:
        assert response.status_code < 300, response.text
        assert "access-control-allow-origin" not in response.headers, response.request.url


# --- health -------------------------------------------------------------------------------------------


async def test_the_service_is_alive(service):
    response = await service.http.get("/healthz")
    assert response.status_code == 200


async def test_the_service_is_ready_when_redis_is_there(service):
    response = await service.http.get("/readyz")
    assert response.status_code == 200


async def test_a_spike_of_identical_page_reads_costs_redis_one_read_and_a_post_shows_at_once(service, redis_server):
    await service.create_blog("ukraine")
    await service.post(body="<p>first</p>")

    def scripts_run() -> int:
        with redis.Redis.from_url(redis_server.url) as client:
            stats = client.info("commandstats")
        return sum(stats.get(name, {}).get("calls", 0) for name in ("cmdstat_evalsha", "cmdstat_eval"))

    before = scripts_run()
    bodies = [(await service.http.get("/api/v1/blogs/ukraine/entries")).json() for _ in range(50)]
    assert scripts_run() - before <= 2  # one read, or two if the second of caching ran out meanwhile
    assert all(body == bodies[0] for body in bodies)

    newest = await service.post(body="<p>second</p>")
    assert (await page(service))["entries"][0]["id"] == newest["id"], "a reporter sees their post at once"


@pytest.mark.parametrize(
    "path", ["/blogs/ukraine", "/embed/ukraine", "/blogs/ukraine/feed.atom", "/blogs/ukraine/feed.json", "permalink"]
)
async def test_a_crowd_asking_for_one_page_or_feed_at_once_costs_what_one_reader_does(service, redis_server, path):
    """Rendering can't be used to amplify: fifty readers asking at the same moment share one
    build of the page (one set of reads from Redis), not fifty."""
    await service.create_blog("ukraine")
    for n in range(30):
        entry = await service.post(body=f"<p>update {n} " + "with some words " * 50 + "</p>")
    if path == "permalink":
        path = f"/blogs/ukraine/entries/{entry['id']}"

    def commands_run() -> int:
        with redis.Redis.from_url(redis_server.url) as client:
            stats = client.info("commandstats")
        # what reads the blog, not what opens a connection (HELLO, CLIENT SETINFO) or asks for this
        setup = ("cmdstat_info", "cmdstat_hello", "cmdstat_client")
        return sum(stat["calls"] for name, stat in stats.items() if not name.startswith(setup))

    async def cost(readers: int) -> int:
        await service.post(body="<p>news</p>")  # a write: the page must be built again
        before = commands_run()
        crowd = await asyncio.gather(*(service.http.get(path) for _ in range(readers)))
        assert {response.status_code for response in crowd} == {200}
        assert len({response.content for response in crowd}) == 1
        return commands_run() - before

    one, fifty = await cost(1), await cost(50)
    # (the scheduler and the tailer poll meanwhile, so "the same" is within a few commands)
    assert fifty <= one + 5, f"one reader costs {one} Redis commands, fifty at once {fifty}"
