"""The HTTP API (DESIGN §3): the reporter endpoints, the reader endpoints, health checks.

Each handler authenticates, reads a bounded body, decodes it once into a Struct, applies the
domain rule (:mod:`liveblog.entries`, :mod:`liveblog.blogs`, :mod:`liveblog.auth`) and hands the
result to the store. A request that fails changes nothing: every write is one atomic script
that runs only after all checks passed.
"""

from __future__ import annotations

import logging
import math
import re
import secrets
from datetime import UTC, datetime

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute

from . import auth, blogs, edge, entries, sessions
from .caching import Prepared, ShortCache, revalidatable
from .cursor import BadCursor, Cursor
from .errors import ApiError
from .live import live
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .models import (
    Blog,
    BlogCreate,
    BlogPatch,
    Entry,
    EntryCreate,
    EntryDelete,
    EntryPage,
    EntryPatch,
    EventPage,
    Raw,
    SessionCreate,
    TokenCreate,
    Version,
    decode,
    encoder,
)
from .openapi import openapi
from .reader import client_address
from .services import services
from .sse import events
from .staff import staff_live
from .storage import BlogEnded, Change, Conflict, CursorGone, Page, Purged, Storage, Written
from .store import fingerprint, key_digest

log = logging.getLogger(__name__)

_ENTRY_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
_IF_MATCH = re.compile(r'^(?:W/)?"?([0-9]{1,9})"?\Z')
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,200}\Z")
_TAG = re.compile(r"^[^\x00-\x1f\x7f]{1,40}\Z")
UNPUBLISHED = ("draft", "submitted", "scheduled", "retracted")
MAX_EVENTS = 1000


def now() -> datetime:
    return datetime.now(UTC)


def _store(request: Request) -> Storage:
    return services(request).store


def _reader_json(request: Request, body: bytes) -> Response:
    """A public, CORS-enabled, revalidatable JSON response."""
    return revalidatable(request, body, "application/json", {"Access-Control-Allow-Origin": "*"})


def _entry_id(request: Request) -> str:
    return edge.path_id(request, "entry", _ENTRY_ID)


def _hide_others_work(principal: auth.Principal, entry: Entry, owner: str | None) -> None:
    """An unpublished entry the caller may not see does not exist, as far as it can tell: 404,
    the answer it would get for an id that was never used."""
    if entry.status != "published" and not principal.can_see_work(entry.blog, owner):
        raise ApiError(404, "not_found", f"entry {entry.id!r} does not exist in blog {entry.blog!r}")


def _if_match(request: Request) -> int:
    header = request.headers.get("if-match")
    if header is None:
        raise ApiError(428, "precondition_required", 'send If-Match: "<version>" with the version you edited')
    match = _IF_MATCH.match(header.strip())
    if not match:
        raise ApiError(400, "bad_if_match", 'If-Match must be the entry version, like "3"')
    return int(match.group(1))


def _entry_response(body: bytes, status: int, **headers: str) -> Response:
    version = msgspec.json.decode(body, type=dict)["version"]
    return edge.json(body, status, headers={"ETag": f'"{version}"', **headers})


# --- health ---------------------------------------------------------------------------------------


async def healthz(request: Request) -> Response:
    return edge.json(b'{"status":"ok"}')


async def readyz(request: Request) -> Response:
    try:
        await _store(request).ping()
    except Exception as exc:  # any failure to reach Redis means "not ready", which is the answer
        # The detail (a socket path, a host name) is for the operator's log, not for whoever asks.
        log.warning("not ready: Redis does not answer: %s", exc)
        return edge.json(b'{"status":"unavailable","reason":"storage unreachable"}', 503)
    return edge.json(b'{"status":"ready"}')


async def metrics(request: Request) -> Response:
    return Response(services(request).metrics.render(), media_type=METRICS_CONTENT_TYPE)


# --- blogs ----------------------------------------------------------------------------------------


async def list_blogs(request: Request) -> Response:
    principal = await edge.principal(request)
    bodies = await _store(request).list_blogs()
    visible = [
        Raw(body)
        for body in bodies
        if principal.is_admin or msgspec.json.decode(body, type=dict)["id"] in principal.blogs
    ]
    return edge.json(encoder.encode({"blogs": visible}))


