"""The HTTP API's edge: what every handler does with a request before the domain sees it.

A path parameter that cannot name anything is a 404; a body is read within the size limit and
decoded once into a Struct (a 422 names the path of the field at fault); a query number is within
its range or a 400 names the parameter. Shared by :mod:`liveblog.api` and :mod:`liveblog.webhook_api`.
"""

from __future__ import annotations

import re
from typing import TypeVar

import msgspec
from msgspec import Struct
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

from . import auth, sessions
from .errors import ApiError, validation_error
from .models import SLUG_PATTERN
from .models import decode as decode_struct
from .services import services

T = TypeVar("T", bound=Struct)

_SLUG = re.compile(SLUG_PATTERN)
_NUMBER = re.compile(r"^[0-9]{1,9}\Z")
_STREAM_ID = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}\Z")
#: Staff answers: never kept by a shared cache.
PRIVATE = {"Cache-Control": "private, no-store"}
MAX_PAGE = 100


def json(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``body``, already encoded JSON, as the answer."""
    return Response(body, status, headers=headers, media_type="application/json")


def path_id(request: Request, name: str, pattern: re.Pattern[str]) -> str:
    """Path parameter ``name``; one that nothing could be named is a 404, as an unknown one is."""
    value: str = request.path_params[name]
    if not pattern.match(value):
        raise ApiError(404, "not_found", f"no such {name}")
    return value


def blog_id(request: Request) -> str:
    """The path's blog id (see :func:`path_id`)."""
    return path_id(request, "blog", _SLUG)


async def body(request: Request) -> bytes:
    """The request body, refusing (413) anything over the configured limit before reading it all."""
    limit = services(request).settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and (not (declared.isascii() and declared.isdigit()) or int(declared) > limit):
        raise ApiError(413, "too_large", f"request body is over the {limit}-byte limit")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "too_large", f"request body is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def decode(kind: type[T], body: bytes) -> T:
    """``body`` as a ``kind``: 400 ``malformed_json``, or 422 with the path of the bad field."""
    try:
        return decode_struct(kind, body)
    except msgspec.ValidationError as exc:
        raise validation_error(exc) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "malformed_json", f"request body is not valid JSON: {exc}") from None


async def principal(request: Request) -> auth.Principal:
    return await sessions.principal(request)


def forbid(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)


def int_param(params: QueryParams, name: str, default: int, maximum: int) -> int:
    """Query parameter ``name``, from 1 to ``maximum`` (``default`` when absent), else 400 ``bad_<name>``."""
    raw = params.get(name)
    if raw is None:
        return default
    if not _NUMBER.match(raw) or not 1 <= int(raw) <= maximum:
        raise ApiError(400, f"bad_{name}", f"{name} must be an integer from 1 to {maximum}", name)
    return int(raw)


def is_record_id(text: str) -> bool:
    """A stream id Redis takes (both parts below 2**64); ``0-0`` has nothing before it."""
    if not _STREAM_ID.match(text):
        return False
    parts = [int(part) for part in text.split("-")]
    return max(parts) < 2**64
