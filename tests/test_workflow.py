"""The newsroom at work (DESIGN §6): drafts, review, scheduling, corrections, retraction, purge,
the audit trail and the token list, each told as one story against the real service.

Unpublished work must never reach a reader, so the stories put a unique marker in the text and
look for it in every public output; each absence is checked next to a published entry that is
present in the same output, so that an output that shows nothing at all cannot pass. "No event
reached the reader" is never waited for: a later public change is, and the reader must see it
first.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from conftest import ADMIN_TOKEN, UNLIMITED, Service, assert_error, receive, redis_state, running_service
from test_pages import Html
from test_reporter_api import bearer, cursor_of, next_event, redis_text, utc
from test_sse import EventStream, open_events

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def service(redis_server) -> Service:
    async with running_service(redis_server.url, UNLIMITED) as svc:
        yield svc


# --- helpers ----------------------------------------------------------------------------------------


def marker() -> str:
    """A string that occurs nowhere unless the entry it was written into leaked."""
    return f"MARKER{uuid.uuid4().hex}"


def url(entry: dict, blog_id: str = "ukraine") -> str:
    return f"/api/v1/blogs/{blog_id}/entries/{entry['id']}"


async def create(service: Service, token: str, blog_id: str = "ukraine", headers: dict | None = None, **body):
    """POST an entry; the response."""
    body.setdefault("body", "<p>update</p>")
    return await service.http.post(
        f"/api/v1/blogs/{blog_id}/entries", json=body, headers={**bearer(token), **(headers or {})}
    )


async def created(service: Service, token: str, **body) -> dict:
    response = await create(service, token, **body)
    assert response.status_code == 201, response.text
    return response.json()


async def patch(service: Service, token: str, entry: dict, **fields):
    """PATCH ``entry`` as of the version the caller holds; the response."""
    return await service.http.patch(
        url(entry), json=fields, headers={**bearer(token), "If-Match": f'"{entry["version"]}"'}
    )


async def patched(service: Service, token: str, entry: dict, **fields) -> dict:
    response = await patch(service, token, entry, **fields)
    assert response.status_code == 200, response.text
    return response.json()


async def retract(service: Service, token: str, entry: dict, note: str | None = None):
    return await service.http.request(
        "DELETE",
        url(entry),
        json=None if note is None else {"retraction_note": note},
        headers={**bearer(token), "If-Match": f'"{entry["version"]}"'},
    )


async def purge(service: Service, token: str, entry: dict):
    return await service.http.delete(url(entry), params={"purge": "true"}, headers=bearer(token))


async def staff_get(service: Service, token: str, entry: dict):
    return await service.http.get(url(entry), headers=bearer(token))


async def staff_list(service: Service, token: str, status: str, blog_id: str = "ukraine") -> list[dict]:
    response = await service.http.get(
        f"/api/v1/blogs/{blog_id}/entries", params={"status": status}, headers=bearer(token)
    )
    assert response.status_code == 200, response.text
    assert "no-store" in response.headers["cache-control"]
    return response.json()["entries"]


async def audit_of(service: Service, token: str, blog_id: str = "ukraine") -> list[dict]:
    response = await service.http.get(f"/api/v1/blogs/{blog_id}/audit", headers=bearer(token))
    assert response.status_code == 200, response.text
    return response.json()["records"]


async def newsroom(service: Service) -> dict[str, str]:
    """The "ukraine" blog and its staff: editor Iryna, reporter Olena, contributors Mykola and Sofia."""
    await service.create_blog("ukraine")
    return {
        "editor": (await service.mint("editor", name="Iryna"))["token"],
        "reporter": (await service.mint("reporter", name="Olena"))["token"],
        "contributor": (await service.mint("contributor", name="Mykola"))["token"],
        "colleague": (await service.mint("contributor", name="Sofia"))["token"],
    }


async def sse_event(stream: EventStream) -> dict:
    """The next message of an SSE stream (skipping the optional viewer counts), decoded."""
    while True:
        _, message = await stream.message()
        if message["type"] != "viewers":
            return message


async def until(stream, head: str) -> list[dict]:
    """Live messages (WebSocket or SSE) up to and including the one at cursor ``head``."""
    messages = []
    while not messages or messages[-1].get("cursor") != head:
        if isinstance(stream, EventStream):
            messages.append(await sse_event(stream))
        else:
            messages.append(await next_event(stream))
    return messages


async def public_outputs(service: Service, old: str, entry_id: str, blog_id: str = "ukraine") -> dict[str, str]:
    """Everything a reader (or a crawler, or an embedding site) can get of the blog, by name.

    ``old`` is a cursor from before the entry: the catch-up from it is read over ``since``, the
    live channel and SSE. The public reads of entry ``entry_id`` itself are included as text too.
    """
    outputs: dict[str, str] = {}
    listing = await service.http.get(f"/api/v1/blogs/{blog_id}/entries", params={"limit": 100})
    head = listing.json()["cursor"]
    outputs["listing"] = listing.text
    outputs["since"] = (await service.http.get(f"/api/v1/blogs/{blog_id}/entries", params={"since": old})).text
    async with service.live(blog_id) as ws:
        outputs["snapshot"] = json.dumps(await receive(ws))
    async with service.live(blog_id, cursor=old) as ws:
        outputs["live replay"] = json.dumps(await until(ws, head)) if head != old else ""
    async with open_events(service, blog_id) as response:
        outputs["sse snapshot"] = json.dumps(await sse_event(EventStream(response)))
    async with open_events(service, blog_id, **{"Last-Event-ID": old}) as response:
        outputs["sse replay"] = json.dumps(await until(EventStream(response), head)) if head != old else ""
    page = await service.http.get(f"/blogs/{blog_id}")
    outputs["page"] = page.text
    outputs["json-ld"] = "\n".join(Html(page.text).json_ld)
    outputs["embed"] = (await service.http.get(f"/embed/{blog_id}")).text
    outputs["atom"] = (await service.http.get(f"/blogs/{blog_id}/feed.atom")).text
    outputs["json feed"] = (await service.http.get(f"/blogs/{blog_id}/feed.json")).text
    page_url = f"{service.base_url}/blogs/{blog_id}"
    outputs["oembed"] = (await service.http.get("/oembed", params={"url": page_url, "format": "json"})).text
    for name, path in (("entry", ""), ("versions", "/versions")):
        response = await service.http.get(f"/api/v1/blogs/{blog_id}/entries/{entry_id}{path}")
        assert_error(response, 404)
        outputs[name] = response.text
    return outputs


def assert_nowhere(outputs: dict[str, str], secret: str) -> None:
    leaked = [name for name, text in outputs.items() if secret in text]
    assert not leaked, f"{secret} reached {leaked}"


#: The outputs that show entries' text (oEmbed shows only an iframe, the entry reads are 404s).
WITH_TEXT = (
    *("listing", "since", "snapshot", "live replay", "sse snapshot", "sse replay"),
    *("page", "json-ld", "embed", "atom", "json feed"),
)
#: The outputs that replay the log from an old cursor.
REPLAYS = ("since", "live replay", "sse replay")


def assert_shown(outputs: dict[str, str], text: str) -> None:
    missing = [name for name in WITH_TEXT if name in outputs and text not in outputs[name]]
    assert not missing, f"{text} is missing from {missing}"


# --- 1. drafts and review -----------------------------------------------------------------------------


async def test_a_contributors_submission_stays_out_of_every_public_output_until_an_editor_approves(service):
    staff = await newsroom(service)
    old = await cursor_of(service)
    approved_text, returned_text = marker(), marker()
    async with service.live() as ws, open_events(service) as sse:
        assert (await receive(ws))["type"] == "snapshot"
        stream = EventStream(sse)
        assert (await sse_event(stream))["type"] == "snapshot"

        draft = await created(
            service, staff["contributor"], status="draft", headline=approved_text, body=f"<p>{approved_text}</p>"
        )
        assert (draft["status"], draft["author"]["name"]) == ("draft", "Mykola")
        first = await patched(service, staff["contributor"], draft, status="submitted")
        assert (first["status"], first["version"]) == ("submitted", 2)
        second = await created(service, staff["contributor"], status="submitted", body=f"<p>{returned_text}</p>")

        # Something public happens next: it is the first thing either reader hears of.
        visible = marker()
        sentinel = await created(service, staff["editor"], body=f"<p>{visible}</p>")
        for message in (await next_event(ws), await sse_event(stream)):
            assert (message["event"], message["entry"]["id"]) == ("entry.created", sentinel["id"])

        outputs = await public_outputs(service, old, first["id"])
        assert_shown(outputs, visible)
        assert_nowhere(outputs, approved_text)
        assert_nowhere(outputs, returned_text)
        assert_nowhere(outputs, second["id"])

        # The editor's queue holds both submissions, newest first, with the contributor's byline.
        queue = await staff_list(service, staff["editor"], "submitted")
        assert [(e["id"], e["author"]["name"]) for e in queue] == [(second["id"], "Mykola"), (first["id"], "Mykola")]
        assert await staff_list(service, staff["editor"], "draft") == []

        # Approve one, return the other: readers hear of the approved one only, once, at once.
        approved = await patched(service, staff["editor"], first, status="published")
        assert (approved["status"], approved["version"], approved["author"]["name"]) == ("published", 3, "Mykola")
        note = "Please add a second source for the casualty figure."
        returned = await patched(service, staff["editor"], second, status="draft", review_note=note)
        assert (returned["status"], returned["review_note"]) == ("draft", note)
        later = await created(service, staff["editor"], body="<p>later</p>")
        for messages in ([await next_event(ws), await next_event(ws)], [await sse_event(stream) for _ in "ab"]):
            assert [(m["event"], m["entry"]["id"]) for m in messages] == [
                ("entry.created", approved["id"]),
                ("entry.created", later["id"]),
            ]
            assert messages[0]["entry"] == approved
            assert messages[0]["entry"]["review_note"] is None

    # The contributor reads the editor's note on its returned draft; the public does not.
    mine = await staff_get(service, staff["contributor"], returned)
    assert mine.status_code == 200, mine.text
    assert (mine.json()["status"], mine.json()["review_note"]) == ("draft", note)
    assert [e["id"] for e in await staff_list(service, staff["contributor"], "draft")] == [returned["id"]]
    outputs = await public_outputs(service, old, returned["id"])
    assert_shown(outputs, approved_text)
    assert_nowhere(outputs, returned_text)
    assert_nowhere(outputs, note)
    public = await service.http.get(url(approved))
    assert public.status_code == 200 and public.json() == approved


async def test_a_contributor_never_publishes_and_touches_only_its_own_work(service, redis_server):
    staff = await newsroom(service)
    draft = await created(service, staff["contributor"], status="draft")
    theirs = await created(service, staff["colleague"], status="draft")
    published = await created(service, staff["reporter"], body="<p>Olena's report</p>")
    before = await redis_state(redis_server.url)

    assert_error(await create(service, staff["contributor"], status="published"), 403, "$.status")
    assert_error(await create(service, staff["contributor"]), 403, "$.status")  # published is the default
    assert_error(
        await create(service, staff["contributor"], status="scheduled", publish_at="2030-01-01T00:00:00Z"), 403
    )
    assert_error(await patch(service, staff["contributor"], draft, status="published"), 403)
    assert_error(await patch(service, staff["contributor"], theirs, body="<p>mine now</p>"), 404)
    assert_error(await staff_get(service, staff["contributor"], theirs), 404)
    assert_error(await patch(service, staff["contributor"], published, body="<p>mine now</p>"), 403)
    assert_error(await retract(service, staff["contributor"], published), 403)
    assert_error(await create(service, staff["contributor"], status="draft", author={"name": "Iryna"}), 403)

    assert await redis_state(redis_server.url) == before
    assert [e["id"] for e in await staff_list(service, staff["contributor"], "draft")] == [draft["id"]]


async def test_a_contributors_approved_entry_is_the_editors_to_change(service):
    staff = await newsroom(service)
    submitted = await created(service, staff["contributor"], status="submitted")
    approved = await patched(service, staff["editor"], submitted, status="published")
    assert_error(await patch(service, staff["contributor"], approved, body="<p>after the fact</p>"), 403)
    assert (await patched(service, staff["editor"], approved, body="<p>tidied</p>"))["body"] == "<p>tidied</p>"


# --- 2. scheduling ------------------------------------------------------------------------------------


def soon(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


async def test_a_scheduled_entry_goes_out_once_at_its_time(service):
    staff = await newsroom(service)
    secret = marker()
    async with service.live() as ws:
        assert (await receive(ws))["type"] == "snapshot"
        at = soon(1)
        entry = await created(service, staff["editor"], status="scheduled", publish_at=at, body=f"<p>{secret}</p>")
        assert (entry["status"], utc(entry["publish_at"])) == ("scheduled", utc(at))

        went_out = await next_event(ws)  # the first thing the reader hears of is the publication
        assert (went_out["event"], went_out["entry"]["id"]) == ("entry.created", entry["id"])
        assert went_out["entry"]["status"] == "published"
        assert went_out["entry"]["publish_at"] is None
        assert utc(went_out["entry"]["published_at"]) >= utc(at)
        assert utc(went_out["entry"]["time"]) == utc(went_out["entry"]["published_at"])

        later = await created(service, staff["editor"], body="<p>later</p>")
        assert (await next_event(ws))["entry"]["id"] == later["id"]  # it went out once
    assert [e["id"] for e in (await service.http.get("/api/v1/blogs/ukraine/entries")).json()["entries"]] == [
        later["id"],
        entry["id"],
    ]
    assert await staff_list(service, staff["editor"], "scheduled") == []
    went = [r for r in await audit_of(service, staff["editor"]) if r["entry"] == entry["id"]]
    assert [(r["action"], r["actor"]["name"], r["actor"]["role"], r.get("from_status"), r["status"]) for r in went] == [
        ("status", "scheduler", "system", "scheduled", "published"),
        ("create", "Iryna", "editor", None, "scheduled"),
    ]


async def test_an_editor_reschedules_unschedules_and_publishes_a_scheduled_entry_now(service):
    staff = await newsroom(service)
    editor = staff["editor"]
    async with service.live() as ws:
        assert (await receive(ws))["type"] == "snapshot"

        # Published now, an hour early: readers get it at once.
        early = await created(service, editor, status="scheduled", publish_at=soon(3600))
        early = await patched(service, editor, early, status="published")
        assert (await next_event(ws))["entry"] == early

        # Rescheduled earlier, rescheduled later, unscheduled.
        never_text = marker()
        # (Each change follows its entry's creation at once: a second is a long way off.)
        brought_forward = await created(service, editor, status="scheduled", publish_at=soon(3600))
        forward_at = soon(0.5)
        brought_forward = await patched(service, editor, brought_forward, publish_at=forward_at)
        assert (brought_forward["status"], utc(brought_forward["publish_at"])) == ("scheduled", utc(forward_at))
        put_back = await created(service, editor, status="scheduled", publish_at=soon(1))
        back_at = soon(1.5)
        put_back = await patched(service, editor, put_back, publish_at=back_at)
        never = await created(service, editor, status="scheduled", publish_at=soon(1), body=f"<p>{never_text}</p>")
        never = await patched(service, editor, never, status="draft")
        assert (never["status"], never["publish_at"]) == ("draft", None)

        # put_back goes out after never's old time: by then never would have gone out before it.
        first, second = await next_event(ws), await next_event(ws)
        assert [(m["event"], m["entry"]["id"]) for m in (first, second)] == [
            ("entry.created", brought_forward["id"]),
            ("entry.created", put_back["id"]),
        ]
        assert utc(first["entry"]["published_at"]) >= utc(forward_at)
        assert utc(second["entry"]["published_at"]) >= utc(back_at)

    draft = await staff_get(service, editor, never)
    assert (draft.json()["status"], draft.json()["version"]) == ("draft", never["version"])
    assert never_text not in (await service.http.get("/api/v1/blogs/ukraine/entries")).text
    assert_error(await service.http.get(url(never)), 404)


async def test_a_status_change_there_is_no_such_thing_as_is_refused(service, redis_server):
    staff = await newsroom(service)
    editor = staff["editor"]
    published = await created(service, editor)
    draft = await created(service, editor, status="draft")
    before = await redis_state(redis_server.url)
    for entry, status in ((published, "draft"), (published, "submitted"), (draft, "retracted")):
        assert_error(await patch(service, editor, entry, status=status), 409, "$.status")
    assert_error(await retract(service, editor, draft), 409)
    assert await redis_state(redis_server.url) == before


async def test_scheduling_needs_a_publish_time_and_an_editor(service, redis_server):
    staff = await newsroom(service)
    draft = await created(service, staff["reporter"], status="draft")
    before = await redis_state(redis_server.url)
    assert_error(await create(service, staff["editor"], status="scheduled"), 422, "$.publish_at")
    assert_error(await create(service, staff["editor"], publish_at=soon(60)), 422, "$.publish_at")
    assert_error(await create(service, staff["reporter"], status="scheduled", publish_at=soon(60)), 403, "$.status")
    for fields in ({"status": "scheduled", "publish_at": soon(60)}, {"publish_at": soon(60)}):
        assert_error(await patch(service, staff["reporter"], draft, **fields), 403)
    assert await redis_state(redis_server.url) == before


# --- 3. corrections and versions ----------------------------------------------------------------------


async def versions_of(service: Service, entry: dict, token: str | None = None) -> list[dict]:
    response = await service.http.get(f"{url(entry)}/versions", headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.json()["entry"] == entry["id"]
    return response.json()["versions"]


async def test_a_correction_reaches_readers_and_the_version_history(service):
    staff = await newsroom(service)
    reporter = staff["reporter"]
    entry = await created(service, reporter, headline="Strike on Kharkiv", body="<p>Two people were killed.</p>")
    assert entry["edited_at"] is None and entry["corrections"] == []
    async with service.live() as ws:
        assert (await receive(ws))["type"] == "snapshot"
        correction = "An earlier version of this entry said two people were killed."
        corrected = await patched(
            service, reporter, entry, body="<p>Three people were killed.</p>", correction=correction
        )
        event = await next_event(ws)
    assert (event["event"], event["entry"]) == ("entry.updated", corrected)
    [shown] = corrected["corrections"]
    assert (shown["text"], shown["version"]) == (correction, 2)
    assert utc(shown["at"]) == utc(corrected["edited_at"]) >= utc(entry["created_at"])

    # A correction alone is a version too, but changes nothing readers read in the entry.
    second = "The strike hit a residential district, not the city centre."
    noted = await patched(service, staff["editor"], corrected, correction=second)
    assert [c["text"] for c in noted["corrections"]] == [correction, second]
    assert noted["edited_at"] == corrected["edited_at"]

    versions = await versions_of(service, noted)
    assert [(v["version"], v["body"], v["correction"]) for v in versions] == [
        (1, "<p>Two people were killed.</p>", None),
        (2, "<p>Three people were killed.</p>", correction),
        (3, "<p>Three people were killed.</p>", second),
    ]
    assert all(v["headline"] == "Strike on Kharkiv" and v["media"] is None and v["related"] == [] for v in versions)
    assert [utc(v["edited_at"]) for v in versions] == sorted(utc(v["edited_at"]) for v in versions)
    assert versions == await versions_of(service, noted, staff["editor"])


async def test_pinning_key_events_and_tags_are_not_edits(service):
    staff = await newsroom(service)
    editor = staff["editor"]
    entry = await created(service, staff["reporter"], body="<p>Explosions heard in Odesa.</p>")
    entry = await patched(service, editor, entry, body="<p>Explosions heard in Odesa port.</p>")
    edited_at = entry["edited_at"]
    assert edited_at is not None
    history = await versions_of(service, entry)
    assert len(history) == 2

    async with service.live() as ws:
        assert (await receive(ws))["type"] == "snapshot"
        for change in ({"pinned": True}, {"pinned": False}, {"key_event": True}, {"tags": ["odesa", "port"]}):
            entry = await patched(service, editor, entry, **change)
            event = await next_event(ws)
            assert (event["event"], event["entry"]) == ("entry.updated", entry)
            assert entry["edited_at"] == edited_at, change
            assert await versions_of(service, entry) == history, change
        assert (entry["pinned"], entry["key_event"], entry["tags"]) == (False, True, ["odesa", "port"])

        entry = await patched(service, editor, entry, headline="Port of Odesa hit")
        assert utc(entry["edited_at"]) > utc(edited_at)
        assert (await next_event(ws))["entry"] == entry
    history = await versions_of(service, entry)
    assert [(v["version"], v["headline"]) for v in history] == [(1, None), (2, None), (7, "Port of Odesa hit")]
    assert utc(history[-1]["edited_at"]) == utc(entry["edited_at"])


async def test_only_a_published_entry_takes_a_correction(service, redis_server):
    staff = await newsroom(service)
    draft = await created(service, staff["editor"], status="draft")
    before = await redis_state(redis_server.url)
    assert_error(await patch(service, staff["editor"], draft, correction="too early"), 422, "$.correction")
    assert await redis_state(redis_server.url) == before


# --- 4. retraction ------------------------------------------------------------------------------------


async def test_a_retracted_entry_leaves_every_reader_and_an_editor_restores_it(service, redis_server):
    staff = await newsroom(service)
    old = await cursor_of(service)
    secret, kept = marker(), marker()
    keep = await created(service, staff["reporter"], body=f"<p>{kept}</p>")
    entry = await created(service, staff["reporter"], body=f"<p>{secret}</p>", pinned=True)
    note = "This entry repeated a claim we could not verify."
    async with service.live() as ws:
        assert (await receive(ws))["type"] == "snapshot"
        response = await retract(service, staff["reporter"], entry, note)
        assert response.status_code == 204, response.text
        gone = await next_event(ws)
        assert gone["event"] == "entry.deleted"
        assert gone["entry"]["id"] == entry["id"] and gone["entry"]["deleted"] is True
        assert gone["entry"]["retraction_note"] == note
        assert secret not in json.dumps(gone)

        # Replays from before it still tell of it, then of its retraction; nothing else does.
        outputs = await public_outputs(service, old, entry["id"])
        current = {name: text for name, text in outputs.items() if name not in REPLAYS}
        assert_shown(current, kept)
        assert_nowhere(current, secret)

        # Staff still see it, with the note readers were shown.
        retracted = (await staff_get(service, staff["editor"], entry)).json()
        assert (retracted["status"], retracted["retraction_note"], retracted["version"]) == ("retracted", note, 2)
        assert [e["id"] for e in await staff_list(service, staff["editor"], "retracted")] == [entry["id"]]

        # The reporter may not bring it back; the editor may.
        before = await redis_state(redis_server.url)
        assert_error(await patch(service, staff["reporter"], retracted, status="published"), 403)
        assert await redis_state(redis_server.url) == before
        restored = await patched(service, staff["editor"], retracted, status="published")
        back = await next_event(ws)
    assert (back["event"], back["entry"]) == ("entry.created", restored)
    assert (restored["status"], restored["retraction_note"], restored["body"]) == ("published", None, entry["body"])
    assert restored["time"] == entry["time"] and restored["pinned"] is True
    listed = (await service.http.get("/api/v1/blogs/ukraine/entries")).json()["entries"]
    assert [e["id"] for e in listed] == [entry["id"], keep["id"]]
    assert secret in (await service.http.get("/blogs/ukraine")).text
    assert (await service.http.get(url(entry))).json() == restored


async def test_an_entry_fixed_while_retracted_comes_back_as_a_new_version(service):
    staff = await newsroom(service)
    editor = staff["editor"]
    entry = await created(service, staff["reporter"], body="<p>The bridge was destroyed.</p>")
    assert (await retract(service, editor, entry, "Being checked.")).status_code == 204
    fixed = await patched(service, editor, {**entry, "version": 2}, body="<p>The bridge was damaged.</p>")
    async with service.live() as ws:
        assert (await receive(ws))["type"] == "snapshot"
        restored = await patched(service, editor, fixed, status="published")
        back = await next_event(ws)
    assert (back["event"], back["entry"]) == ("entry.created", restored)
    assert restored["body"] == "<p>The bridge was damaged.</p>"
    assert restored["edited_at"] is not None  # readers had the other text
    versions = await versions_of(service, restored)
    assert [(v["version"], v["body"]) for v in versions] == [
        (1, "<p>The bridge was destroyed.</p>"),
        (4, "<p>The bridge was damaged.</p>"),
    ]

    # Restored as it was retracted, it is no new version.
    assert (await retract(service, editor, restored)).status_code == 204
    again = await patched(service, editor, {**restored, "version": 5}, status="published")
    assert again["edited_at"] == restored["edited_at"]
    assert await versions_of(service, again) == versions


# --- 5. purge -----------------------------------------------------------------------------------------


async def test_a_purged_entry_is_gone_from_every_replay_history_and_from_redis(service, redis_server):
    staff = await newsroom(service)
    reporter, editor = staff["reporter"], staff["editor"]
    old = await cursor_of(service)
    secret, corrected_secret, kept = marker(), marker(), marker()
    before_it = await created(service, reporter, body=f"<p>{kept}</p>")
    original = {"headline": f"Headline {secret}", "body": f"<p>{secret}</p>", "pinned": True}
    key = {"Idempotency-Key": "cms-takedown-1"}
    async with service.live() as ws, open_events(service) as sse:
        assert (await receive(ws))["type"] == "snapshot"
        stream = EventStream(sse)
        assert (await sse_event(stream))["type"] == "snapshot"

        entry = await created(service, reporter, headers=key, **original)
        entry = await patched(
            service, reporter, entry, body=f"<p>{corrected_secret}</p>", correction=f"Corrected {secret}"
        )
        entry = await patched(service, editor, entry, tags=["takedown"])
        assert len(await versions_of(service, entry)) == 2
        after_it = await created(service, reporter, body=f"<p>{kept} after</p>")
        for _ in range(4):  # created, updated, updated, and the next entry
            await next_event(ws)
            await sse_event(stream)

        # A reporter may not purge, even its own entry; an editor's purge of a version it did not
        # see is refused too (If-Match is optional for a purge, and checked when sent).
        before = await redis_state(redis_server.url)
        assert_error(await purge(service, reporter, entry), 403)
        stale = await service.http.delete(
            url(entry), params={"purge": "true"}, headers={**bearer(editor), "If-Match": '"1"'}
        )
        assert_error(stale, 412)
        assert await redis_state(redis_server.url) == before

        response = await purge(service, editor, entry)
        assert response.status_code == 204, response.text
        for message in (await next_event(ws), await sse_event(stream)):
            assert message["event"] == "entry.deleted"
            assert message["entry"]["id"] == entry["id"] and message["entry"]["deleted"] is True

    outputs = await public_outputs(service, old, entry["id"])
    assert_nowhere(outputs, secret)
    assert_nowhere(outputs, corrected_secret)
    since = json.loads(outputs["since"])["events"]
    assert [(e["event"], e["entry"]["id"]) for e in since] == [
        ("entry.created", before_it["id"]),
        ("entry.created", after_it["id"]),
        ("entry.deleted", entry["id"]),
    ]
    assert_shown(outputs, kept)

    # Staff have nothing of it either: no record, no versions, no listing, no audit text.
    read = await staff_get(service, editor, entry)
    versions = await service.http.get(f"{url(entry)}/versions", headers=bearer(editor))
    assert_error(read, 404)
    assert_error(versions, 404)
    staff_outputs = {"staff entry": read.text, "staff versions": versions.text}
    for status in ("draft", "submitted", "scheduled", "retracted"):
        staff_outputs[f"staff {status}"] = json.dumps(await staff_list(service, editor, status))
    staff_outputs["audit"] = json.dumps(await audit_of(service, editor))
    staff_outputs["audit as admin"] = json.dumps(await audit_of(service, ADMIN_TOKEN))

    # The CMS retries its original POST: it must not get the entry back, nor make it again.
    retry = await create(service, reporter, headers=key, **original)
    assert_error(retry, 410)
    staff_outputs["idempotent retry"] = retry.text
    listed = (await service.http.get("/api/v1/blogs/ukraine/entries")).json()["entries"]
    assert [e["id"] for e in listed] == [after_it["id"], before_it["id"]]

    for text in (secret, corrected_secret):
        assert_nowhere(staff_outputs, text)
        assert text.encode() not in await redis_text(redis_server.url)


async def test_purging_a_draft_tells_readers_nothing_and_leaves_nothing(service, redis_server):
    staff = await newsroom(service)
    secret = marker()
    draft = await created(service, staff["contributor"], status="submitted", body=f"<p>{secret}</p>")
    old = await cursor_of(service)
    response = await purge(service, staff["editor"], draft)
    assert response.status_code == 204, response.text
    assert await cursor_of(service) == old  # it was never public: nothing to tell readers
    assert_error(await staff_get(service, staff["contributor"], draft), 404)
    assert await staff_list(service, staff["contributor"], "submitted") == []
    assert secret.encode() not in await redis_text(redis_server.url)


async def test_purging_a_retracted_entry_removes_its_retraction_from_replay_too(service, redis_server):
    staff = await newsroom(service)
    secret = marker()
    old = await cursor_of(service)
    entry = await created(service, staff["reporter"], body=f"<p>{secret}</p>")
    assert (await retract(service, staff["reporter"], entry, "Unverified.")).status_code == 204
    assert (await purge(service, staff["editor"], entry)).status_code == 204
    events = (await service.http.get("/api/v1/blogs/ukraine/entries", params={"since": old})).json()["events"]
    assert [(e["event"], e["entry"]["id"], e["entry"].get("retraction_note")) for e in events] == [
        ("entry.deleted", entry["id"], None)
    ]
    assert secret.encode() not in await redis_text(redis_server.url)


# --- 6. the audit trail -------------------------------------------------------------------------------


async def test_every_change_to_an_entry_is_in_the_audit_trail_without_its_text(service):
    staff = await newsroom(service)
    secret = marker()
    editor = staff["editor"]
    draft = await created(service, staff["contributor"], status="draft", body=f"<p>{secret}</p>")
    draft = await patched(service, staff["contributor"], draft, body=f"<p>{secret} v2</p>")
    submitted = await patched(service, staff["contributor"], draft, status="submitted")
    published = await patched(service, editor, submitted, status="published")
    assert (await retract(service, editor, published, "Unverified.")).status_code == 204
    restored = await patched(service, editor, {**published, "version": 5}, status="published")
    assert (await purge(service, editor, restored)).status_code == 204

    records = await audit_of(service, editor)
    assert [
        (
            r["action"],
            r["actor"]["name"],
            r["actor"]["role"],
            r["entry"],
            r["version"],
            r["status"],
            r.get("from_status"),
        )
        for r in records
    ] == [
        ("purge", "Iryna", "editor", draft["id"], 7, "published", None),
        ("restore", "Iryna", "editor", draft["id"], 6, "published", "retracted"),
        ("retract", "Iryna", "editor", draft["id"], 5, "retracted", "published"),
        ("status", "Iryna", "editor", draft["id"], 4, "published", "submitted"),
        ("status", "Mykola", "contributor", draft["id"], 3, "submitted", "draft"),
        ("edit", "Mykola", "contributor", draft["id"], 2, "draft", None),
        ("create", "Mykola", "contributor", draft["id"], 1, "draft", None),
    ]
    moments = [utc(r["at"]) for r in records]
    assert moments == sorted(moments, reverse=True)
    assert utc(records[-1]["at"]) == utc(draft["created_at"])
    assert secret not in json.dumps(records)
    assert await audit_of(service, ADMIN_TOKEN) == records


async def test_a_returned_submission_is_audited_with_the_editors_note(service):
    staff = await newsroom(service)
    submitted = await created(service, staff["contributor"], status="submitted")
    note = "Needs a second source."
    await patched(service, staff["editor"], submitted, status="draft", review_note=note)
    latest = (await audit_of(service, staff["editor"]))[0]
    assert (latest["action"], latest["from_status"], latest["status"], latest["review_note"]) == (
        "status",
        "submitted",
        "draft",
        note,
    )


@pytest.mark.parametrize("role", ["reporter", "contributor"])
async def test_reporters_and_contributors_may_not_read_the_audit_trail(service, role):
    staff = await newsroom(service)
    assert_error(await service.http.get("/api/v1/blogs/ukraine/audit", headers=bearer(staff[role])), 403)


# --- 7. the token list --------------------------------------------------------------------------------


async def test_the_admin_lists_tokens_with_their_last_use_and_never_their_secrets(service):
    await service.create_blog("ukraine")
    await service.create_blog("gaza")
    minted = [
        await service.mint("editor", ("ukraine", "gaza"), "Iryna"),
        await service.mint("reporter", ("ukraine",), "Olena"),
        await service.mint("contributor", ("gaza",), "Mykola"),
    ]

    async def listed() -> dict[str, dict]:
        response = await service.http.get("/api/v1/tokens", headers=service.auth())
        assert response.status_code == 200, response.text
        assert "no-store" in response.headers["cache-control"]
        for token in minted:
            assert token["token"] not in response.text
            assert token["token"].split("_", 2)[2] not in response.text  # lb_<id>_<secret>: the secret alone
        return {token["id"]: token for token in response.json()["tokens"]}

    tokens = await listed()
    assert set(tokens) == {token["id"] for token in minted}
    for token in minted:
        shown = tokens[token["id"]]
        assert set(shown) == {"id", "name", "role", "blogs", "created_at", "last_used_at"}
        assert (shown["name"], shown["role"], shown["blogs"]) == (token["name"], token["role"], sorted(token["blogs"]))
        assert shown["last_used_at"] is None
    used_from = utc(tokens[minted[1]["id"]]["created_at"])

    assert (await create(service, minted[1]["token"])).status_code == 201
    tokens = await listed()
    assert utc(tokens[minted[1]["id"]]["last_used_at"]) >= used_from
    assert tokens[minted[0]["id"]]["last_used_at"] is None and tokens[minted[2]["id"]]["last_used_at"] is None

    for token in minted:
        assert_error(await service.http.get("/api/v1/tokens", headers=bearer(token["token"])), 403)
    assert_error(await service.http.get("/api/v1/tokens"), 401)


# --- bylines ------------------------------------------------------------------------------------------


async def test_bylines_are_the_tokens_own_except_for_editors(service):
    staff = await newsroom(service)
    assert_error(await create(service, staff["contributor"], status="draft", author={"name": "Olena"}), 403)
    mine = await created(service, staff["contributor"], status="draft", author={"location": "Lviv"})
    assert mine["author"] == {"name": "Mykola", "role": None, "location": "Lviv"}
    assert_error(await patch(service, staff["contributor"], mine, author={"name": "Iryna"}), 403, "$.author.name")
    assert_error(
        await patch(service, staff["reporter"], await created(service, staff["reporter"]), author={"name": "X"}), 403
    )
    signed = await patched(service, staff["editor"], mine, author={"name": "Staff and agencies"})
    assert signed["author"]["name"] == "Staff and agencies"
    admin = await created(service, ADMIN_TOKEN)
    assert admin["author"]["name"] == service.services.settings.publisher_name


async def test_an_editor_who_fixes_a_bylines_location_keeps_the_writers_name(service):
    staff = await newsroom(service)
    entry = await created(service, staff["reporter"], author={"location": "Kyiv"})
    fixed = await patched(service, staff["editor"], entry, author={"location": "Kharkiv"})
    assert fixed["author"] == {"name": "Olena", "role": None, "location": "Kharkiv"}
    fixed = await patched(service, ADMIN_TOKEN, fixed, author={"role": "Correspondent"})
    assert fixed["author"] == {"name": "Olena", "role": "Correspondent", "location": None}


@pytest.mark.parametrize("before", ["0-0", "99999999999999999999-0"])
async def test_an_audit_page_before_the_first_or_an_impossible_id_is_never_a_500(service, before):
    await service.create_blog()
    response = await service.http.get("/api/v1/blogs/ukraine/audit", params={"before": before}, headers=service.auth())
    assert response.status_code in (200, 400), response.text
    if response.status_code == 200:
        assert response.json() == {"records": [], "next": None}
