"""Pages for readers who never call the API: the embed widget, the iframe page, the public page
with its older pages and tag views, each entry's own page, feeds and oEmbed.

Every response here is public and revalidatable: an ETag over its bytes, a short Cache-Control
with ``stale-while-revalidate`` (so a CDN absorbs a spike), 304 for a matching
``If-None-Match``, and gzip for clients that take it. Pages and feeds are built at most once
per blog, variant and second (:meth:`~liveblog.caching.ShortCache.prepared`, which also forgets
them when this process writes to the blog), from entries rendered once per version
(:mod:`liveblog.render`), and compressed once when built. Absolute links (canonical, OpenGraph,
JSON-LD, feeds, oEmbed) are built from the request's scheme and ``Host`` header, so run behind a
proxy that sets them (uvicorn's ``--proxy-headers``); the base is part of every cache key.

Everything readers read is in the blog's ``language``, and every time in its ``timezone``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple
from urllib.parse import quote, urlencode, urlsplit

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import feeds, hosts, widget
from .caching import IMMUTABLE, Prepared
from .config import Settings
from .errors import ApiError
from .models import SLUG, SLUG_PATTERN, Blog, Entry, decode, encoder
from .reader import get_blog
from .render import Rendered, Words, iso, rendered, revised, templates, words
from .services import services
from .storage import NotFound

#: The widget changes only with a deploy; partners' pages pick up a new one within minutes.
SCRIPT_CACHE = "public, max-age=300, stale-while-revalidate=86400"
EMBED_JS = Prepared.of(widget.script())
#: Our own pages load ``/embed.js?v=<this>``, which may be cached for good.
EMBED_VERSION = EMBED_JS.etag.strip('"')[:12]
SCRIPT_URL = f"/embed.js?v={EMBED_VERSION}"
HTML = "text/html; charset=utf-8"
#: oEmbed's iframe size when the consumer sets no maximum.
OEMBED_WIDTH, OEMBED_HEIGHT = 640, 800
_SLUG = re.compile(SLUG_PATTERN)
_ENTRY_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
#: A tag as the API takes one: 1-40 characters of text.
_TAG = re.compile(r"^[^\x00-\x1f\x7f]{1,40}\Z")
_BLOG_PATH = re.compile(r"^/blogs/(%s)/?\Z" % SLUG)
_WIDGET_OPTIONS = {
    "theme": re.compile(r"^(light|dark|auto)\Z"),
    "order": re.compile(r"^(newest|oldest)\Z"),
    "limit": re.compile(r"^(?:[1-9][0-9]?|100)\Z"),
}
#: What JSON inside ``<script>`` must not hold as is (and the escapes that mean the same).
_JSON_IN_HTML = [(b"<", b"\\u003c"), (b">", b"\\u003e"), (b"&", b"\\u0026")] + [
    (c.encode(), b"\\u%04x" % ord(c)) for c in "\u2028\u2029"
]


class View(NamedTuple):
    """One page of a blog, read at one log position."""

    blog: Blog
    #: The stream, newest first by display time; pinned entries keep their place in it.
    entries: list[Entry]
    #: Shown above the stream as well (on the front page only).
    pinned: list[Entry]
    #: The id to ask for the next, older page with; None: these are the oldest.
    older: str | None
    #: ``?before=`` and ``?tag=`` as asked (None: the front page, every tag).
    before: str | None = None
    tag: str | None = None

    @property
    def front(self) -> bool:
        return self.before is None and self.tag is None


# --- reading --------------------------------------------------------------------------------------


def _blog_id(request: Request) -> str:
    blog_id: str = request.path_params["blog"]
    if not _SLUG.match(blog_id):  # an id that cannot be a blog is simply not found
        raise NotFound(f"blog {blog_id!r} does not exist")
    return blog_id


def _entries(bodies: list[bytes]) -> list[Entry]:
    return [decode(Entry, body) for body in bodies if body is not None]


async def _view(request: Request, blog_id: str, before: str | None, tag: str | None) -> View:
    state = services(request)
    size = state.settings.snapshot_size
    if before is None and tag is None:
        # One more than a page: whether there is an older page to link to.
        snapshot = await state.store.snapshot(blog_id, size + 1)
        blog, latest, pinned = decode(Blog, snapshot.blog), _entries(snapshot.entries), _entries(snapshot.pinned)
        return View(blog, latest[:size], pinned, latest[size - 1].id if len(latest) > size else None)
    blog = await get_blog(state, blog_id)
    page = await state.store.page(blog_id, size, before, tag)
    return View(blog, _entries(page.entries), [], page.next, before, tag)


async def _latest(request: Request, blog_id: str) -> tuple[Blog, list[Entry]]:
    """The blog and its latest entries, pinned or not (what feeds carry)."""
    snapshot = await services(request).store.snapshot(blog_id, services(request).settings.snapshot_size)
    return decode(Blog, snapshot.blog), _entries(snapshot.entries)


def _query(request: Request, name: str, pattern: re.Pattern[str]) -> str | None:
    value = request.query_params.get(name)
    if value is not None and not pattern.match(value):
        raise NotFound(f"there is no such page ({name}={value[:80]!r})")
    return value


def _base(request: Request) -> str:
    """The service's public URL, ending in ``/`` (see :mod:`liveblog.hosts`)."""
    return hosts.origin(request) + "/"


