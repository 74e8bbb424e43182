"""The storage contract: what the rest of liveblog may ask of the store, and what it answers.

The edge and the domain talk to storage only through :class:`Storage`; :class:`liveblog.store.Store`
implements it on Redis (or a Redis Cluster). As in centrifuge's broker contract, positions are
cursors (the log's epoch and a stream id), and each method's docstring is its contract: what is
atomic, what it raises, what a caller may rely on.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal, NamedTuple, Protocol

from .cursor import Cursor
from .models import AuditRecord, Blog, Entry, Token, TokenInfo, Tombstone, Version, WebhookEventType


class NotFound(LookupError):
    """The blog or entry does not exist."""


class Conflict(Exception):
    """The precondition failed: the thing exists already, or another writer changed it first."""

    def __init__(self, message: str, current_version: int | None = None):
        super().__init__(message)
        self.current_version = current_version


class BlogEnded(Exception):
    """The blog's coverage has ended; it takes no new entries."""


class Purged(Exception):
    """The Idempotency-Key names an entry that was purged since: the request is not made again."""


class NotReplicated(Exception):
    """The write was made on the primary, but fewer replicas than required confirmed it in time:
    it is not acknowledged, as a failover now could lose it. Retrying a new entry's write with its
    Idempotency-Key is safe: it returns the first entry once replicas confirm it."""


class CursorGone(Exception):
    """The cursor can no longer be resumed (other epoch, or trimmed from the log)."""


class Snapshot(NamedTuple):
    """A blog as of ``cursor``: its JSON, its latest entries' JSON and its pinned entries'."""

    cursor: Cursor
    blog: bytes
    entries: list[bytes]
    pinned: list[bytes]


class Page(NamedTuple):
    """Entries' JSON as of ``cursor``, and the id to ask for the next (older) page with."""

    cursor: Cursor
    entries: list[bytes]
    next: str | None


class LogEvent(NamedTuple):
    """One change-log entry: its stream id, the event JSON (``{"event": …, …}``) and the epoch
    of the log it was written to."""

    stream_id: str
    payload: bytes
    epoch: str

    def with_cursor(self, epoch: str, head: bytes = b"") -> bytes:
        """The event's JSON with ``head`` and its cursor (under the reader's ``epoch``) as the
        first members, spliced in without decoding it: ``{<head>"cursor":"…","event":…}``."""
        return b'{%s"cursor":"%s",%s' % (head, str(Cursor(epoch, self.stream_id)).encode(), self.payload[1:])


class Change(NamedTuple):
    """One change to an entry, as the domain (:mod:`liveblog.entries`) decided it.

    ``entry`` is the record afterwards: public if its status is ``published``, staff-only
    otherwise. ``event`` is what the public log gets (None: nothing, as for any change to
    unpublished work), carrying ``tombstone`` for ``entry.deleted`` and ``entry`` otherwise.
    ``version`` is a new row of the published history, if readers' content changed.
    """

    entry: Entry
    #: The version the change was made to (0: a new entry).
    expected_version: int
    audit: AuditRecord
    event: Literal["entry.created", "entry.updated", "entry.deleted"] | None = None
    tombstone: Tombstone | None = None
    version: Version | None = None
    #: A new publication, which an ended blog refuses (:class:`BlogEnded`).
    opens: bool = False
    #: The entry's tags before the change, so that the tag index forgets the ones it lost.
    previous_tags: tuple[str, ...] = ()
    #: The webhook events it makes (:func:`liveblog.webhooks.alerts_of`), appended to the blog's
    #: outbox in the same step, if the blog has webhooks.
    alerts: tuple[WebhookEventType, ...] = ()


class Purge(NamedTuple):
    """A takedown: the tombstone readers get (if they ever had the entry) and the audit line."""

    tombstone: Tombstone
    audit: AuditRecord
    #: The entry's tags, which the tag index forgets.
    tags: tuple[str, ...] = ()


class Due(NamedTuple):
    """A scheduled entry whose time has come, as the schedule index names it."""

    blog: str
    entry: str
    #: Its score in the index (ms), to settle it with.
    at_ms: int


