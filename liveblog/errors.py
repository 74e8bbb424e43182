"""The contract's error shape, ``{"error": {"code", "message", "field"?}}``, and its mapping.

Handlers turn user errors (bad JSON, failed validation, a blog or entry that does not exist, a
field the sanitiser emptied, Redis being away) into that shape with a fitting status. Anything
else is a bug: it is logged with the request and answered with a plain 500 in the same shape.
"""

from __future__ import annotations

import logging
import re

import msgspec
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from .entries import NothingLeft, Refused
from .models import ErrorBody, ErrorResponse, encoder
from .services import services
from .storage import NotFound, NotReplicated

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, field: str | None = None, headers: dict[str, str] | None = None
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers

    def response(self) -> Response:
        return error_response(self.status, self.code, self.message, self.field, self.headers)


def error_body(code: str, message: str, field: str | None = None) -> bytes:
    return encoder.encode(ErrorResponse(ErrorBody(code=code, message=message, field=field)))


def error_response(
    status: int, code: str, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    return Response(error_body(code, message, field), status, headers=headers, media_type="application/json")


_AT_PATH = re.compile(r" - at `(\$[^`]*)`$")
_UNKNOWN_FIELD = re.compile(r"^Object contains unknown field `([^`]*)`")


def validation_error(exc: msgspec.ValidationError) -> ApiError:
    """422 naming the JSON path msgspec reports (for an unknown field, the field's own path)."""
    message = str(exc)
    at = _AT_PATH.search(message)
    path = at.group(1) if at else "$"
    unknown = _UNKNOWN_FIELD.match(message)
    if unknown:
        path = f"{path}.{unknown.group(1)}"
        return ApiError(422, "unknown_field", message, path)
    return ApiError(422, "invalid", message, path)


def _method(connection: HTTPConnection) -> str:
    """The HTTP method, or WEBSOCKET: these handlers also see errors from WebSocket routes."""
    method: str = connection.scope.get("method", "WEBSOCKET")
    return method


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def _not_found(request: Request, exc: Exception) -> Response:
    return error_response(404, "not_found", str(exc))


async def _nothing_left(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, NothingLeft)
    return error_response(422, "invalid", str(exc), exc.field)


async def _refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Refused)
    return error_response(exc.status, exc.code, exc.message, exc.field)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    code = codes.get(exc.status_code, "http_error")
    headers = dict(exc.headers) if exc.headers is not None else None
    return error_response(exc.status_code, code, str(exc.detail), headers=headers)


async def _redis_down(request: Request, exc: Exception) -> Response:
    log.warning("Redis unavailable during %s %s: %s", _method(request), request.url.path, exc)
    services(request).metrics.redis_errors.labels("api").inc()
    return error_response(503, "unavailable", "storage is unreachable; retry shortly", headers={"Retry-After": "1"})


async def _not_replicated(request: Request, exc: Exception) -> Response:
    log.warning("write not replicated during %s %s: %s", _method(request), request.url.path, exc)
    services(request).metrics.redis_errors.labels("replication").inc()
    return error_response(503, "not_replicated", str(exc), headers={"Retry-After": "1"})


async def _bug(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error in %s %s", _method(request), request.url.path)
    return error_response(500, "internal", "internal error; it has been logged")


handlers = {
    ApiError: _api_error,
    NotFound: _not_found,
    NothingLeft: _nothing_left,
    Refused: _refused,
    HTTPException: _http_error,
    RedisConnectionError: _redis_down,
    RedisTimeoutError: _redis_down,
    NotReplicated: _not_replicated,
    Exception: _bug,
}