async def _serve(
    request: Request,
    blog_id: str,
    variant: tuple[object, ...],
    media_type: str,
    build: Callable[[], Awaitable[bytes]],
    headers: dict[str, str] | None = None,
) -> Response:
    prepared = await services(request).pages.prepared(blog_id, variant, build)
    return prepared.response(request, media_type, headers)


# --- JSON-LD --------------------------------------------------------------------------------------


def json_for_script(value: object) -> Markup:
    """JSON that cannot end its ``<script>`` element early, whatever the strings in it hold."""
    document = encoder.encode(value)
    for character, escape in _JSON_IN_HTML:
        document = document.replace(character, escape)
    return Markup(document.decode())


def _publisher(settings: Settings) -> dict[str, object]:
    publisher: dict[str, object] = {"@type": "Organization", "name": settings.publisher_name}
    if settings.publisher_logo:
        publisher["logo"] = {"@type": "ImageObject", "url": settings.publisher_logo}
    return publisher


def in_coverage(blog: Blog, entry: Entry) -> bool:
    """Whether the entry's display time is inside the blog's coverage window (Google lists
    only those updates of a ``LiveBlogPosting``)."""
    end = blog.coverage_end if blog.status == "ended" else None
    return blog.coverage_start <= entry.time and (end is None or entry.time <= end)


def live_blog_posting(blog: Blog, entries: list[Entry], page_url: str, settings: Settings) -> dict[str, object]:
    """schema.org ``LiveBlogPosting`` for the page, with each of ``entries`` inside the coverage
    window as a ``BlogPosting``, published by the instance's ``publisher_name`` (with
    ``publisher_logo``, when set)."""
    document: dict[str, object] = {
        "@context": "https://schema.org",
        "@type": "LiveBlogPosting",
        "@id": page_url,
        "url": page_url,
        "headline": blog.title,
        "description": blog.description,
        "inLanguage": blog.language,
        "datePublished": iso(blog.created_at),
        "dateModified": iso(feeds.modified(blog, entries)),
        "coverageStartTime": iso(blog.coverage_start),
        "publisher": _publisher(settings),
    }
    if blog.status == "ended" and blog.coverage_end is not None:
        document["coverageEndTime"] = iso(blog.coverage_end)
    document["liveBlogUpdate"] = [blog_posting(e, rendered(e, blog), page_url) for e in entries if in_coverage(blog, e)]
    return document


def blog_posting(entry: Entry, shown: Rendered, page_url: str) -> dict[str, object]:
    """schema.org ``BlogPosting`` of one entry of the blog page at ``page_url``."""
    author: dict[str, object] = {"@type": "Person", "name": entry.author.name}
    if entry.author.role:
        author["jobTitle"] = entry.author.role
    posting: dict[str, object] = {
        "@type": "BlogPosting",
        "@id": f"{page_url}#{entry.id}",
        "url": f"{page_url}/entries/{entry.id}",
        "headline": shown.title,
        "datePublished": iso(entry.time),
        "dateModified": iso(revised(entry)),
        "articleBody": shown.text,
        "author": author,
    }
    if entry.corrections:
        posting["correction"] = [
            {"@type": "CorrectionComment", "text": c.text, "datePublished": iso(c.at)} for c in entry.corrections
        ]
    if entry.media is not None and entry.media.type == "image":
        posting["image"] = entry.media.url
    if entry.tags:
        posting["keywords"] = entry.tags
    return posting


# --- pages ----------------------------------------------------------------------------------------


def widget_options(request: Request) -> dict[str, str]:
    """``?theme=&order=&limit=`` of the iframe page, passed to the widget as data- attributes."""
    return {
        name: value
        for name, pattern in _WIDGET_OPTIONS.items()
        if (value := request.query_params.get(name)) is not None and pattern.match(value)
    }


def _image(entries: list[Entry]) -> str | None:
    return next((e.media.url for e in entries if e.media is not None and e.media.type == "image"), None)


def _page_query(**parts: str | None) -> str:
    query = urlencode({name: value for name, value in parts.items() if value is not None}, quote_via=quote)
    return f"?{query}" if query else ""


