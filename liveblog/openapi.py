"""``GET /api/v1/openapi.json``: the HTTP API described as OpenAPI 3.1, schemas from the models.

Request and response bodies are the msgspec Structs the API decodes and encodes, so the
document cannot drift from the code. The live channel (WebSocket, SSE) is described in the
README and DESIGN.md; OpenAPI has no words for it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from . import __version__
from .models import (
    SLUG_PATTERN,
    AuditRecord,
    Blog,
    BlogCreate,
    BlogPatch,
    Delivery,
    Entry,
    EntryCreate,
    EntryDelete,
    EntryPatch,
    ErrorResponse,
    TokenCreate,
    TokenInfo,
    TokenMinted,
    Tombstone,
    Version,
    WebhookCreate,
    WebhookCreated,
    WebhookEventType,
    WebhookInfo,
)


# Shapes the API sends as pre-encoded JSON (msgspec.Raw); described here for readers of the spec.
class EntryList(msgspec.Struct):
    cursor: str
    entries: list[Entry]
    next: str | None


class Event(msgspec.Struct, kw_only=True):
    cursor: str
    event: Literal["entry.created", "entry.updated", "entry.deleted", "blog.updated"]
    entry: Annotated[
        dict[str, Any] | None,
        msgspec.Meta(description="the entry (see Entry); for entry.deleted its tombstone (see Tombstone)"),
    ] = None
    blog: Blog | None = None


class EventList(msgspec.Struct):
    cursor: str
    events: list[Event]


class BlogList(msgspec.Struct):
    blogs: list[Blog]


class WorkList(msgspec.Struct):
    """Unpublished entries in one status (``?status=``), for staff."""

    entries: list[Entry]


class VersionList(msgspec.Struct):
    entry: str
    versions: list[Version]


class AuditList(msgspec.Struct):
    records: list[AuditRecord]
    next: str | None


class TokenList(msgspec.Struct):
    tokens: list[TokenInfo]


class WebhookList(msgspec.Struct):
    webhooks: list[WebhookInfo]


class DeliveryList(msgspec.Struct):
    """A webhook's latest deliveries, newest first."""

    deliveries: list[Delivery]


class WebhookEvent(msgspec.Struct, kw_only=True):
    """What a webhook receives (headers ``Liveblog-Event-Id``, ``Liveblog-Signature``)."""

    id: Annotated[str, msgspec.Meta(description="the event's id: deduplicate by it")]
    type: WebhookEventType
    created_at: str
    blog: Annotated[str, msgspec.Meta(description="the blog's id")]
    entry: Annotated[
        dict[str, Any] | None,
        msgspec.Meta(description="the entry (see Entry); for entry.retracted its tombstone; absent for blog.ended"),
    ] = None


_MODELS = [
    Tombstone,
    Entry,
    BlogCreate,
    BlogPatch,
    EntryCreate,
    EntryPatch,
    TokenCreate,
    TokenMinted,
    EntryDelete,
    EntryList,
    EventList,
    BlogList,
    WorkList,
    VersionList,
    AuditList,
    TokenList,
    WebhookCreate,
    WebhookCreated,
    WebhookList,
    DeliveryList,
    Delivery,
    WebhookEvent,
]
#: A JSON object of the OpenAPI document.
JSON = dict[str, Any]

_ERROR = {
    "description": "an error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
}


def _ref(model: type) -> JSON:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _body(model: type) -> JSON:
    return {"required": True, "content": {"application/json": {"schema": _ref(model)}}}


def _ok(status: int, model: type | None = None) -> JSON:
    response: JSON = {"description": "success"}
    if model is not None:
        response["content"] = {"application/json": {"schema": _ref(model)}}
    return {str(status): response, "default": _ERROR}


def _path(name: str, pattern: str) -> JSON:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string", "pattern": pattern}}


def _query(name: str, schema: JSON) -> JSON:
    return {"name": name, "in": "query", "required": False, "schema": schema}


def _header(name: str, required: bool, schema: JSON) -> JSON:
    return {"name": name, "in": "header", "required": required, "schema": schema}


_BLOG = _path("blog", SLUG_PATTERN)
_ENTRY = _path("entry", r"^[A-Za-z0-9_-]{1,64}$")
_WEBHOOK = _path("webhook", r"^[0-9a-f]{12}$")
_AUTH: list[JSON] = [{"bearer": []}]


