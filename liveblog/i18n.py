"""Readers' languages: one catalogue file per language, plurals and dates from CLDR.

Every reader-facing string (widget, pages, embed page, feeds, oEmbed) is a key of
``liveblog/locales/en.json`` (the reporter console's are in its ``"console"`` section);
``<language>.json`` beside it translates some or all of them.
Adding a language is adding one such file. A key a catalogue lacks falls back to English, so a
reader never sees a key. A plural is ``{"one": …, "other": …}`` with the CLDR categories of the
language (``zero``, ``one``, ``two``, ``few``, ``many``, ``other``); the server picks one with
Babel, the widget with ``Intl.PluralRules``. Dates and times are Babel's on the server, in the
blog's time zone, and ``Intl.DateTimeFormat`` in the widget, in the reader's.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError
from babel.dates import format_datetime, format_time
from babel.numbers import format_decimal
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .caching import revalidatable

DEFAULT = "en"
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
_FILE = re.compile(r"^([a-z]{2,3}(?:-[A-Za-z0-9]{2,8})*)\.json\Z")


#: The section of a catalogue file that holds the reporter console's strings (staff-facing, so
#: not in :attr:`Catalogue.strings`; see :func:`console_strings`).
CONSOLE = "console"


def _file(language: str) -> dict[str, Any]:
    text = (resources.files("liveblog") / "locales" / f"{language}.json").read_text(encoding="utf-8")
    strings: dict[str, Any] = json.loads(text)
    return strings


def _load(language: str) -> dict[str, Any]:
    """A catalogue's reader-facing strings."""
    strings = _file(language)
    strings.pop(CONSOLE, None)
    return strings


def console_strings(language: str) -> dict[str, str]:
    """A catalogue's strings for the reporter console (empty if it has none: English is used)."""
    section: dict[str, str] = _file(language).get(CONSOLE, {})
    return section


def languages() -> list[str]:
    """The languages with a catalogue file, English first."""
    folder = resources.files("liveblog") / "locales"
    found = sorted(match.group(1) for item in folder.iterdir() if (match := _FILE.match(item.name)))
    return [DEFAULT, *(language for language in found if language != DEFAULT)]


_KNOWN = frozenset(languages())


def resolve(tag: str) -> str:
    """The catalogue for a language tag: itself, else its parent ("pt-BR" → "pt"), else English."""
    parts = tag.split("-")
    for size in range(len(parts), 0, -1):
        candidate = "-".join(parts[:size])
        if candidate in _KNOWN:
            return candidate
    return DEFAULT


class Catalogue:
    """The strings, plural rules and date formats of one language."""

    def __init__(self, language: str):
        self.language = language
        base = _load(DEFAULT)
        own = _load(language) if language != DEFAULT else {}
        self.strings: dict[str, Any] = {**base, **{key: value for key, value in own.items() if key in base}}
        try:
            self.locale = Locale.parse(language, sep="-")
        except (UnknownLocaleError, ValueError):
            self.locale = Locale.parse(DEFAULT)
        #: ``rtl`` for Arabic and the other right-to-left scripts.
        self.direction = "rtl" if self.locale.character_order == "right-to-left" else "ltr"

    def text(self, key: str, **values: object) -> str:
        """The string ``key`` with its ``{placeholders}`` filled in."""
        return _fill(self.strings[key], values)

    def plural(self, key: str, n: int, **values: object) -> str:
        """The plural form of ``key`` that CLDR's rules pick for ``n`` (``{n}`` is filled in)."""
        forms: dict[str, str] = self.strings[key]
        form = forms.get(self.locale.plural_form(n)) or forms["other"]
        return _fill(form, {"n": format_decimal(n, locale=self.locale), **values})

    def time(self, moment: datetime, zone: str) -> str:
        """``moment``'s time of day, as the language writes it ("17:45", "5:45 PM"), in ``zone``."""
        return format_time(moment, "short", tzinfo=ZoneInfo(zone), locale=self.locale)

    def full_date(self, moment: datetime, zone: str) -> str:
        """``moment`` in full, with the date and the zone's name, for tooltips."""
        return format_datetime(moment, "full", tzinfo=ZoneInfo(zone), locale=self.locale)

    def widget_strings(self) -> bytes:
        """What the widget fetches: every string (English where this language has none), and the
        language and direction it lays out in."""
        document = {"lang": self.language, "dir": self.direction, "strings": self.strings}
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def _fill(template: str, values: dict[str, object]) -> str:
    return _PLACEHOLDER.sub(lambda match: str(values.get(match.group(1), match.group(0))), template)


def catalogue(tag: str) -> Catalogue:
    """The catalogue for a blog's ``language`` tag (see :func:`resolve`)."""
    return _catalogue(resolve(tag))


@cache  # bounded: one per catalogue file, as resolve() only ever names those
def _catalogue(language: str) -> Catalogue:
    return Catalogue(language)


def placeholders(template: str) -> set[str]:
    return set(_PLACEHOLDER.findall(template))


#: Catalogues change only with a deploy; the widget asks for them with ``?v=<version>``.
STRINGS_CACHE = "public, max-age=3600, stale-while-revalidate=86400"
_TAG = re.compile(r"^[a-z]{2,3}(?:-[A-Za-z0-9]{2,8}){0,3}\Z")


async def strings(request: Request) -> Response:
    """``GET /i18n/{language}.json``: the widget's strings for a blog's language (see
    :meth:`Catalogue.widget_strings`); any well-formed tag answers, falling back as
    :func:`resolve` does."""
    tag: str = request.path_params["language"]
    if not _TAG.match(tag):
        return Response(status_code=404)
    headers = {"Cache-Control": STRINGS_CACHE, "Access-Control-Allow-Origin": "*"}
    return revalidatable(request, catalogue(tag).widget_strings(), "application/json", headers)


routes = [Route("/i18n/{language}.json", strings, methods=["GET"])]