def _title(view: View, w: Words) -> str:
    blog = view.blog
    if view.tag is not None:
        return f"{w.text('tagged', tag=view.tag)} · {blog.title}"
    if view.before is not None:
        return f"{w.text('older')} · {blog.title}"
    return w.text("live_title", title=blog.title) if blog.status == "live" else blog.title


def _live_context(view: View, base: str, mount: bool) -> dict[str, Any]:
    """What ``_live.html`` needs: the view's entries rendered (each once per version), the
    key events, the pager's links and the page's own URL."""
    blog, w = view.blog, words(view.blog)
    page_url = f"{base}blogs/{blog.id}"
    stream = [(e, rendered(e, blog).article) for e in view.entries]
    pinned = [(e, rendered(e, blog).article) for e in view.pinned] if view.front else []
    shown = {e.id for e in view.entries}
    key_events = []
    if view.front:
        candidates = {e.id: e for e in [*view.pinned, *view.entries] if e.key_event}
        for entry in sorted(candidates.values(), key=lambda e: e.time, reverse=True):
            href = f"#{entry.id}" if entry.id in shown else f"/blogs/{blog.id}/entries/{entry.id}"
            key_events.append((href, entry, rendered(entry, blog).title))
    everything = [*view.pinned, *view.entries]
    return {
        "view": view,
        "w": w,
        "mount": mount,
        "front": view.front,
        "stream": stream,
        "pinned": pinned,
        "key_events": key_events,
        "last_updated": max((revised(e) for e in everything), default=None),
        "newer": f"/blogs/{blog.id}{_page_query(tag=view.tag)}" if view.before is not None else None,
        "older": f"/blogs/{blog.id}{_page_query(tag=view.tag, before=view.older)}" if view.older else None,
        "page_url": page_url,
        "canonical": page_url + _page_query(tag=view.tag, before=view.before),
        "script": SCRIPT_URL,
        "options": {},
    }


def _render(name: str, **context: Any) -> bytes:
    return templates.get_template(name).render(**context).encode()


async def blog_page(request: Request) -> Response:
    """The public page: readable without JavaScript, then the widget takes over live. With
    ``?before=<entry id>``, the entries older than that one (links lead from page to page, so
    crawlers reach every entry); with ``?tag=``, only the entries with that tag."""
    blog_id = _blog_id(request)
    before, tag = _query(request, "before", _ENTRY_ID), _query(request, "tag", _TAG)
    base = _base(request)
    settings = services(request).settings

    async def build() -> bytes:
        view = await _view(request, blog_id, before, tag)
        context = _live_context(view, base, mount=view.front)
        blog, page_url = view.blog, context["page_url"]
        everything = [*view.pinned, *[e for e in view.entries if e.id not in {p.id for p in view.pinned}]]
        json_ld = None
        if view.front:
            listed = sorted(everything, key=lambda e: e.time, reverse=True)
            json_ld = json_for_script(live_blog_posting(blog, listed, page_url, settings))
        return _render(
            "blog.html",
            **context,
            title=_title(view, context["w"]),
            publisher=settings.publisher_name,
            modified=feeds.modified(blog, everything),
            image=_image(everything),
            oembed_url=f"{base}oembed?url={quote(page_url, safe='')}&format=json",
            json_ld=json_ld,
        )

    return await _serve(request, blog_id, ("page", base, before, tag), HTML, build)


async def embed_page(request: Request) -> Response:
    """The widget as a page of its own, for an iframe; it posts its height to the parent.

    ``frame-ancestors`` lists the blog's ``embed_origins`` (any site when there are none).
    """
    blog_id = _blog_id(request)
    origins = (await get_blog(services(request), blog_id)).embed_origins
    ancestors = " ".join(["'self'", *origins]) if origins else "*"
    options = widget_options(request)
    base = _base(request)

    async def build() -> bytes:
        view = await _view(request, blog_id, None, None)
        context = _live_context(view, base, mount=True)
        context["options"] = options
        return _render("embed.html", **context, title=_title(view, context["w"]))

    variant = ("embed", base, *options.items())
    return await _serve(
        request, blog_id, variant, HTML, build, {"Content-Security-Policy": f"frame-ancestors {ancestors}"}
    )


