"""The widget's script as served: ``static/embed.js`` with its English strings and the version of
the catalogues filled in, and its comments and indentation left out.

English is built into the script, so an English blog fetches nothing more; any other language
is fetched once from ``/i18n/{language}.json?v=<version>`` (see :mod:`liveblog.i18n`), and the
version changes whenever a catalogue does, so browsers may keep it.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources

from . import i18n

#: Placeholders in ``static/embed.js``.
STRINGS_PLACEHOLDER = b"__LIVEBLOG_STRINGS__"
VERSION_PLACEHOLDER = b"__LIVEBLOG_STRINGS_VERSION__"


def strings_version() -> str:
    """A hash over every catalogue file: changes when any string does."""
    digest = hashlib.blake2b(digest_size=6)
    folder = resources.files("liveblog") / "locales"
    for language in i18n.languages():
        digest.update((folder / f"{language}.json").read_bytes())
    return digest.hexdigest()


def minified(source: bytes) -> bytes:
    """``source`` without whole-line ``//`` comments and leading indentation. The ``/*! … */``
    licence header stays; nothing else changes, so no line's meaning can (the source keeps
    every statement on its own line, and no string spans lines)."""
    lines = (line.strip() for line in source.splitlines())
    return b"\n".join(line for line in lines if line and not line.startswith(b"//")) + b"\n"


def script() -> bytes:
    source = minified((resources.files("liveblog") / "static" / "embed.js").read_bytes())
    english = json.dumps(i18n.catalogue(i18n.DEFAULT).strings, ensure_ascii=False, separators=(",", ":"))
    return source.replace(STRINGS_PLACEHOLDER, english.encode()).replace(
        VERSION_PLACEHOLDER, strings_version().encode()
    )