class Written(NamedTuple):
    """What a mutation returns: the stored JSON and the log position of its public event (None:
    it logged none, as for unpublished work)."""

    json: bytes
    stream_id: str | None
    #: An idempotent retry: ``json`` is the first result and nothing was written.
    replayed: bool = False


class Storage(Protocol):
    """Blogs, entries, tokens and each blog's change log.

    Every mutation is atomic: it checks its precondition, writes the state and appends its event
    to the blog's log in one step, so state and log never disagree and a failed call changes
    nothing. Every read that names a position (snapshot, page, catch-up) is consistent with it.
    Trimming the log never drops an entry: it only makes resuming from before the trim
    impossible (:class:`CursorGone`). When replicas must confirm writes, any mutation may raise
    :class:`NotReplicated` after it was made: it is then not acknowledged, and may be lost.
    """

    async def ping(self) -> None:
        """Return if the storage answers; raise the client's connection error if not."""

    # -- blogs

    async def create_blog(self, blog: Blog, epoch: str) -> bytes:
        """Store a new blog with a new log whose epoch is ``epoch``; its JSON.
        :class:`Conflict` if the id is taken."""

    async def get_blog_json(self, blog_id: str) -> bytes:
        """The blog's stored JSON; :class:`NotFound`."""

    async def get_blogs_json(self, blog_ids: Sequence[str]) -> dict[str, bytes | None]:
        """Each blog's stored JSON (None: the blog does not exist), read together: on one Redis
        in one round trip, whatever the number of blogs."""

    async def get_blog(self, blog_id: str) -> Blog:
        """The blog; :class:`NotFound`."""

    async def replace_blog(self, read: bytes, blog: Blog) -> Written:
        """Write ``blog`` (and log ``blog.updated``) if the stored blog is still exactly ``read``;
        else :class:`Conflict`."""

    async def list_blogs(self, limit: int = 100) -> list[bytes]:
        """The newest ``limit`` blogs' JSON, newest first."""

    # -- entries

    async def write(self, change: Change, owner: str, idempotency: tuple[str, str] | None = None) -> Written:
        """Apply ``change`` if the entry is still at ``change.expected_version`` (for a new entry:
        store it, owned by token ``owner``); else :class:`Conflict` with the current version.

        One step: the record moves between the public and the staff-only state as its status
        says, the public log gets ``change.event`` (only ever about a published entry or its
        tombstone), the version history ``change.version`` and the audit trail ``change.audit``.
        A new entry with ``idempotency=(key digest, request fingerprint)`` whose key was used
        before gets the first result back (``replayed``) and writes nothing; a reused key
        with another fingerprint raises :class:`Conflict`, and one whose entry was purged since
        :class:`Purged` (a retry must not publish a takedown again). :class:`BlogEnded` if
        ``change.opens`` and the blog has ended; :class:`NotFound` for no such blog or entry.
        """

    async def get_entry(self, blog_id: str, entry_id: str) -> tuple[Entry, str | None]:
        """The entry, public or not, and the id of the token that created it; :class:`NotFound`."""

    async def get_public_entry(self, blog_id: str, entry_id: str) -> bytes:
        """A published entry's JSON; :class:`NotFound` for any other (unpublished work is not
        public, whoever asks)."""

    async def list_work(self, blog_id: str) -> list[tuple[Entry, str | None]]:
        """Every unpublished entry of the blog (draft, submitted, scheduled, retracted) and its
        owner, newest first."""

    async def versions(self, blog_id: str, entry_id: str) -> list[bytes]:
        """The entry's published versions' JSON, oldest first (the newest ``versions_kept``)."""

    async def purge(self, blog_id: str, entry_id: str, expected_version: int | None, purge: Purge) -> Written:
        """Delete every trace of the entry's text in one step: its record, every version, its
        idempotent replay (its key stays, holding no text, so that a retry of the entry's POST
        is refused with :class:`Purged` until the key expires), and every event of the public log
        that carried it (so no replay from any cursor returns it). Logs ``entry.deleted`` with
        ``purge.tombstone`` if the entry was ever public, and ``purge.audit``. :class:`Conflict`
        if ``expected_version`` is given and the entry moved; :class:`NotFound`."""

    async def audit(self, blog_id: str, limit: int, before: str | None) -> tuple[list[bytes], str | None]:
        """Up to ``limit`` audit records' JSON, newest first, older than record id ``before``;
        and the id to ask for the next page with, or None."""

    async def audit_after(self, blog_id: str, after: str, limit: int) -> list[tuple[str, bytes]]:
        """Up to ``limit`` audit records after record id ``after`` ("0-0": from the oldest), oldest
        first, with their ids."""

    async def audit_position(self, blog_id: str) -> str:
        """The id of the blog's newest audit record ("0-0" if none)."""

    # -- browser sessions

    async def start_session(self, digest: str, mark: str, idle_seconds: int) -> None:
        """Store a session (its id's digest) for ``mark``, expiring after ``idle_seconds``."""

    async def session(self, digest: str, idle_seconds: int) -> str | None:
        """The session's mark, pushing its expiry back to ``idle_seconds`` from now; None if it
        ended or expired."""

    async def end_session(self, digest: str) -> None:
        """End the session at once."""

    # -- the schedule

    async def schedule(self, blog_id: str, entry_id: str, at: datetime) -> None:
        """Make sure the scheduler looks at the entry no later than ``at`` (an index only: the
        entry's record decides). Called before and after writing a scheduled entry, so that a
        crash in between leaves an early look, never a missed one."""

    async def due(self, limit: int) -> tuple[datetime, list[Due]]:
        """The storage's clock, and up to ``limit`` index members whose time has come."""

    async def settle(self, due: Due, at: datetime | None) -> None:
        """Move ``due`` to ``at`` in the index (None: drop it), unless it was moved meanwhile."""

    # -- reading at a log position

    async def snapshot(self, blog_id: str, size: int) -> Snapshot:
        """The blog, its latest ``size`` entries and the pinned ones, as of the returned cursor."""

    async def page(self, blog_id: str, limit: int, before: str | None, tag: str | None = None) -> Page:
        """Up to ``limit`` entries, newest first by display time, older than entry ``before``
        (from the newest if None), only those tagged ``tag`` if given, as of the returned cursor;
        :class:`NotFound` for an unknown ``before``."""

    async def since(self, blog_id: str, cursor: Cursor, limit: int) -> list[LogEvent]:
        """Up to ``limit`` events after ``cursor``, in log order.

        :class:`CursorGone` when the cursor's epoch is not the blog's, when events after it were
        trimmed from the log, or when it points past the log's end (the log lost its latest
        events): the caller must start over from a snapshot.
        """

    async def position(self, blog_id: str) -> Cursor:
        """Where the blog's log is now; :class:`NotFound`."""

    async def positions(self, blog_ids: Sequence[str]) -> dict[str, Cursor | None]:
        """Where each blog's log is now (None: the blog does not exist), read together: on one
        Redis in one round trip, whatever the number of blogs."""

    async def count_viewers(self, blog_id: str, process_id: str, readers: int, fresh_ms: int) -> int:
        """Report this process's ``readers`` of a blog; the total over every process that
        reported within ``fresh_ms``."""

    # -- tokens

    async def add_token(self, token: Token) -> None:
        """Store a token (its secret hashed by the caller)."""

    async def get_token(self, token_id: str) -> Token | None:
        """The token, or None if there is none (or it was revoked)."""

    async def revoke_token(self, token_id: str) -> bool:
        """Remove the token at once; whether it existed."""

    async def list_tokens(self) -> list[TokenInfo]:
        """Every token, with when it was last used (as far as :meth:`token_used` was told)."""

    async def token_used(self, token_id: str, at: datetime) -> None:
        """Record that the token was used at ``at``."""


class Imported(NamedTuple):
    """One entry to restore (:meth:`liveblog.store.Store.import_blog`): the entry as it was
    exported, the token id that owned it, its published versions (oldest first), and for a
    retracted entry the tombstone readers get if the target had it public."""

    entry: Entry
    owner: str | None
    versions: tuple[Version, ...]
    tombstone: Tombstone | None = None
