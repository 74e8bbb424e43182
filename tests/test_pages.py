"""Readers who never call the API: the public page, its JSON-LD, feeds, oEmbed and the iframe page.

Everything here is plain HTTP against the real service; what a browser does with it is in
test_widget.py.
"""

from __future__ import annotations

import gzip
import json
import re
from datetime import datetime, timedelta
from html.parser import HTMLParser
from urllib.parse import quote
from xml.etree import ElementTree

import pytest

from liveblog.i18n import catalogue
from liveblog.sanitize import clean_text
from liveblog.web import SCRIPT_URL

ATOM = "{http://www.w3.org/2005/Atom}"
ESCAPE_ATTEMPT = "Kyiv </script><script>window.__xss=1</script> & <!-- more"


class Html(HTMLParser):
    """What a crawler reads from a page: link and meta tags, JSON-LD blocks, the ids of the
    articles in the stream (and how many copies of pinned ones sit above it), text, the text of
    each article (by id, spaces collapsed), and the attributes of every ``<a>``."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.links: list[dict[str, str]] = []
        self.meta: dict[str, str] = {}
        self.json_ld: list[str] = []
        self.articles: list[str] = []
        self.copies = 0
        self.anchors: list[dict[str, str]] = []
        self.html: dict[str, str] = {}
        self.scripts: list[dict[str, str]] = []
        self.text: list[str] = []
        self.article_text: dict[str, str] = {}
        self._in_ld = False
        self._in_style = False
        self._article: str | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {name: value or "" for name, value in attrs}
        if tag == "link":
            self.links.append(a)
        elif tag == "meta" and ("property" in a or "name" in a):
            self.meta[a.get("property") or a["name"]] = a.get("content", "")
        elif tag == "html":
            self.html = a
        elif tag == "a":
            self.anchors.append(a)
        elif tag == "article" and "id" not in a:
            self.copies += 1
        elif tag == "article":
            self.articles.append(a["id"])
            self._article = a["id"]
            self.article_text[a["id"]] = ""
        elif tag == "style":
            self._in_style = True
        elif tag == "script":
            self.scripts.append(a)
            self._in_ld = a.get("type") == "application/ld+json"
            if self._in_ld:
                self.json_ld.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_ld = False
        elif tag == "style":
            self._in_style = False
        elif tag == "article" and self._article is not None:
            self.article_text[self._article] = " ".join(self.article_text[self._article].split())
            self._article = None

    def handle_data(self, data: str) -> None:
        if self._in_ld:
            self.json_ld[-1] += data
        elif not self._in_style:
            self.text.append(data)
            if self._article is not None:
                self.article_text[self._article] += data

    def link(self, rel: str, type: str | None = None) -> str:
        return next(a["href"] for a in self.links if a.get("rel") == rel and (type is None or a.get("type") == type))


def rfc3339(value: object) -> datetime:
    assert isinstance(value, str) and re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$", value), (
        value
    )
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def in_hours(blog: dict, hours: float) -> str:
    """A display time ``hours`` after the blog's coverage started (on the hour), as RFC 3339."""
    start = rfc3339(blog["coverage_start"]).replace(minute=0, second=0, microsecond=0)
    return (start + timedelta(hours=hours)).isoformat().replace("+00:00", "Z")


def clock(moment: str, language: str = "en", zone: str = "UTC") -> str:
    """A time of day as pages show it, the language's way, in the blog's zone (its spaces
    collapsed, as in :attr:`Html.article_text`: English puts a narrow one before "AM")."""
    return " ".join(catalogue(language).time(rfc3339(moment), zone).split())


async def a_blog_with_entries(service) -> list[dict]:
    """A blog with a pinned entry, a key event, media and tags, all inside its coverage;
    returned newest first."""
    blog = await service.create_blog(description="Russia's war in Ukraine, as it happens")
    pinned = await service.post(
        headline="What we know so far",
        body="<p>Summary <strong>so far</strong>.</p>",
        pinned=True,
        time=in_hours(blog, 1),
    )
    key = await service.post(
        headline="Air raid alert in Kyiv",
        body="<p>Sirens across the capital.</p><p>Residents sheltered.</p>",
        author={"name": "Olena Kovalenko", "role": "Correspondent", "location": "Kyiv"},
        key_event=True,
        tags=["kyiv", "air-raid"],
        media={"type": "image", "url": "https://example.com/kyiv.jpg", "caption": "Metro"},
        time=in_hours(blog, 3.7),
    )
    plain = await service.post(body="<p>No headline here, just a short update &amp; more.</p>", time=in_hours(blog, 4))
    return [plain, key, pinned]


