"""Absolute links never come from what a client says its Host is (DESIGN §6: LIVEBLOG_PUBLIC_URL).

A page, feed or oEmbed answer that took its links from the ``Host`` header would send readers,
crawlers and partner sites wherever an attacker pointed it, and a shared cache would keep it.
"""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from conftest import ADMIN_TOKEN, UNLIMITED, assert_error, running_service

from liveblog.config import Settings

PUBLIC = "https://live.example.com"
EVIL = "evil.example"
#: The reader-facing outputs that carry absolute links.
OUTPUTS = ["/blogs/ukraine", "/blogs/ukraine/feed.atom", "/blogs/ukraine/feed.json", "/embed/ukraine"]


async def _blog_with_an_entry(service) -> str:
    await service.create_blog()
    return (await service.post(body="<p>Sirens in Kyiv</p>"))["id"]


async def test_with_a_public_url_every_absolute_link_uses_it_whatever_the_host(redis_server):
    async with running_service(redis_server.url, replace(UNLIMITED, public_url=PUBLIC)) as service:
        entry_id = await _blog_with_an_entry(service)
        for path in [*OUTPUTS, f"/blogs/ukraine/entries/{entry_id}"]:
            for host in (EVIL, "127.0.0.1"):
                response = await service.http.get(path, headers={"Host": host})
                assert response.status_code == 200, (path, host, response.text[:200])
                assert EVIL not in response.text, (path, host)
                if path != "/embed/ukraine":  # its links are relative
                    assert PUBLIC in response.text, path
        page = (await service.http.get("/blogs/ukraine", headers={"Host": EVIL})).text
        assert re.search(rf'<link rel="canonical" href="{PUBLIC}/blogs/ukraine"', page)
        assert re.search(rf'<meta property="og:url" content="{PUBLIC}/blogs/ukraine"', page)
        oembed = await service.http.get("/oembed", params={"url": f"{PUBLIC}/blogs/ukraine"}, headers={"Host": EVIL})
        assert oembed.status_code == 200 and f'src=\\"{PUBLIC}/embed/ukraine\\"' in oembed.text
        # A page URL on the Host the client claims is not this server's.
        evil_oembed = await service.http.get("/oembed", params={"url": f"http://{EVIL}/blogs/ukraine"})
        assert_error(evil_oembed, 404, "url")


async def test_without_one_a_page_for_an_unknown_host_is_refused_and_a_loopback_one_served(redis_server):
    async with running_service(redis_server.url, UNLIMITED) as service:
        await _blog_with_an_entry(service)
        for path in [*OUTPUTS, "/oembed?url=http://evil.example/blogs/ukraine"]:
            response = await service.http.get(path, headers={"Host": EVIL})
            error = assert_error(response, 400)
            assert error["code"] == "unknown_host"
            assert "LIVEBLOG_PUBLIC_URL" in error["message"]
        port = service.base_url.rsplit(":", 1)[1]
        for host in (f"localhost:{port}", f"127.0.0.1:{port}"):
            page = await service.http.get("/blogs/ukraine", headers={"Host": host})
            assert f'<link rel="canonical" href="http://{host}/blogs/ukraine"' in page.text
        # The API builds no links: it answers whatever the Host.
        assert (await service.http.get("/api/v1/blogs/ukraine", headers={"Host": EVIL})).status_code == 200


async def test_an_allowed_host_list_lets_other_names_build_links(redis_server):
    settings = replace(UNLIMITED, allowed_hosts="news.example, [::1]")
    async with running_service(redis_server.url, settings) as service:
        await _blog_with_an_entry(service)
        page = await service.http.get("/blogs/ukraine", headers={"Host": "News.Example"})
        assert '<link rel="canonical" href="http://news.example/blogs/ukraine"' in page.text
        assert_error(await service.http.get("/blogs/ukraine", headers={"Host": "127.0.0.1"}), 400)


async def test_with_a_public_url_a_browser_signs_in_only_from_it_and_its_cookie_is_secure(redis_server):
    async with running_service(redis_server.url, replace(UNLIMITED, public_url=PUBLIC)) as service:
        token = {"token": ADMIN_TOKEN}
        local = await service.http.post("/api/v1/session", json=token, headers={"Origin": service.base_url})
        assert_error(local, 403)
        signed_in = await service.http.post("/api/v1/session", json=token, headers={"Origin": PUBLIC})
        assert signed_in.status_code == 201
        cookie = signed_in.headers["set-cookie"].lower()
        assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie


@pytest.mark.parametrize("url", ["live.example.com", "ftp://live.example.com", "https://x.example/path", "https://"])
def test_a_public_url_that_is_not_an_origin_stops_the_service_at_start(url):
    with pytest.raises(SystemExit, match="LIVEBLOG_PUBLIC_URL"):
        Settings.from_env({"LIVEBLOG_PUBLIC_URL": url})
