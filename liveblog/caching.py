"""HTTP caching for public responses: an ETag over the bytes, a short shared-cache lifetime.

Readers arrive in spikes (a push alert sends thousands at once); a CDN in front absorbs them if
responses say they may be cached for a few seconds and served stale while revalidating, and a
conditional request costs a 304 instead of a body.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict

from starlette.requests import Request
from starlette.responses import Response

#: Reader responses may be cached briefly by browsers and CDNs; ETag makes revalidation cheap.
READER_CACHE = "public, max-age=2, stale-while-revalidate=10"


def revalidatable(request: Request, body: bytes, media_type: str, headers: dict[str, str] | None = None) -> Response:
    """A public response with an ETag over ``body``; 304 when ``If-None-Match`` names it."""
    etag = '"%s"' % hashlib.blake2b(body, digest_size=12).hexdigest()
    headers = {"ETag": etag, "Cache-Control": READER_CACHE, **(headers or {})}
    if _etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return Response(body, headers=headers, media_type=media_type)


def _etag_matches(header: str | None, etag: str) -> bool:
    if header is None:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return "*" in tags or etag in tags


class ShortCache:
    """Bodies per blog, kept for ``ttl`` seconds (at most ``size`` blogs): a spike of identical
    reads (everyone opening the page after a push alert) costs one Redis round trip per ``ttl``.

    Writes through this process forget the blog's bodies at once, so a reporter sees their post;
    writes through other processes show up within ``ttl`` (the responses say ``max-age=2``).
    """

    def __init__(self, ttl: float = 1.0, size: int = 1024):
        self.ttl = ttl
        self.size = size
        self._blogs: OrderedDict[str, dict[object, tuple[float, bytes]]] = OrderedDict()

    def get(self, blog_id: str, variant: object) -> bytes | None:
        hit = self._blogs.get(blog_id, {}).get(variant)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def put(self, blog_id: str, variant: object, body: bytes) -> None:
        bodies = self._blogs.pop(blog_id, {})
        bodies[variant] = (time.monotonic() + self.ttl, body)
        self._blogs[blog_id] = bodies
        while len(self._blogs) > self.size:
            self._blogs.popitem(last=False)

    def forget(self, blog_id: str) -> None:
        self._blogs.pop(blog_id, None)
