"""HTTP caching for public responses, and the bounded caches behind them.

Readers arrive in spikes (a push alert sends thousands at once); a CDN in front absorbs them if
responses say they may be cached for a few seconds and served stale while revalidating, and a
conditional request costs a 304 instead of a body. Inside the process, every cache has a byte
budget and evicts: no request, whatever its parameters, grows memory past it.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from functools import partial
from typing import Any, Generic, NamedTuple, TypeVar

from starlette.requests import Request
from starlette.responses import Response

#: Reader responses may be cached briefly by browsers and CDNs; ETag makes revalidation cheap.
READER_CACHE = "public, max-age=2, stale-while-revalidate=10"
#: A versioned static file (``?v=<hash of its bytes>``) never changes under its URL.
IMMUTABLE = "public, max-age=31536000, immutable"
#: Prepared bodies are compressed once and served many times. 6 is zlib's default: level 9
#: takes half as long again (24 against 16 ms for a 530 KB page) for 1 % less.
GZIP_LEVEL = 6
#: Smaller bodies go as they are: gzip's 18 bytes of framing and a request's CPU for a few bytes.
GZIP_MIN = 1024
#: What one cached value costs beyond its bytes (key, tuple, dict slot), roughly.
_OVERHEAD = 200


def etag_of(body: bytes) -> str:
    return '"%s"' % hashlib.blake2b(body, digest_size=12).hexdigest()


def revalidatable(request: Request, body: bytes, media_type: str, headers: dict[str, str] | None = None) -> Response:
    """A public response with an ETag over ``body``; 304 when ``If-None-Match`` names it. A body
    of :data:`GZIP_MIN` bytes or more is gzipped for a client that takes it, with a weak ETag
    (as :meth:`Prepared.response` does): the app's GZipMiddleware, which leaves a response with
    a Content-Encoding alone, would keep the strong one on the other representation."""
    if len(body) >= GZIP_MIN and accepts_gzip(request):
        return Prepared.of(body).response(request, media_type, headers)
    etag = etag_of(body)
    headers = {"ETag": etag, "Cache-Control": READER_CACHE, **(headers or {})}
    if len(body) >= GZIP_MIN:
        headers["Vary"] = "Accept-Encoding"
    if _etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return Response(body, headers=headers, media_type=media_type)


def _etag_matches(header: str | None, etag: str) -> bool:
    if header is None:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return "*" in tags or etag.removeprefix("W/") in tags


def accepts_gzip(request: Request) -> bool:
    """Whether the request's ``Accept-Encoding`` takes gzip (``gzip`` or ``*``, with q > 0), and
    the app compresses (``app.state.compression``, from ``LIVEBLOG_COMPRESSION``; on if unset)."""
    if not getattr(request.app.state, "compression", True):
        return False
    for part in request.headers.get("accept-encoding", "").lower().split(","):
        coding, _, parameters = part.partition(";")
        if coding.strip() in ("gzip", "x-gzip", "*"):
            q = parameters.strip().removeprefix("q=")
            try:
                return not q or float(q) > 0
            except ValueError:
                return False
    return False


class Prepared(NamedTuple):
    """A public body made ready to be served many times: its ETag and gzip encoding, once."""

    body: bytes
    etag: str
    gzipped: bytes

    @classmethod
    def of(cls, body: bytes) -> Prepared:
        return cls(body, etag_of(body), gzip.compress(body, GZIP_LEVEL, mtime=0))

    @property
    def size(self) -> int:
        return len(self.body) + len(self.gzipped)

    def response(self, request: Request, media_type: str, headers: dict[str, str] | None = None) -> Response:
        """200 with the body, gzip-encoded if the client takes it, or 304 for a matching
        ``If-None-Match``. The gzip encoding is another representation, so its ETag is the
        weak form of the body's (as nginx does); either matches either in a revalidation."""
        encoded = accepts_gzip(request)
        etag = f"W/{self.etag}" if encoded else self.etag
        headers = {"ETag": etag, "Cache-Control": READER_CACHE, "Vary": "Accept-Encoding", **(headers or {})}
        if _etag_matches(request.headers.get("if-none-match"), self.etag):
            return Response(status_code=304, headers=headers)
        if encoded:
            headers["Content-Encoding"] = "gzip"
            return Response(self.gzipped, headers=headers, media_type=media_type)
        return Response(self.body, headers=headers, media_type=media_type)


