"""A newsroom moves a blog: export, import elsewhere (or back), and archive it as static files.

Every command runs as an operator would run it, a real ``liveblog`` subprocess against the
test's real Redis.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from conftest import ADMIN_TOKEN, UNLIMITED, Served, Service, redis_state, running_service
from test_pages import Html

from liveblog import export
from liveblog.config import Settings
from liveblog.models import encoder
from liveblog.store import Store

PURGED_TEXT = "court-ordered-takedown-text"
DRAFT_TEXT = "unfinished-draft-text"
#: Pages link absolutely under the public URL: the same from every service, whatever its port.
PUBLIC_URL = "https://news.example"


@pytest.fixture
def settings() -> Settings:
    return replace(UNLIMITED, public_url=PUBLIC_URL)


def liveblog(
    *args: str, redis_url: str | None, stdin: bytes = b"", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """The command, run as an operator would; with ``redis_url`` None, on the data dir's Redis."""
    return subprocess.run(
        [sys.executable, "-m", "liveblog.cli", *args, *(["--redis-url", redis_url] if redis_url else [])],
        input=stdin,
        env={**os.environ, "LIVEBLOG_PUBLIC_URL": PUBLIC_URL, **(env or {})},
        capture_output=True,
        timeout=60,
    )


async def patch(service: Service, entry: dict, **body: object) -> dict:
    response = await service.http.patch(
        f"/api/v1/blogs/{entry['blog']}/entries/{entry['id']}",
        json=body,
        headers={**service.auth(), "If-Match": f'"{entry["version"]}"'},
    )
    assert response.status_code == 200, response.text
    return response.json()


async def newsroom_blog(service: Service) -> dict[str, dict]:
    """A blog with published entries, a corrected edit, a retraction, a draft and a purged entry."""
    await service.create_blog("flood", title="Live: the flood")
    first = await service.post("flood", body="<p>The river rose overnight.</p>", headline="Rising", tags=["river"])
    edited = await service.post("flood", body="<p>Two bridges closed.</p>", key_event=True)
    edited = await patch(service, edited, body="<p>Three bridges closed.</p>", correction="It was three bridges.")
    retracted = await service.post("flood", body="<p>An unconfirmed report.</p>")
    response = await service.http.delete(
        f"/api/v1/blogs/flood/entries/{retracted['id']}",
        headers={**service.auth(), "If-Match": f'"{retracted["version"]}"'},
    )
    assert response.status_code == 204, response.text
    draft = await service.post("flood", body=f"<p>{DRAFT_TEXT}</p>", status="draft")
    purged = await service.post("flood", body=f"<p>{PURGED_TEXT}</p>")
    response = await service.http.delete(
        f"/api/v1/blogs/flood/entries/{purged['id']}?purge=true", headers=service.auth()
    )
    assert response.status_code == 204, response.text
    pinned = await service.post("flood", body="<p>Where to find shelter.</p>", pinned=True)
    return {"first": first, "edited": edited, "retracted": retracted, "draft": draft, "pinned": pinned}


async def public_answers(service: Service, entries: dict[str, dict]) -> dict[str, object]:
    """What readers get: the page, the listing (without its cursor) and each entry's versions."""
    answers: dict[str, object] = {}
    page = await service.http.get("/blogs/flood")
    assert page.status_code == 200
    answers["page"] = page.text
    listing = (await service.http.get("/api/v1/blogs/flood/entries", params={"limit": 100})).json()
    answers["entries"] = listing["entries"]
    for name, entry in entries.items():
        versions = await service.http.get(f"/api/v1/blogs/flood/entries/{entry['id']}/versions")
        answers[f"versions:{name}"] = (versions.status_code, versions.text)
    return answers


async def flushall(url: str) -> None:
    async with aioredis.Redis.from_url(url) as client:
        await client.flushall()


