"""Staff in a browser (DESIGN §6): a session cookie made from a token, refused from other
origins, ended on the server at sign-out; and the staff channel that shows each console its
co-workers' work live."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import httpx
import pytest
import websockets
from conftest import ADMIN_TOKEN, RECV_TIMEOUT, UNLIMITED, assert_error, receive, redis_state, running_service

from liveblog import keys
from liveblog.sessions import COOKIE, digest


@pytest.fixture
def settings():
    return replace(UNLIMITED, staff_poll_interval=0.05)


def _browser(service) -> httpx.AsyncClient:
    """A browser on the service's own pages: it sends the service's Origin and keeps cookies."""
    return httpx.AsyncClient(base_url=service.base_url, headers={"Origin": service.base_url}, timeout=10)


@asynccontextmanager
async def _signed_in(service, token: str) -> AsyncIterator[httpx.AsyncClient]:
    async with _browser(service) as browser:
        response = await browser.post("/api/v1/session", json={"token": token})
        assert response.status_code == 201, response.text
        yield browser


async def test_a_session_cookie_is_httponly_strict_and_never_the_token(service):
    await service.create_blog()
    reporter = await service.mint("reporter", name="Olena")
    async with _browser(service) as browser:
        response = await browser.post("/api/v1/session", json={"token": reporter["token"]})
        assert response.status_code == 201
        assert response.json() == {"name": "Olena", "role": "reporter", "blogs": ["ukraine"], "admin": False}
        cookie = response.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert "Secure" not in cookie, "plain http here; behind https the cookie is Secure (next test)"
        assert reporter["token"] not in cookie and reporter["token"].split("_", 2)[2] not in cookie
        assert (await browser.get("/api/v1/session")).json()["name"] == "Olena"
        posted = await browser.post("/api/v1/blogs/ukraine/entries", json={"body": "<p>from the console</p>"})
        assert posted.status_code == 201 and posted.json()["author"]["name"] == "Olena"


async def test_behind_an_https_proxy_the_cookie_is_secure(service):
    token = (await service.mint("editor"))["token"]
    response = await service.http.post(
        "/api/v1/session",
        json={"token": token},
        headers={"X-Forwarded-Proto": "https", "Origin": service.base_url.replace("http://", "https://")},
    )
    assert response.status_code == 201 and "Secure" in response.headers["set-cookie"]


async def test_a_cookie_write_from_another_origin_is_refused_and_changes_nothing(service, redis_server):
    await service.create_blog()
    async with _signed_in(service, (await service.mint("reporter"))["token"]) as browser:
        before = await redis_state(redis_server.url)
        for origin in ("https://evil.example", None):
            headers = {"Origin": origin} if origin else {}
            browser.headers.pop("Origin", None)
            refused = await browser.post("/api/v1/blogs/ukraine/entries", json={"body": "<p>csrf</p>"}, headers=headers)
            assert_error(refused, 403)
        assert await redis_state(redis_server.url) == before
        browser.headers["Origin"] = service.base_url
        assert (await browser.get("/api/v1/blogs")).status_code == 200, "reads need no Origin"


async def test_signing_out_ends_the_session_on_the_server(service):
    token = (await service.mint("editor"))["token"]
    async with _signed_in(service, token) as browser:
        stolen = browser.cookies[COOKIE]
        assert (await browser.delete("/api/v1/session")).status_code == 204
        assert COOKIE not in browser.cookies
        replayed = await service.http.get("/api/v1/session", headers={"Cookie": f"{COOKIE}={stolen}"})
        assert_error(replayed, 401)
        store = service.services.store
        assert await store.redis.exists(keys.session(digest(stolen))) == 0


async def test_a_revoked_token_ends_its_sessions_and_sessions_expire_when_idle(service):
    minted = await service.mint("reporter")
    async with _signed_in(service, minted["token"]) as browser:
        ttl = await service.services.store.redis.ttl(keys.session(digest(browser.cookies[COOKIE])))
        assert 0 < ttl <= service.services.settings.session_idle_seconds
        revoked = await service.http.delete(f"/api/v1/tokens/{minted['id']}", headers=service.auth())
        assert revoked.status_code == 204
        assert_error(await browser.get("/api/v1/session"), 401)


async def test_signing_in_with_a_bad_token_is_401_and_sign_ins_are_rate_limited(redis_server):
    async with running_service(redis_server.url, replace(UNLIMITED, signins_per_ip_per_minute=1)) as service:
        async with _browser(service) as browser:
            codes = [
                (await browser.post("/api/v1/session", json={"token": "lb_00_guess"})).status_code for _ in range(12)
            ]
        assert codes[0] == 401 and 429 in codes
        assert codes.index(429) == 10, "a burst of 10, then one a minute"


async def test_an_admin_session_ends_when_the_admin_token_changes(redis_server):
    async with running_service(redis_server.url, UNLIMITED) as first:
        async with _signed_in(first, ADMIN_TOKEN) as browser:
            cookie = browser.cookies[COOKIE]
    async with running_service(redis_server.url, replace(UNLIMITED, admin_token="another")) as rotated:
        assert_error(await rotated.http.get("/api/v1/session", headers={"Cookie": f"{COOKIE}={cookie}"}), 401)


# --- the staff channel ------------------------------------------------------------------------------


def _staff(service, browser: httpx.AsyncClient, origin: str | None = None, cursor: str | None = None):
    url = f"{service.ws_url}/api/v1/blogs/ukraine/staff/live" + (f"?cursor={cursor}" if cursor else "")
    headers = {"Cookie": f"{COOKIE}={browser.cookies[COOKIE]}"}
    return websockets.connect(
        url, origin=origin or service.base_url, additional_headers=headers, open_timeout=RECV_TIMEOUT
    )


async def _next_audit(ws) -> dict:
    message = await receive(ws)
    assert message["type"] == "audit", message
    return message


async def test_consoles_see_their_co_workers_work_live_as_each_may_see_it(service):
    await service.create_blog()
    editor_token = (await service.mint("editor", name="Iryna"))["token"]
    reporter_token = (await service.mint("reporter", name="Taras"))["token"]
    contributor = (await service.mint("contributor", name="Intern"))["token"]
    async with (
        _signed_in(service, editor_token) as editor,
        _signed_in(service, reporter_token) as reporter,
        _staff(service, editor) as desk,
        _staff(service, reporter) as field,
    ):
        assert (await receive(desk))["type"] == (await receive(field))["type"] == "ready"
        draft = await service.post(token=contributor, body="<p>DRAFT-MARKER</p>", status="submitted")
        seen = await _next_audit(desk)
        assert seen["record"]["action"] == "create" and seen["record"]["actor"]["name"] == "Intern"
        assert seen["entry"]["id"] == draft["id"] and seen["entry"]["status"] == "submitted"

        returned = await editor.patch(
            f"/api/v1/blogs/ukraine/entries/{draft['id']}",
            json={"status": "draft", "review_note": "Source?"},
            headers={"If-Match": '"1"'},
        )
        assert returned.status_code == 200, returned.text
        back = await _next_audit(desk)
        assert back["record"]["review_note"] == "Source?" and back["record"]["from_status"] == "submitted"

        posted = await reporter.post("/api/v1/blogs/ukraine/entries", json={"body": "<p>published</p>"})
        # The reporter's console saw nothing of the intern's draft: its next record is its own post.
        mine = await _next_audit(field)
        assert mine["entry"]["id"] == posted.json()["id"] and "DRAFT-MARKER" not in str(mine)
        assert (await _next_audit(desk))["entry"]["id"] == posted.json()["id"]

        purged = await editor.delete(f"/api/v1/blogs/ukraine/entries/{posted.json()['id']}?purge=true")
        assert purged.status_code == 204
        gone = await _next_audit(field)
        assert gone["record"]["action"] == "purge" and gone["entry"] is None and "published" not in str(gone["entry"])


async def test_a_console_that_reconnects_with_its_cursor_misses_nothing(service):
    await service.create_blog()
    async with _signed_in(service, ADMIN_TOKEN) as editor:
        async with _staff(service, editor) as first:
            cursor = (await receive(first))["cursor"]
        missed = [await service.post(body=f"<p>{i}</p>") for i in range(3)]
        async with _staff(service, editor, cursor=cursor) as again:
            assert (await receive(again)) == {"type": "ready", "cursor": cursor}
            caught_up = [(await _next_audit(again))["entry"]["id"] for _ in missed]
    assert caught_up == [entry["id"] for entry in missed]


@pytest.mark.parametrize("case", ["other-origin", "no-session", "other-blog"])
async def test_the_staff_channel_is_refused_from_elsewhere_or_without_access(service, case):
    await service.create_blog()
    await service.create_blog("gaza")
    token = (await service.mint("reporter", blogs=("gaza",) if case == "other-blog" else ("ukraine",)))["token"]
    async with _signed_in(service, token) as browser:
        if case == "no-session":
            browser.cookies.clear()
            browser.cookies.set(COOKIE, "forged")
        origin = "https://evil.example" if case == "other-origin" else None
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with _staff(service, browser, origin=origin):
                pass
    assert refused.value.response.status_code == {"other-origin": 403, "no-session": 401, "other-blog": 403}[case]
