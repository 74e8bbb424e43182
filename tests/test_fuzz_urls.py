"""Whatever a client puts in a path segment or a query parameter, the answer is never a 5xx.

Bodies are fuzzed in test_bad_input and the documented operations by schemathesis
(test_openapi); this covers every GET route, the pages and feeds included, with hypothesis-made
segments and values, anonymously and with a token, against a real ``liveblog serve``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import redis as sync_redis
from conftest import ADMIN_TOKEN, Served, assert_error_shape
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
#: Every GET route, with {s} where a fuzzed path segment goes ("ukraine" and "e1" are real).
ROUTES = [
    "/blogs/{s}",
    "/blogs/ukraine/entries/{s}",
    "/blogs/{s}/feed.atom",
    "/blogs/ukraine/feed.json?{q}",
    "/blogs/ukraine?{q}",
    "/embed/{s}",
    "/embed/ukraine?{q}",
    "/oembed?{q}",
    "/i18n/{s}.json",
    "/api/v1/blogs/{s}",
    "/api/v1/blogs/ukraine/entries?{q}",
    "/api/v1/blogs/ukraine/entries/{s}",
    "/api/v1/blogs/ukraine/entries/{s}/versions",
    "/api/v1/blogs/ukraine/audit?{q}",
    "/api/v1/blogs/ukraine/events?{q}",
    "/api/v1/blogs?{q}",
]
PARAMETERS = ["limit", "before", "since", "tag", "cursor", "status", "url", "theme", "order", "format", "maxwidth"]
values = st.one_of(
    st.text(max_size=80),
    st.from_regex(r"\A[0-9]{1,30}-[0-9]{1,30}\Z"),
    st.sampled_from(["0", "-1", "1e9", "99999999999999999999", "%", "..", "ukraine", "e1", "5\n", "x\x00"]),
)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, redis_server) -> Iterator[Served]:
    with sync_redis.Redis.from_url(redis_server.url) as client:
        client.flushall()  # once, here: see _clean_redis below
    env = {"LIVEBLOG_REDIS_URL": redis_server.url, "LIVEBLOG_ADMIN_TOKEN": ADMIN_TOKEN}
    served = Served(Path(tmp_path_factory.mktemp("fuzz")), env)
    try:
        assert served.http.post("/api/v1/blogs", json={"id": "ukraine", "title": "Live"}, headers=ADMIN).is_success
        for i in range(3):
            body = {"body": f"<p>Entry {i}</p>", "tags": ["kyiv"]}
            assert served.http.post("/api/v1/blogs/ukraine/entries", json=body, headers=ADMIN).is_success
        yield served
    finally:
        served.stop()


@pytest.fixture(autouse=True)
def _clean_redis() -> None:
    """The blog lives for the whole module (conftest would flush it before each test)."""


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    route=st.sampled_from(ROUTES),
    segment=values,
    query=st.dictionaries(st.sampled_from(PARAMETERS), values, max_size=3),
    staff=st.booleans(),
)
@example(route="/api/v1/blogs/ukraine/entries?{q}", segment="", query={"before": "x\n"}, staff=False)
@example(route="/blogs/ukraine?{q}", segment="", query={"limit": "5\n"}, staff=False)
@example(
    route="/api/v1/blogs/ukraine/entries?{q}", segment="", query={"since": "0.99999999999999999999-0"}, staff=False
)
def test_no_path_segment_or_query_value_gets_a_server_error(served, route, segment, query, staff):
    url = route.replace("{s}", quote(segment, safe="")).replace("?{q}", "")
    headers = ADMIN if staff else {}
    if route.endswith("/events?{q}"):
        headers = {**headers, "Accept": "text/event-stream"}
        with served.http.stream("GET", url, params=query, headers=headers) as response:
            status, content_type = response.status_code, response.headers.get("content-type", "")
            content = response.read() if status != 200 else b""
    else:
        response = served.http.get(url, params=query, headers=headers)
        status, content_type, content = response.status_code, response.headers.get("content-type", ""), response.content
    # The oEmbed spec's answer to a format it does not offer is 501.
    refused_format = url == "/oembed" and status == 501 and b"format_not_supported" in content
    assert status < 500 or refused_format, (url, query, status, content[:300])
    if status >= 400 and url.startswith("/api/"):
        assert_error_shape(status, content, content_type, status)