async def test_an_exported_blog_imported_into_an_empty_redis_reads_the_same(service, redis_server, settings):
    entries = await newsroom_blog(service)
    before = await public_answers(service, entries)

    exported = liveblog("export", "flood", redis_url=redis_server.url)
    assert exported.returncode == 0, exported.stderr
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert lines[0]["type"] == "liveblog-export" and lines[0]["schema"] == 1
    assert PURGED_TEXT.encode() not in exported.stdout
    assert DRAFT_TEXT.encode() not in exported.stdout
    assert {line["entry"]["status"] for line in lines if line["type"] == "entry"} == {"published", "retracted"}

    await flushall(redis_server.url)
    imported = liveblog("import", redis_url=redis_server.url, stdin=exported.stdout)
    assert imported.returncode == 0, imported.stderr

    async with running_service(redis_server.url, settings) as fresh:  # no page cached from before
        assert await public_answers(fresh, entries) == before
    again = liveblog("export", "flood", redis_url=redis_server.url)
    assert again.stdout.splitlines()[1:] == exported.stdout.splitlines()[1:]


async def test_importing_twice_changes_nothing_the_second_time(service, redis_server):
    await newsroom_blog(service)
    exported = liveblog("export", "flood", "--drafts", redis_url=redis_server.url)
    assert exported.returncode == 0, exported.stderr
    await flushall(redis_server.url)
    assert liveblog("import", redis_url=redis_server.url, stdin=exported.stdout).returncode == 0
    state = await redis_state(redis_server.url)

    second = liveblog("import", redis_url=redis_server.url, stdin=exported.stdout)

    assert second.returncode == 0, second.stderr
    assert "0 records changed" in second.stderr.decode()
    assert await redis_state(redis_server.url) == state


async def test_an_import_is_in_the_blogs_audit_trail_once_per_entry_it_restored(service, redis_server):
    entries = await newsroom_blog(service)
    exported = liveblog("export", "flood", redis_url=redis_server.url)
    await flushall(redis_server.url)
    assert liveblog("import", redis_url=redis_server.url, stdin=exported.stdout).returncode == 0
    assert liveblog("import", redis_url=redis_server.url, stdin=exported.stdout).returncode == 0

    answer = await service.http.get("/api/v1/blogs/flood/audit", headers=service.auth())
    assert answer.status_code == 200, answer.text
    records = answer.json()["records"]
    assert {r["action"] for r in records} == {"import"}
    assert {r["actor"]["name"] for r in records} == {"liveblog import"}
    exported_ids = {
        json.loads(line)["entry"]["id"] for line in exported.stdout.splitlines() if b'"type":"entry"' in line
    }
    assert sorted(r["entry"] for r in records) == sorted(exported_ids)  # once each, not twice
    assert exported_ids <= {e["id"] for e in entries.values()}


async def test_an_entry_retracted_while_the_export_runs_is_written_once_and_the_file_imports(service, redis_server):
    entries = await newsroom_blog(service)
    async with aioredis.Redis.from_url(redis_server.url) as client:
        lines: list[bytes] = []
        running = export.records(Store(client), "flood", drafts=False)
        async for record in running:
            lines.append(encoder.encode(record) + b"\n")
            if isinstance(record, export.EntryRecord):  # the newest entry is out: retract it now
                newest = record.entry
                response = await service.http.delete(
                    f"/api/v1/blogs/flood/entries/{newest.id}",
                    headers={**service.auth(), "If-Match": f'"{newest.version}"'},
                )
                assert response.status_code == 204, response.text
                break
        lines += [encoder.encode(record) + b"\n" async for record in running]

    written = [json.loads(line)["entry"]["id"] for line in lines if b'"type":"entry"' in line]
    assert len(written) == len(set(written)) and entries["pinned"]["id"] in written
    parsed = export.parse(enumerate(lines, start=1))  # importable: nothing is in it twice
    assert {item.entry.id for item in parsed.entries} == set(written)


async def test_drafts_are_exported_only_when_asked_for(service, redis_server):
    entries = await newsroom_blog(service)
    exported = liveblog("export", "flood", "--drafts", redis_url=redis_server.url)
    assert exported.returncode == 0, exported.stderr
    assert DRAFT_TEXT.encode() in exported.stdout
    assert PURGED_TEXT.encode() not in exported.stdout

    await flushall(redis_server.url)
    assert liveblog("import", redis_url=redis_server.url, stdin=exported.stdout).returncode == 0
    draft = await service.http.get(f"/api/v1/blogs/flood/entries/{entries['draft']['id']}", headers=service.auth())
    assert draft.status_code == 200 and draft.json()["status"] == "draft"