class ShortCache:
    """Bodies per blog, fresh for ``ttl`` seconds, within ``budget`` bytes: a spike of identical
    reads (everyone opening the page after a push alert) costs one Redis round trip and one
    rendering per ``ttl``.

    Writes through this process forget the blog's bodies at once, so a reporter sees their post;
    writes through other processes show up within ``ttl`` (the responses say ``max-age=2``).
    A prepared body (:meth:`prepared`) stays for :data:`STALE` seconds more, served while its
    successor is built, as a CDN does with ``stale-while-revalidate``. Every ``put`` frees what
    has expired, whether or not its blog is ever read or written again, and then the oldest
    bodies until the cache is within its budget. :meth:`expire`, called once a second by the app,
    sweeps out what has expired, so an attack's bodies go when it stops, with no put to push them out.
    """

    #: How long an expired prepared body may still be served while it is rebuilt.
    STALE = 10.0

    def __init__(self, ttl: float = 1.0, budget: int = 32 << 20):
        self.ttl = ttl
        self.budget = budget
        #: (blog, variant) -> (fresh until, kept until, body, size), oldest put first (and so
        #: soonest to expire first).
        self._bodies: OrderedDict[tuple[str, object], tuple[float, float, bytes | Prepared, int]] = OrderedDict()
        self._variants: dict[str, set[object]] = {}
        #: Bodies being built, by (blog, variant): whoever asks meanwhile waits for that one.
        self._building: dict[tuple[str, object], asyncio.Future[Prepared]] = {}
        #: Raw bodies being read, by (blog, variant): whoever misses meanwhile shares that read.
        self._fetching: dict[tuple[str, object], asyncio.Future[bytes]] = {}
        #: Every build and read still running (the loop keeps only weak references to tasks).
        self._running: set[asyncio.Future[Any]] = set()
        #: The bytes held, as :attr:`budget` counts them.
        self.size = 0
        #: Bodies :meth:`prepared` set out to build.
        self.builds = 0

    def get(self, blog_id: str, variant: object) -> bytes | None:
        found = self._fresh(blog_id, variant)
        return found if isinstance(found, bytes) else None

    def get_prepared(self, blog_id: str, variant: object) -> Prepared | None:
        found = self._fresh(blog_id, variant)
        return found if isinstance(found, Prepared) else None

    def put(self, blog_id: str, variant: object, body: bytes | Prepared) -> None:
        key = (blog_id, variant)
        self._drop(key)
        size = (body.size if isinstance(body, Prepared) else len(body)) + _OVERHEAD
        now = time.monotonic()
        fresh = now + self.ttl
        self._bodies[key] = (fresh, fresh + self.STALE if isinstance(body, Prepared) else fresh, body, size)
        self._variants.setdefault(blog_id, set()).add(variant)
        self.size += size
        self._expire(now)
        while self.size > self.budget and self._bodies:
            self._drop(next(iter(self._bodies)))

    def _expire(self, now: float) -> None:
        """Drop every body kept until before ``now``. Bodies are in the order they were put and
        all have the same ``ttl``, so their fresh-until times only grow: the scan stops at the
        first fresh one, having looked at no more than the expired and the stale."""
        expired = []
        for key, (fresh, kept, _, _) in self._bodies.items():
            if fresh >= now:
                break
            if kept < now:
                expired.append(key)
        for key in expired:
            self._drop(key)

    def expire(self) -> None:
        """Free what has expired now (the app's sweeper calls this once a second)."""
        self._expire(time.monotonic())

    async def fetched(self, blog_id: str, variant: object, fetch: Callable[[], Awaitable[bytes]]) -> bytes:
        """The raw body cached for (blog, variant), else what ``fetch`` returns, kept.

        Single-flight: everyone who misses while a fetch is under way waits for that one (a
        join storm's thousands of readers of a cold blog cost one Redis read, not one each while
        the first is in flight); one that gives up (its reader left) does not stop it. A failed
        fetch fails everyone who waited for it and keeps nothing; a fetch the blog was written to
        during (:meth:`forget`) is handed to those who waited for it, but not kept.
        """
        found = self.get(blog_id, variant)
        if found is not None:
            return found
        return await asyncio.shield(self._share(self._fetching, (blog_id, variant), fetch))

    async def prepared(self, blog_id: str, variant: object, build: Callable[[], Awaitable[bytes]]) -> Prepared:
        """The body cached for (blog, variant), else what ``build`` returns, prepared and kept.

        An expired body is served at once while its successor is built, for :data:`STALE`
        seconds, unless that build fails (then the stale body goes too). Otherwise requests
        that arrive while a body is being built wait for that build rather than doing the
        same work again; one that gives up (its client left) does
        not stop it. A build the blog was written to during is handed to those who waited for
        it, but not kept.
        """
        key = (blog_id, variant)
        hit = self._bodies.get(key)
        if hit is not None and isinstance(hit[2], Prepared):
            now = time.monotonic()
            if now <= hit[0]:
                return hit[2]
            if now <= hit[1]:
                self._build(key, build)
                return hit[2]
        return await asyncio.shield(self._build(key, build))

    def _build(self, key: tuple[str, object], build: Callable[[], Awaitable[bytes]]) -> asyncio.Future[Prepared]:
        if key not in self._building:
            self.builds += 1
        return self._share(self._building, key, partial(self._prepare, build))

    @staticmethod
    async def _prepare(build: Callable[[], Awaitable[bytes]]) -> Prepared:
        # zlib and blake2b let go of the GIL: live readers are served while a big page compresses.
        return await asyncio.to_thread(Prepared.of, await build())

    def _share(
        self,
        flights: dict[tuple[str, object], asyncio.Future[T]],
        key: tuple[str, object],
        start: Callable[[], Awaitable[T]],
    ) -> asyncio.Future[T]:
        """The work under way for ``key`` in ``flights``, else ``start()`` begun (as a task of
        its own: a caller that gives up does not stop it), its result kept once it ends."""
        flight = flights.get(key)
        if flight is None:
            flight = flights[key] = asyncio.ensure_future(start())
            self._running.add(flight)
            flight.add_done_callback(partial(self._landed, flights, key))
        return flight

    def _landed(
        self, flights: dict[tuple[str, object], asyncio.Future[T]], key: tuple[str, object], flight: asyncio.Future[T]
    ) -> None:
        self._running.discard(flight)
        failed = flight.cancelled() or flight.exception() is not None  # (and the exception is seen)
        if flights.get(key) is not flight:
            return  # forgotten meanwhile: it may predate the write
        del flights[key]
        if failed:
            self._drop(key)  # no stale body for what is not there any more (a purged entry's page)
        else:
            self.put(*key, flight.result())

    def forget(self, blog_id: str) -> None:
        for variant in list(self._variants.get(blog_id, ())):
            self._drop((blog_id, variant))
        for key in [key for key in self._building if key[0] == blog_id]:
            del self._building[key]
        for key in [key for key in self._fetching if key[0] == blog_id]:
            del self._fetching[key]

    def __len__(self) -> int:
        return len(self._bodies)

    def _fresh(self, blog_id: str, variant: object) -> bytes | Prepared | None:
        hit = self._bodies.get((blog_id, variant))
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[2]

    def _drop(self, key: tuple[str, object]) -> None:
        found = self._bodies.pop(key, None)
        if found is None:
            return
        self.size -= found[3]
        blog_id, variant = key
        variants = self._variants[blog_id]
        variants.discard(variant)
        if not variants:
            del self._variants[blog_id]


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
#: What ShortCache keeps: raw bodies and prepared ones.
T = TypeVar("T", bytes, Prepared)


