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
    Blog,
    BlogCreate,
    BlogPatch,
    Entry,
    EntryCreate,
    EntryPatch,
    ErrorResponse,
    TokenCreate,
    TokenMinted,
    Tombstone,
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


_MODELS = [
    Tombstone,
    Entry,
    BlogCreate,
    BlogPatch,
    EntryCreate,
    EntryPatch,
    TokenCreate,
    TokenMinted,
    EntryList,
    EventList,
    BlogList,
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
                "summary": "Entries newest first (limit, before), or the events since a cursor (since)",
                "parameters": [
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
                    _query("before", {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,64}$"}),
                    _query("since", {"type": "string", "maxLength": 64}),
                ],
                "responses": {
                    "200": {
                        "description": "entries, or events when `since` is given",
                        "content": {"application/json": {"schema": {"oneOf": [_ref(EntryList), _ref(EventList)]}}},
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
            "get": {"summary": "One entry", "responses": _ok(200, Entry)},
            "patch": {
                "summary": "Edit an entry (If-Match: its version)",
                "security": _AUTH,
                "parameters": [_header("If-Match", True, {"type": "string", "pattern": r'^"[0-9]{1,9}"$'})],
                "requestBody": _body(EntryPatch),
                "responses": _ok(200, Entry),
            },
            "delete": {
                "summary": "Delete an entry (If-Match: its version)",
                "security": _AUTH,
                "parameters": [_header("If-Match", True, {"type": "string", "pattern": r'^"[0-9]{1,9}"$'})],
                "responses": _ok(204),
            },
        },
        "/api/v1/tokens": {
            "post": {
                "summary": "Mint a token (admins)",
                "security": _AUTH,
                "requestBody": _body(TokenCreate),
                "responses": _ok(201, TokenMinted),
            }
        },
        "/api/v1/tokens/{token}": {
            "parameters": [_path("token", r"^[a-f0-9]{1,64}$")],
            "delete": {"summary": "Revoke a token (admins)", "security": _AUTH, "responses": _ok(204)},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "liveblog", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


_DOCUMENT = msgspec.json.encode(document())


async def openapi(request: Request) -> Response:
    return Response(_DOCUMENT, media_type="application/json", headers={"Access-Control-Allow-Origin": "*"})
