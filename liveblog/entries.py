"""Entry rules, free of I/O: how a request becomes an entry, an edit, or a tombstone.

Functions here take the current time as an argument and never touch Redis, so they test without
a server. The store persists what they return, atomically, or refuses if the version moved.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec

from .models import Author, Entry, EntryCreate, EntryPatch, Media, Tombstone, fields_set
from .sanitize import clean_html, clean_text


class NothingLeft(ValueError):
    """A required field held nothing but markup that the sanitiser removed."""

    def __init__(self, field: str):
        super().__init__(f"{field} has no content left after removing HTML that is not allowed")
        self.field = field


def new_id(now: datetime) -> str:
    """A URL-safe entry id that sorts by creation time."""
    return f"{int(now.timestamp() * 1000):011x}{secrets.token_hex(3)}"


def _required(value: str, field: str) -> str:
    if not value:
        raise NothingLeft(field)
    return value


def _optional(text: str | None) -> str | None:
    return None if text is None else clean_text(text) or None


def _clean_author(author: Author) -> Author:
    return Author(
        name=_required(clean_text(author.name), "$.author.name"),
        role=_optional(author.role),
        location=_optional(author.location),
    )


def _clean_media(media: Media | None) -> Media | None:
    if media is None:
        return None
    return msgspec.structs.replace(media, caption=_optional(media.caption), alt=_optional(media.alt))


#: How each field a reporter writes is cleaned: HTML to the allow-list, everything else to text.
_CLEANERS: dict[str, Callable[[Any], object]] = {
    "body": lambda value: _required(clean_html(value), "$.body"),
    "headline": _optional,
    "author": _clean_author,
    "media": _clean_media,
    "tags": lambda tags: [tag for tag in map(clean_text, tags) if tag],
}


def _cleaned(changes: dict[str, Any]) -> dict[str, Any]:
    return {name: _CLEANERS[name](value) if name in _CLEANERS else value for name, value in changes.items()}


def create(blog_id: str, request: EntryCreate, default_author: str, now: datetime) -> Entry:
    """The version-1 entry for ``request``; author defaults to the posting token's name."""
    return Entry(
        id=new_id(now),
        blog=blog_id,
        version=1,
        time=request.time or now,
        created_at=now,
        updated_at=now,
        **_cleaned(
            {
                "author": request.author or Author(name=default_author),
                "headline": request.headline,
                "body": request.body,
                "media": request.media,
                "tags": request.tags,
            }
        ),
        pinned=request.pinned,
        key_event=request.key_event,
    )


def edit(entry: Entry, patch: EntryPatch, now: datetime) -> Entry:
    """``entry`` with the fields ``patch`` sets, one version later."""
    return msgspec.structs.replace(entry, **_cleaned(fields_set(patch)), version=entry.version + 1, updated_at=now)


def tombstone(entry: Entry, now: datetime) -> Tombstone:
    """What readers are told of a deleted entry."""
    return Tombstone(id=entry.id, blog=entry.blog, version=entry.version + 1, updated_at=now)


def score(entry: Entry) -> int:
    """Timeline score: display time in milliseconds."""
    return int(entry.time.timestamp() * 1000)
