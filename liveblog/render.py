"""Entries as readers see them on pages and in feeds, rendered once per version.

An entry's article HTML, its feed content (the body and its corrections), its plain text and
its title depend only on the entry's version and on the blog's language and time zone. They are
rendered once and kept in :data:`RENDERED`, a least-recently-used cache with a byte budget keyed
by exactly those, so a page request renders only entries it has not seen in that version and
never sanitises an unchanged body again.

Every string readers see comes from the blog's catalogue (:mod:`liveblog.i18n`), and every time
is Babel's, in the blog's time zone. Entry bodies are HTML sanitised on write; they are run
through the same sanitiser once more when rendered (what a page shows never depends on how old
the stored HTML is). Every other field is text, escaped by Jinja's autoescape or by :meth:`Words.say`.
"""

from __future__ import annotations

import sys
from datetime import datetime
from functools import lru_cache
from html.parser import HTMLParser
from typing import NamedTuple
from urllib.parse import quote

from jinja2 import Environment, PackageLoader
from markupsafe import Markup, escape

from . import i18n
from .caching import Lru
from .embeds import NAMES
from .models import Blog, Entry
from .sanitize import clean_html, clean_text

#: What the rendered entries may hold in memory at most.
RENDERED_BUDGET = 32 << 20


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class Words:
    """A blog's language and time zone, as pages and feeds say things in them."""

    def __init__(self, language: str, zone: str):
        self.catalogue = i18n.catalogue(language)
        #: The blog's own tag, for ``lang`` attributes ("pt-BR" stays "pt-BR").
        self.language = language
        self.direction = self.catalogue.direction
        self.zone = zone

    def text(self, key: str, **values: object) -> str:
        """The catalogue's ``key`` as text, placeholders filled in."""
        return self.catalogue.text(key, **values)

    def say(self, key: str, **parts: object) -> Markup:
        """The catalogue's ``key`` as HTML: the pattern and every part that is not already
        :class:`~markupsafe.Markup` escaped, so a translation may move a placeholder."""
        pattern: str = self.catalogue.strings[key]
        return escape(pattern).format(**parts)

    def clock(self, moment: datetime) -> str:
        """The time of day in the blog's zone ("17:45"; "5:45 PM" in English)."""
        return self.catalogue.time(moment, self.zone)

    def full(self, moment: datetime) -> str:
        """The date and time in full, with the zone's name: what a tooltip says."""
        return self.catalogue.full_date(moment, self.zone)

    def stamp(self, moment: datetime) -> Markup:
        """``<time>`` with the time of day, the instant in ``datetime`` and the full date and
        zone as its ``title``."""
        return Markup('<time datetime="{}" title="{}">{}</time>').format(
            iso(moment), self.full(moment), self.clock(moment)
        )


@lru_cache(maxsize=256)  # bounded: blogs have few distinct languages and zones
def _words(language: str, zone: str) -> Words:
    return Words(language, zone)


def words(blog: Blog) -> Words:
    return _words(blog.language, blog.timezone)


class _TextOf(HTMLParser):
    _BREAKS = frozenset({"p", "br", "li", "blockquote", "footer", "h3", "ul", "ol"})

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
    """The text of sanitised body HTML: one line per paragraph or list item, spaces collapsed.

    Decoding the body's entities can spell a tag (``&lt;script&gt;`` is the text ``<script>``);
    that text is stripped too, so no title or description made from it carries markup to a
    feed reader that shows titles as HTML."""
    parser = _TextOf()
    parser.feed(html)
    parser.close()
    lines = (" ".join(clean_text(line).split()) for line in "".join(parser.parts).split("\n"))
    return "\n".join(line for line in lines if line)


def _title(headline: str | None, text: str) -> str:
    if headline:
        return headline
    text = " ".join(text.split())
    return text if len(text) <= 110 else text[:109].rstrip() + "…"


def revised(entry: Entry) -> datetime:
    """When readers' view of the entry last changed: its last edit or correction, else its
    display time (never earlier than that). Pinning, key events and tags do not count."""
    edits = [entry.edited_at] if entry.edited_at is not None else []
    return max([entry.time, *edits, *(c.at for c in entry.corrections)])


templates = Environment(loader=PackageLoader("liveblog", "templates"), autoescape=True, trim_blocks=True)
templates.filters.update(iso=iso, query=lambda value: quote(str(value), safe=""))
templates.globals["provider_names"] = NAMES


class Rendered(NamedTuple):
    """One version of an entry, in one language and zone."""

    #: The inside of its ``<article>`` on pages (the page writes the element and its id).
    article: Markup
    #: Feed content: the body, then each correction in a paragraph of its own.
    content: str
    #: The body's plain text (JSON-LD's ``articleBody``).
    text: str
    #: Its corrections as plain lines ("Corrected 17:45: …"), oldest first.
    corrections: tuple[str, ...]
    #: The headline, or the start of the text.
    title: str


def _size(rendered: Rendered) -> int:
    return sum(map(sys.getsizeof, (rendered.article, rendered.content, rendered.text, rendered.title))) + sum(
        map(sys.getsizeof, rendered.corrections)
    )


#: Rendered entries of every blog this process served, by (blog, id, version, updated_at,
#: language, zone): an entry's id and version name its content exactly.
RENDERED: Lru[tuple[str, str, int, datetime, str, str], Rendered] = Lru(RENDERED_BUDGET, _size)


def rendered(entry: Entry, blog: Blog) -> Rendered:
    """``entry`` as readers of ``blog`` see it, from :data:`RENDERED` or rendered now."""
    key = (entry.blog, entry.id, entry.version, entry.updated_at, blog.language, blog.timezone)
    found = RENDERED.get(key)
    if found is None:
        found = _render(entry, words(blog))
        RENDERED.put(key, found)
    return found


def _render(entry: Entry, w: Words) -> Rendered:
    body = clean_html(entry.body)
    text = plain_text(body)
    article = Markup(templates.get_template("_entry.html").render(e=entry, w=w, body=Markup(body)))
    corrections = tuple(w.text("corrected", time=w.clock(c.at), text=c.text) for c in entry.corrections)
    content = body + "".join(
        str(Markup("<p><em>{}</em></p>").format(w.say("corrected", time=w.clock(c.at), text=c.text)))
        for c in entry.corrections
    )
    return Rendered(article, content, text, corrections, _title(entry.headline, text))