async def create_blog(request: Request) -> Response:
    principal = await edge.principal(request)
    create = edge.decode(BlogCreate, await edge.body(request))
    if not principal.can_manage(create.id):
        raise edge.forbid("only admins (or an editor scoped to this blog id) create blogs")
    try:
        body = await _store(request).create_blog(blogs.create(create, now()), epoch=secrets.token_hex(4))
        services(request).pages.forget(create.id)
    except Conflict as exc:
        raise ApiError(409, "exists", str(exc), "$.id") from None
    return edge.json(body, 201, headers={"Location": f"/api/v1/blogs/{create.id}"})


async def get_blog(request: Request) -> Response:
    return _reader_json(request, await _store(request).get_blog_json(edge.blog_id(request)))


async def patch_blog(request: Request) -> Response:
    principal = await edge.principal(request)
    blog_id = edge.blog_id(request)
    if not principal.can_manage(blog_id):
        raise edge.forbid("only editors of this blog and admins change it")
    patch = edge.decode(BlogPatch, await edge.body(request))
    store = _store(request)
    for _ in range(5):  # compare-and-set: re-apply the patch if another editor wrote in between
        try:
            read = await store.get_blog_json(blog_id)
            written = await store.replace_blog(read, blogs.edit(decode(Blog, read), patch, now()))
            services(request).pages.forget(blog_id)
            return edge.json(written.json)
        except Conflict:
            continue
    raise ApiError(409, "conflict", "the blog is being edited by others; retry")


# --- entries --------------------------------------------------------------------------------------


async def list_entries(request: Request) -> Response:
    blog_id = edge.blog_id(request)
    params = request.query_params
    store = _store(request)
    if "status" in params:
        return await _list_work(request, blog_id, params["status"])
    if "since" in params:
        limit = edge.int_param(params, "limit", 500, MAX_EVENTS)
        return _reader_json(request, await _events_since(store, blog_id, params["since"], limit))
    limit = edge.int_param(params, "limit", 20, edge.MAX_PAGE)
    before = params.get("before")
    if before is not None and not _ENTRY_ID.match(before):
        raise ApiError(400, "bad_before", "before must be an entry id", "before")
    tag = params.get("tag")
    if tag is not None:
        if not _TAG.match(tag):
            raise ApiError(400, "bad_tag", "tag must be 1-40 characters of text", "tag")
        # Not kept in the page cache: anyone may ask for any tag, and the cache's variants must
        # stay bounded. One Redis round trip per request, like ``since``; CDNs still cache it.
        page = await store.page(blog_id, limit, before, tag)
        return _reader_json(request, _entry_page(page))
    # Kept prepared: gzipped once per page and freshness, not once per request (a push alert's
    # readers all load the same page).
    pages: ShortCache = services(request).pages
    variant = ("entries", limit, before)
    if (prepared := pages.get_prepared(blog_id, variant)) is None:
        prepared = Prepared.of(_entry_page(await store.page(blog_id, limit, before)))
        pages.put(blog_id, variant, prepared)
    return prepared.response(request, "application/json", {"Access-Control-Allow-Origin": "*"})


def _entry_page(page: Page) -> bytes:
    return encoder.encode(EntryPage(str(page.cursor), [Raw(e) for e in page.entries if e is not None], page.next))


async def _list_work(request: Request, blog_id: str, status: str) -> Response:
    """Staff: the blog's unpublished entries in one status (contributors and reporters see
    their own), newest first."""
    principal = await edge.principal(request)
    if status not in UNPUBLISHED:
        raise ApiError(400, "bad_status", f"status must be one of {', '.join(UNPUBLISHED)}", "status")
    if not principal.can_post(blog_id):
        raise edge.forbid(f"this token has no access to {blog_id!r}")
    await _store(request).get_blog_json(blog_id)  # 404 for no such blog
    limit = edge.int_param(request.query_params, "limit", 100, edge.MAX_PAGE)
    work = await _store(request).list_work(blog_id)
    shown = [entry for entry, owner in work if entry.status == status and principal.can_see_work(blog_id, owner)][
        :limit
    ]
    return edge.json(encoder.encode({"entries": shown}), headers=edge.PRIVATE)


