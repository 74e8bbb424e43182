"""Reporter HTML, cleaned on write to the contract's small allow-list.

Widgets render entry bodies on other people's sites, so nothing executable may survive: no
scripts, no event handlers, no ``javascript:`` URLs, no iframes. Ammonia (through nh3) parses the
HTML the way a browser does and keeps only what is listed here.
"""

from __future__ import annotations

import nh3

ALLOWED_TAGS = frozenset({"p", "br", "strong", "em", "a", "blockquote", "ul", "ol", "li", "h3"})
ALLOWED_ATTRIBUTES = {"a": {"href"}}
URL_SCHEMES = frozenset({"http", "https", "mailto"})
#: nh3 adds this to every link; a widget on a partner site must not leak ``window.opener``.
LINK_REL = "noopener noreferrer nofollow"


def clean_html(html: str) -> str:
    """Return ``html`` reduced to the allow-list; idempotent (cleaning the output changes nothing)."""
    return nh3.clean(
        html,
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
