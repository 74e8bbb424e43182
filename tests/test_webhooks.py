"""Webhooks: an admin registers a receiver for a blog's events; the receiver is a real local HTTP
server that fails when told to, and checks each signature the way the README tells integrators.

The long story runs two real ``liveblog serve`` processes on one Redis and SIGKILLs the one that
was delivering; the short ones run the service in this process.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from conftest import ADMIN_TOKEN, UNLIMITED, Served, Service, assert_error
from test_faults import until

from liveblog import keys
from liveblog.webhooks import MAX_PER_BLOG

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SECRET = "whsec_test_secret_0123456789"


@dataclass
class Request:
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict:
        return json.loads(self.body)


def verify(secret: str, header: str, body: bytes) -> bool:
    """What the README tells a receiver to do with ``Liveblog-Signature``."""
    parts = dict(item.split("=", 1) for item in header.split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


@dataclass
class Receiver:
    """A real HTTP/1.1 server on a free port of 127.0.0.1 (keep-alive, Content-Length bodies).

    ``answer(request)`` says what to do with each request: a status code, or ``None`` to hold
    the request unanswered until the client goes away. Every request that arrived is in
    ``requests``; ``seen`` is the receiver's own deduplication, by event id."""

    answer: Callable[[Request], int | None] = lambda request: 200
    requests: list[Request] = field(default_factory=list)
    seen: dict[str, dict] = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/liveblog"

    async def start(self) -> Receiver:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Stop listening and drop every connection: the next connect is refused."""
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {
                    k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                request = Request(headers, body)
                self.requests.append(request)
                status = self.answer(request)
                if status is None:  # hold it: the sender waits until it gives up or dies
                    self._handle(request)
                    self.arrived.set()
                    await reader.read()
                    return
                if 200 <= status < 300:
                    self._handle(request)
                self.arrived.set()
                writer.write(b"HTTP/1.1 %d Whatever\r\nContent-Length: 0\r\n\r\n" % status)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    def _handle(self, request: Request) -> None:
        """A receiver's work: verify, then act once per event id."""
        assert verify(SECRET, request.headers["liveblog-signature"], request.body)
        event = request.event
        assert request.headers["liveblog-event-id"] == event["id"]
        self.seen.setdefault(event["id"], event)


async def receiver(answer: Callable[[Request], int | None] = lambda request: 200) -> Receiver:
    return await Receiver(answer=answer).start()


WEBHOOK_SETTINGS = replace(
    UNLIMITED,
    webhook_hosts="127.0.0.1,.0.0.1",
    webhook_retry_base_ms=20,
    webhook_retry_max_ms=200,
    webhook_poll_interval=0.02,
    webhook_claim_idle_ms=2000,
)


@pytest.fixture
def settings():
    return WEBHOOK_SETTINGS


async def register(http: httpx.AsyncClient, url: str, events: list[str] | None = None, **extra: object) -> dict:
    return await register_on(http, "ukraine", url, events, **extra)


