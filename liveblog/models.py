"""The public contract's shapes, as msgspec Structs.

Request bodies are decoded once, at the edge, with the typed decoders below; msgspec's errors name
the JSON path (``... - at `$.author.name```) and reach the client as a 422. Limits live here, next
to the fields they bound, so every input has one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType
from msgspec import Raw as Raw  # re-exported: callers splice stored JSON into responses


def whole(pattern: str) -> str:
    r"""``pattern`` over the whole string. Python's ``$`` also matches before a final newline, which
    once let ``"kyiv\n"`` pass as a slug; ``(?!\n)`` rules that out, and reads the same to a JSON
    Schema reader (ECMA-262, whose ``$`` is the end), unlike ``\Z``."""
    return rf"^(?:{pattern})$(?!\n)"


SLUG = r"[a-z0-9][a-z0-9-]{0,63}"
SLUG_PATTERN = whole(SLUG)
Slug = Annotated[str, Meta(pattern=SLUG_PATTERN, description="lowercase slug")]
Title = Annotated[str, Meta(min_length=1, max_length=200)]
Description = Annotated[str, Meta(max_length=2000)]
Language = Annotated[str, Meta(pattern=whole(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})*"), max_length=35)]
Origin = Annotated[str, Meta(pattern=whole(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?"), max_length=200)]
ShortText = Annotated[str, Meta(min_length=1, max_length=120)]
Headline = Annotated[str, Meta(max_length=300)]
BodyHtml = Annotated[str, Meta(min_length=1, max_length=20_000)]
HttpsUrl = Annotated[str, Meta(pattern=whole(r"https://[^\s]+"), max_length=2048)]
Caption = Annotated[str, Meta(max_length=1000)]
Tag = Annotated[str, Meta(min_length=1, max_length=40)]
Tags = Annotated[list[Tag], Meta(max_length=20)]
Origins = Annotated[list[Origin], Meta(max_length=50)]
BlogIds = Annotated[list[Slug], Meta(max_length=200)]
UtcTime = Annotated[datetime, Meta(tz=True)]
#: An IANA time zone name ("Europe/Madrid"); that it names a real zone is checked in blogs.py.
TimeZone = Annotated[str, Meta(pattern=whole(r"[A-Za-z][A-Za-z0-9_+/-]{0,63}"), max_length=64)]
Pixels = Annotated[int, Meta(ge=1, le=20_000)]
#: Branding values go into CSS as they are, so their patterns leave nothing that could end a
#: declaration or a style element: no ``;``, braces, quotes other than ``'``, ``<`` or backslash.
Colour = Annotated[str, Meta(pattern=whole(r"#[0-9A-Fa-f]{6}"), description="#rrggbb")]
FontStack = Annotated[str, Meta(pattern=whole(r"[A-Za-z0-9 ,'-]{1,200}"), max_length=200)]
Radius = Annotated[int, Meta(ge=0, le=24, description="pixels")]
#: What a body is written in: HTML (sanitised), Markdown or plain text (converted, then sanitised).
BodyFormat = Literal["html", "markdown", "text"]

BlogStatus = Literal["live", "ended"]
Role = Literal["admin", "editor", "reporter", "contributor"]
#: An entry's place in the newsroom's workflow (DESIGN §6). Only ``published`` entries are public.
EntryStatus = Literal["draft", "submitted", "scheduled", "published", "retracted"]
Note = Annotated[str, Meta(min_length=1, max_length=500)]
#: How many corrections one entry keeps (each is shown to readers).
MAX_CORRECTIONS = 20


class _Input(Struct, forbid_unknown_fields=True):
    """Base of every request body: unknown fields are an error, not silently dropped."""


# --- stored and served -------------------------------------------------------------------------


class Brand(_Input, kw_only=True):
    """A blog's own look, the default for its pages and widget: the ``--lb-accent``,
    ``--lb-font`` and ``--lb-radius`` custom properties. A partner site's own setting of those
    properties on the widget still wins."""

    accent: Colour | None = None
    font: FontStack | None = None
    radius: Radius | None = None


class Blog(Struct, kw_only=True):
    id: str
    title: str
    description: str
    status: BlogStatus
    created_at: datetime
    updated_at: datetime
    coverage_start: datetime
    coverage_end: datetime | None = None
    language: str
    embed_origins: list[str]
    #: Where times on server-rendered pages and feeds are shown (IANA name).
    timezone: str = "UTC"
    brand: Brand | None = None


class Author(_Input, kw_only=True):
    name: ShortText
    role: ShortText | None = None
    location: ShortText | None = None


class Media(_Input, kw_only=True):
    """An image, a video or a social embed. ``provider`` and ``embed_url`` are set by the
    server for embeds (whatever a request sends), from the URL of a known provider."""

    type: Literal["image", "video", "embed"]
    url: HttpsUrl
    caption: Caption | None = None
    alt: Caption | None = None
    credit: ShortText | None = None
    #: The intrinsic size, so pages reserve the space before the media loads.
    width: Pixels | None = None
    height: Pixels | None = None
    provider: str | None = None
    #: What the reader's click loads (an iframe's src): the provider's own, privacy-enhanced
    #: where it has one. None: the provider offers no frame; readers get a link.
    embed_url: str | None = None


class Related(_Input, kw_only=True):
    """A link to another story, shown as a "To know more" card."""

    url: HttpsUrl
    title: Title
    kicker: ShortText | None = None
    image: HttpsUrl | None = None


RelatedLinks = Annotated[list[Related], Meta(max_length=5)]


class Correction(Struct, kw_only=True):
    """A visible correction: readers see "Corrected HH:MM: <text>" on the entry."""

    text: str
    at: datetime
    #: The entry version that carried the correction.
    version: int


class Entry(Struct, kw_only=True):
    """An entry as stored and served. Public outputs only ever hold ``published`` ones, and
    those never carry a ``review_note`` (it is cleared when the entry is published)."""

    id: str
    blog: str
    version: int
    time: datetime
    created_at: datetime
    updated_at: datetime
    author: Author
    headline: str | None = None
    body: str
    media: Media | None = None
    tags: list[str]
    pinned: bool
    key_event: bool
    deleted: bool = False
    status: EntryStatus = "published"
    related: list[Related] = []
    #: When readers' content (headline, body, media, related) last changed after publication;
    #: pinning, key-event and tag changes do not move it. None: never edited.
    edited_at: datetime | None = None
    #: When the entry went public (for a scheduled one, when it went out).
    published_at: datetime | None = None
    #: ``scheduled`` entries: when they go out.
    publish_at: datetime | None = None
    corrections: list[Correction] = []
    #: Staff only: why an editor returned a submission to draft.
    review_note: str | None = None
    #: ``retracted`` entries: the public note readers were shown.
    retraction_note: str | None = None


class Version(Struct, kw_only=True):
    """One published version of an entry, as ``GET …/entries/{id}/versions`` lists it."""

    version: int
    edited_at: datetime
    headline: str | None
    body: str
    media: Media | None
    related: list[Related]
    correction: str | None = None


class Tombstone(Struct, kw_only=True):
    """What ``entry.deleted`` carries in place of the entry."""

    id: str
    blog: str
    version: int
    deleted: bool = True
    updated_at: datetime
    #: The public note of a retraction ("Retracted: …"); None for a purge or a bare retraction.
    retraction_note: str | None = None


class Token(Struct, kw_only=True):
    """A minted token as stored: the secret only as its SHA-256."""

    id: str
    name: str
    role: Role
    blogs: list[str]
    secret_sha256: str
    created_at: datetime


class TokenInfo(Struct, kw_only=True):
    """A token as ``GET /api/v1/tokens`` lists it: never its secret."""

    id: str
    name: str
    role: Role
    blogs: list[str]
    created_at: datetime
    last_used_at: datetime | None = None


class Actor(Struct, kw_only=True):
    """Who did something: the token's id, its name and its role."""

    token: str
    name: str
    role: str