async def _events_since(store: Storage, blog_id: str, text: str, limit: int) -> bytes:
    try:
        cursor = Cursor.parse(text)
    except BadCursor as exc:
        raise ApiError(400, "bad_cursor", str(exc), "since") from None
    try:
        events = await store.since(blog_id, cursor, limit)
    except CursorGone as exc:
        raise ApiError(410, "cursor_gone", f"{exc}; load the entries again for a fresh cursor", "since") from None
    last = str(Cursor(cursor.epoch, events[-1].stream_id)) if events else text
    return encoder.encode(EventPage(last, [Raw(event.with_cursor(cursor.epoch)) for event in events]))


async def get_entry(request: Request) -> Response:
    """A published entry, for anyone; with a token, also unpublished work the token may see."""
    blog_id, entry_id = edge.blog_id(request), _entry_id(request)
    if "authorization" not in request.headers:
        return _reader_json(request, await _store(request).get_public_entry(blog_id, entry_id))
    principal = await edge.principal(request)
    entry, owner = await _store(request).get_entry(blog_id, entry_id)
    _hide_others_work(principal, entry, owner)
    return _entry_response(encoder.encode(entry), 200, **edge.PRIVATE)


async def entry_versions(request: Request) -> Response:
    """Every published version of a published entry, oldest first (staff: also of a retracted one)."""
    blog_id, entry_id = edge.blog_id(request), _entry_id(request)
    store = _store(request)
    if "authorization" in request.headers:
        principal = await edge.principal(request)
        entry, owner = await store.get_entry(blog_id, entry_id)
        _hide_others_work(principal, entry, owner)
        rows = await store.versions(blog_id, entry_id)
        return edge.json(
            encoder.encode({"entry": entry_id, "versions": [Raw(row) for row in rows]}), headers=edge.PRIVATE
        )
    await store.get_public_entry(blog_id, entry_id)
    rows = await store.versions(blog_id, entry_id)
    return _reader_json(request, encoder.encode({"entry": entry_id, "versions": [Raw(row) for row in rows]}))


def _throttle_writes(request: Request, principal: auth.Principal) -> None:
    wait = services(request).writes.wait_time(principal.token_id)
    if wait:
        retry = {"Retry-After": str(math.ceil(wait))}
        raise ApiError(429, "rate_limited", "too many writes with this token; slow down", headers=retry)


async def create_entry(request: Request) -> Response:
    with services(request).metrics.post_seconds.time():
        return await _create_entry(request)


async def _create_entry(request: Request) -> Response:
    principal = await edge.principal(request)
    _throttle_writes(request, principal)
    blog_id = edge.blog_id(request)
    if not principal.can_post(blog_id):
        raise edge.forbid(f"this token may not post to {blog_id!r}")
    raw = await edge.body(request)
    create = edge.decode(EntryCreate, raw)
    idempotency = None
    if (key := request.headers.get("idempotency-key")) is not None:
        if not _IDEMPOTENCY_KEY.match(key):
            raise ApiError(400, "bad_idempotency_key", "Idempotency-Key must be 1-200 printable ASCII characters")
        idempotency = (key_digest(principal.token_id, key), fingerprint(raw))
    change = entries.create(blog_id, create, principal, now())
    written = await _apply(request, change, principal.token_id, idempotency)
    replayed = {"Idempotent-Replayed": "true"} if written.replayed else {}
    return _entry_response(written.json, 201, **replayed)


async def _apply(request: Request, change: Change, owner: str, idempotency: tuple[str, str] | None = None) -> Written:
    """Write ``change``; a scheduled entry is put in the schedule index before and after."""
    store, entry = _store(request), change.entry
    scheduled = entry.status == "scheduled" and entry.publish_at is not None
    if scheduled:
        await store.schedule(entry.blog, entry.id, entry.publish_at)  # type: ignore[arg-type]
    try:
        written = await store.write(change, owner, idempotency)
    except BlogEnded as exc:
        raise ApiError(409, "blog_ended", str(exc)) from None
    except Purged as exc:
        raise ApiError(410, "purged", f"{exc}; it is not made again") from None
    except Conflict as exc:
        if change.expected_version == 0:
            raise ApiError(409, "idempotency_key_reused", str(exc)) from None
        raise _stale(exc.current_version) from None
    if scheduled and not written.replayed:
        await store.schedule(entry.blog, entry.id, entry.publish_at)  # type: ignore[arg-type]
    services(request).pages.forget(entry.blog)
    return written