async def register_on(
    http: httpx.AsyncClient, blog_id: str, url: str, events: list[str] | None = None, **extra: object
) -> dict:
    """Register a webhook for ``blog_id`` (every event type unless ``events``), signed with SECRET."""
    every = ["entry.published", "entry.key_event", "entry.corrected", "entry.retracted", "blog.ended"]
    body = {"url": url, "events": events or every, "secret": SECRET, **extra}
    response = await http.post(f"/api/v1/blogs/{blog_id}/webhooks", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    return response.json()


async def deliveries(http: httpx.AsyncClient, hook: dict) -> list[dict]:
    response = await http.get(f"/api/v1/blogs/ukraine/webhooks/{hook['id']}/deliveries", headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()["deliveries"]


# --- what each change tells a webhook ----------------------------------------------------------


async def test_each_kind_of_change_reaches_the_receiver_signed_once_per_event(service: Service):
    await service.create_blog()
    got = await receiver()
    hook = await register(service.http, got.url)
    assert hook["secret"] == SECRET and set(hook) == {"id", "url", "events", "created_at", "secret"}

    entry = await service.post(body="<p>Shelling reported</p>")
    key = await service.post(body="<p>Ceasefire announced</p>", key_event=True)
    patched = await service.http.patch(
        f"/api/v1/blogs/ukraine/entries/{entry['id']}",
        json={"correction": "The shelling was in Kharkiv, not Kyiv"},
        headers={**ADMIN, "If-Match": '"1"'},
    )
    assert patched.status_code == 200, patched.text
    marked = await service.http.patch(
        f"/api/v1/blogs/ukraine/entries/{entry['id']}", json={"key_event": True}, headers={**ADMIN, "If-Match": '"2"'}
    )
    assert marked.status_code == 200, marked.text
    gone = await service.http.delete(f"/api/v1/blogs/ukraine/entries/{key['id']}", headers={**ADMIN, "If-Match": '"1"'})
    assert gone.status_code == 204
    ended = await service.http.patch("/api/v1/blogs/ukraine", json={"status": "ended"}, headers=ADMIN)
    assert ended.status_code == 200

    expected = [
        ("entry.published", entry["id"]),
        ("entry.published", key["id"]),
        ("entry.key_event", key["id"]),
        ("entry.corrected", entry["id"]),
        ("entry.key_event", entry["id"]),
        ("entry.retracted", key["id"]),
        ("blog.ended", None),
    ]

    def arrived():
        return sorted((e["type"], e.get("entry", {}).get("id")) for e in got.seen.values())

    await until(lambda: _true(arrived() == sorted(expected, key=str)))
    events = list(got.seen.values())
    assert all(e["blog"] == "ukraine" for e in events)
    corrected = next(e for e in events if e["type"] == "entry.corrected")
    assert corrected["entry"]["corrections"][0]["text"] == "The shelling was in Kharkiv, not Kyiv"
    assert next(e for e in events if e["type"] == "entry.retracted")["entry"]["deleted"] is True
    assert "entry" not in next(e for e in events if e["type"] == "blog.ended")
    assert len(got.requests) == len(expected), "a receiver that answers 200 gets each event once"
    listed = await until(lambda: _delivered(service.http, hook))  # recorded once the answer is in
    assert len(listed) == len(expected)
    assert [d["type"] for d in listed][0] == "blog.ended", "newest first"


async def _true(value: object) -> object:
    return value


async def test_a_webhook_hears_only_the_events_it_asked_for_and_nothing_from_drafts(service: Service):
    await service.create_blog()
    got = await receiver()
    await register(service.http, got.url, ["entry.key_event"])
    probe = await receiver()  # wants only the last event: once it has that, the first had every chance
    await register(service.http, probe.url, ["blog.ended"])
    await service.post(body="<p>draft</p>", status="draft", key_event=True)
    await service.post(body="<p>routine</p>")
    key = await service.post(body="<p>key</p>", key_event=True)
    ended = await service.http.patch("/api/v1/blogs/ukraine", json={"status": "ended"}, headers=ADMIN)
    assert ended.status_code == 200
    await until(lambda: _true(probe.seen and got.seen))
    assert [(e["type"], e["entry"]["id"]) for e in got.seen.values()] == [("entry.key_event", key["id"])]
    assert [e["type"] for e in probe.seen.values()] == ["blog.ended"]


async def test_failures_are_retried_with_their_reasons_listed_and_a_delivery_can_be_replayed(service: Service):
    await service.create_blog()
    failing = {"left": 2}

    def answer(request: Request) -> int:
        if failing["left"]:
            failing["left"] -= 1
            return 500
        return 204

    got = await receiver(answer)
    hook = await register(service.http, got.url, ["entry.published"])
    await service.post(body="<p>one</p>")
    await until(lambda: _true(got.seen))
    [delivery] = await until(lambda: _delivered(service.http, hook))
    assert delivery["attempts"] == 3
    assert [a.get("error") for a in delivery["history"]] == ["HTTP 500", "HTTP 500", None]
    assert [a["status"] for a in delivery["history"]] == [500, 500, 204]
    assert delivery["delivered_at"] and delivery["next_attempt_at"] is None

    [event_id] = got.seen
    replay = await service.http.post(
        f"/api/v1/blogs/ukraine/webhooks/{hook['id']}/deliveries/{delivery['id']}/replay", headers=ADMIN
    )
    assert replay.status_code == 202, replay.text
    await until(lambda: _true(len(got.requests) == 4))
    assert got.requests[-1].event["id"] == event_id, "a replay is the same event: the receiver deduplicates it"
    assert len(got.seen) == 1
    await until(lambda: _delivered(service.http, hook, attempts=4))


async def _delivered(http: httpx.AsyncClient, hook: dict, attempts: int = 1) -> list[dict] | None:
    found = await deliveries(http, hook)
    done = found and all(d["state"] == "delivered" and d["attempts"] >= attempts for d in found)
    return found if done else None


async def test_a_receiver_that_is_down_shows_connection_refused(service: Service):
    await service.create_blog()
    got = await receiver()
    hook = await register(service.http, got.url, ["entry.published"])
    await got.stop()
    await service.post(body="<p>into the void</p>")

    async def refused() -> bool:
        found = await deliveries(service.http, hook)
        return bool(found) and found[0]["attempts"] >= 2

    await until(refused)
    [delivery] = await deliveries(service.http, hook)
    assert delivery["state"] == "pending" and delivery["last_error"] == "connection refused"
    assert delivery["next_attempt_at"] is not None


async def test_a_delivery_that_fails_for_longer_than_the_retry_window_has_failed(redis_server):
    from conftest import running_service

    short = replace(WEBHOOK_SETTINGS, webhook_retry_for=0)
    async with running_service(redis_server.url, short) as service:
        await service.create_blog()
        got = await receiver(lambda request: 503)
        hook = await register(service.http, got.url, ["entry.published"])
        await service.post(body="<p>one</p>")

        async def failed() -> list[dict] | None:
            found = await deliveries(service.http, hook)
            return found if found and found[0]["state"] == "failed" else None

        [delivery] = await until(failed)
    assert delivery["attempts"] == 1 and delivery["last_error"] == "HTTP 503"
    assert delivery["next_attempt_at"] is None


async def test_a_purged_entry_is_not_sent_again_and_no_delivery_keeps_its_text(service: Service, redis_server):
    """A legal takedown: the receiver keeps failing, so the entry's event waits to be tried again
    in Redis; the purge removes it, its delivery and the body it would send, at once."""
    await service.create_blog()
    got = await receiver(lambda request: 500)
    hook = await register(service.http, got.url, ["entry.published", "entry.corrected"])
    entry = await service.post(body="<p>libel</p>")
    await until(lambda: _with_attempts(service.http, hook))
    async with aioredis.Redis.from_url(redis_server.url) as redis:
        assert b"libel" in await _everything_of(redis, "ukraine"), "the failing delivery keeps the body it sends"
        purged = await service.http.delete(f"/api/v1/blogs/ukraine/entries/{entry['id']}?purge=true", headers=ADMIN)
        assert purged.status_code == 204
        tried = len(got.requests)
        assert await deliveries(service.http, hook) == [], "the purged entry's delivery is gone from the list"
        assert b"libel" not in await _everything_of(redis, "ukraine")
    # A later event goes out and shows the receiver has heard nothing more of the purged one
    # (but an attempt already on its way when the purge came).
    again = await service.post(body="<p>next</p>")
    await until(lambda: _true(any(r.event["entry"]["id"] == again["id"] for r in got.requests)))
    assert sum(r.event["entry"]["id"] == entry["id"] for r in got.requests[tried:]) <= 1


async def _everything_of(redis: aioredis.Redis, blog: str) -> bytes:
    """Every value under the blog's keys, as one lump of bytes to look for a text in."""
    found = []
    async for key in redis.scan_iter(match=f"liveblog:{{{blog}}}:*"):
        kind = await redis.type(key)
        if kind == b"hash":
            found += [k + b" " + v for k, v in (await redis.hgetall(key)).items()]
        elif kind == b"stream":
            found += [b" ".join(fields.values()) for _, fields in await redis.xrange(key)]
        elif kind == b"list":
            found += await redis.lrange(key, 0, -1)
        elif kind == b"zset":
            found += await redis.zrange(key, 0, -1)
        elif kind == b"set":
            found += list(await redis.smembers(key))
        elif kind == b"string":
            found.append(await redis.get(key))
    return b"\n".join(found)


async def test_an_unreadable_outbox_entry_is_dropped_and_delivery_goes_on(service: Service, redis_server):
    await service.create_blog()
    got = await receiver()
    await register(service.http, got.url, ["entry.published"])
    async with aioredis.Redis.from_url(redis_server.url) as redis:
        await redis.xadd(keys.outbox("ukraine"), {"e": b"not json"})
    entry = await service.post(body="<p>after it</p>")
    await until(lambda: _true(got.seen))
    assert [e["entry"]["id"] for e in got.seen.values()] == [entry["id"]]
    # the service is still up: running_service checks on exit that no background task died


# --- SSRF ----------------------------------------------------------------------------------------


async def test_a_host_allowed_by_suffix_is_not_called_on_a_loopback_address(redis_server):
    """``.0.0.1`` lets https://127.0.0.1 through the URL check (a suffix), but only a host listed
    exactly may be called on a private or loopback address: the receiver hears nothing."""
    from conftest import running_service

    by_suffix = replace(WEBHOOK_SETTINGS, webhook_hosts=".0.0.1")
    got = await receiver()
    async with running_service(redis_server.url, by_suffix) as service:
        await service.create_blog()
        hook = await register(service.http, f"https://127.0.0.1:{got.port}/hook", ["entry.published"])
        await service.post(body="<p>one</p>")
        [refused] = await until(lambda: _with_attempts(service.http, hook))
    assert refused["state"] == "pending"
    assert (
        refused["last_error"] == "refused: 127.0.0.1 resolves to 127.0.0.1, a private, loopback or link-local address"
    )
    assert not got.requests, "no connection was made"


async def _with_attempts(http: httpx.AsyncClient, hook: dict) -> list[dict] | None:
    found = await deliveries(http, hook)
    return found if found and found[0]["attempts"] >= 1 else None


async def test_redirects_are_not_followed(service: Service):
    await service.create_blog()
    target = await receiver()
    got = await receiver(lambda request: 307)
    hook = await register(service.http, got.url, ["entry.published"])
    await service.post(body="<p>one</p>")
    [delivery] = await until(lambda: _with_attempts(service.http, hook))
    assert delivery["last_error"] == "HTTP 307 (redirects are not followed)"
    assert not target.requests


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://hooks.example.org/x", "LIVEBLOG_WEBHOOK_HOSTS"),
        ("http://a.0.0.1/x", "https"),
        ("ftp://127.0.0.1/x", "https://"),
        ("https://user:pw@127.0.0.1/x", "password"),
        ("https://127.0.0.1:99999/x", "Port out of range"),
        ("https://127.0.0.1/a b", "spaces"),
        ("not a url", "https://"),
    ],
)
async def test_urls_outside_the_allow_list_are_refused_with_the_reason(service: Service, url: str, why: str):
    await service.create_blog()
    response = await service.http.post(
        "/api/v1/blogs/ukraine/webhooks", json={"url": url, "events": ["entry.published"]}, headers=ADMIN
    )
    error = assert_error(response, 422, "$.url")
    assert why in error["message"]
    assert (await service.http.get("/api/v1/blogs/ukraine/webhooks", headers=ADMIN)).json() == {"webhooks": []}