AuditAction = Literal["create", "edit", "status", "retract", "restore", "purge", "import"]


class AuditRecord(Struct, kw_only=True, omit_defaults=True):
    """One line of a blog's audit trail. It never holds an entry's text (a purge must not
    leave any behind); a review note is the editor's text, not the entry's."""

    at: datetime
    actor: Actor
    action: AuditAction
    entry: str
    version: int
    #: The entry's status after the action, and before it for a status change.
    status: EntryStatus
    from_status: EntryStatus | None = None
    review_note: str | None = None


class TokenMinted(Struct, kw_only=True):
    id: str
    token: str
    name: str
    role: Role
    blogs: list[str]


#: What a webhook can be told of (DESIGN §6, "Webhooks").
WebhookEventType = Literal["entry.published", "entry.key_event", "entry.corrected", "entry.retracted", "blog.ended"]
#: A receiver's URL; which schemes and hosts are allowed is checked in :mod:`liveblog.webhooks`.
WebhookUrl = Annotated[str, Meta(min_length=1, max_length=2048)]
WebhookSecret = Annotated[str, Meta(pattern=whole(r"[\x21-\x7e]{16,200}"), description="16-200 printable ASCII")]


class Webhook(Struct, kw_only=True):
    """A blog's webhook as stored: the secret in clear, since every delivery is signed with it."""

    id: str
    blog: str
    url: str
    events: list[WebhookEventType]
    secret: str
    created_at: datetime