class Lru(Generic[K, V]):
    """Values within ``budget`` bytes (as ``size_of`` counts them), the least recently used
    evicted first. Content-addressed keys (an entry's id *and* version) never go stale, so there
    is no expiry: only the budget. ``hits``, ``misses`` and ``evictions`` count what happened."""

    def __init__(self, budget: int, size_of: Callable[[V], int]):
        self.budget = budget
        self._size_of = size_of
        self._values: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self.size = 0
        self.hits = self.misses = self.evictions = 0

    def get(self, key: K) -> V | None:
        found = self._values.get(key)
        if found is None:
            self.misses += 1
            return None
        self.hits += 1
        self._values.move_to_end(key)
        return found[0]

    def put(self, key: K, value: V) -> None:
        old = self._values.pop(key, None)
        if old is not None:
            self.size -= old[1]
        size = self._size_of(value) + _OVERHEAD
        self._values[key] = (value, size)
        self.size += size
        while self.size > self.budget and self._values:
            _, (_, dropped) = self._values.popitem(last=False)
            self.size -= dropped
            self.evictions += 1

    def drop(self, keep: Callable[[K], bool]) -> None:
        """Forget every value whose key ``keep`` says no to."""
        for key in [key for key in self._values if not keep(key)]:
            self.size -= self._values.pop(key)[1]

    def __len__(self) -> int:
        return len(self._values)
