"""``liveblog archive``: an ended blog as static files, rendered by the service's own routes.

The app runs in this process (its lifespan too) and is asked for each page as a reader's browser
would ask for it, through ASGI, so the files are exactly what ``liveblog serve`` answers: the
public page with its JSON-LD, its older pages and tag views, every entry's permalink page, the
Atom and JSON feeds, and the entries listing as JSON. Links stay as the pages make them
(site-relative, or absolute under ``LIVEBLOG_PUBLIC_URL``), so the directory is served from the
site's root, except the ones with a query string, which no static server answers: the archive
follows each (``?before=``, ``?tag=``) and links to its page as a file instead (see
:func:`static_path`).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from starlette.applications import Starlette

from .app import create_app
from .config import Settings

Message = MutableMapping[str, Any]
_PAGE = 100
#: A tag that can be a directory name and a URL path segment as it is; others are spelt in hex.
_PLAIN_TAG = re.compile(r"[A-Za-z0-9_-]{1,40}")


def static_path(blog_id: str, tag: str | None, before: str | None) -> str:
    """Where the archive keeps the blog page ``?tag=…&before=…``: ``blogs/B/tags/T/older/E/``,
    any part left out that the query leaves out. A tag that is not plain ASCII letters, digits,
    ``-`` and ``_`` is written ``x-`` and its UTF-8 in hex, so no server decodes it differently."""
    path = f"/blogs/{blog_id}/"
    if tag is not None:
        path += f"tags/{tag if _PLAIN_TAG.fullmatch(tag) else 'x-' + tag.encode().hex()}/"
    if before is not None:
        path += f"older/{before}/"
    return path


def _linked_pages(blog_id: str, page: bytes) -> tuple[bytes, list[tuple[str | None, str | None]]]:
    """``page`` with its links to ``/blogs/B?…`` made static, and the (tag, before) each names."""
    found: list[tuple[str | None, str | None]] = []
    pattern = re.compile(
        rb'(href|content)="((?:https?://[^"/]+)?)/blogs/' + re.escape(blog_id.encode()) + rb'\?([^"#]*)"'
    )

    def rewrite(match: re.Match[bytes]) -> bytes:
        query = parse_qs(html.unescape(match[3].decode()), keep_blank_values=True)
        tag, before = query.get("tag", [None])[0], query.get("before", [None])[0]
        found.append((tag, before))
        return b'%s="%s%s"' % (match[1], match[2], html.escape(static_path(blog_id, tag, before)).encode())

    return pattern.sub(rewrite, page), found


class ArchiveError(Exception):
    """The blog cannot be archived (missing, still live, or a page failed); says which."""


async def _get(app: Starlette, path: str, query: dict[str, str] | None = None) -> tuple[int, bytes]:
    """``GET path`` on ``app`` as ASGI: the status and the whole body."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": urlencode(query or {}).encode(),
        "root_path": "",
        "headers": [(b"host", b"localhost")],
        "client": ("127.0.0.1", 0),
        "server": ("localhost", 80),
        "state": {},
    }
    status = 0
    body: list[bytes] = []
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body.append(message.get("body", b""))

    call: Callable[[Message, Any, Any], Awaitable[None]] = app
    await call(scope, receive, send)
    return status, b"".join(body)


async def archive(settings: Settings, redis_url: str, blog_id: str, to: Path) -> list[Path]:
    """Write ``blog_id``'s static copy under ``to`` (made if missing); the files written.
    Raises :class:`ArchiveError` if the blog is missing or not ended (nothing is written), or
    if a page fails (the files written until then stay: run it again once the cause is fixed)."""
    # The app's background tasks (tailer, scheduler) serve live readers, of whom an archive has
    # none: if one dies, the app has logged it, and the pages are read all the same.
    app = create_app(settings, redis_url, on_fatal=lambda: None)
    written: list[Path] = []

    def write(name: str, body: bytes) -> None:
        path = to / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        written.append(path)

    async with app.router.lifespan_context(app):

        async def fetch(path: str, query: dict[str, str] | None = None) -> bytes:
            status, body = await _get(app, path, query)
            if status != 200:
                raise ArchiveError(f"GET {path} answered {status}: {body[:200].decode(errors='replace')}")
            return body

        try:
            blog_json = await fetch(f"/api/v1/blogs/{blog_id}")
        except ArchiveError as exc:
            raise ArchiveError(f"blog {blog_id!r} cannot be read ({exc})") from None
        if json.loads(blog_json)["status"] != "ended":
            raise ArchiveError(f'blog {blog_id!r} is still live; end it first (PATCH status "ended")')
        write(f"api/v1/blogs/{blog_id}.json", blog_json)
        # Pages are written as they come, so memory holds one page, and the listing's ids.
        entries: list[Any] = []
        query = {"limit": str(_PAGE)}
        while True:
            page = json.loads(await fetch(f"/api/v1/blogs/{blog_id}/entries", query))
            entries += page["entries"]
            if page["next"] is None:
                break
            query = {"limit": str(_PAGE), "before": page["next"]}
        write(f"api/v1/blogs/{blog_id}/entries.json", json.dumps({"entries": entries, "next": None}).encode())
        ids = [entry["id"] for entry in entries]
        del entries
        # The blog page, then every page it leads to (older pages, tag views and theirs), once each.
        pending: list[tuple[str | None, str | None]] = [(None, None)]
        seen = set(pending)
        while pending:
            tag, before = pending.pop()
            query = {name: value for name, value in (("tag", tag), ("before", before)) if value is not None}
            page, links = _linked_pages(blog_id, await fetch(f"/blogs/{blog_id}", query))
            write(static_path(blog_id, tag, before).lstrip("/") + "index.html", page)
            for link in links:
                if link not in seen:
                    seen.add(link)
                    pending.append(link)
        write(f"blogs/{blog_id}/feed.atom", await fetch(f"/blogs/{blog_id}/feed.atom"))
        write(f"blogs/{blog_id}/feed.json", await fetch(f"/blogs/{blog_id}/feed.json"))
        for entry_id in ids:
            page, _ = _linked_pages(blog_id, await fetch(f"/blogs/{blog_id}/entries/{entry_id}"))
            write(f"blogs/{blog_id}/entries/{entry_id}/index.html", page)  # its tags' pages are written above
    return written