ORPHAN_VERSION = (
    b'{"type":"version","entry":"nobody","version":{"version":1,"edited_at":"2026-12-03T07:00:00Z",'
    b'"headline":null,"body":"<p>x</p>","media":null,"related":[]}}'
)


@pytest.mark.parametrize(
    ("damage", "line"),
    [
        pytest.param(lambda lines: [b"{not json", *lines[1:]], 1, id="header-not-json"),
        pytest.param(lambda lines: [b'{"type":"liveblog-export","schema":99}', *lines[1:]], 1, id="bad-header"),
        pytest.param(lambda lines: [*lines, b'{"type":"entry","entry":{"id":"x"}}'], "last", id="bad-entry"),
        pytest.param(lambda lines: [*lines, ORPHAN_VERSION], "last", id="version-of-no-entry"),
        pytest.param(lambda lines: [lines[0], *lines], 2, id="second-header"),
        pytest.param(lambda lines: [lines[0], lines[2], *lines[1:]], 2, id="entry-before-blog"),
    ],
)
async def test_a_bad_line_names_its_number_and_changes_nothing(service, redis_server, damage, line):
    await newsroom_blog(service)
    exported = liveblog("export", "flood", redis_url=redis_server.url)
    await flushall(redis_server.url)
    broken = damage(exported.stdout.splitlines())
    number = len(broken) if line == "last" else line

    result = liveblog("import", redis_url=redis_server.url, stdin=b"\n".join(broken) + b"\n")

    assert result.returncode != 0
    message = result.stderr.decode()
    assert re.fullmatch(rf"liveblog import: line {number}: [^\n]+\n", message), message
    assert await redis_state(redis_server.url) == {}


async def test_an_ended_blog_archives_as_static_files(service, redis_server, tmp_path: Path):
    entries = await newsroom_blog(service)
    refused = liveblog("archive", "flood", "--to", str(tmp_path / "early"), redis_url=redis_server.url)
    assert refused.returncode != 0 and b"still live" in refused.stderr and not (tmp_path / "early").exists()
    blog = (await service.http.get("/api/v1/blogs/flood")).json()
    response = await service.http.patch("/api/v1/blogs/flood", json={"status": "ended"}, headers=service.auth())
    assert response.status_code == 200, (response.text, blog)

    result = liveblog("archive", "flood", "--to", str(tmp_path / "site"), redis_url=redis_server.url)

    assert result.returncode == 0, result.stderr
    site = tmp_path / "site"
    page = (site / "blogs/flood/index.html").read_text()
    for name in ("first", "edited", "pinned"):
        assert (site / f"blogs/flood/entries/{entries[name]['id']}/index.html").is_file()
    assert "Three bridges closed." in page and "The river rose overnight." in page
    assert PURGED_TEXT not in page and DRAFT_TEXT not in page
    scripts = re.findall(r'<script type="application/ld\+json">(.*?)</script>', page, re.S)
    assert scripts, page
    posting = json.loads(scripts[0])
    assert posting["@type"] == "LiveBlogPosting" and posting["url"] == f"{PUBLIC_URL}/blogs/flood"
    assert len(posting["liveBlogUpdate"]) == 3
    listing = json.loads((site / "api/v1/blogs/flood/entries.json").read_bytes())
    assert [e["id"] for e in listing["entries"]] == [
        e["id"] for e in (await service.http.get("/api/v1/blogs/flood/entries")).json()["entries"]
    ]
    ElementTree.fromstring((site / "blogs/flood/feed.atom").read_bytes())
    feed = json.loads((site / "blogs/flood/feed.json").read_bytes())
    assert len(feed["items"]) == 3


