"""``liveblog archive``: an ended blog as static files, rendered by the service's own routes.

The app runs in this process (its lifespan too) and is asked for each page as a reader's browser
would ask for it, through ASGI, so the files are exactly what ``liveblog serve`` answers: the
public page with its JSON-LD, every entry's permalink page, the Atom and JSON feeds, and the
entries listing as JSON. Links stay as the pages make them (site-relative, or absolute under
``LIVEBLOG_PUBLIC_URL``), so the directory is served from the site's root.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette

from .app import create_app
from .config import Settings

Message = MutableMapping[str, Any]
_PAGE = 100


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
        write(f"blogs/{blog_id}/index.html", await fetch(f"/blogs/{blog_id}"))
        write(f"blogs/{blog_id}/feed.atom", await fetch(f"/blogs/{blog_id}/feed.atom"))
        write(f"blogs/{blog_id}/feed.json", await fetch(f"/blogs/{blog_id}/feed.json"))
        for entry_id in ids:
            write(f"blogs/{blog_id}/entries/{entry_id}/index.html", await fetch(f"/blogs/{blog_id}/entries/{entry_id}"))
    return written