async def _editable(request: Request) -> tuple[Entry, str | None, int]:
    """The entry a write names, its owner, and the version the writer saw (``If-Match``)."""
    blog_id, entry_id = edge.blog_id(request), _entry_id(request)
    entry, owner = await _store(request).get_entry(blog_id, entry_id)
    expected = _if_match(request)
    return entry, owner, expected


def _stale(current: int | None) -> ApiError:
    now_at = f"; it is now at version {current}" if current is not None else ""
    return ApiError(412, "version_conflict", f"someone edited this entry first{now_at}")


async def patch_entry(request: Request) -> Response:
    principal = await edge.principal(request)
    _throttle_writes(request, principal)
    patch = edge.decode(EntryPatch, await edge.body(request))
    entry, owner, expected = await _editable(request)
    _hide_others_work(principal, entry, owner)
    shown = None
    if entry.status == "retracted" and patch.status == "published":  # a restore: what did readers have?
        rows = await _store(request).versions(entry.blog, entry.id)
        shown = decode(Version, rows[-1]) if rows else None
    change = entries.edit(entry, owner, patch, principal, now(), shown)
    if entry.version != expected:
        raise _stale(entry.version)
    written = await _apply(request, change, principal.token_id)
    return _entry_response(written.json, 200)


async def delete_entry(request: Request) -> Response:
    """Retract (readers see the entry go, with the optional ``retraction_note``), or with
    ``?purge=true`` take it down: no output returns any version of its text afterwards."""
    principal = await edge.principal(request)
    _throttle_writes(request, principal)
    purge = request.query_params.get("purge", "false")
    if purge not in ("true", "false"):
        raise ApiError(400, "bad_purge", "purge must be true or false", "purge")
    raw = await edge.body(request)
    note = edge.decode(EntryDelete, raw).retraction_note if raw.strip() else None
    blog_id, entry_id = edge.blog_id(request), _entry_id(request)
    entry, owner = await _store(request).get_entry(blog_id, entry_id)
    _hide_others_work(principal, entry, owner)
    if purge == "true":
        # A takedown is not refused for a race: If-Match is checked only when sent.
        expected = _if_match(request) if "if-match" in request.headers else None
        takedown = entries.purge(entry, principal, now())
        try:
            await _store(request).purge(blog_id, entry_id, expected, takedown)
        except Conflict as exc:
            raise _stale(exc.current_version) from None
        services(request).pages.forget(blog_id)
        services(request).snapshots.forget(blog_id)
        return Response(status_code=204)
    expected = _if_match(request)
    change = entries.retract(entry, owner, note, principal, now())
    if entry.version != expected:
        raise _stale(entry.version)
    await _apply(request, change, principal.token_id)
    return Response(status_code=204)


async def audit(request: Request) -> Response:
    """Editors and admins: who did what to which entry and when, newest first."""
    principal = await edge.principal(request)
    blog_id = edge.blog_id(request)
    if not (principal.is_editor and principal.can_post(blog_id)):
        raise edge.forbid("only editors of this blog and admins read its audit trail")
    await _store(request).get_blog_json(blog_id)
    limit = edge.int_param(request.query_params, "limit", 100, edge.MAX_PAGE)
    before = request.query_params.get("before")
    if before is not None and not edge.is_record_id(before):
        raise ApiError(400, "bad_before", "before must be the id of an audit record", "before")
    records, next_id = await _store(request).audit(blog_id, limit, before)
    return edge.json(encoder.encode({"records": [Raw(r) for r in records], "next": next_id}), headers=edge.PRIVATE)


# --- tokens ---------------------------------------------------------------------------------------


async def create_token(request: Request) -> Response:
    principal = await edge.principal(request)
    if not principal.is_admin:
        raise edge.forbid("only admins mint tokens")
    record, shown = auth.mint(edge.decode(TokenCreate, await edge.body(request)), now())
    await _store(request).add_token(record)
    return edge.json(encoder.encode(shown), 201, headers={"Cache-Control": "no-store"})


async def list_tokens(request: Request) -> Response:
    principal = await edge.principal(request)
    if not principal.is_admin:
        raise edge.forbid("only admins list tokens")
    tokens = await _store(request).list_tokens()
    return edge.json(encoder.encode({"tokens": tokens}), headers=edge.PRIVATE)


