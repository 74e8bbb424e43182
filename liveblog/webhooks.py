"""Webhooks' rules, free of I/O: which changes alert whom, which URLs may be called, how a body
is signed and when a failed delivery is tried again.

A receiver's URL must be https (http only for a host listed exactly), on a host that
``LIVEBLOG_WEBHOOK_HOSTS`` allows: names (``hooks.example.com``) or suffixes
(``.example.com``: its subdomains). At delivery the name is resolved and a private, loopback,
link-local or otherwise non-global address is refused unless the host itself is listed exactly,
so a webhook cannot reach into the newsroom's own network (SSRF).

Signatures are Stripe's and GitHub's shape: ``Liveblog-Signature: t=<unix>,v1=<hex>``, the hex
HMAC-SHA256, keyed with the webhook's secret, of ``"<t>.<body>"``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import get_args
from urllib.parse import urlsplit

import msgspec

from .models import Entry, Raw, Webhook, WebhookCreate, WebhookCreated, WebhookEventType, encoder
from .storage import Change

EVENT_TYPES: tuple[WebhookEventType, ...] = get_args(WebhookEventType)
#: Webhooks per blog.
MAX_PER_BLOG = 10
#: Deliveries kept per webhook for ``GET …/deliveries`` (older ones are forgotten).
DELIVERIES_KEPT = 100
#: Attempts kept in a delivery's ``history``.
HISTORY_KEPT = 10


class BadUrl(ValueError):
    """A receiver URL this service will not call; the message says why and what to change."""


@dataclass(frozen=True, slots=True)
class AllowList:
    """``LIVEBLOG_WEBHOOK_HOSTS``: exact host names and ``.suffix`` entries."""

    exact: frozenset[str]
    suffixes: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> AllowList:
        items = [item.strip().lower().rstrip(".") for item in text.split(",") if item.strip()]
        return cls(frozenset(i for i in items if not i.startswith(".")), tuple(i for i in items if i.startswith(".")))

    def allows(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return host in self.exact or any(host.endswith(suffix) for suffix in self.suffixes)

    def is_explicit(self, host: str) -> bool:
        """Listed by its exact name: such a host may use http and private addresses."""
        return host.lower().rstrip(".") in self.exact


def check_url(url: str, allowed: AllowList) -> str:
    """``url`` if this service may deliver to it, else :class:`BadUrl` saying why."""
    if not allowed.exact and not allowed.suffixes:
        raise BadUrl("no webhook hosts are allowed on this instance: its operator sets LIVEBLOG_WEBHOOK_HOSTS")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsed now, so that a bad port is refused here, not at every delivery
    except ValueError as exc:
        raise BadUrl(f"not a URL: {exc}") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise BadUrl("the URL must be https://host/…")
    if parts.username is not None or parts.password is not None:
        raise BadUrl("the URL must not carry a user name or password; use the signature to authenticate")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise BadUrl("the URL must not contain spaces or control characters")
    host = parts.hostname
    if not allowed.allows(host):
        raise BadUrl(f"host {host!r} is not in this instance's LIVEBLOG_WEBHOOK_HOSTS")
    if parts.scheme == "http" and not allowed.is_explicit(host):
        raise BadUrl("the URL must be https (http only for a host listed exactly in LIVEBLOG_WEBHOOK_HOSTS)")
    return url


def refused_address(address: str, host: str, allowed: AllowList) -> str | None:
    """Why a delivery to ``host`` must not connect to ``address`` (a resolved IP), or None."""
    if allowed.is_explicit(host):
        return None
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if not ip.is_global:
        return f"{host} resolves to {address}, a private, loopback or link-local address"
    return None


def new_webhook(blog_id: str, request: WebhookCreate, now: datetime) -> tuple[Webhook, WebhookCreated]:
    """The webhook to store and the answer that shows its secret, once."""
    events = list(dict.fromkeys(request.events))
    secret = request.secret or "whsec_" + secrets.token_urlsafe(32)
    hook = Webhook(id=secrets.token_hex(6), blog=blog_id, url=request.url, events=events, secret=secret, created_at=now)
    shown = WebhookCreated(id=hook.id, url=hook.url, events=events, created_at=now, secret=secret)
    return hook, shown


def alerts_of(before: Entry | None, change: Change) -> tuple[WebhookEventType, ...]:
    """The webhook events a change to an entry makes (``before``: the entry as it was, None for
    a new one). Going public alerts ``entry.published``, and ``entry.key_event`` too if it is one."""
    after = change.entry
    if change.event == "entry.created":
        return ("entry.published", "entry.key_event") if after.key_event else ("entry.published",)
    if change.event == "entry.deleted":
        return ("entry.retracted",)
    if change.event == "entry.updated" and before is not None:
        found: list[WebhookEventType] = []
        if after.key_event and not before.key_event:
            found.append("entry.key_event")
        if len(after.corrections) > len(before.corrections):
            found.append("entry.corrected")
        return tuple(found)
    return ()


class HookEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A webhook delivery's body."""

    id: str
    type: WebhookEventType
    created_at: datetime
    blog: str
    #: The entry (for ``entry.retracted`` its tombstone); absent for ``blog.ended``.
    entry: Raw | None = None


def event_body(kind: WebhookEventType, blog_id: str, at: datetime, entry: bytes | None = None) -> bytes:
    """An event's JSON, with a fresh id: the same bytes go out at every attempt."""
    event = HookEvent(
        id="evt_" + secrets.token_hex(12),
        type=kind,
        created_at=at,
        blog=blog_id,
        entry=Raw(entry) if entry is not None else None,
    )
    return encoder.encode(event)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Liveblog-Signature`` header's value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), b"%d." % timestamp + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def retry_delay_ms(attempts: int, base_ms: int, max_ms: int, rand: Callable[[], float]) -> int:
    """How long after its ``attempts``-th failure a delivery waits: ``base_ms`` doubling per
    attempt up to ``max_ms``, of which a random half (``rand()`` in [0, 1)), so that deliveries
    that failed together do not all come back together."""
    delay = min(max_ms, base_ms * 2 ** min(attempts - 1, 40))
    return int(delay / 2 + rand() * delay / 2)
