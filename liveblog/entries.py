"""Entry rules, free of I/O: how a request becomes an entry, an edit, or a tombstone.

Functions here take the current time as an argument and never touch Redis, so they test without
a server. The store persists what they return, atomically, or refuses if the version moved.
"""

from __future__ import annotations

import secrets
from datetime import datetime

import msgspec

from .models import Author, Entry, EntryCreate, EntryPatch, Tombstone, fields_set
from .sanitize import clean_html


class EmptyBody(ValueError):
    """The body held nothing but markup that the sanitiser removed."""


def new_id(now: datetime) -> str:
    """A URL-safe entry id that sorts by creation time."""
    return f"{int(now.timestamp() * 1000):011x}{secrets.token_hex(3)}"


def _clean_body(html: str) -> str:
    body = clean_html(html)
    if not body:
        raise EmptyBody("body has no content left after removing disallowed HTML")
    return body


def create(blog_id: str, request: EntryCreate, default_author: str, now: datetime) -> Entry:
    """The version-1 entry for ``request``; author defaults to the posting token's name."""
    return Entry(
        id=new_id(now),
        blog=blog_id,
        version=1,
        time=request.time or now,
        created_at=now,
        updated_at=now,
        author=request.author or Author(name=default_author),
        headline=request.headline,
        body=_clean_body(request.body),
        media=request.media,
        tags=request.tags,
        pinned=request.pinned,
        key_event=request.key_event,
    )


def edit(entry: Entry, patch: EntryPatch, now: datetime) -> Entry:
    """``entry`` with the fields ``patch`` sets, one version later."""
    changes = fields_set(patch)
    if "body" in changes:
        changes["body"] = _clean_body(changes["body"])
    return msgspec.structs.replace(entry, **changes, version=entry.version + 1, updated_at=now)


def tombstone(entry: Entry, now: datetime) -> Tombstone:
    """What readers are told of a deleted entry."""
    return Tombstone(id=entry.id, blog=entry.blog, version=entry.version + 1, updated_at=now)


def score(entry: Entry) -> int:
    """Timeline score: display time in milliseconds."""
    return int(entry.time.timestamp() * 1000)
