"""Proxy headers: uvicorn's ``ProxyHeadersMiddleware``, asked only when there is something to read.

The middleware takes the client address and scheme from ``X-Forwarded-For`` and
``X-Forwarded-Proto`` when the connection comes from a trusted proxy
(``LIVEBLOG_FORWARDED_ALLOW_IPS``); without either header it changes nothing. Yet it parses the
peer's address to test that trust before it looks at the headers, on every request and every
WebSocket upgrade: a visible share of a join storm of readers who connect directly. This app
looks at the header names first (the scope has them, parsed once) and hands the scope to the
middleware only if one of them is there, so what a scope ends up with is exactly what the
middleware makes of it, and a direct reader pays no trust check.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

#: The headers ``ProxyHeadersMiddleware`` reads (ASGI header names are lower case).
FORWARDING = frozenset((b"x-forwarded-for", b"x-forwarded-proto"))


class ProxyHeaders:
    """``app`` behind uvicorn's ``ProxyHeadersMiddleware`` for scopes with forwarding headers."""

    def __init__(self, app: Any, trusted_hosts: str):
        self.app = app
        self._middleware = ProxyHeadersMiddleware(app, trusted_hosts=trusted_hosts)

    async def __call__(
        self, scope: MutableMapping[str, Any], receive: Callable[..., Any], send: Callable[..., Any]
    ) -> None:
        if scope["type"] != "lifespan":
            for name, _ in scope["headers"]:
                if name in FORWARDING:
                    await self._middleware(scope, receive, send)  # type: ignore[arg-type]
                    return
        await self.app(scope, receive, send)
