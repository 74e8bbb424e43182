"""Reporters, editors and admins at work through the HTTP API (DESIGN §3, "Reporter API").

Each test is one newsroom story: someone does one thing, and we check what they (and the readers)
would notice. Refused requests must answer in the contract's error shape and change nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from conftest import UNLIMITED, Service, assert_error, receive, redis_state, running_service

#: One running service for the whole file (starting one per test would dominate the run time);
#: conftest's autouse fixture still flushes Redis before every test, so each test starts clean.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def service(redis_server) -> Service:
    async with running_service(redis_server.url, UNLIMITED) as svc:
        yield svc


BLOG_FIELDS = {
    "id",
    "title",
    "description",
    "status",
    "created_at",
    "updated_at",
    "coverage_start",
    "language",
    "embed_origins",
    "timezone",
    "brand",  # null until the newsroom sets its look
}


# --- helpers ----------------------------------------------------------------------------------------


def bearer(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


def utc(text: str) -> datetime:
    """An RFC 3339 UTC time from the API, parsed (fails the test if it is not one)."""
    moment = datetime.fromisoformat(text)
    assert moment.utcoffset() == timedelta(0), text
    return moment


async def redis_text(url: str) -> bytes:
    """Every value stored in Redis, decoded by type and concatenated (for "is this secret stored?")."""
    chunks: list[bytes] = []
    async with aioredis.Redis.from_url(url) as client:
        for key in await client.keys("*"):
            chunks.append(key)
            kind = (await client.type(key)).decode()
            if kind == "string":
                chunks.append(await client.get(key))
            elif kind == "hash":
                for field, value in (await client.hgetall(key)).items():
                    chunks += [field, value]
            elif kind == "zset":
                chunks += await client.zrange(key, 0, -1)
            elif kind == "set":
                chunks += list(await client.smembers(key))
            elif kind == "list":
                chunks += await client.lrange(key, 0, -1)
            elif kind == "stream":
                for _, fields in await client.xrange(key):
                    for field, value in fields.items():
                        chunks += [field, value]
    return b"\n".join(chunks)


def blog_ids(response) -> set[str]:
    body = response.json()
    blogs = body["blogs"] if isinstance(body, dict) else body
    return {blog["id"] for blog in blogs}


async def entries_of(service, blog_id: str = "ukraine") -> list[dict]:
    response = await service.http.get(f"/api/v1/blogs/{blog_id}/entries", params={"limit": 100})
    assert response.status_code == 200, response.text
    return response.json()["entries"]


async def cursor_of(service, blog_id: str = "ukraine") -> str:
    response = await service.http.get(f"/api/v1/blogs/{blog_id}/entries", params={"limit": 1})
    assert response.status_code == 200, response.text
    return response.json()["cursor"]


async def events_since(service, cursor: str, blog_id: str = "ukraine") -> list[dict]:
    response = await service.http.get(f"/api/v1/blogs/{blog_id}/entries", params={"since": cursor})
    assert response.status_code == 200, response.text
    return response.json()["events"]


async def next_event(ws) -> dict:
    """The next event frame on a live channel (skipping the optional viewer counts)."""
    while True:
        message = await receive(ws)
        if message["type"] != "viewers":
            return message


async def post_entry(service, token: str, blog_id: str = "ukraine", headers: dict | None = None, **body):
    body.setdefault("body", "<p>update</p>")
    return await service.http.post(
        f"/api/v1/blogs/{blog_id}/entries", json=body, headers={**bearer(token), **(headers or {})}
    )


# --- blogs --------------------------------------------------------------------------------------------


async def test_admin_creates_a_live_blog(service):
    response = await service.http.post(
        "/api/v1/blogs",
        json={
            "id": "ukraine",
            "title": "Live: war in Ukraine",
            "description": "Latest from Kyiv",
            "language": "uk",
            "embed_origins": ["https://news.example"],
        },
        headers=service.auth(),
    )
    assert response.status_code == 201, response.text
    blog = response.json()
    assert BLOG_FIELDS <= set(blog)
    assert set(blog) <= BLOG_FIELDS | {"coverage_end"}
    assert blog["id"] == "ukraine"
    assert blog["title"] == "Live: war in Ukraine"
    assert blog["description"] == "Latest from Kyiv"
    assert blog["language"] == "uk"
    assert blog["embed_origins"] == ["https://news.example"]
    assert blog["status"] == "live"
    assert blog.get("coverage_end") is None
    assert utc(blog["created_at"]) <= utc(blog["updated_at"])
    assert utc(blog["coverage_start"]) >= utc(blog["created_at"]) - timedelta(seconds=1)


async def test_blog_defaults_apply_when_only_id_and_title_are_sent(service):
    blog = await service.create_blog("gaza")
    assert blog["description"] == ""
    assert blog["embed_origins"] == []
    assert blog["language"]
    assert blog["status"] == "live"


async def test_creating_a_blog_twice_is_a_conflict_and_keeps_the_first(service, redis_server):
    first = await service.create_blog("ukraine", description="original")
    before = await redis_state(redis_server.url)
    again = await service.http.post(
        "/api/v1/blogs", json={"id": "ukraine", "title": "Imposter"}, headers=service.auth()
    )
    assert_error(again, 409)
    assert await redis_state(redis_server.url) == before
    assert (await service.http.get("/api/v1/blogs/ukraine")).json() == first


async def test_anyone_reads_a_blog_without_a_token(service):
    created = await service.create_blog("ukraine")
    response = await service.http.get("/api/v1/blogs/ukraine")
    assert response.status_code == 200
    assert response.json() == created


async def test_reading_a_blog_that_does_not_exist_is_404(service):
    assert_error(await service.http.get("/api/v1/blogs/nowhere"), 404)


async def test_admin_lists_every_blog(service):
    await service.create_blog("ukraine")
    await service.create_blog("gaza")
    await service.create_blog("election")
    response = await service.http.get("/api/v1/blogs", headers=service.auth())
    assert response.status_code == 200
    assert blog_ids(response) == {"ukraine", "gaza", "election"}


async def test_a_reporter_lists_only_its_own_blogs(service):
    await service.create_blog("ukraine")
    await service.create_blog("gaza")
    await service.create_blog("election")
    token = (await service.mint("reporter", blogs=("ukraine", "election")))["token"]
    response = await service.http.get("/api/v1/blogs", headers=bearer(token))
    assert response.status_code == 200
    assert blog_ids(response) == {"ukraine", "election"}


# --- tokens -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["editor", "reporter"])
async def test_admin_mints_a_token_that_works(service, role):
    await service.create_blog("ukraine")
    response = await service.http.post(
        "/api/v1/tokens", json={"name": "Olena", "role": role, "blogs": ["ukraine"]}, headers=service.auth()
    )
    assert response.status_code == 201, response.text
    minted = response.json()
    assert set(minted) == {"id", "token", "name", "role", "blogs"}
    assert (minted["name"], minted["role"], minted["blogs"]) == ("Olena", role, ["ukraine"])
    assert minted["token"] and minted["token"] != minted["id"]
    entry = await post_entry(service, minted["token"])
    assert entry.status_code == 201, entry.text


async def test_a_token_secret_is_shown_once_and_stored_only_hashed(service, redis_server):
    await service.create_blog("ukraine")
    minted = await service.mint("reporter")
    token_id, token = minted["id"], minted["token"]
    secret = token[-16:]  # however the token text is framed, its tail is secret
    assert token_id not in secret

    # nothing the API offers shows the token text again
    for path in (f"/api/v1/tokens/{token_id}", "/api/v1/tokens", "/api/v1/blogs"):
        response = await service.http.get(path, headers=service.auth())
        assert response.status_code != 200 or token not in response.text, path
        assert secret not in response.text, path

    # Redis holds the token's record, but neither the token text nor its secret
    stored = await redis_text(redis_server.url)
    assert token_id.encode() in stored
    assert secret.encode() not in stored
    assert token.encode() not in stored


async def test_a_revoked_token_is_refused_at_once(service):
    await service.create_blog("ukraine")
    minted = await service.mint("reporter")
    assert (await post_entry(service, minted["token"])).status_code == 201

    revoked = await service.http.delete(f"/api/v1/tokens/{minted['id']}", headers=service.auth())
    assert revoked.status_code == 204

    assert_error(await post_entry(service, minted["token"]), 401)
    assert_error(await service.http.get("/api/v1/blogs", headers=bearer(minted["token"])), 401)
    assert len(await entries_of(service)) == 1


async def test_revoking_an_unknown_token_is_404(service):
    assert_error(await service.http.delete("/api/v1/tokens/nosuchtoken", headers=service.auth()), 404)


# --- posting ------------------------------------------------------------------------------------------


async def test_a_reporter_posts_an_entry(service):
    await service.create_blog("ukraine")
    token = (await service.mint("reporter", name="Olena Kovalenko"))["token"]
    response = await post_entry(
        service, token, body='<p>Sirens in <strong>Kyiv</strong></p><script>alert("x")</script>', headline="Air raid"
    )
    assert response.status_code == 201, response.text
    entry = response.json()
    assert entry["blog"] == "ukraine"
    assert entry["version"] == 1
    assert entry["author"]["name"] == "Olena Kovalenko"
    assert entry["headline"] == "Air raid"
    assert "<script" not in entry["body"] and "alert" not in entry["body"]
    assert "<strong>Kyiv</strong>" in entry["body"]
    assert entry["tags"] == [] and entry["pinned"] is False and entry["key_event"] is False
    assert not entry.get("deleted")
    assert utc(entry["time"]) == utc(entry["created_at"]) == utc(entry["updated_at"])

    # the reader sees exactly what the reporter got back
    assert await entries_of(service) == [entry]
    assert (await service.http.get(f"/api/v1/blogs/ukraine/entries/{entry['id']}")).json() == entry


async def test_a_reporter_signs_with_its_own_name_and_chooses_role_and_location(service):
    await service.create_blog("ukraine")
    token = (await service.mint("reporter", name="Taras"))["token"]
    forged = await post_entry(service, token, author={"name": "Iryna", "role": "Editor-in-chief"})
    assert_error(forged, 403, "$.author.name")
    response = await post_entry(service, token, author={"role": "Correspondent", "location": "Kharkiv"})
    assert response.status_code == 201, response.text
    assert response.json()["author"] == {"name": "Taras", "role": "Correspondent", "location": "Kharkiv"}


async def test_an_editor_signs_any_byline_and_the_admin_signs_as_the_publisher(service):
    await service.create_blog("ukraine")
    editor = (await service.mint("editor", name="Desk"))["token"]
    response = await post_entry(service, editor, author={"name": "Taras", "location": "Kharkiv"})
    assert response.status_code == 201, response.text
    assert response.json()["author"]["name"] == "Taras"
    assert (await service.post("ukraine"))["author"]["name"] == service.services.settings.publisher_name != "admin"


async def test_a_retried_post_with_the_same_idempotency_key_makes_one_entry(service):
    await service.create_blog("ukraine")
    token = (await service.mint("reporter"))["token"]
    start = await cursor_of(service)
    async with service.live() as ws:
        assert (await receive(ws))["type"] == "snapshot"

        first = await post_entry(service, token, headers={"Idempotency-Key": "cms-4711"}, body="<p>Blast</p>")
        retry = await post_entry(service, token, headers={"Idempotency-Key": "cms-4711"}, body="<p>Blast</p>")
        assert first.status_code == 201, first.text
        assert retry.status_code in (200, 201), retry.text
        assert retry.json()["id"] == first.json()["id"]
        assert retry.json() == first.json()
        later = await post_entry(service, token, body="<p>All clear</p>")
        assert later.status_code == 201

        # live readers saw the entry once, then the next one: no duplicate in between
        created = await next_event(ws)
        assert (created["event"], created["entry"]["id"]) == ("entry.created", first.json()["id"])
        following = await next_event(ws)
        assert (following["event"], following["entry"]["id"]) == ("entry.created", later.json()["id"])

    assert [e["id"] for e in await entries_of(service)] == [later.json()["id"], first.json()["id"]]
    events = await events_since(service, start)
    assert [(e["event"], e["entry"]["id"]) for e in events] == [
        ("entry.created", first.json()["id"]),
        ("entry.created", later.json()["id"]),
    ]


async def test_reusing_an_idempotency_key_for_a_different_entry_is_a_conflict(service, redis_server):
    await service.create_blog("ukraine")
    token = (await service.mint("reporter"))["token"]
    first = await post_entry(service, token, headers={"Idempotency-Key": "cms-4711"}, body="<p>Blast</p>")
    assert first.status_code == 201
    before = await redis_state(redis_server.url)

    other = await post_entry(service, token, headers={"Idempotency-Key": "cms-4711"}, body="<p>Something else</p>")
    assert_error(other, 409)
    assert await redis_state(redis_server.url) == before
    assert [e["id"] for e in await entries_of(service)] == [first.json()["id"]]


# --- editing and deleting -----------------------------------------------------------------------------


async def test_a_reporter_corrects_an_entry_with_if_match(service):
    await service.create_blog("ukraine")
    token = (await service.mint("reporter"))["token"]
    entry = (await post_entry(service, token, body="<p>Two killed</p>")).json()
    cursor = await cursor_of(service)

    response = await service.http.patch(
        f"/api/v1/blogs/ukraine/entries/{entry['id']}",
        json={"body": "<p>Three killed</p>", "key_event": True},
        headers={**bearer(token), "If-Match": '"1"'},
    )
    assert response.status_code == 200, response.text
    edited = response.json()
    assert edited["id"] == entry["id"]
    assert edited["version"] == 2
    assert edited["body"] == "<p>Three killed</p>"
    assert edited["key_event"] is True
    assert edited["author"] == entry["author"] and edited["created_at"] == entry["created_at"]
    assert utc(edited["updated_at"]) >= utc(entry["updated_at"])
    assert await entries_of(service) == [edited]
    events = await events_since(service, cursor)
    assert [(e["event"], e["entry"]) for e in events] == [("entry.updated", edited)]


async def test_a_stale_if_match_is_refused_and_changes_nothing(service, redis_server):
    await service.create_blog("ukraine")
    token = (await service.mint("reporter"))["token"]
    entry = (await post_entry(service, token, body="<p>Two killed</p>")).json()
    url = f"/api/v1/blogs/ukraine/entries/{entry['id']}"
    first = await service.http.patch(url, json={"body": "<p>Three</p>"}, headers={**bearer(token), "If-Match": '"1"'})
    assert first.status_code == 200
    before = await redis_state(redis_server.url)
    listed = await entries_of(service)

    late = await service.http.patch(url, json={"body": "<p>Four</p>"}, headers={**bearer(token), "If-Match": '"1"'})
    assert_error(late, 412)
    late_delete = await service.http.delete(url, headers={**bearer(token), "If-Match": '"1"'})
    assert_error(late_delete, 412)

    assert await redis_state(redis_server.url) == before
    assert await entries_of(service) == listed
    assert listed[0]["version"] == 2 and listed[0]["body"] == "<p>Three</p>"


async def test_an_edit_without_if_match_is_refused(service, redis_server):
    await service.create_blog("ukraine")
    token = (await service.mint("reporter"))["token"]
    entry = (await post_entry(service, token)).json()
    url = f"/api/v1/blogs/ukraine/entries/{entry['id']}"
    before = await redis_state(redis_server.url)

    assert_error(await service.http.patch(url, json={"body": "<p>x</p>"}, headers=bearer(token)), 428)
    assert_error(await service.http.delete(url, headers=bearer(token)), 428)

    assert await redis_state(redis_server.url) == before
    assert await entries_of(service) == [entry]


async def test_a_reporter_deletes_an_entry_and_readers_learn_of_it(service):
    await service.create_blog("ukraine")
    token = (await service.mint("reporter"))["token"]
    keep = (await post_entry(service, token, body="<p>Keep</p>")).json()
    wrong = (await post_entry(service, token, body="<p>Wrong</p>")).json()
    cursor = await cursor_of(service)

    response = await service.http.delete(
        f"/api/v1/blogs/ukraine/entries/{wrong['id']}", headers={**bearer(token), "If-Match": '"1"'}
    )
    assert response.status_code == 204
    assert response.content == b""

    assert await entries_of(service) == [keep]
    assert_error(await service.http.get(f"/api/v1/blogs/ukraine/entries/{wrong['id']}"), 404)
    events = await events_since(service, cursor)
    assert len(events) == 1
    assert events[0]["event"] == "entry.deleted"
    assert events[0]["entry"]["id"] == wrong["id"]
    assert events[0]["entry"]["deleted"] is True
    assert "body" not in events[0]["entry"]


async def test_editing_an_entry_that_does_not_exist_is_404(service):
    await service.create_blog("ukraine")
    response = await service.http.patch(
        "/api/v1/blogs/ukraine/entries/nosuchentry",
        json={"body": "<p>x</p>"},
        headers={**service.auth(), "If-Match": '"1"'},
    )
    assert_error(response, 404)


async def test_an_entry_is_not_reachable_through_another_blog(service):
    await service.create_blog("ukraine")
    await service.create_blog("gaza")
    entry = await service.post("ukraine")
    url = f"/api/v1/blogs/gaza/entries/{entry['id']}"
    assert_error(await service.http.get(url), 404)
    assert_error(
        await service.http.patch(url, json={"body": "<p>x</p>"}, headers={**service.auth(), **IF_MATCH_1}), 404
    )
    assert_error(await service.http.delete(url, headers={**service.auth(), **IF_MATCH_1}), 404)
    assert await entries_of(service) == [entry]


async def test_a_retracted_entry_is_not_retracted_again_and_its_edits_reach_no_reader(service):
    await service.create_blog("ukraine")
    entry = await service.post("ukraine")
    url = f"/api/v1/blogs/ukraine/entries/{entry['id']}"
    assert (await service.http.delete(url, headers={**service.auth(), **IF_MATCH_1})).status_code == 204
    cursor = await cursor_of(service)
    assert_error(await service.http.delete(url, headers={**service.auth(), "If-Match": '"2"'}), 409)
    edited = await service.http.patch(url, json={"body": "<p>x</p>"}, headers={**service.auth(), "If-Match": '"2"'})
    assert edited.status_code == 200, edited.text
    assert await events_since(service, cursor) == []
    assert_error(await service.http.get(url), 404)


# --- blog status --------------------------------------------------------------------------------------


async def test_an_editor_ends_the_coverage(service):
    created = await service.create_blog("ukraine")
    editor = (await service.mint("editor", name="Iryna"))["token"]
    async with service.live() as ws:
        assert (await receive(ws))["type"] == "snapshot"
        response = await service.http.patch("/api/v1/blogs/ukraine", json={"status": "ended"}, headers=bearer(editor))
        assert response.status_code == 200, response.text
        blog = response.json()
        assert blog["status"] == "ended"
        assert utc(blog["coverage_end"]) >= utc(created["coverage_start"])
        assert blog["title"] == created["title"]

        event = await next_event(ws)
        assert event["event"] == "blog.updated"
        assert event["blog"] == blog
    assert (await service.http.get("/api/v1/blogs/ukraine")).json() == blog


async def test_an_editor_retitles_the_blog(service):
    await service.create_blog("ukraine")
    editor = (await service.mint("editor"))["token"]
    response = await service.http.patch("/api/v1/blogs/ukraine", json={"title": "Live: day 2"}, headers=bearer(editor))
    assert response.status_code == 200, response.text
    assert response.json()["title"] == "Live: day 2"
    assert response.json()["status"] == "live"


async def test_an_ended_blog_takes_no_new_entries(service, redis_server):
    await service.create_blog("ukraine")
    token = (await service.mint("reporter"))["token"]
    entry = (await post_entry(service, token)).json()
    ended = await service.http.patch("/api/v1/blogs/ukraine", json={"status": "ended"}, headers=service.auth())
    assert ended.status_code == 200
    before = await redis_state(redis_server.url)

    assert_error(await post_entry(service, token, body="<p>Too late</p>"), 409)
    assert await redis_state(redis_server.url) == before
    assert await entries_of(service) == [entry]


# --- who may do what ----------------------------------------------------------------------------------


async def build_newsroom(service) -> tuple[dict[str, str], dict]:
    """Two blogs; on "ukraine": reporters Olena and Taras, editor Iryna, a revoked token; Ahmed
    reports on "gaza" only. Olena has posted one entry."""
    await service.create_blog("ukraine")
    await service.create_blog("gaza")
    tokens = {
        "olena": (await service.mint("reporter", ("ukraine",), "Olena"))["token"],
        "taras": (await service.mint("reporter", ("ukraine",), "Taras"))["token"],
        "iryna": (await service.mint("editor", ("ukraine",), "Iryna"))["token"],
        "ahmed": (await service.mint("reporter", ("gaza",), "Ahmed"))["token"],
        "gaza-editor": (await service.mint("editor", ("gaza",), "Lina"))["token"],
    }
    revoked = await service.mint("reporter", ("ukraine",), "Gone")
    response = await service.http.delete(f"/api/v1/tokens/{revoked['id']}", headers=service.auth())
    assert response.status_code == 204
    tokens["revoked"] = revoked["token"]
    tokens["bogus"] = "lb_000000000000_notarealsecret"
    tokens["garbage"] = "hunter2"
    entry = (await post_entry(service, tokens["olena"], body="<p>Olena's report</p>")).json()
    return tokens, entry


@pytest_asyncio.fixture(loop_scope="module")
async def newsroom(service):
    return await build_newsroom(service)


ENTRY = "/api/v1/blogs/ukraine/entries/{entry}"
IF_MATCH_1 = {"If-Match": '"1"'}
REFUSED = [
    # (who, method, path, json body, extra headers, status)
    pytest.param(None, "POST", "/api/v1/blogs/ukraine/entries", {"body": "<p>x</p>"}, {}, 401, id="no-token-post"),
    pytest.param(None, "PATCH", ENTRY, {"body": "<p>x</p>"}, IF_MATCH_1, 401, id="no-token-edit"),
    pytest.param(None, "DELETE", ENTRY, None, IF_MATCH_1, 401, id="no-token-delete"),
    pytest.param(None, "GET", "/api/v1/blogs", None, {}, 401, id="no-token-list-blogs"),
    pytest.param(None, "POST", "/api/v1/blogs", {"id": "x", "title": "X"}, {}, 401, id="no-token-create-blog"),
    pytest.param(None, "PATCH", "/api/v1/blogs/ukraine", {"status": "ended"}, {}, 401, id="no-token-end-blog"),
    pytest.param(
        None, "POST", "/api/v1/tokens", {"name": "x", "role": "editor", "blogs": []}, {}, 401, id="no-token-mint"
    ),
    pytest.param("bogus", "POST", "/api/v1/blogs/ukraine/entries", {"body": "<p>x</p>"}, {}, 401, id="bad-token-post"),
    pytest.param(
        "garbage", "POST", "/api/v1/blogs/ukraine/entries", {"body": "<p>x</p>"}, {}, 401, id="garbage-token-post"
    ),
    pytest.param("garbage", "GET", "/api/v1/blogs", None, {}, 401, id="garbage-token-list"),
    pytest.param("revoked", "POST", "/api/v1/blogs/ukraine/entries", {"body": "<p>x</p>"}, {}, 401, id="revoked-post"),
    pytest.param("revoked", "PATCH", "/api/v1/blogs/ukraine", {"status": "ended"}, {}, 401, id="revoked-end-blog"),
    pytest.param("ahmed", "POST", "/api/v1/blogs/ukraine/entries", {"body": "<p>x</p>"}, {}, 403, id="other-blog-post"),
    pytest.param("ahmed", "PATCH", ENTRY, {"body": "<p>x</p>"}, IF_MATCH_1, 403, id="other-blog-edit"),
    pytest.param("ahmed", "DELETE", ENTRY, None, IF_MATCH_1, 403, id="other-blog-delete"),
    pytest.param("gaza-editor", "PATCH", ENTRY, {"body": "<p>x</p>"}, IF_MATCH_1, 403, id="other-blog-editor-edit"),
    pytest.param(
        "gaza-editor", "PATCH", "/api/v1/blogs/ukraine", {"status": "ended"}, {}, 403, id="other-blog-editor-end"
    ),
    pytest.param("taras", "PATCH", ENTRY, {"body": "<p>x</p>"}, IF_MATCH_1, 403, id="reporter-edits-colleague"),
    pytest.param("taras", "DELETE", ENTRY, None, IF_MATCH_1, 403, id="reporter-deletes-colleague"),
    pytest.param(
        "olena",
        "POST",
        "/api/v1/tokens",
        {"name": "x", "role": "reporter", "blogs": ["ukraine"]},
        {},
        403,
        id="reporter-mints",
    ),
    pytest.param(
        "iryna",
        "POST",
        "/api/v1/tokens",
        {"name": "x", "role": "reporter", "blogs": ["ukraine"]},
        {},
        403,
        id="editor-mints",
    ),
    pytest.param("olena", "PATCH", "/api/v1/blogs/ukraine", {"status": "ended"}, {}, 403, id="reporter-ends-blog"),
    pytest.param(
        "olena", "PATCH", "/api/v1/blogs/ukraine", {"title": "Mine now"}, {}, 403, id="reporter-retitles-blog"
    ),
    pytest.param(
        "olena", "POST", "/api/v1/blogs", {"id": "olenas", "title": "Mine"}, {}, 403, id="reporter-creates-blog"
    ),
]


async def test_a_reporter_cannot_revoke_tokens(service, redis_server):
    await service.create_blog("ukraine")
    olena = await service.mint("reporter", name="Olena")
    taras = await service.mint("reporter", name="Taras")
    before = await redis_state(redis_server.url)
    response = await service.http.delete(f"/api/v1/tokens/{taras['id']}", headers=bearer(olena["token"]))
    assert_error(response, 403)
    assert await redis_state(redis_server.url) == before
    assert (await post_entry(service, taras["token"])).status_code == 201


async def test_a_malformed_authorization_header_is_401(service):
    await service.create_blog("ukraine")
    token = (await service.mint("reporter"))["token"]
    for header in (f"Basic {token}", "Bearer", token, "Bearer " + "x" * 5000):
        response = await service.http.post(
            "/api/v1/blogs/ukraine/entries", json={"body": "<p>x</p>"}, headers={"Authorization": header}
        )
        assert_error(response, 401)
    assert await entries_of(service) == []


async def test_an_editor_edits_a_reporters_entry(service, newsroom):
    tokens, entry = newsroom
    response = await service.http.patch(
        f"/api/v1/blogs/ukraine/entries/{entry['id']}",
        json={"headline": "Corrected"},
        headers={**bearer(tokens["iryna"]), "If-Match": '"1"'},
    )
    assert response.status_code == 200, response.text
    assert response.json()["headline"] == "Corrected"
    assert response.json()["version"] == 2
    assert response.json()["author"]["name"] == "Olena"


async def test_an_editor_deletes_a_reporters_entry(service, newsroom):
    tokens, entry = newsroom
    response = await service.http.delete(
        f"/api/v1/blogs/ukraine/entries/{entry['id']}", headers={**bearer(tokens["iryna"]), "If-Match": '"1"'}
    )
    assert response.status_code == 204
    assert await entries_of(service) == []


async def test_a_reporter_edits_its_own_entry(service, newsroom):
    tokens, entry = newsroom
    response = await service.http.patch(
        f"/api/v1/blogs/ukraine/entries/{entry['id']}",
        json={"pinned": True},
        headers={**bearer(tokens["olena"]), "If-Match": '"1"'},
    )
    assert response.status_code == 200, response.text
    assert response.json()["pinned"] is True


async def test_an_admin_edits_anything(service, newsroom):
    _, entry = newsroom
    response = await service.http.patch(
        f"/api/v1/blogs/ukraine/entries/{entry['id']}",
        json={"tags": ["kyiv"]},
        headers={**service.auth(), "If-Match": '"1"'},
    )
    assert response.status_code == 200, response.text
    assert response.json()["tags"] == ["kyiv"]


@pytest.mark.parametrize(("who", "method", "path", "body", "headers", "status"), REFUSED)
async def test_a_refused_request_answers_in_the_error_shape_and_changes_nothing(
    service: Service, redis_server, newsroom, who, method, path, body, headers, status
):
    tokens, entry = newsroom
    before = await redis_state(redis_server.url)
    response = await service.http.request(
        method,
        path.format(entry=entry["id"]),
        json=body,
        headers={**bearer(tokens[who] if who else None), **headers},
    )
    assert_error(response, status)
    assert await redis_state(redis_server.url) == before
    assert await entries_of(service) == [entry]
