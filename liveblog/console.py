"""The reporter console (DESIGN §6) and the front page that leads to it.

``GET /console`` is one static page (``templates/console.html``) with one script
(``static/console.js``) and one stylesheet (``static/console.css``), all served from here under a
strict Content-Security-Policy: scripts and styles only from this origin, nothing inline, no
``eval``, connections only back to this service (HTTP and its WebSockets). The page signs in with
a token through ``POST /api/v1/session`` and then talks to the API with its session cookie; the
token is never kept in page storage.

``POST /console/preview`` runs the server's own sanitiser over a draft body, so the composer's
preview shows exactly what readers will get. ``GET /`` lists the blogs and links to the console.
"""

from __future__ import annotations

import json
from importlib import resources

import msgspec
from msgspec import Struct
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import entries, i18n, sessions
from .caching import Prepared
from .errors import ApiError
from .models import Blog, decode, encoder
from .render import templates
from .services import services

HTML = "text/html; charset=utf-8"
PRIVATE = {"Cache-Control": "no-store"}


#: Placeholder in ``static/console.js`` for every catalogue's console strings.
STRINGS_PLACEHOLDER = b"__LIVEBLOG_CONSOLE_STRINGS__"


def _static(name: str) -> bytes:
    return (resources.files("liveblog") / "static" / name).read_bytes()


def script() -> bytes:
    """``static/console.js`` with the console strings of each language that has them (a few
    kilobytes in all, so the page fetches no catalogue of its own)."""
    catalogues = {language: found for language in i18n.languages() if (found := i18n.console_strings(language))}
    strings = json.dumps(catalogues, ensure_ascii=False, separators=(",", ":")).encode()
    return _static("console.js").replace(STRINGS_PLACEHOLDER, strings)


SCRIPT = Prepared.of(script())
STYLE = Prepared.of(_static("console.css"))
SCRIPT_URL = f"/console.js?v={SCRIPT.etag.strip(chr(34))[:12]}"
STYLE_URL = f"/console.css?v={STYLE.etag.strip(chr(34))[:12]}"
PAGE = Prepared.of(
    templates.get_template("console.html").render(script=SCRIPT_URL, style=STYLE_URL).encode(),
)


def policy(request: Request) -> str:
    """The console's Content-Security-Policy: nothing inline, nothing from elsewhere, and
    connections only to this service (its HTTP and its WebSockets)."""
    origin = sessions.own_origin(request)
    sockets = origin.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; "
        f"connect-src 'self' {sockets}; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )


async def console_page(request: Request) -> Response:
    headers = {"Content-Security-Policy": policy(request), "X-Content-Type-Options": "nosniff"}
    return PAGE.response(request, HTML, headers)


async def console_script(request: Request) -> Response:
    return SCRIPT.response(request, "text/javascript; charset=utf-8", {"X-Content-Type-Options": "nosniff"})


async def console_style(request: Request) -> Response:
    return STYLE.response(request, "text/css; charset=utf-8", {"X-Content-Type-Options": "nosniff"})


class Draft(Struct, kw_only=True):
    body: str
    body_format: str = "html"


async def preview(request: Request) -> Response:
    """``POST /console/preview`` ``{"body", "body_format"?}`` → ``{"body"}``: the body as the
    server would store it (staff only; 422 as a write would be, e.g. for an ``<img>``)."""
    await sessions.principal(request)
    limit = services(request).settings.max_body_bytes
    raw = await request.body()
    if len(raw) > limit:
        raise ApiError(413, "too_large", f"request body is over the {limit}-byte limit")
    try:
        draft = msgspec.json.decode(raw, type=Draft)
    except msgspec.DecodeError as exc:
        raise ApiError(400, "malformed_json", f"request body is not a draft: {exc}") from None
    if draft.body_format not in ("html", "markdown", "text"):
        raise ApiError(422, "invalid", "body_format must be html, markdown or text", "$.body_format")
    try:
        body = entries.clean_body(draft.body, draft.body_format)
    except entries.Refused as exc:
        raise ApiError(exc.status, exc.code, str(exc), exc.field) from None
    except entries.NothingLeft:
        body = ""
    return Response(encoder.encode({"body": body}), media_type="application/json", headers=PRIVATE)


async def front_page(request: Request) -> Response:
    """``GET /``: what this service is, its blogs, and the way to the console."""
    bodies = await services(request).store.list_blogs()
    blogs = sorted((decode(Blog, body) for body in bodies), key=lambda blog: blog.updated_at, reverse=True)
    page = templates.get_template("front.html").render(blogs=blogs, style=STYLE_URL).encode()
    headers = {"Content-Security-Policy": policy(request), **PRIVATE}
    return Response(page, media_type=HTML, headers=headers)


routes = [
    Route("/", front_page, methods=["GET"]),
    Route("/console", console_page, methods=["GET"]),
    Route("/console.js", console_script, methods=["GET"]),
    Route("/console.css", console_style, methods=["GET"]),
    Route("/console/preview", preview, methods=["POST"]),
]
