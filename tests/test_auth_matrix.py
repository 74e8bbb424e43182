"""Who may do what in the newsroom (DESIGN §6), every role against every new endpoint and status
change, each answer checked, and every refusal checked to have changed nothing in Redis.

The expected answers are written out below from DESIGN §6, not computed from liveblog.auth (a
table derived from the code under test could not fail). Where §6 is silent, the row says which
reading it takes. The rules, as §6 states them:

- contributor: writes drafts and submits them; edits only its own unpublished entries; never
  publishes (so never retracts, schedules or restores either).
- reporter: what a contributor does, and publishes directly; edits and retracts its own entries.
  Scheduling, restoring a retracted entry and returning a submission with a review note are the
  editor's.
- editor: everything in its blogs: publishes or returns submissions, schedules, edits anyone's
  entry, restores, purges, reads the audit trail. Nothing in other blogs.
- admin: everything; the only one to list tokens.
- Unpublished work is not public: to anyone but its writer and the blog's editors it does not
  exist, so reading or changing another writer's draft is 404, as a public read of it is. A
  published entry exists for everyone, so changing someone else's is 403.
- No token, or a revoked one: 401, before anything else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from conftest import ADMIN_TOKEN, UNLIMITED, Service, assert_error, redis_state, running_service
from test_reporter_api import bearer
from test_workflow import create, created, patch, patched, purge, retract

from liveblog import auth

pytestmark = pytest.mark.asyncio(loop_scope="module")

#: The callers, in the order of the tables' columns. Olena and Mykola are the writers of the
#: entries acted on; Taras and Sofia are their colleagues in the same roles on the same blog.
ACTORS = (
    "admin",
    "editor",  # Iryna, editor of "ukraine"
    "reporter",  # Olena
    "reporter-colleague",  # Taras
    "contributor",  # Mykola
    "contributor-colleague",  # Sofia
    "other-blog-editor",  # Lina, editor of "gaza" only
    "no-token",
    "revoked",  # a "ukraine" reporter's token, revoked
)
#: Writers of the entries acted on.
WRITERS = {"reporter", "contributor"}
LATER = (datetime.now(UTC) + timedelta(days=1)).isoformat()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def service(redis_server) -> Service:
    async with running_service(redis_server.url, UNLIMITED) as svc:
        yield svc


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def newsroom_dump(service, redis_server) -> tuple[dict[str, str | None], dict[bytes, bytes]]:
    """The newsroom, made once through the API and kept as a dump of every key: each test
    restores it (conftest empties Redis before every test) instead of minting nine tokens."""
    async with aioredis.Redis.from_url(redis_server.url) as client:
        await client.flushall()  # module fixtures come before conftest's cleaning of the first test
    await service.create_blog("ukraine")
    await service.create_blog("gaza")
    names = {
        "editor": ("editor", "ukraine", "Iryna"),
        "reporter": ("reporter", "ukraine", "Olena"),
        "reporter-colleague": ("reporter", "ukraine", "Taras"),
        "contributor": ("contributor", "ukraine", "Mykola"),
        "contributor-colleague": ("contributor", "ukraine", "Sofia"),
        "other-blog-editor": ("editor", "gaza", "Lina"),
    }
    tokens: dict[str, str | None] = {"admin": ADMIN_TOKEN, "no-token": None}
    for actor, (role, blog, name) in names.items():
        tokens[actor] = (await service.mint(role, (blog,), name))["token"]
    revoked = await service.mint("reporter", ("ukraine",), "Gone")
    assert (await service.http.delete(f"/api/v1/tokens/{revoked['id']}", headers=service.auth())).status_code == 204
    tokens["revoked"] = revoked["token"]
    async with aioredis.Redis.from_url(redis_server.url) as client:
        return tokens, {key: await client.dump(key) for key in await client.keys("*")}


@pytest_asyncio.fixture(loop_scope="module")
async def staff(newsroom_dump, redis_server) -> dict[str, str | None]:
    tokens, dump = newsroom_dump
    async with aioredis.Redis.from_url(redis_server.url) as client:
        async with client.pipeline(transaction=False) as pipe:
            for key, value in dump.items():
                pipe.restore(key, 0, value, replace=True)
            await pipe.execute()
    return tokens


async def entry_in(service: Service, staff: dict, status: str, writer: str) -> dict:
    """An entry of ``writer`` in ``status``, brought there the way a newsroom would."""
    token, editor = staff[writer], staff["editor"]
    if status in ("draft", "submitted"):
        return await created(service, token, status=status)
    if writer == "reporter" and status != "scheduled":
        entry = await created(service, token)  # reporters publish directly
    else:
        entry = await created(service, token, status="submitted")
        if status == "scheduled":
            return await patched(service, editor, entry, status="scheduled", publish_at=LATER)
        entry = await patched(service, editor, entry, status="published")  # approved
    if status == "retracted":
        assert (await retract(service, editor, entry)).status_code == 204
        entry = {**entry, "version": entry["version"] + 1}
    return entry


async def attempt(
    redis_url: str, request: Callable[[], Awaitable[httpx.Response]], expected: int, writes: bool = True
) -> httpx.Response:
    """Make ``request``; it answers ``expected``, and changes Redis only if it is a write that
    succeeded."""
    before = await redis_state(redis_url)
    response = await request()
    if expected >= 400:
        assert_error(response, expected)
    else:
        assert response.status_code == expected, response.text
    changed = await redis_state(redis_url) != before
    if writes and expected < 400:
        assert changed, "the write answered success but changed nothing"
    else:
        assert not changed, "a refused request, or a read, changed Redis"
    return response


def table(rows: dict[object, tuple[int, ...]]) -> list:
    return [
        pytest.param(row, actor, code, id=f"{'-'.join(row) if isinstance(row, tuple) else row}-{actor}")
        for row, codes in rows.items()
        for actor, code in zip(ACTORS, codes, strict=True)
    ]


# --- creating an entry in each status -----------------------------------------------------------------

# fmt: off
CREATE = {
    #               admin editor rep  rep2 contr contr2 other none revoked
    "draft":       (201,  201,  201, 201,  201,  201,  403,  401, 401),
    "submitted":   (201,  201,  201, 201,  201,  201,  403,  401, 401),
    "published":   (201,  201,  201, 201,  403,  403,  403,  401, 401),
    "scheduled":   (201,  201,  403, 403,  403,  403,  403,  401, 401),
}
# fmt: on


@pytest.mark.parametrize(("status", "actor", "expected"), table(CREATE))
async def test_creating_an_entry_in_a_status(service, redis_server, staff, status, actor, expected):
    body = {"status": status, **({"publish_at": LATER} if status == "scheduled" else {})}
    response = await attempt(redis_server.url, lambda: create(service, staff[actor], **body), expected)
    if expected == 201:
        assert response.json()["status"] == status


# --- every status change --------------------------------------------------------------------------

# fmt: off
TRANSITIONS = {
    # (from, to, writer)                      admin editor rep  rep2 contr contr2 other none revoked
    ("draft", "submitted", "contributor"):     (200, 200,  404, 404, 200,  404,  404,  401, 401),
    ("draft", "submitted", "reporter"):        (200, 200,  200, 404, 404,  404,  404,  401, 401),
    # §6 has editors return submissions; a writer taking back its own submission edits its own
    # unpublished entry, which contributors may.
    ("submitted", "draft", "contributor"):     (200, 200,  404, 404, 200,  404,  404,  401, 401),
    ("submitted", "draft", "reporter"):        (200, 200,  200, 404, 404,  404,  404,  401, 401),
    ("draft", "published", "contributor"):     (200, 200,  404, 404, 403,  404,  404,  401, 401),
    ("draft", "published", "reporter"):        (200, 200,  200, 404, 404,  404,  404,  401, 401),
    ("submitted", "published", "contributor"): (200, 200,  404, 404, 403,  404,  404,  401, 401),
    ("submitted", "published", "reporter"):    (200, 200,  200, 404, 404,  404,  404,  401, 401),
    ("published", "retracted", "contributor"): (200, 200,  403, 403, 403,  403,  403,  401, 401),
    ("published", "retracted", "reporter"):    (200, 200,  200, 403, 403,  403,  403,  401, 401),
    ("draft", "scheduled", "contributor"):     (200, 200,  404, 404, 403,  404,  404,  401, 401),
    ("draft", "scheduled", "reporter"):        (200, 200,  403, 404, 404,  404,  404,  401, 401),
    ("submitted", "scheduled", "contributor"): (200, 200,  404, 404, 403,  404,  404,  401, 401),
    ("submitted", "scheduled", "reporter"):    (200, 200,  403, 404, 404,  404,  404,  401, 401),
    ("scheduled", "draft", "contributor"):     (200, 200,  404, 404, 403,  404,  404,  401, 401),
    ("scheduled", "draft", "reporter"):        (200, 200,  403, 404, 404,  404,  404,  401, 401),
    ("scheduled", "published", "contributor"): (200, 200,  404, 404, 403,  404,  404,  401, 401),
    ("scheduled", "published", "reporter"):    (200, 200,  403, 404, 404,  404,  404,  401, 401),
    ("retracted", "published", "contributor"): (200, 200,  404, 404, 403,  404,  404,  401, 401),
    ("retracted", "published", "reporter"):    (200, 200,  403, 404, 404,  404,  404,  401, 401),
}
# fmt: on


async def test_the_table_covers_every_status_change_there_is():
    assert {(before, after) for before, after, _ in TRANSITIONS} == set(auth.TRANSITIONS)
    assert {writer for _, _, writer in TRANSITIONS} == WRITERS


@pytest.mark.parametrize(("row", "actor", "expected"), table(TRANSITIONS))
async def test_a_status_change(service, redis_server, staff, row, actor, expected):
    before, after, writer = row
    entry = await entry_in(service, staff, before, writer)
    body = {"status": after, **({"publish_at": LATER} if after == "scheduled" else {})}
    response = await attempt(redis_server.url, lambda: patch(service, staff[actor], entry, **body), expected)
    if expected == 200:
        assert response.json()["status"] == after


# fmt: off
RETURN_WITH_NOTE = {
    #              admin editor rep  rep2 contr contr2 other none revoked
    "contributor": (200, 200,  404, 404, 403,  404,  404,  401, 401),
    "reporter":    (200, 200,  403, 404, 404,  404,  404,  401, 401),
}
# fmt: on


@pytest.mark.parametrize(("writer", "actor", "expected"), table(RETURN_WITH_NOTE))
async def test_returning_a_submission_with_a_review_note(service, redis_server, staff, writer, actor, expected):
    entry = await entry_in(service, staff, "submitted", writer)
    note = {"status": "draft", "review_note": "Needs a source."}
    response = await attempt(redis_server.url, lambda: patch(service, staff[actor], entry, **note), expected)
    if expected == 200:
        assert response.json()["review_note"] == "Needs a source."


# fmt: off
#: Moving a scheduled entry's time is scheduling, the editor's (or a writer could move it to now,
#: which is publishing it: scheduled -> published is the editor's too).
RESCHEDULE = {
    #              admin editor rep  rep2 contr contr2 other none revoked
    "contributor": (200, 200,  404, 404, 403,  404,  404,  401, 401),
    "reporter":    (200, 200,  403, 404, 404,  404,  404,  401, 401),
}
# fmt: on


@pytest.mark.parametrize(("writer", "actor", "expected"), table(RESCHEDULE))
async def test_rescheduling_an_entry(service, redis_server, staff, writer, actor, expected):
    entry = await entry_in(service, staff, "scheduled", writer)
    at = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    response = await attempt(redis_server.url, lambda: patch(service, staff[actor], entry, publish_at=at), expected)
    if expected == 200:
        assert (response.json()["status"], response.json()["publish_at"]) == ("scheduled", at.replace("+00:00", "Z"))


# --- editing, own and colleagues' ---------------------------------------------------------------------

# fmt: off
EDIT = {
    # (status, writer)             admin editor rep  rep2 contr contr2 other none revoked
    ("draft", "contributor"):     (200, 200,  404, 404, 200,  404,  404,  401, 401),
    ("draft", "reporter"):        (200, 200,  200, 404, 404,  404,  404,  401, 401),
    ("submitted", "contributor"): (200, 200,  404, 404, 200,  404,  404,  401, 401),
    ("submitted", "reporter"):    (200, 200,  200, 404, 404,  404,  404,  401, 401),
    ("scheduled", "contributor"): (200, 200,  404, 404, 403,  404,  404,  401, 401),
    ("scheduled", "reporter"):    (200, 200,  200, 404, 404,  404,  404,  401, 401),
    ("published", "contributor"): (200, 200,  403, 403, 403,  403,  403,  401, 401),
    ("published", "reporter"):    (200, 200,  200, 403, 403,  403,  403,  401, 401),
    # §6 is silent on editing a retracted entry; read here as the editor's, who alone restores it.
    ("retracted", "contributor"): (200, 200,  404, 404, 403,  404,  404,  401, 401),
    ("retracted", "reporter"):    (200, 200,  403, 404, 404,  404,  404,  401, 401),
}
# fmt: on


@pytest.mark.parametrize(("row", "actor", "expected"), table(EDIT))
async def test_editing_an_entry(service, redis_server, staff, row, actor, expected):
    status, writer = row
    entry = await entry_in(service, staff, status, writer)
    response = await attempt(
        redis_server.url, lambda: patch(service, staff[actor], entry, body="<p>rewritten</p>"), expected
    )
    if expected == 200:
        assert (response.json()["body"], response.json()["status"]) == ("<p>rewritten</p>", status)


# --- retracting, restoring is above; purging --------------------------------------------------------------

# fmt: off
RETRACT = {
    #              admin editor rep  rep2 contr contr2 other none revoked
    "contributor": (204, 204,  403, 403, 403,  403,  403,  401, 401),
    "reporter":    (204, 204,  204, 403, 403,  403,  403,  401, 401),
}
# fmt: on


@pytest.mark.parametrize(("writer", "actor", "expected"), table(RETRACT))
async def test_retracting_a_published_entry(service, redis_server, staff, writer, actor, expected):
    entry = await entry_in(service, staff, "published", writer)
    await attempt(redis_server.url, lambda: retract(service, staff[actor], entry, "Unverified."), expected)


# fmt: off
PURGE = {
    # (status, writer)             admin editor rep  rep2 contr contr2 other none revoked
    ("published", "reporter"):    (204, 204,  403, 403, 403,  403,  403,  401, 401),
    ("retracted", "reporter"):    (204, 204,  403, 404, 404,  404,  404,  401, 401),
    ("draft", "contributor"):     (204, 204,  404, 404, 403,  404,  404,  401, 401),
}
# fmt: on


@pytest.mark.parametrize(("row", "actor", "expected"), table(PURGE))
async def test_purging_an_entry(service, redis_server, staff, row, actor, expected):
    entry = await entry_in(service, staff, *row)
    await attempt(redis_server.url, lambda: purge(service, staff[actor], entry), expected)
    if expected == 204:
        assert_error(
            await service.http.get(f"/api/v1/blogs/ukraine/entries/{entry['id']}", headers=bearer(ADMIN_TOKEN)), 404
        )


# --- reading what is not public -----------------------------------------------------------------------

# fmt: off
READ = {
    # (what, status, writer)                    admin editor rep  rep2 contr contr2 other none revoked
    ("entry", "published", "reporter"):        (200, 200,  200, 200, 200,  200,  200,  200, 401),
    ("entry", "draft", "contributor"):         (200, 200,  404, 404, 200,  404,  404,  404, 401),
    ("entry", "retracted", "reporter"):        (200, 200,  200, 404, 404,  404,  404,  404, 401),
    ("versions", "published", "reporter"):     (200, 200,  200, 200, 200,  200,  200,  200, 401),
    ("versions", "draft", "contributor"):      (200, 200,  404, 404, 200,  404,  404,  404, 401),
    ("versions", "retracted", "reporter"):     (200, 200,  200, 404, 404,  404,  404,  404, 401),
}
# fmt: on


@pytest.mark.parametrize(("row", "actor", "expected"), table(READ))
async def test_reading_an_entry_or_its_versions(service, redis_server, staff, row, actor, expected):
    what, status, writer = row
    entry = await entry_in(service, staff, status, writer)
    path = f"/api/v1/blogs/ukraine/entries/{entry['id']}" + ("/versions" if what == "versions" else "")
    response = await attempt(
        redis_server.url, lambda: service.http.get(path, headers=bearer(staff[actor])), expected, writes=False
    )
    if expected == 200 and what == "entry":
        assert (response.json()["id"], response.json()["status"]) == (entry["id"], status)
    if expected == 200 and what == "versions":
        published = 0 if status == "draft" else 1
        assert len(response.json()["versions"]) == published


# fmt: off
#: Which writers' submissions each caller finds in the staff listing (None: refused, with the code).
LISTING = {
    "admin": {"reporter", "contributor"},
    "editor": {"reporter", "contributor"},
    "reporter": {"reporter"},
    "reporter-colleague": set(),
    "contributor": {"contributor"},
    "contributor-colleague": set(),
    "other-blog-editor": 403,
    "no-token": 401,
    "revoked": 401,
}
# fmt: on


@pytest.mark.parametrize(("actor", "shown"), list(LISTING.items()), ids=list(LISTING))
async def test_listing_submissions(service, redis_server, staff, actor, shown):
    written = {writer: await entry_in(service, staff, "submitted", writer) for writer in WRITERS}
    await entry_in(service, staff, "draft", "contributor")
    expected = shown if isinstance(shown, int) else 200
    response = await attempt(
        redis_server.url,
        lambda: service.http.get(
            "/api/v1/blogs/ukraine/entries", params={"status": "submitted"}, headers=bearer(staff[actor])
        ),
        expected,
        writes=False,
    )
    if expected == 200:
        assert {e["id"] for e in response.json()["entries"]} == {written[writer]["id"] for writer in shown}


# --- the audit trail and the token list ---------------------------------------------------------------

# fmt: off
ADMINISTRATION = {
    # path                          admin editor rep  rep2 contr contr2 other none revoked
    "/api/v1/blogs/ukraine/audit": (200,  200,  403, 403, 403,  403,  403,  401, 401),
    "/api/v1/tokens":              (200,  403,  403, 403, 403,  403,  403,  401, 401),
}
# fmt: on


@pytest.mark.parametrize(("path", "actor", "expected"), table(ADMINISTRATION))
async def test_reading_the_audit_trail_and_the_token_list(service, redis_server, staff, path, actor, expected):
    await entry_in(service, staff, "published", "reporter")
    response = await attempt(
        redis_server.url, lambda: service.http.get(path, headers=bearer(staff[actor])), expected, writes=False
    )
    if expected == 200:
        assert response.json()["records" if "audit" in path else "tokens"]
