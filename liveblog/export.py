"""``liveblog export`` and ``liveblog import``: one blog as JSON Lines, straight from and to Redis.

The first line is an :class:`Header` naming the schema; then one :class:`BlogRecord`, then each
entry (:class:`EntryRecord`, newest first) followed by its published versions
(:class:`VersionRecord`, oldest first). Unpublished work (draft, submitted, scheduled) is only
written with ``--drafts``; a purged entry left nothing in Redis, so nothing of it is written.
Import reads and checks every line before it writes anything, then restores the blog in one
atomic script (:meth:`liveblog.store.Store.import_blog`), so a bad file changes nothing and a
second import of the same file changes nothing either.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from typing import IO

import msgspec
from msgspec import Struct

from . import __version__
from .entries import score
from .models import SLUG_PATTERN, Actor, Blog, Entry, Tombstone, Version, decode, encoder
from .storage import Imported
from .store import Store

SCHEMA = 1
#: The longest line import accepts: a 20 000-character body with its versions' worth of
#: escaping fits many times over; anything longer is not an export.
MAX_LINE = 4 * 1024 * 1024
#: The most records one import holds (it must check them all before writing any).
MAX_RECORDS = 1_000_000
#: Published versions one entry may bring (the store keeps ``versions_kept``, 100 by default).
MAX_VERSIONS = 1000
_PAGE = 200
#: Who the audit trail says restored an entry.
IMPORTER = Actor(token="import", name="liveblog import", role="system")
_ENTRY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SLUG = re.compile(SLUG_PATTERN)


class Header(Struct, tag="liveblog-export", tag_field="type", kw_only=True):
    schema: int
    blog: str
    exported_at: datetime
    liveblog: str
    drafts: bool


class BlogRecord(Struct, tag="blog", tag_field="type", kw_only=True):
    blog: Blog


class EntryRecord(Struct, tag="entry", tag_field="type", kw_only=True):
    entry: Entry
    #: The id of the token that created it (its permissions follow it), if known.
    owner: str | None = None


class VersionRecord(Struct, tag="version", tag_field="type", kw_only=True):
    entry: str
    version: Version


Record = Header | BlogRecord | EntryRecord | VersionRecord
_decoder = msgspec.json.Decoder(Record)
_header = msgspec.json.Decoder(Header)


class BadExport(Exception):
    """A line of the input is not a valid export record; the message names the line."""


# --- export ------------------------------------------------------------------------------------


async def records(store: Store, blog_id: str, drafts: bool) -> AsyncIterator[Record]:
    """The export of ``blog_id``, record by record, read a page at a time. Raises
    :class:`~liveblog.storage.NotFound` if there is no such blog.

    Each entry is read whole with its versions, and at most once, but the blog is not read at
    one instant. So an export of a blog being worked on is always importable, holding each entry
    as it was when the export reached it: one retracted after it was written stays published in
    the export, one posted after the export began may be missing. Export a quiet (ended) blog for
    a copy of it at one moment; an import never goes back to an older version anyway.
    """
    blog = await store.get_blog(blog_id)
    yield Header(schema=SCHEMA, blog=blog_id, exported_at=datetime.now(UTC), liveblog=__version__, drafts=drafts)
    yield BlogRecord(blog=blog)
    # An entry that moves between the timeline and the work list while the export pages through
    # them would otherwise be met twice, and import refuses a file that holds an entry twice.
    written: set[str] = set()
    before: str | None = None
    while True:
        page = await store.page(blog_id, _PAGE, before)
        for body in page.entries:
            entry = decode(Entry, body)
            if entry.id not in written:
                written.add(entry.id)
                async for record in _entry(store, entry):
                    yield record
        if page.next is None:
            break
        before = page.next
    for entry, _ in await store.list_work(blog_id):
        if (entry.status == "retracted" or drafts) and entry.id not in written:
            written.add(entry.id)
            async for record in _entry(store, entry):
                yield record


async def _entry(store: Store, entry: Entry) -> AsyncIterator[Record]:
    _, owner = await store.get_entry(entry.blog, entry.id)
    yield EntryRecord(entry=entry, owner=owner)
    for body in await store.versions(entry.blog, entry.id):
        yield VersionRecord(entry=entry.id, version=decode(Version, body))


async def export(store: Store, blog_id: str, drafts: bool, out: IO[bytes]) -> int:
    """Write the export of ``blog_id`` to ``out`` as JSON Lines; how many lines."""
    lines = 0
    async for record in records(store, blog_id, drafts):
        out.write(encoder.encode(record) + b"\n")
        lines += 1
    out.flush()
    return lines


# --- import ------------------------------------------------------------------------------------


class Parsed(Struct, kw_only=True):
    """A checked export, ready for :meth:`~liveblog.store.Store.import_blog`."""

    blog: Blog
    entries: list[Imported]


def read_lines(source: IO[bytes]) -> Iterable[tuple[int, bytes]]:
    """Numbered lines of ``source`` (from 1), none longer than :data:`MAX_LINE`."""
    number = 0
    while True:
        line = source.readline(MAX_LINE + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE:
            raise BadExport(f"line {number}: longer than {MAX_LINE} bytes")
        if number > MAX_RECORDS:
            raise BadExport(f"line {number}: more than {MAX_RECORDS} records in one import")
        yield number, line


def parse(lines: Iterable[tuple[int, bytes]]) -> Parsed:
    """Check every line; the blog and its entries in timeline order. Raises :class:`BadExport`
    naming the first bad line."""
    blog: Blog | None = None
    entries: dict[str, EntryRecord] = {}
    versions: dict[str, list[Version]] = {}
    number = 0
    for number, line in lines:
        if not line.strip():
            raise BadExport(f"line {number}: empty")
        try:
            record = (_header if number == 1 else _decoder).decode(line)
        except msgspec.DecodeError as exc:
            if number == 1:
                raise BadExport(f'line 1: not a liveblog export header {{"type":"liveblog-export",…}}: {exc}') from None
            raise BadExport(f"line {number}: {exc}") from None
        match record:
            case Header(schema=schema) if number == 1:
                if schema != SCHEMA:
                    raise BadExport(f"line 1: schema {schema} is not one this liveblog reads ({SCHEMA})")
            case BlogRecord(blog=found) if blog is None:
                if not _SLUG.fullmatch(found.id):
                    raise BadExport(f"line {number}: blog id {found.id!r} is not a slug")
                blog = found
            case BlogRecord():
                raise BadExport(f"line {number}: a second blog record (one export holds one blog)")
            case _ if blog is None:
                raise BadExport(f"line {number}: a record before the blog record")
            case EntryRecord(entry=entry):
                if entry.blog != blog.id:
                    raise BadExport(f"line {number}: entry of blog {entry.blog!r} in the export of {blog.id!r}")
                if not _ENTRY_ID.fullmatch(entry.id):
                    raise BadExport(f"line {number}: entry id {entry.id!r} is not valid")
                if entry.id in entries:
                    raise BadExport(f"line {number}: entry {entry.id!r} appears twice")
                entries[entry.id] = record
                versions[entry.id] = []
            case VersionRecord(entry=entry_id, version=version):
                if entry_id not in entries:
                    raise BadExport(f"line {number}: version of entry {entry_id!r}, which no earlier line holds")
                if len(versions[entry_id]) >= MAX_VERSIONS:
                    raise BadExport(f"line {number}: entry {entry_id!r} has more than {MAX_VERSIONS} versions")
                versions[entry_id].append(version)
            case Header():
                raise BadExport(f"line {number}: a second header")
    if number == 0:
        raise BadExport("line 1: the input is empty, not a liveblog export")
    if blog is None:
        raise BadExport(f"line {number + 1}: the export ends before its blog record")
    restored = [
        Imported(
            entry=item.entry,
            owner=item.owner,
            versions=tuple(versions[entry_id]),
            tombstone=_tombstone(item.entry) if item.entry.status == "retracted" else None,
        )
        for entry_id, item in entries.items()
    ]
    restored.sort(key=lambda item: (score(item.entry), item.entry.id))  # the log in reading order
    return Parsed(blog=blog, entries=restored)


def _tombstone(entry: Entry) -> Tombstone:
    return Tombstone(
        id=entry.id,
        blog=entry.blog,
        version=entry.version,
        updated_at=entry.updated_at,
        retraction_note=entry.retraction_note,
    )


async def restore(store: Store, parsed: Parsed) -> int:
    """Write a checked export; how many records changed (0: it was all there already).
    Scheduled entries are put back on the schedule."""
    changed = await store.import_blog(parsed.blog, secrets.token_hex(4), parsed.entries, IMPORTER)
    for item in parsed.entries:
        if item.entry.status == "scheduled" and item.entry.publish_at is not None:
            await store.schedule(parsed.blog.id, item.entry.id, item.entry.publish_at)
    return changed
