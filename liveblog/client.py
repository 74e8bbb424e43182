"""A Python client for a liveblog service, sync (:class:`Client`) and async (:class:`AsyncClient`).

Requests and answers are the server's own msgspec Structs (:mod:`liveblog.models`). Every failure
raises :class:`LiveblogError`, carrying the contract's ``code``, ``message``, ``field`` and the
HTTP ``status`` (None when the service could not be reached at all).

Retries are bounded by :class:`Retry`: connection errors, 5xx and 429 are retried with exponential
backoff and full jitter, honouring ``Retry-After``; any other 4xx is final. A post carries an
``Idempotency-Key`` made once per logical post and sent again with each retry, so a retry whose
first attempt did reach the server returns that entry instead of writing a second one. A request
without that protection (minting a token) is retried only when it surely never reached the server
(the connection was refused) or when the server answered that it changed nothing (5xx, 429).

``follow`` yields the live channel's messages and resumes from its cursor after any disconnect
(restart 1012, going away 1001, too slow 4408, a dropped socket), so each event arrives exactly
once, in order: the server replays what came after the cursor. Give it the cursor you persisted
to resume across process restarts; when the server cannot resume a cursor (its log was reset) it
sends a fresh :class:`Snapshot`, which replaces whatever state the caller built.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar
from urllib.parse import quote, urlencode

import httpx
import msgspec
from websockets.asyncio.client import connect as aconnect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import connect as sconnect

from .models import Blog, BlogCreate, BlogPatch, Entry, EntryCreate, ErrorResponse, TokenCreate, TokenInfo, TokenMinted
from .models import Tombstone as Tombstone

__all__ = [
    "AsyncClient",
    "BlogCreate",
    "BlogUpdated",
    "Client",
    "EntryCreate",
    "EntryDeleted",
    "EntryEvent",
    "LiveblogError",
    "Message",
    "Retry",
    "Snapshot",
    "TokenCreate",
    "Viewers",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The largest live message accepted: a snapshot of 100 entries plus the pinned ones, each body up
#: to 20,000 characters, fits; the websockets client's queue of received frames is bounded too.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MAX_QUEUED_MESSAGES = 16
#: Close codes after which reconnecting cannot help: the blog, the origin or this client is at fault.
_FINAL_CLOSES = {4403: (403, "origin_not_allowed"), 4404: (404, "not_found"), 1002: (400, "protocol_error")}
_FINAL_CLOSES |= {1003: (400, "unsupported_data"), 1007: (400, "invalid_data"), 1009: (413, "too_big")}


class LiveblogError(Exception):
    """A request failed: the contract's error ``code``, ``message`` and ``field`` (the JSON path
    to blame, if one), with the HTTP ``status``. ``status`` is None when there is no HTTP answer
    to blame: ``code`` "unreachable" (none came, after every retry) or "bad_message" (a live
    message this client cannot read)."""

    def __init__(self, status: int | None, code: str, message: str, field: str | None = None):
        super().__init__(f"{message} ({code}, {field})" if field else f"{message} ({code})")
        self.status = status
        self.code = code
        self.message = message
        self.field = field


@dataclass(frozen=True)
class Retry:
    """How often and how patiently to retry: at most ``attempts`` tries, the n-th waiting a random
    time up to ``min(cap, base * 2**n)`` seconds (full jitter), or the server's ``Retry-After``
    (at most ``cap``). For ``follow``, ``attempts`` counts failed connects in a row."""

    attempts: int = 6
    base: float = 0.2
    cap: float = 10.0

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        if retry_after is not None and retry_after.isdigit():
            return min(self.cap, float(retry_after))
        return random.uniform(0, min(self.cap, self.base * 2**attempt))


# --- live messages -------------------------------------------------------------------------------


class Snapshot(msgspec.Struct, kw_only=True):
    """The blog as of ``cursor``: its latest entries (newest first) and its pinned ones."""

    type: Literal["snapshot"] = "snapshot"
    cursor: str
    blog: Blog
    entries: list[Entry]
    pinned: list[Entry]


class EntryEvent(msgspec.Struct, kw_only=True):
    type: Literal["event"] = "event"
    cursor: str
    event: Literal["entry.created", "entry.updated"]
    entry: Entry


class EntryDeleted(msgspec.Struct, kw_only=True):
    type: Literal["event"] = "event"
    cursor: str
    event: Literal["entry.deleted"] = "entry.deleted"
    entry: Tombstone


class BlogUpdated(msgspec.Struct, kw_only=True):
    type: Literal["event"] = "event"
    cursor: str
    event: Literal["blog.updated"] = "blog.updated"
    blog: Blog


class Viewers(msgspec.Struct, kw_only=True):
    """How many read the blog now; outside the log, so it has no cursor."""

    type: Literal["viewers"] = "viewers"
    count: int


Message = Snapshot | EntryEvent | EntryDeleted | BlogUpdated | Viewers


class _Head(msgspec.Struct):
    type: str
    event: str = ""


_head = msgspec.json.Decoder(_Head)
_messages: dict[tuple[str, str], msgspec.json.Decoder[Any]] = {
    ("snapshot", ""): msgspec.json.Decoder(Snapshot),
    ("event", "entry.created"): msgspec.json.Decoder(EntryEvent),
    ("event", "entry.updated"): msgspec.json.Decoder(EntryEvent),
    ("event", "entry.deleted"): msgspec.json.Decoder(EntryDeleted),
    ("event", "blog.updated"): msgspec.json.Decoder(BlogUpdated),
    ("viewers", ""): msgspec.json.Decoder(Viewers),
}


class _Follow:
    """The protocol core of following, no I/O: where to connect, what each frame means, and
    whether a close is worth a reconnect."""

    def __init__(self, ws_base: str, blog: str, cursor: str | None, retry: Retry):
        self.ws_base, self.blog, self.cursor, self.retry = ws_base, blog, cursor, retry
        self.failures = 0

    def url(self) -> str:
        query = f"?{urlencode({'cursor': self.cursor})}" if self.cursor else ""
        return f"{self.ws_base}/api/v1/blogs/{quote(self.blog, safe='')}/live{query}"

    def receive(self, frame: str | bytes) -> Message | None:
        """The message in ``frame`` (None for a kind this client does not know); it moves the cursor."""
        try:
            head = _head.decode(frame)
            decoder = _messages.get((head.type, head.event))
            if decoder is None:
                log.warning(
                    "following %r: skipped a live message of unknown type %r %r", self.blog, head.type, head.event
                )
                return None
            message: Message = decoder.decode(frame)
        except msgspec.DecodeError as exc:  # ValidationError included
            raise LiveblogError(None, "bad_message", f"unexpected live message from the service: {exc}") from exc
        if not isinstance(message, Viewers):
            self.cursor = message.cursor
        self.failures = 0  # a message came: the connection worked
        return message

    def lost(self, exc: Exception) -> float:
        """The connection failed with ``exc``: seconds to wait before reconnecting, or raise."""
        retry_after = None
        if isinstance(exc, ConnectionClosed):
            code = exc.rcvd.code if exc.rcvd is not None else 1006
            reason = exc.rcvd.reason if exc.rcvd is not None else ""
            if code in _FINAL_CLOSES:
                status, name = _FINAL_CLOSES[code]
                raise LiveblogError(status, name, reason or f"the live channel closed with {code}") from exc
            if code == _RESTART and (suggested := _suggested_delay(reason)) is not None:
                # The server spreads its readers' returns over a window: our backoff would not.
                self.failures = 0
                delay = min(self.retry.cap, suggested)
                log.warning(
                    "following %r: the server restarts; reconnecting in %.1f s from %s", self.blog, delay, self.cursor
                )
                return delay
        elif isinstance(exc, InvalidStatus):
            response = exc.response
            if response.status_code < 500 and response.status_code != 429:
                raise _error(response.status_code, bytes(response.body or b"")) from exc
            retry_after = response.headers.get("Retry-After")
        self.failures += 1
        if self.failures >= self.retry.attempts:
            raise LiveblogError(None, "unreachable", f"cannot follow {self.blog!r}: {exc}") from exc
        delay = self.retry.delay(self.failures, retry_after)
        log.warning(
            "following %r: connection lost (%s); reconnecting in %.1f s from %s", self.blog, exc, delay, self.cursor
        )
        return delay


_RECONNECT = (ConnectionClosed, InvalidHandshake, OSError, TimeoutError)
_RESTART = 1012


class _Restart(msgspec.Struct):
    retry_ms: int


_restart = msgspec.json.Decoder(_Restart)


def _suggested_delay(reason: str) -> float | None:
    """Seconds a restart's 1012 asks to wait (its reason ``{"retry_ms": N, ...}``), or None."""
    try:
        retry_ms = _restart.decode(reason).retry_ms
    except msgspec.DecodeError:
        return None
    return retry_ms / 1000 if retry_ms >= 0 else None


