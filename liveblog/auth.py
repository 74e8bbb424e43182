"""Who may do what: tokens, roles, and the permission rules of the reporter API. No I/O here.

Token text is ``lb_<id>_<secret>``. Only the SHA-256 of the secret is stored, and the check
compares digests in constant time. The admin token comes from configuration.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from .models import Token, TokenCreate, TokenMinted

ADMIN_ID = "admin"


class BadToken(ValueError):
    """The Authorization header is missing or is not a token this service could have issued."""


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of one request."""

    token_id: str
    name: str
    role: str
    blogs: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def is_editor(self) -> bool:
        """Editors (and admins) publish anyone's work, schedule, restore, purge, sign any byline."""
        return self.role in ("admin", "editor")

    def can_post(self, blog_id: str) -> bool:
        return self.is_admin or blog_id in self.blogs

    def can_manage(self, blog_id: str) -> bool:
        """Retitle or end a blog (and create one that the token was scoped to in advance)."""
        return self.is_admin or (self.role == "editor" and blog_id in self.blogs)

    def can_create(self, status: str) -> bool:
        """Contributors write drafts and submissions; reporters also publish; editors also schedule."""
        return status in _CREATES[self.role]

    def can_see_work(self, blog_id: str, owner_token_id: str | None) -> bool:
        """Unpublished entries: editors see all in their blogs, others their own."""
        if not self.can_post(blog_id):
            return False
        return self.is_editor or owner_token_id == self.token_id

    def can_edit(self, blog_id: str, owner_token_id: str | None, status: str) -> bool:
        """Change the entry at all (its fields, or its status as :meth:`can_move` allows).

        Editors: anything in their blogs. Reporters: their own entries, except retracted ones.
        Contributors: their own drafts and submissions.
        """
        if not self.can_post(blog_id):
            return False
        if self.is_editor:
            return True
        if owner_token_id != self.token_id:
            return False
        return status in ("draft", "submitted") if self.role == "contributor" else status != "retracted"

    def can_move(self, from_status: str, to_status: str) -> bool:
        """Whether this role may make the transition (one :meth:`can_edit` already allowed)."""
        needed = TRANSITIONS[(from_status, to_status)]
        return _RANK[self.role] >= _RANK[needed]

    def can_purge(self, blog_id: str) -> bool:
        return self.is_editor and self.can_post(blog_id)


#: Who may create an entry in each status.
_CREATES = {
    "contributor": frozenset({"draft", "submitted"}),
    "reporter": frozenset({"draft", "submitted", "published"}),
    "editor": frozenset({"draft", "submitted", "published", "scheduled"}),
    "admin": frozenset({"draft", "submitted", "published", "scheduled"}),
}
_RANK = {"contributor": 0, "reporter": 1, "editor": 2, "admin": 2}
#: Every status change there is (DESIGN §6), and the least role that may make it: "contributor"
#: (the writer of the entry), "reporter" (who publishes their own) or "editor".
TRANSITIONS = {
    ("draft", "submitted"): "contributor",
    ("submitted", "draft"): "contributor",
    ("draft", "published"): "reporter",
    ("submitted", "published"): "reporter",
    ("published", "retracted"): "reporter",
    ("draft", "scheduled"): "editor",
    ("submitted", "scheduled"): "editor",
    ("scheduled", "draft"): "editor",
    ("scheduled", "published"): "editor",
    ("retracted", "published"): "editor",
}


def admin(name: str) -> Principal:
    """The configured admin token's principal; ``name`` (the publisher's) is its default byline."""
    return Principal(token_id=ADMIN_ID, name=name, role="admin", blogs=frozenset())


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def mint(request: TokenCreate, now: datetime) -> tuple[Token, TokenMinted]:
    """A new token: the record to store (hashed) and the response that shows the secret once."""
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    record = Token(
        id=token_id,
        name=request.name,
        role=request.role,
        blogs=sorted(set(request.blogs)),
        secret_sha256=_digest(secret),
        created_at=now,
    )
    shown = TokenMinted(
        id=token_id, token=f"lb_{token_id}_{secret}", name=record.name, role=record.role, blogs=record.blogs
    )
    return record, shown


def bearer(header: str | None) -> str:
    """The token text of an ``Authorization: Bearer …`` header."""
    if not header:
        raise BadToken("missing Authorization header; send 'Authorization: Bearer <token>'")
    scheme, _, text = header.partition(" ")
    if scheme.lower() != "bearer" or not text.strip() or len(text) > 200:
        raise BadToken("Authorization header must be 'Bearer <token>'")
    return text.strip()


def split(text: str) -> tuple[str, str]:
    """``(token id, secret)`` of a minted token's text."""
    prefix, _, rest = text.partition("_")
    token_id, _, secret = rest.partition("_")
    if prefix != "lb" or not token_id or not secret:
        raise BadToken("unknown token")
    return token_id, secret


def is_admin_token(text: str, admin_token: str) -> bool:
    return hmac.compare_digest(text.encode(), admin_token.encode())


def verify(record: Token, secret: str) -> Principal:
    if not hmac.compare_digest(_digest(secret), record.secret_sha256):
        raise BadToken("unknown token")
    return Principal(token_id=record.id, name=record.name, role=record.role, blogs=frozenset(record.blogs))
