"""Bodies written as Markdown or plain text, turned into HTML on write (DESIGN §6 ``body_format``).

The result is sanitised like any HTML body afterwards (:func:`liveblog.sanitize.clean_html`), so
these converters only have to produce paragraphs, emphasis, quotes, lists and links; nothing
they emit is trusted. Markdown is CommonMark (markdown-it-py) with raw HTML off, so ``<`` is
text, and headings of any level become the allow-list's ``h3``. Images are not converted: a
picture belongs in the entry's ``media``, and the Markdown for one stays readable as text.
"""

from __future__ import annotations

import html
import re

from linkify_it import LinkifyIt
from markdown_it import MarkdownIt

_markdown = MarkdownIt("commonmark", {"html": False, "linkify": True}).enable("linkify").disable("image")
_linkify = LinkifyIt()
_HEADING = re.compile(r"<(/?)h[1-6]>")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n+")


def markdown_to_html(text: str) -> str:
    return _HEADING.sub(r"<\1h3>", _markdown.render(text))


def _linked(text: str) -> str:
    """``text`` escaped for HTML, with its URLs (and bare ``www.`` hosts) made links."""
    out, at = [], 0
    for match in _linkify.match(text) or []:
        out.append(html.escape(text[at : match.index]))
        out.append(f'<a href="{html.escape(match.url)}">{html.escape(match.text)}</a>')
        at = match.last_index
    out.append(html.escape(text[at:]))
    return "".join(out)


def text_to_html(text: str) -> str:
    """Plain text as HTML: a blank line starts a paragraph, a newline is a line break."""
    paragraphs = (part.strip() for part in _PARAGRAPH_BREAK.split(text.replace("\r\n", "\n")))
    return "".join(f"<p>{'<br>'.join(map(_linked, part.split(chr(10))))}</p>" for part in paragraphs if part)


def to_html(body: str, body_format: str) -> str:
    """``body`` as (unsanitised) HTML; ``body_format`` is ``html``, ``markdown`` or ``text``."""
    if body_format == "markdown":
        return markdown_to_html(body)
    if body_format == "text":
        return text_to_html(body)
    return body