# --- requests --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Call:
    """One API request: ``safe`` if repeating it cannot make a second thing."""

    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] | None = None
    safe: bool = True


class _Blogs(msgspec.Struct):
    blogs: list[Blog]


class _Tokens(msgspec.Struct):
    tokens: list[TokenInfo]


_encode = msgspec.json.Encoder().encode
_error_decoder = msgspec.json.Decoder(ErrorResponse)


def _error(status: int, content: bytes) -> LiveblogError:
    try:
        error = _error_decoder.decode(content).error
    except msgspec.DecodeError:
        text = content[:200].decode(errors="replace").strip()
        return LiveblogError(status, "http_error", f"HTTP {status}{': ' + text if text else ''}")
    return LiveblogError(status, error.code, error.message, error.field)


def _blog_path(blog: str) -> str:
    return f"/api/v1/blogs/{quote(blog, safe='')}"


def _post_call(blog: str, entry: EntryCreate, key: str | None) -> _Call:
    headers = {"Idempotency-Key": key or uuid.uuid4().hex}
    return _Call("POST", f"{_blog_path(blog)}/entries", _encode(entry), headers)


def _retryable(response: httpx.Response) -> bool:
    return response.status_code >= 500 or response.status_code == 429


def _decode(kind: type[T], response: httpx.Response) -> T:
    try:
        return msgspec.json.decode(response.content, type=kind)
    except msgspec.ValidationError as exc:
        raise LiveblogError(response.status_code, "bad_response", f"unexpected answer from the service: {exc}") from exc


