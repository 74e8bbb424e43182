"""The WebSocket opening handshake (RFC 6455 §4.2), from a request head parsed once.

A join storm is mostly handshakes, so a handshake should cost a parse of the head (httptools,
by the guard at the door: :mod:`liveblog.guard`), a dictionary of its headers, a SHA-1 and one
write. This module checks an upgrade the way websockets' ``ServerProtocol`` does (its limits,
its statuses: 426 for a missing or wrong ``Upgrade``, 400 for the rest, 431 for a head over its
limits) and builds the ``101`` itself, with a ``Date`` formatted once per second rather than
per response.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import hashlib
import http
import time
from typing import Any, NamedTuple, Protocol

import httptools

#: websockets' limits on a handshake's head (``websockets.http11``), kept as they were.
MAX_HEADERS = 128
MAX_LINE = 8192
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Upgrade(NamedTuple):
    """A request head that asks for a WebSocket: header names are lower case, values as sent
    (without trailing whitespace), in their order; ``target`` is the request target as sent."""

    method: str
    target: bytes
    http_version: str
    headers: list[tuple[bytes, bytes]]


class Upgrades(Protocol):
    """A protocol class that takes a WebSocket upgrade already parsed (:class:`liveblog.server.LiveProtocol`):
    made as uvicorn makes its ``ws`` protocols, given the transport, then the head."""

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any]) -> None: ...

    def connection_made(self, transport: asyncio.BaseTransport) -> None: ...

    def upgrade(self, request: Upgrade) -> None: ...


class Refusal(Exception):
    """Why an upgrade cannot be accepted: the HTTP status, a message for the client and the
    headers the status calls for (426: ``Upgrade``)."""

    def __init__(self, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


class Opening(NamedTuple):
    """What the 101 needs from an accepted upgrade."""

    accept: bytes
    subprotocols: list[str]
    extensions: list[str]


def is_websocket(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether uvicorn would hand this head to its ``ws`` protocol (its own test: the last
    ``Connection`` lists ``upgrade`` and the last ``Upgrade`` is ``websocket``)."""
    connection: list[bytes] = []
    upgrade = None
    for name, value in headers:
        if name == b"connection":
            connection = [token.lower().strip() for token in value.split(b",")]
        elif name == b"upgrade":
            upgrade = value.lower()
    return upgrade == b"websocket" and b"upgrade" in connection


def check(upgrade: Upgrade) -> Opening:
    """The accepted handshake's parts, or :class:`Refusal`."""
    if len(upgrade.headers) > MAX_HEADERS:
        raise Refusal(431, "too many HTTP headers")
    if len(upgrade.target) + len(upgrade.method) + 11 > MAX_LINE or any(
        len(name) + len(value) + 4 > MAX_LINE for name, value in upgrade.headers
    ):
        raise Refusal(431, "line too long")
    if upgrade.method != "GET":
        raise Refusal(400, f"unsupported HTTP method; expected GET; got {upgrade.method}")
    if upgrade.http_version != "1.1":
        raise Refusal(400, f"unsupported protocol; expected HTTP/1.1: HTTP/{upgrade.http_version}")
    connection: list[bytes] = []
    upgrades: list[bytes] = []
    keys: list[bytes] = []
    versions: list[bytes] = []
    subprotocols: list[str] = []
    extensions: list[str] = []
    for name, value in upgrade.headers:
        if name == b"connection":
            connection += (token.strip().lower() for token in value.split(b","))
        elif name == b"upgrade":
            upgrades += (token.strip() for token in value.split(b",") if token.strip())
        elif name == b"sec-websocket-key":
            keys.append(value)
        elif name == b"sec-websocket-version":
            versions.append(value)
        elif name == b"sec-websocket-protocol":
            subprotocols += (part.strip() for part in value.decode("latin-1").split(","))
        elif name == b"sec-websocket-extensions":
            extensions.append(value.decode("latin-1"))
        elif name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            raise Refusal(400, "unsupported request body")
    if b"upgrade" not in connection:
        raise Refusal(426, "missing Connection header" if not connection else "invalid Connection header", _UPGRADE)
    if not (len(upgrades) == 1 and upgrades[0].lower() == b"websocket"):
        raise Refusal(426, "missing Upgrade header" if not upgrades else "invalid Upgrade header", _UPGRADE)
    key = _one(keys, "Sec-WebSocket-Key")
    try:
        raw = base64.b64decode(key, validate=True)
    except binascii.Error:
        raw = b""
    if len(raw) != 16:
        raise Refusal(400, f"invalid Sec-WebSocket-Key header: {key.decode('latin-1')}")
    version = _one(versions, "Sec-WebSocket-Version")
    if version != b"13":
        raise Refusal(400, f"invalid Sec-WebSocket-Version header: {version.decode('latin-1')}")
    return Opening(accept_key(key), subprotocols, extensions)


_UPGRADE = (("Upgrade", "websocket"),)


def _one(values: list[bytes], name: str) -> bytes:
    if not values:
        raise Refusal(400, f"missing {name} header")
    if len(values) > 1:
        raise Refusal(400, f"invalid {name} header: multiple values")
    return values[0]


def accept_key(key: bytes) -> bytes:
    """``Sec-WebSocket-Accept`` for ``Sec-WebSocket-Key`` (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def switching(opening: Opening, headers: list[tuple[bytes, bytes]]) -> bytes:
    """The ``101 Switching Protocols`` response, with the app's ``headers`` (already chosen:
    the subprotocol, the extension agreed) after the handshake's own."""
    parts = [
        b"HTTP/1.1 101 Switching Protocols\r\nDate: ",
        http_date(),
        b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
        opening.accept,
        b"\r\n",
    ]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def closing_response(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    """An HTTP response after which the connection closes (a refused head or upgrade): the
    status line, a ``Date``, ``headers`` (less any length, connection or server header of
    theirs), then ``Content-Length``, ``Connection: close`` and ``body``."""
    phrase = http.HTTPStatus(status).phrase.encode("ascii")
    parts = [b"HTTP/1.1 %d %s\r\nDate: " % (status, phrase), http_date(), b"\r\n"]
    for name, value in headers:
        if name.lower() not in (b"content-length", b"connection", b"server", b"date"):
            parts += (name, b": ", value, b"\r\n")
    parts.append(b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body))
    parts.append(body)
    return b"".join(parts)


_date: tuple[int, bytes] = (0, b"")


def http_date() -> bytes:
    """Now as an HTTP ``Date`` (RFC 9110 §5.6.7), formatted at most once per second: under a
    join storm ``email.utils.formatdate`` per response was a visible share of a join."""
    global _date
    second = int(time.time())
    if _date[0] != second:
        _date = (second, email.utils.formatdate(second, usegmt=True).encode("ascii"))
    return _date[1]


class HeadParser:
    """Parses one request head with httptools (for a head that arrives as bytes: uvicorn's
    hand-off of an upgrade on a connection that served HTTP first); ``upgrade`` once complete.
    Bounded: the guard has refused heads over its limit before they get here."""

    def __init__(self) -> None:
        self._parser = httptools.HttpRequestParser(self)
        self._target = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self.upgrade: Upgrade | None = None

    def feed(self, data: bytes) -> Upgrade | None:
        """The head, once whole; raises ``httptools.HttpParserError`` if it is not HTTP."""
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass
        return self.upgrade

    def on_url(self, url: bytes) -> None:
        self._target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value.rstrip(b" \t")))

    def on_headers_complete(self) -> None:
        parser = self._parser
        self.upgrade = Upgrade(
            parser.get_method().decode("ascii"), self._target, parser.get_http_version(), self._headers
        )
