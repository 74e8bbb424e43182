"""Pages for readers who never call the API: the embed widget, the iframe page, the public page,
feeds and oEmbed.

Every response here is public and revalidatable: an ETag over its bytes, a short Cache-Control
with ``stale-while-revalidate`` (so a CDN absorbs a spike), and 304 for a matching
``If-None-Match``. Absolute links (canonical, feeds, oEmbed) are built from the request's scheme
and ``Host`` header, so run behind a proxy that sets them (uvicorn's ``--proxy-headers``).

Entry bodies are HTML sanitised on write; pages run them through the same sanitiser again on
render, and every other field (a correction's text too) is text, escaped by Jinja's autoescape or
:func:`fill` (HTML), ElementTree (Atom) or JSON encoding with ``<``, ``>`` and ``&`` escaped
(JSON-LD inside ``<script>``).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from html.parser import HTMLParser
from typing import Any, NamedTuple
from urllib.parse import quote, urlsplit
from xml.etree import ElementTree

from jinja2 import Environment, PackageLoader
from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import widget
from .caching import revalidatable
from .config import Settings
from .errors import ApiError
from .models import SLUG_PATTERN, Author, Blog, Entry, decode
from .sanitize import clean_html
from .services import services
from .storage import NotFound, Storage

#: Every reader-facing string of the pages and feeds (the templates see it as ``text``). A
#: ``{name}`` is a placeholder :func:`fill` replaces, so a translation may move it.
TEXT = {
    "live": "Live",
    "ended": "This live blog has ended.",
    "pinned": "Pinned",
    "key_event": "Key event",
    "updated": "updated {time}",
    "corrected": "Corrected {time}: {text}",
}
#: The widget changes only with a deploy; partners' pages pick up a new one within minutes.
SCRIPT_CACHE = "public, max-age=300, stale-while-revalidate=86400"
EMBED_JS = widget.script()
ATOM = "http://www.w3.org/2005/Atom"
JSON_FEED = "https://jsonfeed.org/version/1.1"
#: oEmbed's iframe size when the consumer sets no maximum.
OEMBED_WIDTH, OEMBED_HEIGHT = 640, 800
_SLUG = re.compile(SLUG_PATTERN)
_BLOG_PATH = re.compile(r"^/blogs/(%s)/?$" % SLUG_PATTERN.strip("^$"))
_WIDGET_OPTIONS = {
    "theme": re.compile(r"^(light|dark|auto)$"),
    "order": re.compile(r"^(newest|oldest)$"),
    "limit": re.compile(r"^[1-9][0-9]?$|^100$"),
}
#: Characters XML 1.0 cannot carry at all; JSON strings may hold them, so feeds drop them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_JSON_IN_HTML = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


class Live(NamedTuple):
    """A blog as readers see it, read at one log position."""

    blog: Blog
    #: What the page shows: pinned entries first, then the latest, newest first.
    entries: list[Entry]
    #: The latest entries by display time, newest first, pinned or not (what feeds carry).
    latest: list[Entry]


# --- helpers --------------------------------------------------------------------------------------


async def _live(request: Request, blog_id: str) -> Live:
    store: Storage = services(request).store
    if not _SLUG.match(blog_id):  # an id that cannot be a blog is simply not found
        raise NotFound(f"blog {blog_id!r} does not exist")
    snapshot = await store.snapshot(blog_id, services(request).settings.snapshot_size)
    pinned = [decode(Entry, body) for body in snapshot.pinned if body is not None]
    latest = [decode(Entry, body) for body in snapshot.entries if body is not None]
    pinned_ids = {e.id for e in pinned}
    rest = [e for e in latest if e.id not in pinned_ids]
    return Live(decode(Blog, snapshot.blog), pinned + rest, latest)


def _base(request: Request) -> str:
    """The service's public URL, ending in ``/``."""
    return str(request.base_url)