class _Base:
    def __init__(self, url: str, token: str | None, retry: Retry | None, timeout: float) -> None:
        self.url = url.rstrip("/")
        self.retry = retry or Retry()
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = timeout

    def _request(self, call: _Call) -> tuple[str, str, bytes | None, dict[str, str]]:
        return call.method, self.url + call.path, call.body, {**self._headers, **(call.headers or {})}

    def _failed(self, call: _Call, attempt: int, exc: httpx.TransportError) -> float:
        """The delay before the next attempt after ``exc``, or raise when retrying is not allowed."""
        # Refused: the request never reached the server, so even an unsafe one may be repeated.
        may = call.safe or isinstance(exc, httpx.ConnectError)
        if not may or attempt + 1 >= self.retry.attempts:
            raise LiveblogError(None, "unreachable", f"cannot reach {self.url}: {exc or type(exc).__name__}") from exc
        delay = self.retry.delay(attempt + 1)
        log.warning("%s %s: %r; retry %d in %.1f s", call.method, call.path, exc, attempt + 1, delay)
        return delay

    def _answered(self, call: _Call, attempt: int, response: httpx.Response) -> float | None:
        """None if ``response`` is final (raising if it is an error), else the delay before retrying."""
        if response.is_success:
            return None
        if not _retryable(response) or attempt + 1 >= self.retry.attempts:
            raise _error(response.status_code, response.content)
        delay = self.retry.delay(attempt + 1, response.headers.get("Retry-After"))
        log.warning(
            "%s %s: HTTP %d; retry %d in %.1f s", call.method, call.path, response.status_code, attempt + 1, delay
        )
        return delay

    def _ws_base(self) -> str:
        return "ws" + self.url.removeprefix("http")


class Client(_Base):
    """The API, blocking. Use it as a context manager, or :meth:`close` it."""

    def __init__(self, url: str, token: str | None = None, *, retry: Retry | None = None, timeout: float = 10):
        super().__init__(url, token, retry, timeout)
        self._http = httpx.Client(timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: _Call) -> httpx.Response:
        method, url, body, headers = self._request(call)
        for attempt in range(self.retry.attempts):
            try:
                response = self._http.request(method, url, content=body, headers=headers)
            except httpx.TransportError as exc:
                time.sleep(self._failed(call, attempt, exc))
                continue
            delay = self._answered(call, attempt, response)
            if delay is None:
                return response
            time.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def create_blog(self, blog: BlogCreate) -> Blog:
        return _decode(Blog, self._send(_Call("POST", "/api/v1/blogs", _encode(blog))))

    def list_blogs(self) -> list[Blog]:
        return _decode(_Blogs, self._send(_Call("GET", "/api/v1/blogs"))).blogs

    def get_blog(self, blog: str) -> Blog:
        return _decode(Blog, self._send(_Call("GET", _blog_path(blog))))

    def end_blog(self, blog: str) -> Blog:
        return _decode(Blog, self._send(_Call("PATCH", _blog_path(blog), _encode(BlogPatch(status="ended")))))

    def post(self, blog: str, entry: EntryCreate, *, idempotency_key: str | None = None) -> Entry:
        """Post ``entry`` once, however often it is retried (one ``Idempotency-Key``, made here
        unless given: give your own to make a post safe across restarts of your program too)."""
        return _decode(Entry, self._send(_post_call(blog, entry, idempotency_key)))

    def mint_token(self, token: TokenCreate) -> TokenMinted:
        return _decode(TokenMinted, self._send(_Call("POST", "/api/v1/tokens", _encode(token), safe=False)))

    def list_tokens(self) -> list[TokenInfo]:
        return _decode(_Tokens, self._send(_Call("GET", "/api/v1/tokens"))).tokens

    def revoke_token(self, token_id: str) -> None:
        self._send(_Call("DELETE", f"/api/v1/tokens/{quote(token_id, safe='')}"))

    def follow(self, blog: str, cursor: str | None = None) -> Follower:
        """Every live message of ``blog`` after ``cursor`` (a snapshot first without one)."""
        return Follower(_Follow(self._ws_base(), blog, cursor, self.retry), self._timeout)