def document() -> JSON:
    (_, components) = msgspec.json.schema_components(
        [*_MODELS, ErrorResponse], ref_template="#/components/schemas/{name}"
    )
    paths = {
        "/api/v1/blogs": {
            "get": {"summary": "Blogs this token may see", "security": _AUTH, "responses": _ok(200, BlogList)},
            "post": {
                "summary": "Create a blog",
                "security": _AUTH,
                "requestBody": _body(BlogCreate),
                "responses": _ok(201, Blog),
            },
        },
        "/api/v1/blogs/{blog}": {
            "parameters": [_BLOG],
            "get": {"summary": "A blog", "responses": _ok(200, Blog)},
            "patch": {
                "summary": "Retitle or end a blog",
                "security": _AUTH,
                "requestBody": _body(BlogPatch),
                "responses": _ok(200, Blog),
            },
        },
        "/api/v1/blogs/{blog}/entries": {
            "parameters": [_BLOG],
            "get": {
                "summary": "Entries newest first (limit, before), the events since a cursor (since), "
                "or, for staff with a token, unpublished entries in one status (status)",
                "parameters": [
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
                    _query("before", {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,64}$"}),
                    _query("since", {"type": "string", "maxLength": 64}),
                    _query("status", {"enum": ["draft", "submitted", "scheduled", "retracted"]}),
                    _query("tag", {"type": "string", "minLength": 1, "maxLength": 40}),
                ],
                "responses": {
                    "200": {
                        "description": "entries, events when `since` is given, work when `status` is",
                        "content": {
                            "application/json": {
                                "schema": {"anyOf": [_ref(EntryList), _ref(EventList), _ref(WorkList)]}
                            }
                        },
                    },
                    "default": _ERROR,
                },
            },
            "post": {
                "summary": "Post an entry",
                "security": _AUTH,
                "parameters": [_header("Idempotency-Key", False, {"type": "string", "pattern": r"^[!-~]{1,200}$"})],
                "requestBody": _body(EntryCreate),
                "responses": _ok(201, Entry),
            },
        },
        "/api/v1/blogs/{blog}/entries/{entry}": {
            "parameters": [_BLOG, _ENTRY],
            "get": {
                "summary": "One published entry (with a token: also unpublished work it may see)",
                "responses": _ok(200, Entry),
            },
            "patch": {
                "summary": "Edit an entry, correct it or change its status (If-Match: its version)",
                "security": _AUTH,
                "parameters": [_header("If-Match", True, {"type": "string", "pattern": r'^"[0-9]{1,9}"$'})],
                "requestBody": _body(EntryPatch),
                "responses": _ok(200, Entry),
            },
            "delete": {
                "summary": "Retract an entry (If-Match: its version), or take it down for good (purge=true)",
                "security": _AUTH,
                "parameters": [
                    _header("If-Match", False, {"type": "string", "pattern": r'^"[0-9]{1,9}"$'}),
                    _query("purge", {"enum": ["true", "false"]}),
                ],
                "requestBody": {**_body(EntryDelete), "required": False},
                "responses": _ok(204),
            },
        },
        "/api/v1/blogs/{blog}/entries/{entry}/versions": {
            "parameters": [_BLOG, _ENTRY],
            "get": {"summary": "Every published version of an entry, oldest first", "responses": _ok(200, VersionList)},
        },
        "/api/v1/blogs/{blog}/audit": {
            "parameters": [_BLOG],
            "get": {
                "summary": "Who did what to which entry, and when, newest first (editors, admins)",
                "security": _AUTH,
                "parameters": [
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 100}),
                    _query("before", {"type": "string", "pattern": r"^[0-9]{1,20}-[0-9]{1,20}$"}),
                ],
                "responses": _ok(200, AuditList),
            },
        },
        "/api/v1/tokens": {
            "get": {
                "summary": "Every token, never its secret (admins)",
                "security": _AUTH,
                "responses": _ok(200, TokenList),
            },
            "post": {
                "summary": "Mint a token (admins)",
                "security": _AUTH,
                "requestBody": _body(TokenCreate),
                "responses": _ok(201, TokenMinted),
            },
        },
        "/api/v1/tokens/{token}": {
            "parameters": [_path("token", r"^[a-f0-9]{1,64}$")],
            "delete": {"summary": "Revoke a token (admins)", "security": _AUTH, "responses": _ok(204)},
        },
        "/api/v1/blogs/{blog}/webhooks": {
            "parameters": [_BLOG],
            "get": {
                "summary": "The blog's webhooks, never their secrets (admins)",
                "security": _AUTH,
                "responses": _ok(200, WebhookList),
            },
            "post": {
                "summary": "Register a webhook; its secret is shown once (admins)",
                "security": _AUTH,
                "requestBody": _body(WebhookCreate),
                "responses": _ok(201, WebhookCreated),
            },
        },
        "/api/v1/blogs/{blog}/webhooks/{webhook}": {
            "parameters": [_BLOG, _WEBHOOK],
            "delete": {
                "summary": "Remove a webhook and its deliveries (admins)",
                "security": _AUTH,
                "responses": _ok(204),
            },
        },
        "/api/v1/blogs/{blog}/webhooks/{webhook}/deliveries": {
            "parameters": [_BLOG, _WEBHOOK],
            "get": {
                "summary": "A webhook's latest deliveries, newest first, with why they failed (admins)",
                "security": _AUTH,
                "parameters": [_query("limit", {"type": "integer", "minimum": 1, "maximum": 100})],
                "responses": _ok(200, DeliveryList),
            },
        },
        "/api/v1/blogs/{blog}/webhooks/{webhook}/deliveries/{delivery}/replay": {
            "parameters": [_BLOG, _WEBHOOK, _path("delivery", r"^[0-9]{1,20}-[0-9]{1,20}$")],
            "post": {"summary": "Deliver it again now (admins)", "security": _AUTH, "responses": _ok(202, Delivery)},
        },
    }
    event_headers = [
        _header("Liveblog-Event-Id", True, {"type": "string"}),
        _header("Liveblog-Signature", True, {"type": "string", "pattern": r"^t=[0-9]+,v1=[0-9a-f]{64}$"}),
    ]
    webhooks = {
        "event": {
            "post": {
                "summary": "An event of a blog, POSTed to each webhook that asked for its type",
                "parameters": event_headers,
                "requestBody": _body(WebhookEvent),
                "responses": {"2XX": {"description": "delivered; anything else is retried"}},
            }
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "liveblog", "version": __version__},
        "paths": paths,
        "webhooks": webhooks,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


_DOCUMENT = msgspec.json.encode(document())


async def openapi(request: Request) -> Response:
    return Response(_DOCUMENT, media_type="application/json", headers={"Access-Control-Allow-Origin": "*"})
