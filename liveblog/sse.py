"""The live channel as Server-Sent Events: ``GET /api/v1/blogs/{blog}/events``.

The same messages as the WebSocket, for networks that block WebSockets. Each record's ``id`` is
its cursor, so a browser's EventSource resumes by itself with ``Last-Event-ID``; an explicit
``?cursor=`` works too. A comment line is sent every ``HEARTBEAT`` seconds so proxies keep the
response open. A reader that falls behind by more than the reader limit gets a final
``event: close`` record with code 4408 and the response ends; EventSource then reconnects.

A client that sends ``Accept-Encoding: gzip`` gets the stream gzipped (starlette's GZipMiddleware
leaves text/event-stream alone, since it would hold events in its compressor): each event is
compressed once for every such reader and flushed whole (:mod:`liveblog.deflate`), so it is
readable as soon as it arrives.
"""

from __future__ import annotations

import asyncio
import zlib
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from . import deflate
from .caching import accepts_gzip
from .connection import RESTART_REASON
from .errors import ApiError
from .reader import admission, client_address, get_blog, join, origin_allowed, parse_cursor, snapshot_size
from .services import services
from .wire import CloseCode, Message

HEARTBEAT = 15.0
#: How long EventSource waits before reconnecting (ms): soon, but not a reconnect storm.
RETRY_MS = 2000


class BufferedSink:
    """A sink for a response written by awaiting: a byte-bounded buffer the response drains.
    ``gzip``: what it yields is one gzip stream, of each message's shared compressed record
    and, in stored blocks, of what is this reader's own; it keeps the CRC-32 and length of what
    it yielded, for the trailer."""

    def __init__(self, gzip: bool = False) -> None:
        self._chunks: deque[tuple[bytes, bytes]] = deque()  # (bytes to write, the record they carry)
        self._buffered = 0
        self._ready = asyncio.Event()
        self._closing: bytes | None = None
        self._gzip = gzip
        self._crc = 0
        self._size = 0

    def send(self, message: Message) -> int:
        if self._closing is None:
            written = message.sse_gzip if self._gzip else message.sse_frame
            self._chunks.append((written, message.sse_frame))
            self._buffered += len(written)
            self._ready.set()
        return self._buffered

    def own(self, record: bytes, first: bool = False) -> bytes:
        """``record`` (a retry line, a heartbeat, the closing record) as this stream writes it;
        ``first``: it opens the stream."""
        if not self._gzip:
            return record
        return (deflate.GZIP_HEADER if first else b"") + self._sent(deflate.stored_block(record), record)

    def _sent(self, written: bytes, record: bytes) -> bytes:
        if self._gzip:
            self._crc = zlib.crc32(record, self._crc)
            self._size += len(record)
        return written

    def close(self, code: int, reason: str, retry_ms: int | None = None) -> None:
        """End the stream with an ``event: close`` record ``{"code", "reason", "retry_ms"?}``;
        with ``retry_ms``, a ``retry:`` field too, for an EventSource that reconnects by itself."""
        self._chunks.clear()
        self._buffered = 0
        record: dict[str, object] = {"code": code, "reason": reason}
        retry = b""
        if retry_ms is not None:
            record["retry_ms"] = retry_ms
            retry = b"retry: %d\n" % retry_ms
        self._closing = retry + b"event: close\ndata: " + msgspec.json.encode(record) + b"\n\n"
        self._ready.set()

    def shutdown(self, retry_ms: int | None = None) -> None:
        """The process stops: 1012, come back after ``retry_ms``."""
        self.close(CloseCode.SERVICE_RESTART, RESTART_REASON, retry_ms)

    async def chunks(self) -> AsyncIterator[bytes]:
        """What to write, as it comes; a heartbeat comment when nothing came for a while."""
        while True:
            try:
                # Not asyncio.wait_for, which on Python 3.11 can lose a cancellation (liveblog.tasks).
                async with asyncio.timeout(HEARTBEAT):
                    await self._ready.wait()
            except TimeoutError:
                yield self.own(b": heartbeat\n\n")
                continue
            self._ready.clear()
            while self._chunks:
                written, record = self._chunks.popleft()
                self._buffered -= len(written)
                yield self._sent(written, record)
            if self._closing is not None:
                closing = self.own(self._closing)
                yield closing + deflate.gzip_trailer(self._crc, self._size) if self._gzip else closing
                return


async def events(request: Request) -> Response:
    state = services(request)
    store, hub = state.store, state.hub
    blog_id = request.path_params["blog"]
    blog = await get_blog(state, blog_id)
    if not origin_allowed(blog, request):
        raise ApiError(403, "origin_not_allowed", "this origin may not embed this blog")
    cursor = parse_cursor(request.headers.get("last-event-id") or request.query_params.get("cursor"))
    client = client_address(request)
    refusal = admission(state, client)
    if refusal is not None:
        if refusal.status == CloseCode.TOO_MANY_CONNECTIONS:
            refusal.status = 429
        raise refusal
    gzipped = accepts_gzip(request)
    sink = BufferedSink(gzip=gzipped)
    readers = state.readers
    connected = state.metrics.readers.labels("sse")
    # Counted at admission, so that a burst of requests cannot all pass it before any is
    # counted; released when the response ends, however it ends (_Counted).
    readers.opened(client)

    async def body() -> AsyncIterator[bytes]:
        connected.inc()
        state.connections.watch_stream(sink)
        try:
            subscription = await hub.subscribe(blog_id, sink)
            try:
                yield sink.own(b"retry: %d\n\n" % RETRY_MS, first=True)
                await join(store, state.snapshots, subscription, blog_id, cursor, snapshot_size(request))
                subscription.go_live()
                async for chunk in sink.chunks():
                    yield chunk
            finally:
                hub.unsubscribe(subscription)
        finally:
            state.connections.forget_stream(sink)
            connected.dec()

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Access-Control-Allow-Origin": "*"}
    headers["Vary"] = "Accept-Encoding"
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    return _Counted(body(), lambda: readers.closed(client), media_type="text/event-stream", headers=headers)


class _Counted(StreamingResponse):
    """A stream that calls ``release`` once it is over: sent to the end, cut off, or never
    started (its reader left first, and the body never ran)."""

    def __init__(self, content: AsyncIterator[bytes], release: Callable[[], None], **kwargs: Any):
        super().__init__(content, **kwargs)
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()