class WebhookInfo(Struct, kw_only=True):
    """A webhook as ``GET …/webhooks`` lists it: never its secret."""

    id: str
    url: str
    events: list[WebhookEventType]
    created_at: datetime


class WebhookCreated(Struct, kw_only=True):
    """``POST …/webhooks``'s answer: the only time the secret is shown."""

    id: str
    url: str
    events: list[WebhookEventType]
    created_at: datetime
    secret: str


class Attempt(Struct, kw_only=True, omit_defaults=True):
    """One try at a delivery: the receiver's HTTP status, or why there was none."""

    at: datetime
    status: int | None = None
    error: str | None = None


DeliveryState = Literal["pending", "delivered", "failed"]


class Delivery(Struct, kw_only=True):
    """One event for one webhook, and how its delivery went (``GET …/deliveries``).

    ``id`` names it in the API; ``event`` is the event's id, the ``Liveblog-Event-Id`` a
    receiver deduplicates by. ``history`` keeps the latest attempts, newest last."""

    id: str
    event: str
    type: WebhookEventType
    state: DeliveryState = "pending"
    attempts: int = 0
    last_status: int | None = None
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    delivered_at: datetime | None = None
    created_at: datetime
    #: Failed attempts are retried until then (a replay moves it).
    retry_until: datetime
    history: list[Attempt] = []


class StoredDelivery(Struct, kw_only=True):
    """A delivery as kept in Redis: its state, and the exact body every attempt sends."""

    delivery: Delivery
    body: str


# --- request bodies ----------------------------------------------------------------------------


class BlogCreate(_Input, kw_only=True):
    id: Slug
    title: Title
    description: Description = ""
    language: Language = "en"
    embed_origins: Origins = []
    timezone: TimeZone = "UTC"
    brand: Brand | None = None


class BlogPatch(_Input, kw_only=True):
    title: Title | UnsetType = UNSET
    description: Description | UnsetType = UNSET
    status: BlogStatus | UnsetType = UNSET
    language: Language | UnsetType = UNSET
    embed_origins: Origins | UnsetType = UNSET
    timezone: TimeZone | UnsetType = UNSET
    #: Replaces the brand whole; ``null`` goes back to the defaults.
    brand: Brand | None | UnsetType = UNSET


class Byline(_Input, kw_only=True):
    """A byline as written: reporters and contributors may leave out the name (it is theirs)."""

    name: ShortText | None = None
    role: ShortText | None = None
    location: ShortText | None = None