async def revoke_token(request: Request) -> Response:
    principal = await edge.principal(request)
    if not principal.is_admin:
        raise edge.forbid("only admins revoke tokens")
    if not await _store(request).revoke_token(request.path_params["token"][:64]):
        raise ApiError(404, "not_found", "no such token")
    return Response(status_code=204)


# --- browser sessions ----------------------------------------------------------------------------


def _whoami(principal: auth.Principal) -> bytes:
    who = {
        "name": principal.name,
        "role": principal.role,
        "blogs": sorted(principal.blogs),
        "admin": principal.is_admin,
    }
    return encoder.encode(who)


async def sign_in(request: Request) -> Response:
    """``POST /api/v1/session`` ``{"token"}``: a browser session in an HttpOnly cookie."""
    state = services(request)
    wait = state.signins.wait_time(client_address(request))
    if wait:
        raise ApiError(
            429, "rate_limited", "too many sign-ins; wait a little", headers={"Retry-After": str(math.ceil(wait))}
        )
    if request.headers.get("origin") not in (None, sessions.own_origin(request)):
        raise ApiError(403, "cross_origin", "sign in from this service's own pages")
    text = edge.decode(SessionCreate, await edge.body(request)).token
    try:
        principal = await sessions.principal_of_token(request, text)
    except auth.BadToken as exc:
        raise ApiError(401, "unauthorized", str(exc), "$.token") from None
    session_id = await sessions.start(request, principal)
    response = edge.json(_whoami(principal), 201, headers=edge.PRIVATE)
    response.set_cookie(
        sessions.COOKIE,
        session_id,
        httponly=True,
        samesite="strict",
        secure=sessions.own_origin(request).startswith("https:"),
        path="/",
    )
    return response


async def whoami(request: Request) -> Response:
    return edge.json(_whoami(await edge.principal(request)), headers=edge.PRIVATE)


async def sign_out(request: Request) -> Response:
    """``DELETE /api/v1/session``: the session ends on the server, and the cookie goes."""
    if request.headers.get("origin") not in (None, sessions.own_origin(request)):
        raise ApiError(403, "cross_origin", "sign out from this service's own pages")
    await sessions.end(request)
    response = Response(status_code=204, headers=edge.PRIVATE)
    response.delete_cookie(sessions.COOKIE, path="/", httponly=True, samesite="strict")
    return response


routes = [
    Route("/healthz", healthz),
    Route("/api/v1/openapi.json", openapi, methods=["GET"]),
    Route("/readyz", readyz),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/api/v1/blogs", list_blogs, methods=["GET"]),
    Route("/api/v1/blogs", create_blog, methods=["POST"]),
    Route("/api/v1/blogs/{blog}", get_blog, methods=["GET"]),
    Route("/api/v1/blogs/{blog}", patch_blog, methods=["PATCH"]),
    Route("/api/v1/blogs/{blog}/entries", list_entries, methods=["GET"]),
    Route("/api/v1/blogs/{blog}/entries", create_entry, methods=["POST"]),
    Route("/api/v1/blogs/{blog}/entries/{entry}", get_entry, methods=["GET"]),
    Route("/api/v1/blogs/{blog}/entries/{entry}", patch_entry, methods=["PATCH"]),
    Route("/api/v1/blogs/{blog}/entries/{entry}", delete_entry, methods=["DELETE"]),
    Route("/api/v1/blogs/{blog}/entries/{entry}/versions", entry_versions, methods=["GET"]),
    Route("/api/v1/blogs/{blog}/audit", audit, methods=["GET"]),
    Route("/api/v1/session", sign_in, methods=["POST"]),
    Route("/api/v1/session", whoami, methods=["GET"]),
    Route("/api/v1/session", sign_out, methods=["DELETE"]),
    Route("/api/v1/tokens", list_tokens, methods=["GET"]),
    Route("/api/v1/tokens", create_token, methods=["POST"]),
    Route("/api/v1/tokens/{token}", revoke_token, methods=["DELETE"]),
    WebSocketRoute("/api/v1/blogs/{blog}/live", live),
    WebSocketRoute("/api/v1/blogs/{blog}/staff/live", staff_live),
    Route("/api/v1/blogs/{blog}/events", events, methods=["GET"]),
]
