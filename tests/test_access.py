"""An operator's access log: one line per request and per live connection, never a secret."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import websockets
from conftest import ADMIN_TOKEN, Served, receive

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SECRET = "query-secret-4f9a"


def _access(served: Served, **expected: object) -> dict:
    """The first JSON access-log line whose fields include ``expected``, once it is printed."""

    def matches(line: str) -> bool:
        try:
            record = json.loads(line)
        except ValueError:
            return False
        return record.get("logger") == "liveblog.access" and all(record.get(k) == v for k, v in expected.items())

    return json.loads(served.wait_for_line(matches))


async def test_every_request_and_live_connection_is_logged_once_with_its_fields_and_no_secret(
    tmp_path: Path, redis_server
):
    env = {"LIVEBLOG_REDIS_URL": redis_server.url, "LIVEBLOG_ADMIN_TOKEN": ADMIN_TOKEN, "LIVEBLOG_LOG_FORMAT": "json"}
    served = await asyncio.to_thread(Served, tmp_path / "data", env)
    try:
        created = served.http.post(
            "/api/v1/blogs", json={"id": "ukraine", "title": "Live"}, headers={**ADMIN, "Cookie": f"s={SECRET}"}
        )
        assert created.status_code == 201
        post = _access(served, method="POST", path="/api/v1/blogs")
        assert post["status"] == 201 and post["kind"] == "http" and post["client"] == "127.0.0.1"
        assert isinstance(post["duration_ms"], float) and post["level"] == "info"

        # From the trusted proxy (127.0.0.1): the reader's own address, as the rest of the app sees it.
        page = served.http.get(
            f"/api/v1/blogs/ukraine/entries?limit=5&token={SECRET}", headers={"X-Forwarded-For": "203.0.113.7"}
        )
        assert page.status_code == 200
        listing = _access(served, path="/api/v1/blogs/ukraine/entries")
        assert listing["client"] == "203.0.113.7" and listing["status"] == 200

        async with websockets.connect(f"{served.ws_url}/api/v1/blogs/ukraine/live?token={SECRET}") as reader:
            assert (await receive(reader))["type"] == "snapshot"
        live = _access(served, kind="websocket", path="/api/v1/blogs/ukraine/live")
        assert live["close_code"] == 1000 and live["status"] == 101

        async with websockets.connect(f"{served.ws_url}/api/v1/blogs/nowhere/live") as lost:
            await lost.wait_closed()
        assert _access(served, kind="websocket", path="/api/v1/blogs/nowhere/live")["close_code"] == 4404

        # A reader behind the trusted proxy: its own address, on the live route too.
        forwarded = {"X-Forwarded-For": "203.0.113.9"}
        async with websockets.connect(f"{served.ws_url}/api/v1/blogs/ukraine/live", additional_headers=forwarded) as ws:
            assert (await receive(ws))["type"] == "snapshot"
        behind = _access(served, kind="websocket", client="203.0.113.9")
        assert (behind["path"], behind["status"], behind["close_code"]) == ("/api/v1/blogs/ukraine/live", 101, 1000)

        async with httpx.AsyncClient(base_url=served.url) as client:
            async with client.stream("GET", f"/api/v1/blogs/ukraine/events?token={SECRET}") as events:
                async for chunk in events.aiter_text():
                    if "snapshot" in chunk:
                        break
        sse = _access(served, kind="sse", path="/api/v1/blogs/ukraine/events")
        assert sse["status"] == 200 and sse["method"] == "GET"
    finally:
        served.stop()
    output = served.text
    assert SECRET not in output and ADMIN_TOKEN not in output, "no query string, cookie or token is ever logged"
    assert sum('"path":"/api/v1/blogs"' in line for line in output.splitlines()) == 1, "one line per request"


async def test_text_lines_by_default_and_none_when_turned_off(tmp_path: Path, redis_server):
    env = {"LIVEBLOG_REDIS_URL": redis_server.url, "LIVEBLOG_ADMIN_TOKEN": ADMIN_TOKEN}
    served = await asyncio.to_thread(Served, tmp_path / "on", env)
    try:
        assert served.http.get("/healthz?token=x").status_code == 200
        line = served.wait_for_line(lambda line: "liveblog.access" in line)
        assert "http GET /healthz 200 " in line and "client=127.0.0.1" in line and "token" not in line
    finally:
        served.stop()

    quiet = await asyncio.to_thread(Served, tmp_path / "off", {**env, "LIVEBLOG_ACCESS_LOG": "0"})
    try:
        assert quiet.http.get("/healthz").status_code == 200
    finally:
        quiet.stop()
    assert "liveblog.access" not in quiet.text
