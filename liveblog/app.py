"""The ASGI application: routes, error handlers, and the lifespan that owns Redis and the hub."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware

from . import api, console, errors, i18n, memory, render, web, webhook_api
from .batches import Batched
from .caching import ShortCache
from .config import Settings
from .connection import Connections
from .deliverer import Deliverer
from .hub import Hub
from .limits import ConnectionLimiter, RateLimiter
from .metrics import Metrics
from .scheduler import Scheduler
from .services import Services
from .snapshots import SnapshotReads
from .staff import StaffChannels
from .store import Store
from .tasks import checkpoint
from .topology import Topology, close, connect
from .webhook_store import WebhookStore

log = logging.getLogger(__name__)


def _stop_process() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


def create_app(
    settings: Settings,
    redis_url: str,
    connections: Connections | None = None,
    on_fatal: Callable[[], None] | None = None,
) -> Starlette:
    """The service, talking to Redis at ``redis_url``; its live readers are kept in
    ``connections`` (the server tells them at shutdown, see :class:`liveblog.server.Server`).

    The hub's tailer, the scheduler, the webhook deliverer and the live connections' keepalive
    run for the app's lifetime. If one ever dies of something other than a Redis outage (which
    they ride out), that is logged and ``on_fatal`` is called, by default a graceful SIGTERM, so
    that a supervisor restarts the process instead of readers silently receiving nothing. Once started, the app's
    :class:`~liveblog.services.Services` are ``app.state.services``.
    """
    live = (
        connections
        if connections is not None
        else Connections(settings.ws_ping_interval, settings.reconnect_spread_ms, settings.reconnect_floor_ms)
    )
    fatal = on_fatal or _stop_process

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        client = await connect(redis_url)
        store = Store(
            client,
            log_maxlen=settings.log_maxlen,
            idempotency_ttl=settings.idempotency_ttl,
            audit_maxlen=settings.audit_maxlen,
            versions_kept=settings.versions_kept,
            min_replicas=settings.redis_min_replicas,
            wait_ms=settings.redis_wait_ms,
        )
        topology = Topology(client, min_replicas=settings.redis_min_replicas, wait_ms=settings.redis_wait_ms)
        metrics = Metrics()
        hub = Hub(
            store, topology, metrics, reader_limit=settings.reader_buffer_bytes, viewers_every=settings.viewers_interval
        )
        connects, writes = settings.connects_per_ip_per_second, settings.writes_per_token_per_second
        app.state.services = Services(
            settings=settings,
            store=store,
            topology=topology,
            hub=hub,
            metrics=metrics,
            pages=ShortCache(),
            blog_records=Batched(lambda blog_ids: store.get_blogs_json(blog_ids)),
            snapshots=SnapshotReads(store, hub.generation),
            readers=ConnectionLimiter(settings.max_readers, settings.max_readers_per_ip),
            connects=RateLimiter(connects, max(1, int(connects * 10))),
            writes=RateLimiter(writes, max(1, int(writes * 5))),
            signins=RateLimiter(settings.signins_per_ip_per_minute / 60, 10),
            connections=live,
            staff=StaffChannels(
                store, settings.max_staff_readers, settings.staff_poll_interval, settings.reader_buffer_bytes
            ),
            webhooks=WebhookStore(client),
        )
        pages = app.state.services.pages
        scheduler = Scheduler(store, metrics, settings.schedule_interval, published=pages.forget)
        background = [
            asyncio.create_task(hub.run(), name="liveblog-tailer"),
            asyncio.create_task(scheduler.run(), name="liveblog-scheduler"),
            asyncio.create_task(
                Deliverer(app.state.services.webhooks, settings, metrics).run(), name="liveblog-deliverer"
            ),
        ]
        background.append(asyncio.create_task(_sweep(pages, metrics), name="liveblog-cache-sweeper"))
        if settings.ws_ping_interval:
            background.append(asyncio.create_task(live.run(), name="liveblog-keepalive"))
        if metrics.shared:
            background.append(asyncio.create_task(metrics.share_process_metrics(), name="liveblog-process-metrics"))
        for task in background:
            task.add_done_callback(lambda task: _background_done(task, fatal))
        try:
            with metrics.timing_gc():
                yield
        finally:
            await app.state.services.staff.close()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await app.state.services.blog_records.aclose()
            await close(client)

    # Pages, feeds and the widget come compressed once, when they are built (liveblog.web); this
    # compresses the rest (the API's JSON) per response. It leaves WebSocket scopes alone, sends
    # SSE's text/event-stream as it is (liveblog.sse gzips it itself), and passes a response that
    # has a Content-Encoding. LIVEBLOG_COMPRESSION=0: nothing is compressed (app.state.compression).
    compression = Middleware(GZipMiddleware, minimum_size=1024, compresslevel=6)
    app = Starlette(
        routes=[*api.routes, *webhook_api.routes, *web.routes, *i18n.routes, *console.routes],
        exception_handlers=errors.handlers,
        lifespan=lifespan,
        middleware=[compression] if settings.compression else [],
    )
    app.state.compression = bool(settings.compression)
    return app


#: Freed bytes worth a ``malloc_trim`` (it walks the whole heap, so not after every sweep).
TRIM_AFTER = 1 << 20


async def _sweep(pages: ShortCache, metrics: Metrics) -> None:
    """Free expired pages once a second, and say what the caches hold (``liveblog_cache_bytes``)."""
    while True:
        checkpoint()
        await asyncio.sleep(1.0)
        held = pages.size
        pages.expire()
        if held - pages.size > TRIM_AFTER:
            memory.trim()
        metrics.cache_bytes.labels("pages").set(pages.size)
        metrics.cache_bytes.labels("rendered").set(render.RENDERED.size)


def _background_done(task: asyncio.Task[None], on_fatal: Callable[[], None]) -> None:
    if task.cancelled():
        return
    log.critical("%s stopped; live readers are not served until restart", task.get_name(), exc_info=task.exception())
    on_fatal()
