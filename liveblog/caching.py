"""HTTP caching for public responses: an ETag over the bytes, a short shared-cache lifetime.

Readers arrive in spikes (a push alert sends thousands at once); a CDN in front absorbs them if
responses say they may be cached for a few seconds and served stale while revalidating, and a
conditional request costs a 304 instead of a body.
"""

from __future__ import annotations

import hashlib

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