async def test_with_no_allow_list_no_webhook_can_be_registered(redis_server):
    from conftest import running_service

    async with running_service(redis_server.url, UNLIMITED) as service:
        await service.create_blog()
        response = await service.http.post(
            "/api/v1/blogs/ukraine/webhooks",
            json={"url": "https://hooks.example.com/x", "events": ["entry.published"]},
            headers=ADMIN,
        )
    error = assert_error(response, 422, "$.url")
    assert "LIVEBLOG_WEBHOOK_HOSTS" in error["message"]


# --- the admin API -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "http://127.0.0.1/x", "events": []}, "$.events"),
        ({"url": "http://127.0.0.1/x", "events": ["entry.deleted"]}, "$.events[0]"),
        ({"url": "http://127.0.0.1/x", "events": ["entry.published"] * 6}, "$.events"),
        ({"url": "http://127.0.0.1/" + "x" * 2048, "events": ["entry.published"]}, "$.url"),
        ({"url": "", "events": ["entry.published"]}, "$.url"),
        ({"url": "http://127.0.0.1/x", "events": ["entry.published"], "secret": "short"}, "$.secret"),
        ({"url": "http://127.0.0.1/x", "events": ["entry.published"], "secret": "x" * 201}, "$.secret"),
        ({"url": "http://127.0.0.1/x", "events": ["entry.published"], "colour": "red"}, "$.colour"),
        ({"events": ["entry.published"]}, "$"),
        ({"url": 7, "events": ["entry.published"]}, "$.url"),
    ],
)
async def test_bad_input_gets_422_naming_the_field(service: Service, body: dict, field: str):
    await service.create_blog()
    response = await service.http.post("/api/v1/blogs/ukraine/webhooks", json=body, headers=ADMIN)
    assert_error(response, 422, field)


