"""Entry rules, free of I/O: how a request becomes an entry, an edit, or a tombstone.

Functions here take the caller and the current time as arguments and never touch Redis, so they
test without a server. Each returns a :class:`~liveblog.storage.Change`: the new record, what the
public log and the version history get, and the audit line. The store persists it atomically,
or refuses if the version moved. The workflow (DESIGN §6) is here: who may create an entry in
which status, which status changes exist, and which fields go with which change.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec

from .auth import TRANSITIONS, Principal
from .embeds import NAMES, embed_of
from .formats import to_html
from .models import (
    MAX_CORRECTIONS,
    Actor,
    AuditAction,
    AuditRecord,
    Author,
    Byline,
    Correction,
    Entry,
    EntryCreate,
    EntryPatch,
    Media,
    Related,
    Tombstone,
    Version,
    fields_set,
)
from .sanitize import clean_html, clean_text, media_in
from .storage import Change, Purge
from .webhooks import alerts_of

#: The fields whose change readers see as an edit ("updated"); pinning, key events and tags are not.
CONTENT = ("headline", "body", "media", "related")


class Refused(Exception):
    """The caller may not make this change, or the change does not go with the entry's status.

    ``status`` is the HTTP status the edge answers with (403, 409 or 422) and ``field`` the
    JSON path it concerns, if any.
    """

    def __init__(self, status: int, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


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


def clean_body(body: str, body_format: str) -> str:
    if body_format == "html" and (tag := media_in(body)) is not None:
        message = f"a body holds no <{tag}>: put an image, a video or an embed in the entry's media"
        raise Refused(422, "media_in_body", message, "$.body")
    return _required(clean_html(to_html(body, body_format)), "$.body")


def _clean_media(media: Media | None) -> Media | None:
    if media is None:
        return None
    provider = frame = None
    if media.type == "embed":
        embed = embed_of(media.url)
        if embed is None:
            known = ", ".join(NAMES.values())
            raise Refused(
                422, "unknown_provider", f"embeds come from {known}; link other pages in the body", "$.media.url"
            )
        provider, frame = embed
    return msgspec.structs.replace(
        media,
        caption=_optional(media.caption),
        alt=_optional(media.alt),
        credit=_optional(media.credit),
        provider=provider,
        embed_url=frame,
    )


def _clean_related(links: list[Related]) -> list[Related]:
    return [
        msgspec.structs.replace(link, title=clean_text(link.title) or link.url, kicker=_optional(link.kicker))
        for link in links
    ]


#: How each field a reporter writes is cleaned: HTML to the allow-list, everything else to text.
_CLEANERS: dict[str, Callable[[Any], object]] = {
    "headline": _optional,
    "media": _clean_media,
    "related": _clean_related,
    "tags": lambda tags: [tag for tag in map(clean_text, tags) if tag],
}


def _cleaned(changes: dict[str, Any]) -> dict[str, Any]:
    """``changes`` as stored: cleaned, and a ``body`` in ``body_format`` turned into HTML."""
    body_format = changes.pop("body_format", "html")
    cleaned = {name: _CLEANERS[name](value) if name in _CLEANERS else value for name, value in changes.items()}
    if "body" in changes:
        cleaned["body"] = clean_body(changes["body"], body_format)
    return cleaned


def _byline(byline: Byline | None, who: Principal, current: str | None = None) -> Author:
    """The entry's author: editors sign any name, everyone else their token's (DESIGN §6). A
    byline without a name keeps the ``current`` one (an edit), or is signed by ``who``."""
    byline = byline or Byline()
    if byline.name is not None and byline.name != who.name and not who.is_editor:
        raise Refused(403, "forbidden", "bylines carry the token's own name: leave author.name out", "$.author.name")
    return _clean_author(Author(name=byline.name or current or who.name, role=byline.role, location=byline.location))


def _actor(who: Principal) -> Actor:
    return Actor(token=who.token_id, name=who.name, role=who.role)


#: The scheduler, as the audit trail names it when it publishes a scheduled entry.
SCHEDULER = Actor(token="scheduler", name="scheduler", role="system")


def _audit(actor: Actor, action: AuditAction, before: Entry | None, after: Entry, now: datetime) -> AuditRecord:
    moved = before is not None and before.status != after.status
    return AuditRecord(
        at=now,
        actor=actor,
        action=action,
        entry=after.id,
        version=after.version,
        status=after.status,
        from_status=before.status if moved and before is not None else None,
        review_note=after.review_note if moved and after.status == "draft" else None,
    )


def _version(entry: Entry, now: datetime, correction: str | None = None) -> Version:
    return Version(
        version=entry.version,
        edited_at=now,
        headline=entry.headline,
        body=entry.body,
        media=entry.media,
        related=entry.related,
        correction=correction,
    )


def _content_changed(before: Entry | Version, after: Entry) -> bool:
    return any(getattr(before, name) != getattr(after, name) for name in CONTENT)


def create(blog_id: str, request: EntryCreate, who: Principal, now: datetime) -> Change:
    """A new entry (version 1) in the status asked for, if ``who`` may create one so."""
    status = request.status
    if not who.can_create(status):
        raise Refused(403, "forbidden", f"a {who.role} may not create an entry with status {status!r}", "$.status")
    if status == "scheduled" and request.publish_at is None:
        raise Refused(422, "invalid", '"status":"scheduled" needs "publish_at"', "$.publish_at")
    if status != "scheduled" and request.publish_at is not None:
        raise Refused(422, "invalid", 'publish_at goes only with "status":"scheduled"', "$.publish_at")
    published = status == "published"
    entry = Entry(
        id=new_id(now),
        blog=blog_id,
        version=1,
        time=request.time or now,
        created_at=now,
        updated_at=now,
        author=_byline(request.author, who),
        **_cleaned(
            {
                "headline": request.headline,
                "body": request.body,
                "body_format": request.body_format,
                "media": request.media,
                "related": request.related,
                "tags": request.tags,
            }
        ),
        pinned=request.pinned,
        key_event=request.key_event,
        status=status,
        published_at=now if published else None,
        publish_at=request.publish_at,
    )
    change = Change(
        entry=entry,
        expected_version=0,
        event="entry.created" if published else None,
        version=_version(entry, now) if published else None,
        audit=_audit(_actor(who), "create", None, entry, now),
        opens=published,
    )
    return change._replace(alerts=alerts_of(None, change))


def edit(
    entry: Entry, owner: str | None, patch: EntryPatch, who: Principal, now: datetime, shown: Version | None = None
) -> Change:
    """``patch`` applied to ``entry`` by ``who``: its fields, and its status as DESIGN §6 allows.

    ``shown`` is the entry's latest published version, what readers last had of it: a restore
    is a new version if the entry is not that any more (it may have been edited while retracted).

    Raises :class:`Refused`: 403 for what the role may not do, 409 for a status change there
    is no such thing as, 422 for a field that does not go with the change.
    """
    change = _edit(entry, owner, patch, who, now, shown)
    return change._replace(previous_tags=tuple(entry.tags), alerts=alerts_of(entry, change))


def _edit(
    entry: Entry, owner: str | None, patch: EntryPatch, who: Principal, now: datetime, shown: Version | None
) -> Change:
    changes = fields_set(patch)
    target: str = changes.pop("status", entry.status)
    correction: str | None = changes.pop("correction", None)
    review_note: str | None = changes.pop("review_note", None)
    retraction_note: str | None = changes.pop("retraction_note", None)
    if not who.can_edit(entry.blog, owner, entry.status):
        raise Refused(403, "forbidden", _why_not(who, entry.status))
    moving = target != entry.status
    if moving and (entry.status, target) not in TRANSITIONS:
        raise Refused(409, "invalid_transition", f"an entry cannot go from {entry.status!r} to {target!r}", "$.status")
    if moving and not who.can_move(entry.status, target):
        raise Refused(403, "forbidden", f"a {who.role} may not move an entry from {entry.status!r} to {target!r}")
    _check_notes(entry, target, correction, review_note, retraction_note, who)
    if "publish_at" in changes and not who.is_editor:
        # Moving the time is scheduling; moving it to now would be publishing a scheduled entry.
        raise Refused(403, "forbidden", "only editors schedule entries", "$.publish_at")
    if "publish_at" in changes and target != "scheduled":
        raise Refused(422, "invalid", "publish_at goes only with a scheduled entry", "$.publish_at")
    if target == "scheduled" and entry.status != "scheduled" and "publish_at" not in changes:
        raise Refused(422, "invalid", 'scheduling needs "publish_at"', "$.publish_at")
    if "author" in changes:
        changes["author"] = _byline(changes["author"], who, entry.author.name)
    after = msgspec.structs.replace(
        entry, **_cleaned(changes), version=entry.version + 1, updated_at=now, status=target
    )
    if target == "published":
        return _to_published(entry, after, correction, who, now, shown)
    if target == "retracted" and moving:
        after = msgspec.structs.replace(after, retraction_note=retraction_note)
        return retract_change(entry, after, _actor(who), now)
    after = msgspec.structs.replace(
        after,
        review_note=review_note if moving and target == "draft" else after.review_note,
        publish_at=after.publish_at if target == "scheduled" else None,
    )
    action: AuditAction = "status" if moving else "edit"
    return Change(entry=after, expected_version=entry.version, audit=_audit(_actor(who), action, entry, after, now))


def _why_not(who: Principal, status: str) -> str:
    if who.role == "contributor":
        return "contributors change only their own drafts and submissions"
    if who.role == "reporter":
        return "reporters change only their own entries, and an editor restores a retracted one"
    return f"this token may not change entries in this blog ({status})"


def _check_notes(
    entry: Entry,
    target: str,
    correction: str | None,
    review_note: str | None,
    retraction_note: str | None,
    who: Principal,
) -> None:
    if correction is not None:
        if not entry.status == target == "published":
            raise Refused(422, "invalid", "only a published entry is corrected; edit a draft instead", "$.correction")
        if len(entry.corrections) >= MAX_CORRECTIONS:
            raise Refused(422, "invalid", f"an entry keeps at most {MAX_CORRECTIONS} corrections", "$.correction")
        if not clean_text(correction):
            raise NothingLeft("$.correction")
    if review_note is not None:
        if (entry.status, target) != ("submitted", "draft"):
            raise Refused(422, "invalid", "review_note goes with returning a submission to draft", "$.review_note")
        if not who.is_editor:
            raise Refused(403, "forbidden", "only editors write review notes", "$.review_note")
    if retraction_note is not None and (entry.status, target) != ("published", "retracted"):
        raise Refused(422, "invalid", "retraction_note goes with retracting a published entry", "$.retraction_note")


def _to_published(
    before: Entry, after: Entry, correction: str | None, who: Principal, now: datetime, shown: Version | None
) -> Change:
    """An edit of a published entry, or an entry going public (approved, published, restored)."""
    actor = _actor(who)
    if before.status == "published":
        changed = _content_changed(before, after)
        corrections = after.corrections
        if correction is not None:
            corrections = [*corrections, Correction(text=clean_text(correction), at=now, version=after.version)]
        after = msgspec.structs.replace(after, edited_at=now if changed else before.edited_at, corrections=corrections)
        row = _version(after, now, corrections[-1].text if correction is not None else None)
        return Change(
            entry=after,
            expected_version=before.version,
            event="entry.updated",
            version=row if changed or correction is not None else None,
            audit=_audit(actor, "edit", before, after, now),
        )
    if before.status == "retracted":
        changed = _content_changed(shown or before, after)
        after = msgspec.structs.replace(after, retraction_note=None, edited_at=now if changed else before.edited_at)
        return Change(
            entry=after,
            expected_version=before.version,
            event="entry.created",
            version=_version(after, now) if changed else None,
            audit=_audit(actor, "restore", before, after, now),
        )
    return go_out(before, after, actor, now)


def go_out(before: Entry, after: Entry, actor: Actor, now: datetime) -> Change:
    """``before`` (a draft, a submission or a scheduled entry) made public as ``after``, now.

    The display time becomes the moment of publication unless it was set by hand.
    """
    after = msgspec.structs.replace(
        after,
        status="published",
        time=now if before.time == before.created_at else after.time,
        published_at=now,
        publish_at=None,
        review_note=None,
    )
    return Change(
        entry=after,
        expected_version=before.version,
        event="entry.created",
        version=_version(after, now),
        audit=_audit(actor, "status", before, after, now),
        opens=True,
    )


def publish_due(entry: Entry, now: datetime) -> Change:
    """The scheduler's change: a scheduled entry whose time has come goes out."""
    after = msgspec.structs.replace(entry, version=entry.version + 1, updated_at=now)
    change = go_out(entry, after, SCHEDULER, now)
    return change._replace(previous_tags=tuple(entry.tags), alerts=alerts_of(entry, change))