def _page_url(request: Request, blog_id: str) -> str:
    return f"{_base(request)}blogs/{blog_id}"


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _modified(live: Live) -> datetime:
    return max([live.blog.updated_at, *(e.updated_at for e in live.entries)])


def revised(entry: Entry) -> datetime:
    """When readers' view of the entry last changed: its last edit or correction, else its
    display time (never earlier than that). Pinning, key events and tags do not count."""
    edits = [entry.edited_at] if entry.edited_at is not None else []
    return max([entry.time, *edits, *(c.at for c in entry.corrections)])


class _TextOf(HTMLParser):
    _BREAKS = frozenset({"p", "br", "li", "blockquote", "h3", "ul", "ol"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: object) -> None:
        self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self._BREAKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def plain_text(html: str) -> str:
    """The text of sanitised body HTML: one line per paragraph or list item, spaces collapsed."""
    parser = _TextOf()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).split("\n"))
    return "\n".join(line for line in lines if line)


def title_of(entry: Entry) -> str:
    """The entry's headline, or the start of its text (feeds and JSON-LD need a title)."""
    if entry.headline:
        return entry.headline
    text = " ".join(plain_text(entry.body).split())
    return text if len(text) <= 110 else text[:109].rstrip() + "…"


def byline(author: Author) -> str:
    return ", ".join(part for part in (author.name, author.role, author.location) if part)


def json_for_script(value: object) -> Markup:
    """JSON that cannot end its ``<script>`` element early, whatever the strings in it hold."""
    return Markup(json.dumps(value, ensure_ascii=False).translate(_JSON_IN_HTML))


# --- templates ------------------------------------------------------------------------------------


def _clock(moment: datetime) -> str:
    return f"{moment:%H:%M} UTC"


def _full_date(moment: datetime) -> str:
    return f"{moment:%A} {moment.day} {moment:%B %Y, %H:%M} UTC"


def fill(pattern: str, **parts: object) -> Markup:
    """A :data:`TEXT` pattern as HTML, its ``{name}`` placeholders replaced by ``parts``, which are
    escaped unless they are :class:`~markupsafe.Markup` already."""
    return escape(pattern).format(**parts)


def corrections_html(entry: Entry) -> str:
    """The entry's corrections, oldest first, as the paragraphs feeds append to its content."""
    return "".join(
        f"<p><em>{fill(TEXT['corrected'], time=_clock(c.at), text=c.text)}</em></p>" for c in entry.corrections
    )


templates = Environment(loader=PackageLoader("liveblog", "templates"), autoescape=True, trim_blocks=True)
templates.filters.update(
    iso=_iso, clock=_clock, full_date=_full_date, byline=byline, fill=fill, body=lambda html: Markup(clean_html(html))
)
templates.globals["text"] = TEXT


def _render(name: str, **context: Any) -> bytes:
    return templates.get_template(name).render(**context).encode()


def widget_options(request: Request) -> dict[str, str]:
    """``?theme=&order=&limit=`` of the iframe page, passed to the widget as data- attributes."""
    return {
        name: value
        for name, pattern in _WIDGET_OPTIONS.items()
        if (value := request.query_params.get(name)) is not None and pattern.match(value)
    }


def live_blog_posting(live: Live, page_url: str, settings: Settings) -> dict[str, object]:
    """schema.org ``LiveBlogPosting`` for the page, with each shown entry as a ``BlogPosting``,
    published by the instance's ``publisher_name`` (with ``publisher_logo``, when set)."""
    blog = live.blog
    publisher: dict[str, object] = {"@type": "Organization", "name": settings.publisher_name}
    if settings.publisher_logo:
        publisher["logo"] = {"@type": "ImageObject", "url": settings.publisher_logo}
    document: dict[str, object] = {
        "@context": "https://schema.org",
        "@type": "LiveBlogPosting",
        "@id": page_url,
        "url": page_url,
        "headline": blog.title,
        "description": blog.description,
        "inLanguage": blog.language,
        "datePublished": _iso(blog.created_at),
        "dateModified": _iso(_modified(live)),
        "coverageStartTime": _iso(blog.coverage_start),
        "publisher": publisher,
    }
    if blog.status == "ended" and blog.coverage_end is not None:
        document["coverageEndTime"] = _iso(blog.coverage_end)
    document["liveBlogUpdate"] = [_blog_posting(entry, page_url) for entry in live.entries]
    return document


