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

    def can_post(self, blog_id: str) -> bool:
        return self.is_admin or blog_id in self.blogs

    def can_manage(self, blog_id: str) -> bool:
        """Retitle or end a blog (and create one that the token was scoped to in advance)."""
        return self.is_admin or (self.role == "editor" and blog_id in self.blogs)

    def can_change_entry(self, blog_id: str, owner_token_id: str | None) -> bool:
        """Reporters edit and delete their own entries; editors anything in their blogs."""
        if self.is_admin:
            return True
        if blog_id not in self.blogs:
            return False
        return self.role == "editor" or owner_token_id == self.token_id


def admin(name: str = "admin") -> Principal:
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