async def test_the_public_page_is_readable_without_javascript(service):
    plain, key, pinned = await a_blog_with_entries(service)
    response = await service.http.get("/blogs/ukraine")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    page = Html(response.text)
    # Newest first, the pinned entry in its place; a copy of it above the stream.
    assert page.articles == [plain["id"], key["id"], pinned["id"]] and page.copies == 1
    text = " ".join(" ".join(page.text).split())
    for expected in (
        "Live: ukraine",
        "Air raid alert in Kyiv",
        "Sirens across the capital.",
        "Olena Kovalenko · Correspondent · Kyiv",
        "Key event",
        "Pinned",
        clock(key["time"]),
        "#kyiv",
        "No headline here, just a short update & more.",
    ):
        assert expected in text, expected
    assert "UTC" not in text  # the zone is in each time's tooltip
    assert '<img src="https://example.com/kyiv.jpg" alt="Metro"' in response.text
    # The widget takes over on the same element the content is in.
    assert '<div class="lb-ssr" data-liveblog="ukraine">' in response.text
    assert {"src": SCRIPT_URL, "async": ""} in page.scripts


async def test_the_public_page_has_canonical_opengraph_feed_and_oembed_links(service):
    await a_blog_with_entries(service)
    page = Html((await service.http.get("/blogs/ukraine")).text)
    url = f"{service.base_url}/blogs/ukraine"
    assert page.link("canonical") == url
    assert page.meta["og:url"] == url
    assert page.meta["og:title"] == "Live: ukraine"
    assert page.meta["og:type"] == "article"
    assert page.meta["og:description"] == "Russia's war in Ukraine, as it happens"
    assert page.link("alternate", "application/atom+xml") == f"{url}/feed.atom"
    assert page.link("alternate", "application/feed+json") == f"{url}/feed.json"
    oembed = page.link("alternate", "application/json+oembed")
    assert oembed == f"{service.base_url}/oembed?url={quote(url, safe='')}&format=json"
    assert (await service.http.get(oembed)).json()["type"] == "rich"


async def test_json_ld_is_a_valid_live_blog_posting(service):
    plain, key, pinned = await a_blog_with_entries(service)
    page = Html((await service.http.get("/blogs/ukraine")).text)
    [block] = page.json_ld
    doc = json.loads(block)
    url = f"{service.base_url}/blogs/ukraine"

    assert doc["@context"] == "https://schema.org"
    assert doc["@type"] == "LiveBlogPosting"
    assert doc["url"] == url
    assert doc["headline"] == "Live: ukraine"
    assert doc["description"] == "Russia's war in Ukraine, as it happens"
    start, published, modified = (rfc3339(doc[k]) for k in ("coverageStartTime", "datePublished", "dateModified"))
    assert start <= modified and published <= modified
    assert "coverageEndTime" not in doc  # still live
    assert doc["publisher"] == {"@type": "Organization", "name": "liveblog"}  # no logo configured

    updates = doc["liveBlogUpdate"]
    assert isinstance(updates, list)
    assert [u["@id"] for u in updates] == [f"{url}#{e['id']}" for e in (plain, key, pinned)]
    assert [u["url"] for u in updates] == [f"{url}/entries/{e['id']}" for e in (plain, key, pinned)]
    for update in updates:
        assert update["@type"] == "BlogPosting"
        assert isinstance(update["headline"], str) and 0 < len(update["headline"]) <= 110
        assert rfc3339(update["datePublished"]) <= rfc3339(update["dateModified"])
        assert isinstance(update["articleBody"], str) and "<" not in update["articleBody"]
        assert update["author"]["@type"] == "Person" and isinstance(update["author"]["name"], str)
    by_url = {u["@id"]: u for u in updates}
    assert by_url[f"{url}#{key['id']}"]["articleBody"] == "Sirens across the capital.\nResidents sheltered."
    assert by_url[f"{url}#{key['id']}"]["author"] == {
        "@type": "Person",
        "name": "Olena Kovalenko",
        "jobTitle": "Correspondent",
    }
    assert by_url[f"{url}#{key['id']}"]["image"] == "https://example.com/kyiv.jpg"
    assert by_url[f"{url}#{plain['id']}"]["headline"] == "No headline here, just a short update & more."


