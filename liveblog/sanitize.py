"""Reporter HTML, cleaned on write to the contract's small allow-list.

Widgets render entry bodies on other people's sites, so nothing executable may survive: no
scripts, no event handlers, no ``javascript:`` URLs, no iframes. Ammonia (through nh3) parses the
HTML the way a browser does and keeps only what is listed here.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import nh3

#: ``mark`` is a highlighted phrase; ``footer`` is a quote's attribution, kept only inside a
#: ``blockquote`` (elsewhere its text stays and the tag goes).
ALLOWED_TAGS = frozenset({"p", "br", "strong", "em", "mark", "a", "blockquote", "footer", "ul", "ol", "li", "h3"})
#: Media in a body is refused, not dropped: it belongs in the entry's ``media``.
MEDIA_TAGS = frozenset({"img", "picture", "video", "audio", "iframe", "embed", "object", "svg"})
ALLOWED_ATTRIBUTES = {"a": {"href"}}
URL_SCHEMES = frozenset({"http", "https", "mailto"})
#: nh3 adds this to every link; a widget on a partner site must not leak ``window.opener``.
LINK_REL = "noopener noreferrer nofollow"
#: What is left of a tag after stripping, should anything remain: ``<`` before a name, ``/``, ``!`` or ``?``
#: (every ``<`` of a run: removing only the last one of ``<</`` would leave ``</``).
_TAG_START = re.compile(r"<+(?=[A-Za-z/!?])")
_MAX_LAYERS = 8


def clean_text(text: str) -> str:
    """``text`` with any markup removed, for fields that are plain text (headline, names, captions).

    Tags are stripped and entities decoded, repeatedly, so that no layer of escaping
    (``&amp;lt;script&amp;gt;``) can turn back into a tag in a careless consumer. The result holds no
    ``<`` that starts a tag; a lone ``<`` (``"a < b"``, ``"<3"``) stays.
    """
    for _ in range(_MAX_LAYERS):
        stripped = html.unescape(nh3.clean(text, tags=set(), clean_content_tags={"script", "style"}))
        if stripped == text:
            break
        text = stripped
    return _TAG_START.sub("", text).strip()


def clean_html(markup: str) -> str:
    """Return ``markup`` reduced to the allow-list; idempotent (cleaning the output changes nothing).

    One pass can emit markup that a browser re-parses differently (``<a>`` nested in ``<a>``
    comes back as two siblings), so it is cleaned until it stops changing: what is stored is
    exactly what every later parse sees.
    """
    for _ in range(_MAX_LAYERS):
        cleaned = _clean_once(markup)
        if cleaned == markup:
            break
        markup = cleaned
    return markup


class _MediaFinder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: str | None = None

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag in MEDIA_TAGS and self.found is None:
            self.found = tag


def media_in(markup: str) -> str | None:
    """The first media tag (``img``, ``video``, ``iframe``…) in ``markup``, or None."""
    finder = _MediaFinder()
    finder.feed(markup)
    finder.close()
    return finder.found


class _StrayFooters(HTMLParser):
    """Re-emits sanitised HTML without the ``footer`` tags that are not inside a ``blockquote``."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.out: list[str] = []
        self.quotes = 0

    def handle_starttag(self, tag: str, attrs: object) -> None:
        self.quotes += tag == "blockquote"
        if tag != "footer" or self.quotes:
            self.out.append(self.get_starttag_text() or "")

    def handle_startendtag(self, tag: str, attrs: object) -> None:
        self.out.append(self.get_starttag_text() or "")

    def handle_endtag(self, tag: str) -> None:
        if tag != "footer" or self.quotes:
            self.out.append(f"</{tag}>")
        self.quotes -= tag == "blockquote" and self.quotes > 0

    def handle_data(self, data: str) -> None:
        self.out.append(data)

    def handle_entityref(self, name: str) -> None:
        self.out.append(f"&{name};")

    def handle_charref(self, name: str) -> None:
        self.out.append(f"&#{name};")


def _unwrap_stray_footers(markup: str) -> str:
    if "<footer" not in markup:
        return markup
    parser = _StrayFooters()
    parser.feed(markup)
    parser.close()
    return "".join(parser.out)


def _clean_once(markup: str) -> str:
    return _unwrap_stray_footers(_nh3_clean(markup))


def _nh3_clean(markup: str) -> str:
    return nh3.clean(
        markup,
        tags=set(ALLOWED_TAGS),
        clean_content_tags={"script", "style"},
        # "*" empties ammonia's default generic attributes (title, lang) that would otherwise survive.
        attributes={"*": set(), **{tag: set(attrs) for tag, attrs in ALLOWED_ATTRIBUTES.items()}},
        url_schemes=set(URL_SCHEMES),
        link_rel=LINK_REL,
        strip_comments=True,
        # A relative link in a widget would point into the partner's site: only absolute URLs.
        url_relative="deny",
    ).strip()