def _blog_posting(entry: Entry, page_url: str) -> dict[str, object]:
    author: dict[str, object] = {"@type": "Person", "name": entry.author.name}
    if entry.author.role:
        author["jobTitle"] = entry.author.role
    posting: dict[str, object] = {
        "@type": "BlogPosting",
        "@id": f"{page_url}#{entry.id}",
        "url": f"{page_url}#{entry.id}",
        "headline": title_of(entry),
        "datePublished": _iso(entry.time),
        "dateModified": _iso(revised(entry)),
        "articleBody": plain_text(entry.body),
        "author": author,
    }
    if entry.corrections:
        posting["correction"] = [
            {"@type": "CorrectionComment", "text": c.text, "datePublished": _iso(c.at)} for c in entry.corrections
        ]
    if entry.media is not None and entry.media.type == "image":
        posting["image"] = entry.media.url
    if entry.tags:
        posting["keywords"] = entry.tags
    return posting


# --- routes ---------------------------------------------------------------------------------------


async def embed_js(request: Request) -> Response:
    headers = {"Cache-Control": SCRIPT_CACHE, "Access-Control-Allow-Origin": "*", "X-Content-Type-Options": "nosniff"}
    return revalidatable(request, EMBED_JS, "text/javascript; charset=utf-8", headers)


async def embed_page(request: Request) -> Response:
    """The widget as a page of its own, for an iframe; it posts its height to the parent.

    ``frame-ancestors`` lists the blog's ``embed_origins`` (any site when there are none).
    """
    live = await _live(request, request.path_params["blog"])
    origins = live.blog.embed_origins
    ancestors = " ".join(["'self'", *origins]) if origins else "*"
    body = _render("embed.html", live=live, options=widget_options(request))
    return revalidatable(request, body, "text/html", {"Content-Security-Policy": f"frame-ancestors {ancestors}"})


async def blog_page(request: Request) -> Response:
    """The public page: readable without JavaScript, then the widget takes over live."""
    blog_id = request.path_params["blog"]
    live = await _live(request, blog_id)
    page_url = _page_url(request, blog_id)
    body = _render(
        "blog.html",
        live=live,
        options={},
        page_url=page_url,
        modified=_modified(live),
        oembed_url=f"{_base(request)}oembed?url={quote(page_url, safe='')}&format=json",
        json_ld=json_for_script(live_blog_posting(live, page_url, services(request).settings)),
    )
    return revalidatable(request, body, "text/html")


async def atom_feed(request: Request) -> Response:
    blog_id = request.path_params["blog"]
    live = await _live(request, blog_id)
    page_url = _page_url(request, blog_id)
    blog = live.blog

    def add(parent: ElementTree.Element, tag: str, text: str | None = None, **attrs: str) -> ElementTree.Element:
        element = ElementTree.SubElement(parent, tag, {k: _NOT_XML.sub("", v) for k, v in attrs.items()})
        if text is not None:
            element.text = _NOT_XML.sub("", text)
        return element

    feed = ElementTree.Element("feed", xmlns=ATOM)
    feed.set("xml:lang", blog.language)
    add(feed, "id", page_url)
    add(feed, "title", blog.title)
    if blog.description:
        add(feed, "subtitle", blog.description)
    add(feed, "updated", _iso(_modified(live)))
    add(feed, "link", rel="alternate", type="text/html", href=page_url)
    add(feed, "link", rel="self", type="application/atom+xml", href=f"{page_url}/feed.atom")
    for entry in live.latest:
        item = add(feed, "entry")
        add(item, "id", f"{page_url}#{entry.id}")
        add(item, "title", title_of(entry))
        add(item, "published", _iso(entry.time))
        add(item, "updated", _iso(revised(entry)))
        add(item, "link", rel="alternate", type="text/html", href=f"{page_url}#{entry.id}")
        add(add(item, "author"), "name", entry.author.name)
        for tag in entry.tags:
            add(item, "category", term=tag)
        add(item, "content", clean_html(entry.body) + corrections_html(entry), type="html")
    body = ElementTree.tostring(feed, encoding="utf-8", xml_declaration=True)
    return revalidatable(request, body, "application/atom+xml", {"Access-Control-Allow-Origin": "*"})