class Follower:
    """A blocking iterator over a blog's live messages; ``cursor`` is the last one received."""

    def __init__(self, state: _Follow, timeout: float):
        self._state, self._timeout = state, timeout

    @property
    def cursor(self) -> str | None:
        return self._state.cursor

    def __iter__(self) -> Iterator[Message]:
        state = self._state
        while True:
            try:
                with sconnect(
                    state.url(), open_timeout=self._timeout, max_size=MAX_MESSAGE_BYTES, max_queue=MAX_QUEUED_MESSAGES
                ) as ws:
                    for frame in ws:
                        if (message := state.receive(frame)) is not None:
                            yield message
                    raise ConnectionClosed(ws.protocol.close_rcvd, ws.protocol.close_sent)
            except _RECONNECT as exc:
                time.sleep(state.lost(exc))


class AsyncClient(_Base):
    """The API, for asyncio. Use it with ``async with``, or :meth:`aclose` it."""

    def __init__(self, url: str, token: str | None = None, *, retry: Retry | None = None, timeout: float = 10):
        super().__init__(url, token, retry, timeout)
        self._http = httpx.AsyncClient(timeout=timeout)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: _Call) -> httpx.Response:
        method, url, body, headers = self._request(call)
        for attempt in range(self.retry.attempts):
            try:
                response = await self._http.request(method, url, content=body, headers=headers)
            except httpx.TransportError as exc:
                await asyncio.sleep(self._failed(call, attempt, exc))
                continue
            delay = self._answered(call, attempt, response)
            if delay is None:
                return response
            await asyncio.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def create_blog(self, blog: BlogCreate) -> Blog:
        return _decode(Blog, await self._send(_Call("POST", "/api/v1/blogs", _encode(blog))))

    async def list_blogs(self) -> list[Blog]:
        return _decode(_Blogs, await self._send(_Call("GET", "/api/v1/blogs"))).blogs

    async def get_blog(self, blog: str) -> Blog:
        return _decode(Blog, await self._send(_Call("GET", _blog_path(blog))))

    async def end_blog(self, blog: str) -> Blog:
        return _decode(Blog, await self._send(_Call("PATCH", _blog_path(blog), _encode(BlogPatch(status="ended")))))

    async def post(self, blog: str, entry: EntryCreate, *, idempotency_key: str | None = None) -> Entry:
        """As :meth:`Client.post`."""
        return _decode(Entry, await self._send(_post_call(blog, entry, idempotency_key)))

    async def mint_token(self, token: TokenCreate) -> TokenMinted:
        return _decode(TokenMinted, await self._send(_Call("POST", "/api/v1/tokens", _encode(token), safe=False)))

    async def list_tokens(self) -> list[TokenInfo]:
        return _decode(_Tokens, await self._send(_Call("GET", "/api/v1/tokens"))).tokens

    async def revoke_token(self, token_id: str) -> None:
        await self._send(_Call("DELETE", f"/api/v1/tokens/{quote(token_id, safe='')}"))

    def follow(self, blog: str, cursor: str | None = None) -> AsyncFollower:
        """As :meth:`Client.follow`: ``async for message in client.follow(blog)``."""
        return AsyncFollower(_Follow(self._ws_base(), blog, cursor, self.retry), self._timeout)


class AsyncFollower:
    """An async iterator over a blog's live messages; ``cursor`` is the last one received."""

    def __init__(self, state: _Follow, timeout: float):
        self._state, self._timeout = state, timeout

    @property
    def cursor(self) -> str | None:
        return self._state.cursor

    async def __aiter__(self) -> AsyncIterator[Message]:
        state = self._state
        while True:
            try:
                async with aconnect(
                    state.url(), open_timeout=self._timeout, max_size=MAX_MESSAGE_BYTES, max_queue=MAX_QUEUED_MESSAGES
                ) as ws:
                    async for frame in ws:
                        if (message := state.receive(frame)) is not None:
                            yield message
                    raise ConnectionClosed(ws.protocol.close_rcvd, ws.protocol.close_sent)
            except _RECONNECT as exc:
                await asyncio.sleep(state.lost(exc))