@contextlib.contextmanager
def static_server(root: Path) -> Iterator[httpx.Client]:
    """A plain static file server on ``root`` (Python's own), as a CDN or any web server would be."""
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = re.search(r"port (\d+)", process.stdout.readline())
        assert port, "http.server did not say its port"
        with httpx.Client(base_url=f"http://127.0.0.1:{port[1]}", follow_redirects=True, timeout=30) as client:
            yield client
    finally:
        process.kill()
        process.wait()


async def test_an_archive_served_by_a_static_server_reaches_every_entry_and_tag_page(
    service, redis_server, tmp_path: Path
):
    await service.create_blog("flood", title="Live: the flood")
    posted = [
        await service.post("flood", body=f"<p>Update {n}.</p>", tags=["river" if n % 2 else "alto el fuego"])
        for n in range(7)
    ]
    response = await service.http.patch("/api/v1/blogs/flood", json={"status": "ended"}, headers=service.auth())
    assert response.status_code == 200, response.text
    site = tmp_path / "site"
    made = liveblog(
        "archive", "flood", "--to", str(site), redis_url=redis_server.url, env={"LIVEBLOG_SNAPSHOT_SIZE": "2"}
    )
    assert made.returncode == 0, made.stderr

    with static_server(site) as web:
        pages: dict[str, list[str]] = {}  # each page of the blog a reader can reach: its entries
        queue = ["/blogs/flood/"]
        while queue:
            path = queue.pop()
            answer = web.get(path)
            assert answer.status_code == 200, path
            if path in pages or "/entries/" in path:
                continue
            read = Html(answer.text)
            pages[path] = read.articles
            for anchor in read.anchors:
                href = anchor.get("href", "").removeprefix(PUBLIC_URL).split("#")[0]
                if href and not href.endswith("/") and "." not in href.rsplit("/", 1)[-1]:
                    href += "/"  # the server's redirect to the directory, without asking it each time
                if href.startswith("/blogs/flood") and href not in pages:
                    assert "?" not in href, f"{path} links to {href}, which a static server cannot answer"
                    queue.append(href)

    untagged = [ids for path, ids in pages.items() if "/tags/" not in path]
    assert sorted(i for ids in untagged for i in ids) == sorted(e["id"] for e in posted)
    ceasefire = [ids for path, ids in pages.items() if "/tags/x-" in path]
    assert sorted(i for ids in ceasefire for i in ids) == sorted(e["id"] for n, e in enumerate(posted) if n % 2 == 0)
    assert any("/tags/river/" in path for path in pages)


async def test_an_import_older_than_what_is_stored_is_refused_and_changes_nothing(service, redis_server):
    entries = await newsroom_blog(service)
    exported = liveblog("export", "flood", redis_url=redis_server.url)
    await patch(service, entries["first"], body="<p>The river rose further.</p>")
    state = await redis_state(redis_server.url)

    result = liveblog("import", redis_url=redis_server.url, stdin=exported.stdout)

    assert result.returncode != 0
    assert re.fullmatch(
        r"liveblog import: entry '\w+' of blog 'flood' is stored at a newer version[^\n]+\n", result.stderr.decode()
    )
    assert await redis_state(redis_server.url) == state


def test_without_a_redis_url_the_commands_use_the_data_dirs_embedded_redis(data_dir: Path):
    env = {"LIVEBLOG_ADMIN_TOKEN": ADMIN_TOKEN}
    served = Served(data_dir, env=env)
    try:
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        assert (
            served.http.post("/api/v1/blogs", json={"id": "flood", "title": "Flood"}, headers=auth).status_code == 201
        )
        posted = served.http.post("/api/v1/blogs/flood/entries", json={"body": "<p>Kept on disk.</p>"}, headers=auth)
        assert posted.status_code == 201

        busy = liveblog("export", "flood", "--data-dir", str(data_dir), redis_url=None)

        assert busy.returncode != 0
        assert re.fullmatch(r"liveblog: a liveblog serve uses [^\n]+\n", busy.stderr.decode()), busy.stderr
    finally:
        assert served.stop() == 0

    exported = liveblog("export", "flood", "--data-dir", str(data_dir), redis_url=None)

    assert exported.returncode == 0, exported.stderr
    assert b"Kept on disk." in exported.stdout