async def test_list_never_shows_secrets_and_delete_removes(service: Service):
    await service.create_blog()
    made = await register(service.http, "http://127.0.0.1:9/x", ["entry.published"], secret=None)
    assert made["secret"].startswith("whsec_") and len(made["secret"]) > 30, "generated when not given"
    listed = (await service.http.get("/api/v1/blogs/ukraine/webhooks", headers=ADMIN)).json()["webhooks"]
    assert listed == [{k: made[k] for k in ("id", "url", "events", "created_at")}]
    assert made["secret"] not in (await service.http.get("/api/v1/blogs/ukraine/webhooks", headers=ADMIN)).text
    gone = await service.http.delete(f"/api/v1/blogs/ukraine/webhooks/{made['id']}", headers=ADMIN)
    assert gone.status_code == 204
    assert_error(await service.http.delete(f"/api/v1/blogs/ukraine/webhooks/{made['id']}", headers=ADMIN), 404)
    assert_error(await service.http.get(f"/api/v1/blogs/ukraine/webhooks/{made['id']}/deliveries", headers=ADMIN), 404)
    assert (await service.http.get("/api/v1/blogs/ukraine/webhooks", headers=ADMIN)).json() == {"webhooks": []}


async def test_a_blog_has_a_bounded_number_of_webhooks(service: Service):
    await service.create_blog()
    for i in range(MAX_PER_BLOG):
        await register(service.http, f"http://127.0.0.1:9/{i}", ["entry.published"])
    response = await service.http.post(
        "/api/v1/blogs/ukraine/webhooks", json={"url": "http://127.0.0.1:9/x", "events": ["blog.ended"]}, headers=ADMIN
    )
    assert_error(response, 409)