async def json_feed(request: Request) -> Response:
    blog_id = request.path_params["blog"]
    live = await _live(request, blog_id)
    page_url = _page_url(request, blog_id)
    items = []
    for entry in live.latest:
        item: dict[str, object] = {
            "id": f"{page_url}#{entry.id}",
            "url": f"{page_url}#{entry.id}",
            "title": title_of(entry),
            "content_html": clean_html(entry.body) + corrections_html(entry),
            "content_text": "\n".join(
                [plain_text(entry.body)]
                + [TEXT["corrected"].format(time=_clock(c.at), text=c.text) for c in entry.corrections]
            ),
            "date_published": _iso(entry.time),
            "date_modified": _iso(revised(entry)),
            "authors": [{"name": entry.author.name}],
            "tags": entry.tags,
        }
        if entry.media is not None and entry.media.type == "image":
            item["image"] = entry.media.url
        items.append(item)
    feed = {
        "version": JSON_FEED,
        "title": live.blog.title,
        "description": live.blog.description,
        "home_page_url": page_url,
        "feed_url": f"{page_url}/feed.json",
        "language": live.blog.language,
        "items": items,
    }
    body = json.dumps(feed, ensure_ascii=False).encode()
    return revalidatable(request, body, "application/feed+json", {"Access-Control-Allow-Origin": "*"})


async def oembed(request: Request) -> Response:
    """oEmbed (type ``rich``) for this server's blog pages: an iframe of ``/embed/{blog}``."""
    params = request.query_params
    if params.get("format", "json") != "json":
        raise ApiError(501, "format_not_supported", "only format=json is offered", "format")
    url = urlsplit(params.get("url", ""))
    match = _BLOG_PATH.match(url.path)
    if url.scheme not in ("http", "https") or url.netloc.lower() != request.url.netloc.lower() or not match:
        raise ApiError(404, "not_found", "url is not a live blog page of this server", "url")
    live = await _live(request, match.group(1))
    width = min(OEMBED_WIDTH, _dimension(params, "maxwidth"))
    height = min(OEMBED_HEIGHT, _dimension(params, "maxheight"))
    base = _base(request)
    iframe = _render(
        "oembed.html", src=f"{base}embed/{live.blog.id}", title=live.blog.title, width=width, height=height
    )
    document = {
        "version": "1.0",
        "type": "rich",
        "title": live.blog.title,
        "provider_name": "liveblog",
        "provider_url": base,
        "width": width,
        "height": height,
        "html": iframe.decode().strip(),
    }
    body = json.dumps(document, ensure_ascii=False).encode()
    return revalidatable(request, body, "application/json", {"Access-Control-Allow-Origin": "*"})


def _dimension(params: Any, name: str) -> int:
    raw = params.get(name, "")
    return int(raw) if raw.isascii() and raw.isdigit() and 0 < int(raw) < 100_000 else 100_000


routes = [
    Route("/embed.js", embed_js, methods=["GET"]),
    Route("/embed/{blog}", embed_page, methods=["GET"]),
    Route("/blogs/{blog}", blog_page, methods=["GET"]),
    Route("/blogs/{blog}/feed.atom", atom_feed, methods=["GET"]),
    Route("/blogs/{blog}/feed.json", json_feed, methods=["GET"]),
    Route("/oembed", oembed, methods=["GET"]),
]