def retract(entry: Entry, owner: str | None, note: str | None, who: Principal, now: datetime) -> Change:
    """``DELETE`` without purge: a published entry leaves the public, with an optional note."""
    if not who.can_edit(entry.blog, owner, entry.status):
        raise Refused(403, "forbidden", _why_not(who, entry.status))
    if entry.status != "published":
        message = f"only a published entry can be retracted; this one is {entry.status!r}"
        raise Refused(409, "invalid_transition", message)
    after = msgspec.structs.replace(
        entry, version=entry.version + 1, updated_at=now, status="retracted", retraction_note=note and clean_text(note)
    )
    change = retract_change(entry, after, _actor(who), now)
    return change._replace(previous_tags=tuple(entry.tags), alerts=alerts_of(entry, change))


def retract_change(before: Entry, after: Entry, actor: Actor, now: datetime) -> Change:
    note = after.retraction_note and clean_text(after.retraction_note) or None
    after = msgspec.structs.replace(after, retraction_note=note)
    return Change(
        entry=after,
        expected_version=before.version,
        event="entry.deleted",
        tombstone=Tombstone(id=after.id, blog=after.blog, version=after.version, updated_at=now, retraction_note=note),
        audit=_audit(actor, "retract", before, after, now),
    )


def purge(entry: Entry, who: Principal, now: datetime) -> Purge:
    """A takedown of ``entry``: what readers are told, and the audit line, which keeps no text."""
    if not who.can_purge(entry.blog):
        raise Refused(403, "forbidden", "only editors of this blog and admins purge entries")
    gone = Tombstone(id=entry.id, blog=entry.blog, version=entry.version + 1, updated_at=now)
    record = AuditRecord(
        at=now, actor=_actor(who), action="purge", entry=entry.id, version=gone.version, status=entry.status
    )
    return Purge(tombstone=gone, audit=record, tags=tuple(entry.tags))


def score(entry: Entry) -> int:
    """Timeline score: display time in milliseconds."""
    return int(entry.time.timestamp() * 1000)