async def test_no_such_blog_webhook_or_delivery_is_404(service: Service):
    await service.create_blog()
    no_blog = {"url": "http://127.0.0.1:9/x", "events": ["entry.published"]}
    assert_error(await service.http.post("/api/v1/blogs/nope/webhooks", json=no_blog, headers=ADMIN), 404)
    assert_error(await service.http.get("/api/v1/blogs/nope/webhooks", headers=ADMIN), 404)
    hook = await register(service.http, "http://127.0.0.1:9/x", ["entry.published"])
    base = f"/api/v1/blogs/ukraine/webhooks/{hook['id']}/deliveries"
    assert_error(await service.http.post(f"{base}/1-0/replay", headers=ADMIN), 404)
    assert_error(await service.http.post(f"{base}/nonsense/replay", headers=ADMIN), 404)
    assert_error(await service.http.get("/api/v1/blogs/ukraine/webhooks/zzz/deliveries", headers=ADMIN), 404)
    assert_error(await service.http.get(f"{base}?limit=0", headers=ADMIN), 400)


async def test_only_admins_manage_webhooks(service: Service):
    await service.create_blog()
    hook = await register(service.http, "http://127.0.0.1:9/x", ["entry.published"])
    editor = await service.mint("editor", name="Ed")
    reporter = await service.mint("reporter")
    base = "/api/v1/blogs/ukraine/webhooks"
    calls = [
        ("POST", base, {"url": "http://127.0.0.1:9/y", "events": ["entry.published"]}),
        ("GET", base, None),
        ("DELETE", f"{base}/{hook['id']}", None),
        ("GET", f"{base}/{hook['id']}/deliveries", None),
        ("POST", f"{base}/{hook['id']}/deliveries/1-0/replay", None),
    ]
    for method, path, body in calls:
        for token in (editor["token"], reporter["token"]):
            response = await service.http.request(method, path, json=body, headers=service.auth(token))
            assert_error(response, 403)
        assert_error(await service.http.request(method, path, json=body), 401)
    listed = (await service.http.get(base, headers=ADMIN)).json()["webhooks"]
    assert [h["id"] for h in listed] == [hook["id"]], "nothing changed"


async def test_deliveries_are_counted_by_outcome_in_metrics(service: Service):
    await service.create_blog()
    answers = iter([500, 200])
    got = await receiver(lambda request: next(answers))
    hook = await register(service.http, got.url, ["entry.published"])
    await service.post()
    await until(lambda: _delivered(service.http, hook))
    text = (await service.http.get("/metrics")).text
    assert 'liveblog_webhook_deliveries_total{outcome="http_error"} 1.0' in text
    assert 'liveblog_webhook_deliveries_total{outcome="delivered"} 1.0' in text