async def test_json_ld_gets_a_coverage_end_time_when_the_blog_ends(service):
    await a_blog_with_entries(service)
    ended = await service.http.patch("/api/v1/blogs/ukraine", json={"status": "ended"}, headers=service.auth())
    assert ended.status_code == 200, ended.text
    response = await service.http.get("/blogs/ukraine")
    doc = json.loads(Html(response.text).json_ld[0])
    assert rfc3339(doc["coverageEndTime"]) >= rfc3339(doc["coverageStartTime"])
    assert "This live blog has ended." in response.text


async def test_script_end_tags_in_content_cannot_break_out_of_the_json_ld(service):
    await service.create_blog(description=ESCAPE_ATTEMPT)
    await service.post(headline=ESCAPE_ATTEMPT, author={"name": "</script><b>x"}, body="<p>body</p>")
    text = (await service.http.get("/blogs/ukraine")).text
    page = Html(text)
    assert [s.get("type") or s.get("src") for s in page.scripts] == ["application/ld+json", SCRIPT_URL]
    doc = json.loads(page.json_ld[0])
    assert doc["description"] == clean_text(ESCAPE_ATTEMPT)  # plain-text fields lose their markup on write
    assert doc["liveBlogUpdate"][0]["headline"] == clean_text(ESCAPE_ATTEMPT)
    assert doc["liveBlogUpdate"][0]["author"]["name"] == "x"
    assert "window.__xss=1</script>" not in text


async def test_the_atom_feed_carries_the_latest_entries(service):
    plain, key, pinned = await a_blog_with_entries(service)
    blog = (await service.http.get("/api/v1/blogs/ukraine")).json()
    await service.post(headline="Control \x01 character", body="<p>still valid XML</p>", time=in_hours(blog, 5))
    response = await service.http.get("/blogs/ukraine/feed.atom")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/atom+xml")
    feed = ElementTree.fromstring(response.content)
    url = f"{service.base_url}/blogs/ukraine"
    assert feed.tag == f"{ATOM}feed"
    assert feed.findtext(f"{ATOM}id") == url
    assert feed.findtext(f"{ATOM}title") == "Live: ukraine"
    rfc3339(feed.findtext(f"{ATOM}updated"))
    assert feed.find(f"{ATOM}link[@rel='self']").get("href") == f"{url}/feed.atom"
    entries = feed.findall(f"{ATOM}entry")
    assert [e.findtext(f"{ATOM}id") for e in entries][1:] == [f"{url}#{e['id']}" for e in (plain, key, pinned)]
    assert entries[0].findtext(f"{ATOM}title") == "Control  character"
    kyiv = entries[2]
    assert kyiv.findtext(f"{ATOM}title") == "Air raid alert in Kyiv"
    assert kyiv.findtext(f"{ATOM}author/{ATOM}name") == "Olena Kovalenko"
    assert kyiv.find(f"{ATOM}content").get("type") == "html"
    assert kyiv.findtext(f"{ATOM}content") == "<p>Sirens across the capital.</p><p>Residents sheltered.</p>"
    assert [c.get("term") for c in kyiv.findall(f"{ATOM}category")] == ["kyiv", "air-raid"]
    assert kyiv.find(f"{ATOM}link[@rel='alternate']").get("href") == f"{url}/entries/{key['id']}"
    assert rfc3339(kyiv.findtext(f"{ATOM}published")) == rfc3339(key["time"])
    rfc3339(kyiv.findtext(f"{ATOM}updated"))


async def test_the_json_feed_carries_the_latest_entries(service):
    plain, key, pinned = await a_blog_with_entries(service)
    response = await service.http.get("/blogs/ukraine/feed.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/feed+json")
    feed = response.json()
    url = f"{service.base_url}/blogs/ukraine"
    assert feed["version"] == "https://jsonfeed.org/version/1.1"
    assert feed["title"] == "Live: ukraine"
    assert feed["home_page_url"] == url and feed["feed_url"] == f"{url}/feed.json"
    assert [item["id"] for item in feed["items"]] == [f"{url}#{e['id']}" for e in (plain, key, pinned)]
    kyiv = feed["items"][1]
    assert kyiv["title"] == "Air raid alert in Kyiv"
    assert kyiv["content_html"] == "<p>Sirens across the capital.</p><p>Residents sheltered.</p>"
    assert kyiv["authors"] == [{"name": "Olena Kovalenko"}]
    assert kyiv["tags"] == ["kyiv", "air-raid"]
    assert kyiv["image"] == "https://example.com/kyiv.jpg"
    assert kyiv["url"] == f"{url}/entries/{key['id']}"
    rfc3339(kyiv["date_published"]), rfc3339(kyiv["date_modified"])


