"""Who is calling: a bearer token (tools, scripts), or a browser session made from one (DESIGN §6).

``POST /api/v1/session`` with a token sets an ``HttpOnly``, ``SameSite=Strict`` cookie holding a
random session id (``Secure`` behind https); the token itself never reaches page storage. Redis
keeps only the session id's SHA-256, with an idle expiry that each use pushes back. Signing out
deletes it. A write authenticated by the cookie must come from the service's own origin
(``Origin``), so another site cannot make a reporter's browser post (CSRF); bearer requests are
not subject to that, as browsers never attach them by themselves.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime

from starlette.requests import HTTPConnection

from . import auth, hosts
from .errors import ApiError
from .services import services

COOKIE = "lb_session"
#: Methods that change nothing, which a cookie may authenticate from anywhere (SameSite=Strict
#: already keeps it off other sites' requests; the Origin check is the second lock).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}


def digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def new_session_id() -> str:
    return secrets.token_urlsafe(32)


def _admin_mark(admin_token: str) -> str:
    """What an admin session stores: changes when the admin token does, ending its sessions."""
    return "admin:" + hashlib.sha256(admin_token.encode()).hexdigest()[:32]


def own_origin(connection: HTTPConnection) -> str:
    """The service's origin (``http(s)://host[:port]``, see :mod:`liveblog.hosts`)."""
    return hosts.origin(connection)


async def principal_of_token(connection: HTTPConnection, text: str) -> auth.Principal:
    """The principal of a token's text; :class:`liveblog.auth.BadToken` if it is not a live one.
    Unknown and revoked tokens get the same answer, so it tells nobody which ids exist."""
    state = services(connection)
    if auth.is_admin_token(text, state.settings.admin_token):
        return auth.admin(state.settings.publisher_name)
    token_id, secret = auth.split(text)
    record = await state.store.get_token(token_id)
    if record is None:
        raise auth.BadToken("unknown token")
    found = auth.verify(record, secret)
    await state.store.token_used(found.token_id, datetime.now(UTC))
    return found


async def start(connection: HTTPConnection, who: auth.Principal) -> str:
    """A new session for ``who``; the id to set as the cookie."""
    state = services(connection)
    session_id = new_session_id()
    mark = _admin_mark(state.settings.admin_token) if who.is_admin else who.token_id
    await state.store.start_session(digest(session_id), mark, state.settings.session_idle_seconds)
    return session_id


async def end(connection: HTTPConnection) -> None:
    session_id = connection.cookies.get(COOKIE)
    if session_id:
        await services(connection).store.end_session(digest(session_id))


async def _of_session(connection: HTTPConnection, session_id: str) -> auth.Principal:
    state = services(connection)
    mark = await state.store.session(digest(session_id), state.settings.session_idle_seconds)
    if mark is None:
        raise auth.BadToken("the session has ended; sign in again")
    if mark.startswith("admin:"):
        if not hmac.compare_digest(mark, _admin_mark(state.settings.admin_token)):
            raise auth.BadToken("the session has ended; sign in again")
        return auth.admin(state.settings.publisher_name)
    record = await state.store.get_token(mark)
    if record is None:
        raise auth.BadToken("the session's token was revoked; sign in again")
    await state.store.token_used(record.id, datetime.now(UTC))
    return auth.Principal(token_id=record.id, name=record.name, role=record.role, blogs=frozenset(record.blogs))


async def principal(connection: HTTPConnection) -> auth.Principal:
    """The caller: its bearer token, else its session cookie. 401 for neither (or a dead one);
    403 for a cookie-authenticated write from another origin."""
    try:
        header = connection.headers.get("authorization")
        if header is not None or COOKIE not in connection.cookies:
            return await principal_of_token(connection, auth.bearer(header))
        method = connection.scope.get("method", "GET")
        if method not in SAFE_METHODS and connection.headers.get("origin") != own_origin(connection):
            raise ApiError(403, "cross_origin", "a signed-in browser writes only from this service's own pages")
        return await _of_session(connection, connection.cookies[COOKIE])
    except auth.BadToken as exc:
        raise ApiError(401, "unauthorized", str(exc), headers=_UNAUTHORIZED) from None
