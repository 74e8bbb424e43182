"""The deliverer: one per ``liveblog serve`` process, POSTing webhook events to their receivers.

Every blog with webhooks has an outbox stream (:mod:`liveblog.keys`) read through one consumer
group, :data:`~liveblog.keys.DELIVERERS`, in which each process is a consumer: an event is given
to exactly one process at a time, which makes its deliveries (one per webhook that wants it),
tries each once, and acknowledges it. An event left pending by a process that died (or hangs)
is claimed by another with ``XAUTOCLAIM`` once it has been idle ``LIVEBLOG_WEBHOOK_CLAIM_IDLE_MS``.
A failed delivery is retried from the blog's retry schedule (a sorted set), with exponential
backoff and jitter, until ``LIVEBLOG_WEBHOOK_RETRY_FOR`` seconds after it was made; a process
takes a due retry by leasing it (its score moves ahead by the same idle time), so a process that
dies mid-retry leaves it to another. Delivery is at least once: receivers deduplicate by event id.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import random
import socket
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import httpx
import msgspec
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import __version__, tasks
from .config import Settings
from .metrics import Metrics
from .models import Attempt, Delivery, StoredDelivery, Webhook, WebhookEventType, decode
from .storage import NotFound
from .webhook_store import WebhookStore
from .webhooks import HISTORY_KEPT, AllowList, refused_address, retry_delay_ms, signature

log = logging.getLogger(__name__)

#: Deliveries one process tries at once; it reads no more events while that many are going.
CONCURRENCY = 32
#: A consumer with nothing pending that has been idle this many claim times is a process that
#: is gone (a restart makes a new one): it is removed from the group, which stays bounded.
GONE_AFTER_CLAIMS = 10


class _EntryId(msgspec.Struct):
    id: str


class _Event(msgspec.Struct):
    id: str
    type: WebhookEventType
    entry: _EntryId | None = None


def consumer_name() -> str:
    """This process in the consumer group: host and pid, so an operator can tell who holds what."""
    return f"{socket.gethostname()}-{os.getpid()}"


class Deliverer:
    """Delivers the webhook events of every blog with webhooks, as consumer ``consumer``."""

    def __init__(self, hooks: WebhookStore, settings: Settings, metrics: Metrics, consumer: str | None = None):
        self._hooks = hooks
        self._settings = settings
        self._metrics = metrics
        self._consumer = consumer or consumer_name()
        self._allowed = AllowList.parse(settings.webhook_hosts)
        self._lease_ms = settings.webhook_claim_idle_ms
        #: What this process is delivering now (outbox events and leased retries), so that a
        #: round does not start a second try of one while the first is under way.
        self._busy: set[tuple[str, str]] = set()
        self._client: httpx.AsyncClient | None = None
        self._next_claim = 0.0
        #: Set whenever a delivery ends, for a round that waits for room.
        self._freed = asyncio.Event()

    async def run(self) -> None:
        """Forever. A Redis outage is logged and ridden out; any other error ends the task, and
        its owner (the app's lifespan) sees it."""
        timeout = httpx.Timeout(self._settings.webhook_timeout, connect=self._settings.webhook_connect_timeout)
        limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
        down = False
        async with (
            httpx.AsyncClient(timeout=timeout, limits=limits, follow_redirects=False, trust_env=False) as client,
            asyncio.TaskGroup() as group,
        ):
            self._client = client
            while True:
                tasks.checkpoint()
                started = 0
                try:
                    started = await self.tick(group)
                    if down:
                        log.info("deliverer: Redis is back")
                    down = False
                except (RedisConnectionError, RedisTimeoutError) as exc:
                    if not down:
                        log.warning("deliverer: Redis unavailable, webhook events wait: %s", exc)
                    self._metrics.redis_errors.labels("deliverer").inc()
                    down = True
                await self._pause(started)

    async def tick(self, group: asyncio.TaskGroup) -> int:
        """One round over every blog with webhooks: new events, events of dead consumers, and
        retries that are due, each delivered in a task of ``group``. How many it started."""
        hooks = self._hooks
        blogs = await hooks.blogs()
        now = time.monotonic()
        # Claims (and the group's housekeeping) only every quarter of the claim time: an event
        # is claimed at most that late, and a round costs two commands per blog, not four.
        tidy = now >= self._next_claim
        if tidy:
            self._next_claim = now + self._lease_ms / 4000
        started = 0
        for blog_id in blogs:
            if self._room() <= 0:
                break
            events = await hooks.read_new(blog_id, self._consumer, self._room())
            if tidy:
                events += await hooks.claim_stale(blog_id, self._consumer, self._lease_ms, max(1, self._room()))
                await hooks.drop_gone_consumers(blog_id, self._consumer, GONE_AFTER_CLAIMS * self._lease_ms)
            for outbox_id, body in events:
                if self._take((blog_id, outbox_id)):
                    group.create_task(self._event(blog_id, outbox_id, body))
                    started += 1
            if self._room() > 0:
                for member, stored in await hooks.lease(blog_id, self._lease_ms, self._room()):
                    if self._take((blog_id, member)):
                        group.create_task(self._retry(blog_id, member, decode(StoredDelivery, stored)))
                        started += 1
        return started

    def _room(self) -> int:
        return CONCURRENCY - len(self._busy)

    async def _pause(self, started: int) -> None:
        """Until the next round: at once while there is work and room for it; when full, until a
        delivery ends; when idle, a poll interval."""
        interval = self._settings.webhook_poll_interval
        if not started:
            await asyncio.sleep(interval)
        elif self._room() > 0:
            await asyncio.sleep(0)
        else:
            self._freed.clear()
            try:
                await asyncio.wait_for(self._freed.wait(), interval)
            except TimeoutError:
                pass

    def _done(self, job: tuple[str, str]) -> None:
        self._busy.discard(job)
        self._freed.set()

    def _take(self, job: tuple[str, str]) -> bool:
        if job in self._busy:
            return False
        self._busy.add(job)
        return True

    async def _event(self, blog_id: str, outbox_id: str, body: bytes | None) -> None:
        """Make an outbox event's deliveries, try each new one once, then acknowledge it."""
        try:
            if body is None:
                log.warning(
                    "deliverer: event %s of blog %s was trimmed from its outbox undelivered", outbox_id, blog_id
                )
            else:
                try:
                    await self._deliver_event(blog_id, outbox_id, body)
                except (msgspec.DecodeError, msgspec.ValidationError):
                    # Not an event this service wrote: delivering it is impossible, and keeping
                    # it would end every process that claims it.
                    log.exception(
                        "deliverer: event %s of blog %s is unreadable; dropped: %r", outbox_id, blog_id, body[:200]
                    )
            await self._hooks.ack(blog_id, outbox_id)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            # Left pending: this process (or another) claims it again once it has been idle.
            log.warning(
                "deliverer: Redis unavailable while delivering event %s of blog %s: %s", outbox_id, blog_id, exc
            )
        finally:
            self._done((blog_id, outbox_id))

    async def _deliver_event(self, blog_id: str, outbox_id: str, body: bytes) -> None:
        event = msgspec.json.decode(body, type=_Event)
        now = datetime.now(UTC)
        until = now + timedelta(seconds=self._settings.webhook_retry_for)
        wanted = [hook for hook in await self._hooks.webhooks(blog_id) if event.type in hook.events]
        made = [
            (
                hook,
                StoredDelivery(
                    delivery=Delivery(
                        id=outbox_id,
                        event=event.id,
                        type=event.type,
                        created_at=now,
                        next_attempt_at=now,
                        retry_until=until,
                    ),
                    body=body.decode(),
                ),
            )
            for hook in wanted
        ]
        if not made:
            return
        found = await self._hooks.fan_out(blog_id, outbox_id, made)
        tries = []
        for (hook, _), stored_json in zip(made, found, strict=True):
            if stored_json is None:
                continue  # the webhook was removed meanwhile
            stored = decode(StoredDelivery, stored_json)
            # One that was tried already (by a process that died before acknowledging) is in
            # the retry schedule: it is tried from there, not twice.
            if stored.delivery.state == "pending" and stored.delivery.attempts == 0:
                tries.append(self._attempt(blog_id, hook, f"{hook.id} {outbox_id}", stored))
        await asyncio.gather(*tries)

    async def _retry(self, blog_id: str, member: str, stored: StoredDelivery) -> None:
        try:
            hook = await self._hooks.get(blog_id, member.partition(" ")[0])
            await self._attempt(blog_id, hook, member, stored)
        except NotFound:
            pass  # the webhook was removed, and its deliveries with it
        except (RedisConnectionError, RedisTimeoutError) as exc:
            log.warning("deliverer: Redis unavailable while retrying %s of blog %s: %s", member, blog_id, exc)
        finally:
            self._done((blog_id, member))

    async def _attempt(self, blog_id: str, hook: Webhook, member: str, stored: StoredDelivery) -> None:
        """One POST of a delivery, and its outcome kept: delivered, retried later, or given up.

        An entry purged since the event is not sent, and its delivery is forgotten: no output
        returns, and nothing keeps, a purged entry's text. (The purge removed every delivery made
        before it; this is one made from an event read just before the purge.)"""
        body = stored.body.encode()
        event = msgspec.json.decode(body, type=_Event)
        if event.entry is not None and not await self._hooks.entry_exists(blog_id, event.entry.id):
            await self._hooks.forget(blog_id, member)
            self._metrics.webhook_deliveries.labels("purged").inc()
            return
        status, error = await self._post(hook, body, event.id)
        now = datetime.now(UTC)
        before = stored.delivery
        history = [*before.history, Attempt(at=now, status=status, error=error)][-HISTORY_KEPT:]
        attempts = before.attempts + 1
        retry_in: int | None = None
        if error is None:
            after = msgspec.structs.replace(
                before,
                state="delivered",
                attempts=attempts,
                last_status=status,
                last_error=None,
                next_attempt_at=None,
                delivered_at=now,
                history=history,
            )
            outcome = "delivered"
        else:
            settings = self._settings
            delay = retry_delay_ms(
                attempts, settings.webhook_retry_base_ms, settings.webhook_retry_max_ms, random.random
            )
            give_up = now + timedelta(milliseconds=delay) > before.retry_until
            retry_in = None if give_up else delay
            after = msgspec.structs.replace(
                before,
                state="failed" if give_up else "pending",
                attempts=attempts,
                last_status=status,
                last_error=error,
                next_attempt_at=None if give_up else now + timedelta(milliseconds=delay),
                history=history,
            )
            outcome = "gave_up" if give_up else _kind(status, error)
            log.info("deliverer: %s to webhook %s of blog %s failed (%s)", before.event, hook.id, blog_id, error)
            if give_up:
                log.warning(
                    "deliverer: gave up on %s to webhook %s of blog %s after %d attempts: %s",
                    before.event,
                    hook.id,
                    blog_id,
                    attempts,
                    error,
                )
        # Counted first: whoever sees the recorded state finds it counted too.
        self._metrics.webhook_deliveries.labels(outcome).inc()
        await self._hooks.record(blog_id, member, StoredDelivery(delivery=after, body=stored.body), retry_in)

    async def _post(self, hook: Webhook, body: bytes, event_id: str) -> tuple[int | None, str | None]:
        """POST ``body`` to the webhook: ``(HTTP status, None)`` if it took it (2xx), else the
        status (if any) and why not."""
        assert self._client is not None
        parts = urlsplit(hook.url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            return None, f"cannot resolve {host}: {exc}"
        addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
        for address in addresses:
            if (why := refused_address(address, host, self._allowed)) is not None:
                return None, f"refused: {why}"
        # Connect to the address just checked, not to whatever the name resolves to next (DNS
        # rebinding); the Host header and TLS (SNI, certificate) still use the name.
        ip = addresses[0]
        literal = f"[{ip}]" if ipaddress.ip_address(ip.split("%", 1)[0]).version == 6 else ip
        target = parts._replace(netloc=f"{literal}:{port}").geturl()
        timestamp = int(time.time())
        headers = {
            "Host": parts.netloc.rpartition("@")[2],
            "Content-Type": "application/json",
            "User-Agent": f"liveblog/{__version__}",
            "Liveblog-Event-Id": event_id,
            "Liveblog-Signature": signature(hook.secret, timestamp, body),
        }
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        try:
            async with self._client.stream(
                "POST", target, content=body, headers=headers, extensions=extensions
            ) as reply:
                status = reply.status_code  # the body is not read: nothing in it matters, and it is unbounded
        except httpx.TimeoutException:
            return None, "timeout"
        except httpx.ConnectError as exc:
            return None, _connect_failure(exc)
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if 200 <= status < 300:
            return status, None
        if 300 <= status < 400:
            return status, f"HTTP {status} (redirects are not followed)"
        return status, f"HTTP {status}"


def _kind(status: int | None, error: str) -> str:
    """A failed attempt's outcome, as the metrics count it."""
    if status is not None:
        return "http_error"
    if error == "timeout":
        return "timeout"
    if error.startswith("refused:"):
        return "refused"
    return "connect_error"


def _connect_failure(exc: BaseException) -> str:
    """Why a connection failed, from the innermost cause (the transport wraps the OS's error)."""
    causes: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and len(causes) < 10:
        causes.append(cause)
        cause = cause.__cause__ or cause.__context__
    if any(isinstance(cause, ConnectionRefusedError) for cause in causes):
        return "connection refused"
    texts = [str(cause) for cause in causes if str(cause)]
    return f"cannot connect: {texts[-1] if texts else type(exc).__name__}"
