"""Every Redis key liveblog uses, in one place.

All keys of one blog share the hash tag ``{blog_id}`` so that a blog lives in one Redis Cluster
slot and one Lua script may touch all of them. Global indexes are not slot-bound.
"""

from __future__ import annotations

PREFIX = "liveblog"

#: Sorted set: blog id scored by creation time (ms).
BLOGS = f"{PREFIX}:blogs"
#: Hash: token id -> token record (msgspec JSON, secret stored hashed).
TOKENS = f"{PREFIX}:tokens"
#: Hash: token id -> when it was last used (RFC 3339), refreshed at most once a minute.
TOKENS_USED = f"{PREFIX}:tokens-used"


def session(digest: str) -> str:
    """String with TTL: a browser session (by its id's SHA-256) -> the token id it signs in as
    (``admin:…`` for the admin token); the TTL is the idle expiry."""
    return f"{PREFIX}:session:{digest}"


#: String: written by each tailer before it asks ``WAIT`` whether replicas have what it read (a
#: ``WAIT`` counts only what its own connection wrote); its value means nothing.
FENCE = f"{PREFIX}:fence"

#: Sorted set: ``"<blog> <entry>"`` of every scheduled entry, scored by its publish time (ms).
#: An index only: the entry's own record decides whether and when it goes out, so a stale
#: member costs one look and is dropped.
SCHEDULE = f"{PREFIX}:schedule"


def _blog(blog_id: str, name: str) -> str:
    return f"{PREFIX}:{{{blog_id}}}:{name}"


def log(blog_id: str) -> str:
    """Stream: the blog's change log; its ids are the cursors readers resume from."""
    return _blog(blog_id, "log")


def blog_of(log_key: str) -> str:
    """The blog id of a ``log(blog_id)`` key."""
    return log_key[len(PREFIX) + 2 : -len("}:log")]


def entries(blog_id: str) -> str:
    """Hash: entry id -> current entry JSON."""
    return _blog(blog_id, "entries")


def timeline(blog_id: str) -> str:
    """Sorted set: entry id scored by display time (ms)."""
    return _blog(blog_id, "timeline")


def pinned(blog_id: str) -> str:
    """Sorted set: pinned entry ids scored by display time (ms)."""
    return _blog(blog_id, "pinned")


def owners(blog_id: str) -> str:
    """Hash: entry id -> id of the token that created it (kept out of the public entry)."""
    return _blog(blog_id, "owners")


def work(blog_id: str) -> str:
    """Hash: entry id -> entry JSON of every entry that is not public (draft, submitted,
    scheduled, retracted). Kept apart from :func:`entries`, so no public read can reach it."""
    return _blog(blog_id, "work")


def trail(blog_id: str) -> str:
    """Hash: entry id -> the ids of the log events that carried it (space-separated), so a
    purge can delete every one of them."""
    return _blog(blog_id, "trail")


def audit(blog_id: str) -> str:
    """Stream: the staff-visible history of the blog, who did what to which entry and when.
    It never holds an entry's text."""
    return _blog(blog_id, "audit")


def idempotency_of(blog_id: str) -> str:
    """Hash: entry id -> the idempotency key that holds its first result (a purge deletes it)."""
    return _blog(blog_id, "idem-of")


def tag(blog_id: str, name: str) -> str:
    """Sorted set: the published entries tagged ``name``, scored by display time (ms)."""
    return _blog(blog_id, f"tag:{name}")


def versions(blog_id: str, entry_id: str) -> str:
    """List: the entry's published versions (JSON), oldest first."""
    return _blog(blog_id, f"versions:{entry_id}")


def meta(blog_id: str) -> str:
    """Hash: ``blog`` (blog JSON), ``epoch`` (log epoch token), ``trimmed`` (last trimmed log id)."""
    return _blog(blog_id, "meta")


def viewers(blog_id: str) -> str:
    """Hash: process id -> ``"count:ms"``, each process's live readers of the blog, refreshed."""
    return _blog(blog_id, "viewers")


def idempotency(blog_id: str, key_digest: str) -> str:
    """String with TTL: a POST's first result, so a retry makes no second entry."""
    return _blog(blog_id, f"idem:{key_digest}")


#: Set: the blogs that have (or had) webhooks, which every process's deliverer looks at. An
#: index only: a blog whose webhooks are gone costs a look and is dropped.
WEBHOOK_BLOGS = f"{PREFIX}:webhook-blogs"
#: The consumer group of every blog's :func:`outbox`: each process is one consumer.
DELIVERERS = "deliverers"


def webhooks(blog_id: str) -> str:
    """Hash: webhook id -> webhook JSON (with its secret, which signs every delivery)."""
    return _blog(blog_id, "webhooks")


def outbox(blog_id: str) -> str:
    """Stream: the blog's webhook events, written by the change that made each (only while the
    blog has webhooks), read through the :data:`DELIVERERS` group."""
    return _blog(blog_id, "outbox")


def deliveries(blog_id: str) -> str:
    """Hash: ``"<webhook id> <outbox id>"`` -> the delivery (state and body, msgspec JSON)."""
    return _blog(blog_id, "deliveries")


def recent_deliveries(blog_id: str, webhook_id: str) -> str:
    """List: a webhook's delivery ids (outbox ids), newest first, kept to a bound."""
    return _blog(blog_id, f"recent:{webhook_id}")


def alerts(blog_id: str) -> str:
    """Hash: entry id -> the ids of the outbox events that carried it (space-separated), so a
    purge can delete them and every delivery made of them."""
    return _blog(blog_id, "alerts")


def retries(blog_id: str) -> str:
    """Sorted set: ``"<webhook id> <outbox id>"`` of deliveries to try again, scored by when (ms).
    A delivery being tried is leased: its score moves past the try's end, so that if its process
    dies another one takes it then."""
    return _blog(blog_id, "retries")


def blog_keys(blog_id: str) -> list[str]:
    """The keys every blog script receives, in the order the scripts read them as KEYS[1..10]
    (see ``lua/_prelude.lua``)."""
    return [
        meta(blog_id),
        log(blog_id),
        entries(blog_id),
        timeline(blog_id),
        pinned(blog_id),
        owners(blog_id),
        work(blog_id),
        trail(blog_id),
        audit(blog_id),
        idempotency_of(blog_id),
    ]
