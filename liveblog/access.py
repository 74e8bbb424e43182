"""The access log: one line per request, and one per live connection when it ends.

A pure ASGI middleware (a ``BaseHTTPMiddleware`` would buffer streamed responses such as SSE).
It sits inside the proxy-headers middleware, so ``client`` is the address the rest of the app
uses (``X-Forwarded-For`` from a trusted proxy). It logs the method, the path without its query
string (a query may carry a token: ``?token=…``), the status, the duration and the client; never
a header, a cookie or a body. A WebSocket is logged once it closes, with its close code: the
line comes from the connection's ``connection_lost``, so nothing is done per delivered message.

Lines go to the ``liveblog.access`` logger; the fields are also on the record as ``access``
(a dict), which :class:`liveblog.logs.JsonFormatter` writes as top-level keys.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, MutableMapping
from typing import Any

from .connection import CONNECTION_EXTENSION, LiveConnection

log = logging.getLogger("liveblog.access")

Message = MutableMapping[str, Any]
ASGIApp = Callable[..., Any]


class AccessLog:
    """Wrap ``app`` so that each HTTP request and WebSocket it serves is logged once, at its end."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Message, receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: Message, receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        started = time.perf_counter()
        seen: dict[str, Any] = {"status": None, "sse": False}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                for name, value in message.get("headers", ()):
                    if name.lower() == b"content-type" and value.startswith(b"text/event-stream"):
                        seen["sse"] = True
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            # An app that raised before answering: the server answers 500 (uvicorn does).
            _line(
                "sse" if seen["sse"] else "http",
                _where(scope),
                seen["status"] if seen["status"] is not None else 500,
                None,
                started,
            )

    async def _websocket(self, scope: Message, receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        started = time.perf_counter()
        seen: dict[str, Any] = {"accepted": False, "status": None}

        async def sending(message: Message) -> None:
            kind = message["type"]
            if kind == "websocket.accept":
                seen["accepted"] = True
            elif kind == "websocket.close" and not seen["accepted"]:
                seen["status"] = 403
            elif kind == "websocket.http.response.start":
                seen["status"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            connection = scope.get("extensions", {}).get(CONNECTION_EXTENSION)
            if seen["accepted"] and isinstance(connection, LiveConnection):
                # The callback lives as long as the reader (hours): it keeps three strings, not
                # the scope with its headers.
                where = _where(scope)
                connection.when_lost(lambda code: _line("websocket", where, 101, code, started))
            else:
                _line("websocket", _where(scope), seen["status"] if seen["status"] is not None else 500, None, started)


def _where(scope: Message) -> tuple[str, str, str | None]:
    """Method, path (no query string: it may hold a token) and client address of a request."""
    client = scope.get("client")
    return scope.get("method", "GET"), scope.get("root_path", "") + scope["path"], client[0] if client else None


def _line(kind: str, where: tuple[str, str, str | None], status: int, close_code: int | None, started: float) -> None:
    method, path, client = where
    fields: dict[str, object] = {
        "kind": kind,
        "method": method,
        "path": path,
        "status": status,
        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
        "client": client,
    }
    if kind == "websocket" and status == 101:
        fields["close_code"] = close_code
    tail = f" close={close_code}" if "close_code" in fields else ""
    log.info(
        "%s %s %s %s %.1fms client=%s%s",
        kind,
        fields["method"],
        fields["path"],
        status,
        fields["duration_ms"],
        fields["client"],
        tail,
        extra={"access": fields},
    )