async def test_a_consumer_that_is_gone_leaves_the_group(redis_server):
    """Every process start is a new consumer in each blog's group: one that holds nothing and
    has been idle long is removed, so the group stays bounded."""
    from conftest import running_service

    quick = replace(WEBHOOK_SETTINGS, webhook_claim_idle_ms=50)
    async with running_service(redis_server.url, quick) as service, aioredis.Redis.from_url(redis_server.url) as redis:
        await service.create_blog()
        await register(service.http, "http://127.0.0.1:9/x", ["entry.published"])
        await redis.xgroup_createconsumer(keys.outbox("ukraine"), keys.DELIVERERS, "old-host-1")

        async def consumers() -> set[str]:
            return {c["name"].decode() for c in await redis.xinfo_consumers(keys.outbox("ukraine"), keys.DELIVERERS)}

        assert "old-host-1" in await consumers()
        await until(lambda: _absent(consumers, "old-host-1"))


async def _absent(consumers, name: str) -> bool:
    return name not in await consumers()


# --- many processes ------------------------------------------------------------------------------


@pytest.mark.slow
async def test_two_processes_deliver_every_event_through_failures_and_a_sigkill(tmp_path: Path, redis_server):
    """A receiver fails (500, then nothing listens), the process that was delivering is killed
    mid-request, and still every event arrives, signed, and the receiver's deduplication by event
    id absorbs the one delivered twice."""
    env = {
        "LIVEBLOG_REDIS_URL": redis_server.url,
        "LIVEBLOG_ADMIN_TOKEN": ADMIN_TOKEN,
        "LIVEBLOG_WEBHOOK_HOSTS": "127.0.0.1",
        "LIVEBLOG_WEBHOOK_RETRY_BASE_MS": "50",
        "LIVEBLOG_WEBHOOK_RETRY_MAX_MS": "500",
        "LIVEBLOG_WEBHOOK_POLL_INTERVAL": "0.05",
        "LIVEBLOG_WEBHOOK_CLAIM_IDLE_MS": "1500",
    }
    a = await asyncio.to_thread(Served, tmp_path / "a", env)
    b = await asyncio.to_thread(Served, tmp_path / "b", env)
    processes = {a.process.pid: a, b.process.pid: b}
    mode = {"answer": 500, "hold": None}

    def answer(request: Request) -> int | None:
        if mode["hold"] is not None and request.event.get("entry", {}).get("id") == mode["hold"]:
            mode["hold"] = None
            return None
        return mode["answer"]

    got = await receiver(answer)
    redis = aioredis.Redis.from_url(redis_server.url)
    try:
        async with httpx.AsyncClient(base_url=b.url, timeout=10) as http:
            assert (await http.post("/api/v1/blogs", json={"id": "ukraine", "title": "Live"}, headers=ADMIN)).is_success
            hook = await register(http, got.url)

            async def post(**body: object) -> dict:
                response = await http.post("/api/v1/blogs/ukraine/entries", json=body, headers=ADMIN)
                assert response.status_code == 201, response.text
                return response.json()

            first = await post(body="<p>first</p>")

            async def failed_with(reason: str) -> bool:
                found = await deliveries(http, hook)
                return any(a.get("error") == reason for d in found for a in d["history"])

            await until(lambda: failed_with("HTTP 500"))
            await got.stop()  # nothing listens: connections are refused
            await until(lambda: failed_with("connection refused"))
            await got.start()  # the same port again
            mode["answer"] = 200

            second = await post(body="<p>second</p>")
            mode["hold"] = second["id"]  # the first try of its event is held open...
            await until(lambda: _true(any(r.event.get("entry", {}).get("id") == second["id"] for r in got.requests)))
            pending = await redis.xpending_range(keys.outbox("ukraine"), keys.DELIVERERS, "-", "+", 10)
            [holder] = {p["consumer"].decode() for p in pending}
            victim = processes[int(holder.rsplit("-", 1)[1])]  # ...by this process, which dies mid-request
            victim.kill()
            survivor = b if victim is a else a

        async with httpx.AsyncClient(base_url=survivor.url, timeout=10) as http:

            async def post_via_survivor(**body: object) -> dict:
                response = await http.post("/api/v1/blogs/ukraine/entries", json=body, headers=ADMIN)
                assert response.status_code == 201, response.text
                return response.json()

            key = await post_via_survivor(body="<p>key</p>", key_event=True)
            corrected = await http.patch(
                f"/api/v1/blogs/ukraine/entries/{first['id']}",
                json={"correction": "fixed"},
                headers={**ADMIN, "If-Match": '"1"'},
            )
            assert corrected.status_code == 200, corrected.text
            retracted = await http.delete(
                f"/api/v1/blogs/ukraine/entries/{second['id']}", headers={**ADMIN, "If-Match": '"1"'}
            )
            assert retracted.status_code == 204
            assert (await http.patch("/api/v1/blogs/ukraine", json={"status": "ended"}, headers=ADMIN)).is_success
            expected = {
                ("entry.published", first["id"]),
                ("entry.published", second["id"]),
                ("entry.published", key["id"]),
                ("entry.key_event", key["id"]),
                ("entry.corrected", first["id"]),
                ("entry.retracted", second["id"]),
                ("blog.ended", None),
            }

            def arrived() -> set:
                return {(e["type"], e.get("entry", {}).get("id")) for e in got.seen.values()}

            await until(lambda: _true(arrived() == expected), timeout=30)
            listed = await until(lambda: _delivered(http, hook), timeout=30)
    finally:
        await redis.aclose()
        for process in processes.values():
            if process.process.poll() is None:
                process.stop()
        if got._server is not None and got._server.is_serving():
            await got.stop()

    assert len(got.seen) == len(expected), "one event per change, whatever the retries"
    ids = [r.event["id"] for r in got.requests]
    assert all(verify(SECRET, r.headers["liveblog-signature"], r.body) for r in got.requests)
    held = [r for r in got.requests if r.event.get("entry", {}).get("id") == second["id"]]
    assert len([r for r in held if r.event["type"] == "entry.published"]) == 2, "delivered again after the kill"
    assert len(ids) > len(set(ids)), "at least once: duplicates happened, and deduplication absorbed them"
    first_published = next(
        d for d in listed if d["type"] == "entry.published" and got.seen[d["event"]]["entry"]["id"] == first["id"]
    )
    errors = [attempt.get("error") for attempt in first_published["history"]]
    assert "HTTP 500" in errors and "connection refused" in errors and errors[-1] is None


