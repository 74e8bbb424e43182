"""The storage contract: what the rest of liveblog may ask of the store, and what it answers.

The edge and the domain talk to storage only through :class:`Storage`; :class:`liveblog.store.Store`
implements it on Redis (or a Redis Cluster). As in centrifuge's broker contract, positions are
cursors (the log's epoch and a stream id), and each method's docstring is its contract: what is
atomic, what it raises, what a caller may rely on.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

from .cursor import Cursor
from .models import Blog, Entry, Token, Tombstone


class NotFound(LookupError):
    """The blog or entry does not exist."""


class Conflict(Exception):
    """The precondition failed: the thing exists already, or another writer changed it first."""

    def __init__(self, message: str, current_version: int | None = None):
        super().__init__(message)
        self.current_version = current_version


class BlogEnded(Exception):
    """The blog's coverage has ended; it takes no new entries."""


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


class Written(NamedTuple):
    """What a mutation returns: the stored JSON and the log position of its event."""

    json: bytes
    stream_id: str | None


class Storage(Protocol):
    """Blogs, entries, tokens and each blog's change log.

    Every mutation is atomic: it checks its precondition, writes the state and appends its event
    to the blog's log in one step, so state and log never disagree and a failed call changes
    nothing. Every read that names a position (snapshot, page, catch-up) is consistent with it.
    Trimming the log never drops an entry: it only makes resuming from before the trim
    impossible (:class:`CursorGone`).
    """

    async def ping(self) -> None:
        """Return if the storage answers; raise the client's connection error if not."""

    # -- blogs

    async def create_blog(self, blog: Blog, epoch: str) -> bytes:
        """Store a new blog with a new log whose epoch is ``epoch``; its JSON.
        :class:`Conflict` if the id is taken."""

    async def get_blog_json(self, blog_id: str) -> bytes:
        """The blog's stored JSON; :class:`NotFound`."""

    async def get_blog(self, blog_id: str) -> Blog:
        """The blog; :class:`NotFound`."""

    async def replace_blog(self, read: bytes, blog: Blog) -> Written:
        """Write ``blog`` (and log ``blog.updated``) if the stored blog is still exactly ``read``;
        else :class:`Conflict`."""

    async def list_blogs(self, limit: int = 100) -> list[bytes]:
        """The newest ``limit`` blogs' JSON, newest first."""

    # -- entries

    async def create_entry(self, entry: Entry, owner: str, idempotency: tuple[str, str] | None = None) -> Written:
        """Store a new entry owned by token ``owner`` and log ``entry.created``.

        With ``idempotency=(key digest, request fingerprint)``, a retry gets the first result back
        (``stream_id`` None) and writes nothing; a reused key with a different fingerprint raises
        :class:`Conflict`. :class:`BlogEnded` if the blog's coverage has ended; :class:`NotFound`.
        """

    async def get_entry(self, blog_id: str, entry_id: str) -> tuple[Entry, str | None]:
        """The entry and the id of the token that created it; :class:`NotFound`."""

    async def replace_entry(self, expected_version: int, entry: Entry) -> Written:
        """Write ``entry`` (and log ``entry.updated``) if the stored one is at
        ``expected_version``; else :class:`Conflict` with the current version. :class:`NotFound`."""

    async def delete_entry(self, expected_version: int, tombstone: Tombstone) -> Written:
        """Remove the entry (and log ``entry.deleted`` with ``tombstone``) if it is at
        ``expected_version``; else :class:`Conflict`. :class:`NotFound`."""

    # -- reading at a log position

    async def snapshot(self, blog_id: str, size: int) -> Snapshot:
        """The blog, its latest ``size`` entries and the pinned ones, as of the returned cursor."""

    async def page(self, blog_id: str, limit: int, before: str | None) -> Page:
        """Up to ``limit`` entries, newest first by display time, older than entry ``before``
        (from the newest if None), as of the returned cursor; :class:`NotFound` for an unknown
        ``before``."""

    async def since(self, blog_id: str, cursor: Cursor, limit: int) -> list[LogEvent]:
        """Up to ``limit`` events after ``cursor``, in log order.

        :class:`CursorGone` when the cursor's epoch is not the blog's, when events after it were
        trimmed from the log, or when it points past the log's end (the log lost its latest
        events): the caller must start over from a snapshot.
        """

    async def position(self, blog_id: str) -> Cursor:
        """Where the blog's log is now; :class:`NotFound`."""

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
