"""Blog rules, free of I/O: creating a blog and applying an editor's patch."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from .entries import Refused
from .models import Blog, BlogCreate, BlogPatch, fields_set
from .sanitize import clean_text


@lru_cache(maxsize=512)
def _is_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _checked_zone(name: str) -> str:
    # Only staff create or edit blogs, and the cache holds 512 names at most.
    if not _is_zone(name):
        raise Refused(422, "invalid", f"{name!r} is not an IANA time zone, like 'Europe/Madrid'", "$.timezone")
    return name


def create(request: BlogCreate, now: datetime) -> Blog:
    return Blog(
        id=request.id,
        title=clean_text(request.title) or request.id,
        description=clean_text(request.description),
        status="live",
        created_at=now,
        updated_at=now,
        coverage_start=now,
        language=request.language,
        embed_origins=request.embed_origins,
        timezone=_checked_zone(request.timezone),
        brand=request.brand,
    )


def edit(blog: Blog, patch: BlogPatch, now: datetime) -> Blog:
    """``blog`` with the patch applied; ending coverage stamps ``coverage_end``, reopening clears it."""
    changes = fields_set(patch)
    if "timezone" in changes:
        _checked_zone(changes["timezone"])
    for field in ("title", "description"):
        if field in changes:
            changes[field] = clean_text(changes[field])
    if changes.get("title") == "":
        changes["title"] = blog.id
    status = changes.get("status", blog.status)
    if status == "ended" and blog.status != "ended":
        changes["coverage_end"] = now
    elif status == "live":
        changes["coverage_end"] = None
    return msgspec.structs.replace(blog, **changes, updated_at=now)