@pytest.mark.slow
async def test_a_retry_whose_process_died_is_taken_over_when_its_lease_ends(tmp_path: Path, redis_server):
    """The retry schedule's lease, the other way a dead process's work comes back: the only
    process is SIGKILLed while a retry is under way, and the next one to start delivers it."""
    env = {
        "LIVEBLOG_REDIS_URL": redis_server.url,
        "LIVEBLOG_ADMIN_TOKEN": ADMIN_TOKEN,
        "LIVEBLOG_WEBHOOK_HOSTS": "127.0.0.1",
        "LIVEBLOG_WEBHOOK_RETRY_BASE_MS": "50",
        "LIVEBLOG_WEBHOOK_POLL_INTERVAL": "0.05",
        "LIVEBLOG_WEBHOOK_CLAIM_IDLE_MS": "1500",
    }
    answers = iter([500, None])  # then 200s: fail, hold the retry open, then take it

    got = await receiver(lambda request: next(answers, 200))
    first = await asyncio.to_thread(Served, tmp_path / "a", env)
    second = None
    try:
        async with httpx.AsyncClient(base_url=first.url, timeout=10) as http:
            assert (await http.post("/api/v1/blogs", json={"id": "ukraine", "title": "Live"}, headers=ADMIN)).is_success
            hook = await register(http, got.url, ["entry.published"])
            posted = await http.post("/api/v1/blogs/ukraine/entries", json={"body": "<p>x</p>"}, headers=ADMIN)
            assert posted.status_code == 201
            await until(lambda: _true(len(got.requests) == 2))  # the retry, held open
        first.kill()
        second = await asyncio.to_thread(Served, tmp_path / "b", env)
        async with httpx.AsyncClient(base_url=second.url, timeout=10) as http:
            [delivery] = await until(lambda: _delivered(http, hook), timeout=30)
    finally:
        if second is not None:
            second.stop()
        if first.process.poll() is None:
            first.stop()
    assert len(got.requests) == 3 and len({r.event["id"] for r in got.requests}) == 1
    assert [a.get("error") for a in delivery["history"]] == ["HTTP 500", None], "the killed try left no record"