async def test_oembed_turns_a_pasted_page_url_into_an_iframe(service):
    await service.create_blog()
    url = f"{service.base_url}/blogs/ukraine"
    response = await service.http.get("/oembed", params={"url": url, "format": "json", "maxwidth": "500"})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    doc = response.json()
    assert doc["version"] == "1.0" and doc["type"] == "rich"
    assert doc["title"] == "Live: ukraine (live)"
    assert doc["width"] == 500 and isinstance(doc["height"], int)
    assert doc["html"].startswith(f'<iframe src="{service.base_url}/embed/ukraine" ')
    assert f'width="500" height="{doc["height"]}"' in doc["html"]


@pytest.mark.parametrize(
    "url",
    [
        "https://elsewhere.example/blogs/ukraine",  # not this server
        "{base}/blogs/nope",  # no such blog
        "{base}/api/v1/blogs/ukraine",  # not a blog page
        "{base}/blogs/../admin",
        "javascript:alert(1)//{base}/blogs/ukraine",
        "",
    ],
)
async def test_oembed_is_404_for_urls_that_are_not_this_servers_blog_pages(service, url):
    await service.create_blog()
    response = await service.http.get("/oembed", params={"url": url.format(base=service.base_url)})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_oembed_offers_json_only(service):
    await service.create_blog()
    response = await service.http.get("/oembed", params={"url": f"{service.base_url}/blogs/ukraine", "format": "xml"})
    assert response.status_code == 501


@pytest.mark.parametrize(
    "path", ["/blogs/ukraine", "/embed/ukraine", "/blogs/ukraine/feed.atom", "/blogs/ukraine/feed.json", "/embed.js"]
)
async def test_reader_pages_revalidate_with_etags(service, path):
    await service.create_blog()
    await service.post(body="<p>first</p>")
    first = await service.http.get(path)
    assert first.status_code == 200
    etag = first.headers["etag"]
    cache = first.headers["cache-control"]
    assert "public" in cache and "stale-while-revalidate=" in cache
    assert int(re.search(r"max-age=(\d+)", cache).group(1)) <= 300
    again = await service.http.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    if path != "/embed.js":
        await service.post(body="<p>second</p>")
        changed = await service.http.get(path, headers={"If-None-Match": etag})
        assert changed.status_code == 200 and changed.headers["etag"] != etag


async def test_the_iframe_page_may_be_framed_by_the_blogs_embed_origins_only(service):
    await service.create_blog("anywhere")
    await service.create_blog("partners", embed_origins=["https://news.example", "https://blog.example:8443"])
    anywhere = await service.http.get("/embed/anywhere")
    assert anywhere.headers["content-security-policy"] == "frame-ancestors *"
    partners = await service.http.get("/embed/partners")
    assert partners.headers["content-security-policy"] == (
        "frame-ancestors 'self' https://news.example https://blog.example:8443"
    )
    assert 'data-liveblog="partners"' in partners.text
    assert "parent.postMessage" in partners.text and "liveblog:height" in partners.text


async def test_the_iframe_page_passes_valid_options_to_the_widget(service):
    await service.create_blog()
    text = (await service.http.get("/embed/ukraine?theme=dark&order=oldest&limit=5")).text
    assert 'data-liveblog="ukraine" data-theme="dark" data-order="oldest" data-limit="5"' in text
    text = (await service.http.get('/embed/ukraine?theme="><script>&limit=1000')).text
    assert '<div class="lb-ssr" data-liveblog="ukraine">' in text


async def test_the_widget_script_is_small_javascript(service):
    response = await service.http.get("/embed.js")
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    size = len(gzip.compress(response.content, 9))
    print(f"\nembed.js: {len(response.content)} bytes, {size} gzipped")
    assert size <= 10 * 1024


@pytest.mark.parametrize(
    "path",
    [
        "/blogs/nope",
        "/embed/nope",
        "/blogs/nope/feed.atom",
        "/blogs/nope/feed.json",
        "/blogs/NOT_A_SLUG",
        "/embed/%2e%2e",
    ],
)
async def test_pages_of_unknown_blogs_are_404(service, path):
    response = await service.http.get(path)
    assert response.status_code == 404
