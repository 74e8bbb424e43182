"""A blog's latest entries as Atom and as JSON Feed, in the blog's language and time zone.

Entries' content comes pre-rendered (:mod:`liveblog.render`): the sanitised body and its
corrections, the corrections' words and times the blog's. Every other field is text, escaped by
ElementTree (Atom) or carried as a JSON string. Ids stay ``<page>#<entry>`` (a feed reader
shows an entry whose id changed as new); links go to each entry's own page.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from xml.etree import ElementTree

from .models import Blog, Entry
from .render import iso, rendered, revised, words

ATOM = "http://www.w3.org/2005/Atom"
JSON_FEED = "https://jsonfeed.org/version/1.1"
#: Characters XML 1.0 cannot carry at all; JSON strings may hold them, so feeds drop them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def modified(blog: Blog, entries: list[Entry]) -> datetime:
    """When the blog or any of ``entries`` last changed in any way."""
    return max([blog.updated_at, *(e.updated_at for e in entries)])


def _subtitle(blog: Blog, entries: list[Entry]) -> str:
    if blog.description:
        return blog.description
    return words(blog).text("feed_updated", time=words(blog).clock(modified(blog, entries)))


def atom(blog: Blog, entries: list[Entry], page_url: str) -> bytes:
    """The Atom document of ``entries`` (newest first), for the blog page at ``page_url``."""

    def add(parent: ElementTree.Element, tag: str, text: str | None = None, **attrs: str) -> ElementTree.Element:
        element = ElementTree.SubElement(parent, tag, {k: _NOT_XML.sub("", v) for k, v in attrs.items()})
        if text is not None:
            element.text = _NOT_XML.sub("", text)
        return element

    feed = ElementTree.Element("feed", xmlns=ATOM)
    feed.set("xml:lang", blog.language)
    add(feed, "id", page_url)
    add(feed, "title", blog.title)
    add(feed, "subtitle", _subtitle(blog, entries))
    add(feed, "updated", iso(modified(blog, entries)))
    add(feed, "link", rel="alternate", type="text/html", href=page_url)
    add(feed, "link", rel="self", type="application/atom+xml", href=f"{page_url}/feed.atom")
    for entry in entries:
        shown = rendered(entry, blog)
        item = add(feed, "entry")
        add(item, "id", f"{page_url}#{entry.id}")
        add(item, "title", shown.title)
        add(item, "published", iso(entry.time))
        add(item, "updated", iso(revised(entry)))
        add(item, "link", rel="alternate", type="text/html", href=f"{page_url}/entries/{entry.id}")
        add(add(item, "author"), "name", entry.author.name)
        for tag in entry.tags:
            add(item, "category", term=tag)
        add(item, "content", shown.content, type="html")
    document: bytes = ElementTree.tostring(feed, encoding="utf-8", xml_declaration=True)
    return document


def json_feed(blog: Blog, entries: list[Entry], page_url: str) -> bytes:
    """The JSON Feed 1.1 document of ``entries`` (newest first)."""
    items = []
    for entry in entries:
        shown = rendered(entry, blog)
        item: dict[str, object] = {
            "id": f"{page_url}#{entry.id}",
            "url": f"{page_url}/entries/{entry.id}",
            "title": shown.title,
            "content_html": shown.content,
            "content_text": "\n".join([shown.text, *shown.corrections]),
            "date_published": iso(entry.time),
            "date_modified": iso(revised(entry)),
            "authors": [{"name": entry.author.name}],
            "tags": entry.tags,
        }
        if entry.media is not None and entry.media.type == "image":
            item["image"] = entry.media.url
        items.append(item)
    feed = {
        "version": JSON_FEED,
        "title": blog.title,
        "description": _subtitle(blog, entries),
        "home_page_url": page_url,
        "feed_url": f"{page_url}/feed.json",
        "language": blog.language,
        "items": items,
    }
    return json.dumps(feed, ensure_ascii=False).encode()