async def entry_page(request: Request) -> Response:
    """One published entry's own page (404 for any other)."""
    blog_id = _blog_id(request)
    entry_id: str = request.path_params["entry"]
    if not _ENTRY_ID.match(entry_id):
        raise NotFound(f"entry {entry_id!r} does not exist in blog {blog_id!r}")
    base = _base(request)
    state = services(request)

    async def build() -> bytes:
        blog = await get_blog(state, blog_id)
        entry = decode(Entry, await state.store.get_public_entry(blog_id, entry_id))
        shown = rendered(entry, blog)
        page_url = f"{base}blogs/{blog_id}"
        canonical = f"{page_url}/entries/{entry.id}"
        posting = blog_posting(entry, shown, page_url)
        posting.update(
            {
                "@context": "https://schema.org",
                "mainEntityOfPage": canonical,
                "inLanguage": blog.language,
                "publisher": _publisher(state.settings),
                "isPartOf": {"@type": "LiveBlogPosting", "@id": page_url, "url": page_url, "headline": blog.title},
            }
        )
        text = " ".join(shown.text.split())
        return _render(
            "entry.html",
            view=View(blog, [entry], [], None),
            w=words(blog),
            entry=entry,
            rendered=shown,
            title=f"{shown.title} · {blog.title}",
            description=text if len(text) <= 200 else text[:199].rstrip() + "…",
            canonical=canonical,
            page_url=page_url,
            publisher=state.settings.publisher_name,
            modified=revised(entry),
            image=_image([entry]),
            json_ld=json_for_script(posting),
        )

    return await _serve(request, blog_id, ("entry", base, entry_id), HTML, build)


# --- feeds, oEmbed, the widget --------------------------------------------------------------------


async def atom_feed(request: Request) -> Response:
    blog_id, base = _blog_id(request), _base(request)

    async def build() -> bytes:
        blog, entries = await _latest(request, blog_id)
        return feeds.atom(blog, entries, f"{base}blogs/{blog_id}")

    headers = {"Access-Control-Allow-Origin": "*"}
    return await _serve(request, blog_id, ("atom", base), "application/atom+xml", build, headers)


async def json_feed(request: Request) -> Response:
    blog_id, base = _blog_id(request), _base(request)

    async def build() -> bytes:
        blog, entries = await _latest(request, blog_id)
        return feeds.json_feed(blog, entries, f"{base}blogs/{blog_id}")

    headers = {"Access-Control-Allow-Origin": "*"}
    return await _serve(request, blog_id, ("json", base), "application/feed+json", build, headers)


async def oembed(request: Request) -> Response:
    """oEmbed (type ``rich``) for this server's blog pages: an iframe of ``/embed/{blog}``,
    titled in the blog's language."""
    params = request.query_params
    if params.get("format", "json") != "json":
        raise ApiError(501, "format_not_supported", "only format=json is offered", "format")
    base = _base(request)
    url = urlsplit(params.get("url", ""))
    match = _BLOG_PATH.match(url.path)
    if url.scheme not in ("http", "https") or url.netloc.lower() != urlsplit(base).netloc or not match:
        raise ApiError(404, "not_found", "url is not a live blog page of this server", "url")
    blog = await get_blog(services(request), match.group(1))
    w = words(blog)
    title = w.text("live_title", title=blog.title) if blog.status == "live" else blog.title
    width = min(OEMBED_WIDTH, _dimension(params, "maxwidth"))
    height = min(OEMBED_HEIGHT, _dimension(params, "maxheight"))
    iframe = _render("oembed.html", src=f"{base}embed/{blog.id}", title=title, width=width, height=height)
    document = {
        "version": "1.0",
        "type": "rich",
        "title": title,
        "provider_name": services(request).settings.publisher_name,
        "provider_url": base,
        "width": width,
        "height": height,
        "html": iframe.decode().strip(),
    }
    body = json.dumps(document, ensure_ascii=False).encode()
    return Prepared.of(body).response(request, "application/json", {"Access-Control-Allow-Origin": "*"})


def _dimension(params: Any, name: str) -> int:
    raw = params.get(name, "")
    return int(raw) if raw.isascii() and raw.isdigit() and 0 < int(raw) < 100_000 else 100_000


async def embed_js(request: Request) -> Response:
    """The widget. ``?v=`` with the current version (what our pages reference) may be cached
    for good; any other URL of it only briefly."""
    cache = IMMUTABLE if request.query_params.get("v") == EMBED_VERSION else SCRIPT_CACHE
    headers = {"Cache-Control": cache, "Access-Control-Allow-Origin": "*", "X-Content-Type-Options": "nosniff"}
    return EMBED_JS.response(request, "text/javascript; charset=utf-8", headers)


routes = [
    Route("/embed.js", embed_js, methods=["GET"]),
    Route("/embed/{blog}", embed_page, methods=["GET"]),
    Route("/blogs/{blog}", blog_page, methods=["GET"]),
    Route("/blogs/{blog}/entries/{entry}", entry_page, methods=["GET"]),
    Route("/blogs/{blog}/feed.atom", atom_feed, methods=["GET"]),
    Route("/blogs/{blog}/feed.json", json_feed, methods=["GET"]),
    Route("/oembed", oembed, methods=["GET"]),
]