class EntryCreate(_Input, kw_only=True):
    body: BodyHtml
    body_format: BodyFormat = "html"
    headline: Headline | None = None
    author: Byline | None = None
    time: UtcTime | None = None
    media: Media | None = None
    related: RelatedLinks = []
    tags: Tags = []
    pinned: bool = False
    key_event: bool = False
    status: Literal["draft", "submitted", "scheduled", "published"] = "published"
    #: Required with ``"status":"scheduled"``: when the entry goes out.
    publish_at: UtcTime | None = None


class EntryPatch(_Input, kw_only=True):
    body: BodyHtml | UnsetType = UNSET
    #: How this patch's ``body`` is written.
    body_format: BodyFormat | UnsetType = UNSET
    headline: Headline | None | UnsetType = UNSET
    author: Byline | UnsetType = UNSET
    time: UtcTime | UnsetType = UNSET
    media: Media | None | UnsetType = UNSET
    related: RelatedLinks | UnsetType = UNSET
    tags: Tags | UnsetType = UNSET
    pinned: bool | UnsetType = UNSET
    key_event: bool | UnsetType = UNSET
    #: A status change (DESIGN §6), checked against the caller's role and the entry's status.
    status: EntryStatus | UnsetType = UNSET
    publish_at: UtcTime | UnsetType = UNSET
    #: A published entry's visible correction, shown as "Corrected HH:MM: …".
    correction: Note | UnsetType = UNSET
    #: With ``submitted -> draft``: why the editor returned it.
    review_note: Note | UnsetType = UNSET
    #: With ``published -> retracted``: the public note.
    retraction_note: Note | UnsetType = UNSET


class EntryDelete(_Input, kw_only=True):
    """The optional body of ``DELETE …/entries/{id}`` (a retraction)."""

    retraction_note: Note | None = None


class SessionCreate(_Input, kw_only=True):
    """``POST /api/v1/session``: sign a browser in with a token."""

    token: Annotated[str, Meta(min_length=1, max_length=200)]


class TokenCreate(_Input, kw_only=True):
    name: ShortText
    role: Literal["editor", "reporter", "contributor"]
    blogs: BlogIds


class WebhookCreate(_Input, kw_only=True):
    url: WebhookUrl
    events: Annotated[list[WebhookEventType], Meta(min_length=1, max_length=5)]
    #: Generated when not given.
    secret: WebhookSecret | None = None


# --- reader responses --------------------------------------------------------------------------


class EntryPage(Struct):
    cursor: str
    entries: list[Raw]
    next: str | None


class EventPage(Struct):
    cursor: str
    events: list[Raw]


class Snapshot(Struct, tag_field="type", tag="snapshot"):
    cursor: str
    blog: Raw
    entries: list[Raw]
    pinned: list[Raw]


class ErrorBody(Struct, omit_defaults=True):
    code: str
    message: str
    field: str | None = None


class ErrorResponse(Struct):
    error: ErrorBody


encoder = msgspec.json.Encoder()

S = TypeVar("S", bound=Struct)

_decoders: dict[type[Struct], msgspec.json.Decoder[Any]] = {
    cls: msgspec.json.Decoder(cls)
    for cls in (
        BlogCreate,
        BlogPatch,
        EntryCreate,
        EntryPatch,
        EntryDelete,
        SessionCreate,
        TokenCreate,
        WebhookCreate,
        Webhook,
        StoredDelivery,
        Blog,
        Entry,
        Token,
        Version,
        AuditRecord,
    )
}


def decode(kind: type[S], body: bytes | str) -> S:
    """``body`` (JSON) as a ``kind``; msgspec's ``ValidationError`` (with the path) or
    ``DecodeError`` if it is not one."""
    value: S = _decoders[kind].decode(body)
    return value


def fields_set(patch: Struct) -> dict[str, Any]:
    """The fields a PATCH body actually sent (absent ones are ``UNSET``; ``null`` is a value)."""
    return {name: value for name in patch.__struct_fields__ if (value := getattr(patch, name)) is not UNSET}
