"""The server-rendered page as a newsroom publishes it, in the blog's language and time zone.

A Spanish newsroom in Madrid, an Arabic one, crawlers following links from page to page, a
reader sharing one entry, and a page hit by a crowd: plain HTTP against the real service, and
real Chromium where a page must be seen (its layout, the share button).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import re
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
from conftest import UNLIMITED, Service, receive, running_service
from test_pages import ATOM, Html, clock, in_hours, rfc3339

from liveblog.caching import Lru, ShortCache
from liveblog.config import Settings
from liveblog.i18n import _load
from liveblog.render import RENDERED
from liveblog.web import EMBED_VERSION, SCRIPT_URL

#: One event loop for the module: the browser lives as long as it.
pytestmark = pytest.mark.asyncio(loop_scope="module")

MADRID = ZoneInfo("Europe/Madrid")
PAGE_SIZE = 4
PUBLISHER = "Diario del Turia"
CHROMIUM = "/usr/bin/chromium"
WAIT_MS = 5000


@pytest.fixture
def settings() -> Settings:
    return replace(UNLIMITED, snapshot_size=PAGE_SIZE, publisher_name=PUBLISHER)


@pytest_asyncio.fixture(loop_scope="module")
async def service(redis_server, settings) -> AsyncIterator[Service]:
    async with running_service(redis_server.url, settings) as svc:
        yield svc


# --- what a reader sees -----------------------------------------------------------------------------


class Visible(HTMLParser):
    """The words a reader can see or hear on a page: text outside scripts and styles, and the
    tooltips, labels and alternative texts of elements."""

    SEEN_ATTRIBUTES = ("title", "aria-label", "alt", "placeholder")

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._hidden += 1
        self.parts += [value for name, value in attrs if name in self.SEEN_ATTRIBUTES and value]

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.parts).split())


def english_words() -> set[str]:
    """Every piece of English the catalogue has for readers ("Pinned", "To know more",
    "Corrected", "Open on"…), cut at its placeholders."""
    found = set()
    for key, value in _load("en").items():
        if key.startswith("_"):
            continue
        for form in value.values() if isinstance(value, dict) else [value]:
            for piece in re.split(r"\{[a-z_]+\}", form):
                piece = piece.strip(" .,:;·()“”\"'…")
                if re.search(r"[A-Za-z]{2}", piece):
                    found.add(piece)
    return found


def assert_no_english(text: str) -> None:
    leaked = sorted(w for w in english_words() if re.search(rf"(?<![A-Za-z]){re.escape(w)}(?![A-Za-z])", text))
    assert not leaked, f"English on a Spanish page: {leaked}"


def said(page: Html) -> str:
    """A page's text as one line (its pieces joined as the browser shows them, spaces collapsed)."""
    return " ".join("".join(page.text).split())


def madrid(moment: str) -> str:
    """A time of day as a Spanish page in Madrid shows it ("17:45"), worked out without Babel."""
    return f"{rfc3339(moment).astimezone(MADRID):%-H:%M}"


async def patch(service: Service, entry: dict, blog_id: str = "ukraine", **fields: object) -> dict:
    response = await service.http.patch(
        f"/api/v1/blogs/{blog_id}/entries/{entry['id']}",
        json=fields,
        headers={**service.auth(), "If-Match": f'"{entry["version"]}"'},
    )
    assert response.status_code == 200, response.text
    return response.json()


async def a_spanish_blog(service: Service, **fields: object) -> tuple[dict, list[dict]]:
    """A Madrid newsroom's blog in Spanish with the seed's content shapes; its entries newest
    first: a corrected and edited key event with a quote and related stories, an update with
    a photo, one with a YouTube video, and a pinned summary."""
    blog = await service.create_blog(
        "dana", title="La DANA en Valencia", language="es", timezone="Europe/Madrid", **fields
    )
    reporter = {"name": "Lucía Ferrer", "role": "Enviada especial", "location": "Paiporta"}
    summary = await service.post(
        "dana",
        headline="Lo que sabemos",
        body="<p>Aviso rojo en el litoral. Piden <mark>no desplazarse</mark>.</p>",
        pinned=True,
        time=in_hours(blog, 1),
    )
    photo = await service.post(
        "dana",
        body="<p>El barranco del Poyo, desbordado.</p>",
        author=reporter,
        tags=["paiporta"],
        media={
            "type": "image",
            "url": "https://images.example/barranco.jpg",
            "caption": "El barranco, esta mañana.",
            "credit": "Ana Gil",
            "width": 1200,
            "height": 675,
        },
        time=in_hours(blog, 2),
    )
    video = await service.post(
        "dana",
        body="<p>El embalse de Forata, aliviando agua.</p>",
        media={"type": "embed", "url": "https://www.youtube.com/watch?v=dQw4w9WgXcQ", "caption": "Vídeo: CHJ"},
        time=in_hours(blog, 2.5),
    )
    key = await service.post(
        "dana",
        headline="El alcalde pide maquinaria pesada",
        body="<blockquote><p>Necesitamos maquinaria pesada ya.</p><footer>Alcalde de Paiporta</footer></blockquote>",
        author=reporter,
        key_event=True,
        tags=["paiporta", "emergencias"],
        related=[
            {"url": "https://news.example/mapa", "title": "Mapa de las zonas afectadas", "kicker": "Gráfico"},
            {"url": "https://news.example/ayudas", "title": "Cómo pedir las ayudas"},
        ],
        time=in_hours(blog, 3),
    )
    key = await patch(service, key, "dana", body=key["body"] + "<p>El polideportivo acoge a los vecinos.</p>")
    key = await patch(service, key, "dana", correction="El alcalde habló en la SER, no en la COPE.")
    return blog, [key, video, photo, summary]


# --- a Spanish newsroom in Madrid ---------------------------------------------------------------------


async def test_a_spanish_blog_reads_in_spanish_and_madrid_time_on_the_page(service):
    blog, (key, video, photo, summary) = await a_spanish_blog(service)
    response = await service.http.get("/blogs/dana")
    page, seen = Html(response.text), Visible(response.text).text
    text = said(page)
    assert page.html == {"lang": "es", "dir": "ltr"}
    for words in (
        "En directo",  # the status
        "Lo más importante",  # key events, above the stream
        "Fijado",
        "Clave",
        "Para saber más",  # related stories
        "Foto: Ana Gil",  # the photo's credit
        f"· actualizado {madrid(key['edited_at'])}",
        f"Corregido {madrid(key['corrections'][0]['at'])}: El alcalde habló en la SER, no en la COPE.",
        "Última actualización:",
        "Enlace a esta actualización",  # what a screen reader hears on each time, the permalink
        "Este contenido está alojado en YouTube.",
        "Abrir en YouTube",
    ):
        assert words in text, words
    for entry in (key, video, photo, summary):
        assert f"{madrid(entry['time'])}" in page.article_text[entry["id"]]
    assert "UTC" not in text
    # Each time carries the instant, and the full date with the zone as its tooltip.
    stamp = re.search(rf'<time datetime="{re.escape(key["time"])}" title="([^"]+)">([^<]+)</time>', response.text)
    assert stamp is not None and stamp.group(2) == madrid(key["time"])
    assert "Europa central" in stamp.group(1)  # "hora estándar de Europa central", or its summer time
    assert_no_english(seen)


async def test_the_spanish_embed_page_feeds_oembed_and_entry_pages_say_it_in_spanish_too(service):
    blog, (key, *_) = await a_spanish_blog(service)
    correction = f"Corregido {madrid(key['corrections'][0]['at'])}: El alcalde habló en la SER, no en la COPE."

    embed = await service.http.get("/embed/dana")
    assert Html(embed.text).html == {"lang": "es", "dir": "ltr"}
    assert "Lo más importante" in Visible(embed.text).text
    assert_no_english(Visible(embed.text).text)

    entry_page = await service.http.get(f"/blogs/dana/entries/{key['id']}")
    text = said(Html(entry_page.text))
    assert "Compartir" in text and "Todas las actualizaciones" in text and correction in text
    assert_no_english(Visible(entry_page.text).text)

    atom = ElementTree.fromstring((await service.http.get("/blogs/dana/feed.atom")).content)
    # With no description, the feed says what it is in the blog's words.
    assert atom.findtext(f"{ATOM}subtitle").startswith("Directo, actualizado a las ")
    [item] = [e for e in atom.findall(f"{ATOM}entry") if e.findtext(f"{ATOM}id").endswith(key["id"])]
    assert correction in item.findtext(f"{ATOM}content")

    feed = (await service.http.get("/blogs/dana/feed.json")).json()
    assert feed["language"] == "es" and feed["description"].startswith("Directo, actualizado a las ")
    assert correction in feed["items"][0]["content_text"].splitlines()

    oembed = await service.http.get("/oembed", params={"url": f"{service.base_url}/blogs/dana"})
    assert oembed.json()["title"] == "La DANA en Valencia (directo)"
    assert 'title="La DANA en Valencia (directo)"' in oembed.json()["html"]
    assert oembed.json()["provider_name"] == PUBLISHER


async def test_an_arabic_page_is_laid_out_right_to_left(service):
    await service.create_blog("gaza", title="غزة: آخر التطورات", language="ar")
    await service.post("gaza", body="<p>تحديث</p>", key_event=True)
    for path in ("/blogs/gaza", "/embed/gaza"):
        page = Html((await service.http.get(path)).text)
        assert page.html == {"lang": "ar", "dir": "rtl"}, path
        assert "مباشر" in " ".join(page.text)
    # A language tag keeps its region in lang=, and finds its language's catalogue.
    await service.create_blog("rio", language="pt-BR")
    assert Html((await service.http.get("/blogs/rio")).text).html == {"lang": "pt-BR", "dir": "ltr"}


async def test_entries_show_the_seeds_content_shapes(service):
    blog, (key, video, photo, summary) = await a_spanish_blog(service)
    text = (await service.http.get("/blogs/dana")).text
    page = Html(text)
    assert "<mark>no desplazarse</mark>" in text
    assert (
        "<blockquote><p>Necesitamos maquinaria pesada ya.</p><footer>Alcalde de Paiporta</footer></blockquote>" in text
    )
    assert "Lucía Ferrer · Enviada especial · Paiporta" in page.article_text[key["id"]]
    cards = [a for a in page.anchors if a.get("href", "").startswith("https://news.example/")]
    assert [a["href"] for a in cards] == ["https://news.example/mapa", "https://news.example/ayudas"]
    assert "Gráfico Mapa de las zonas afectadas" in page.article_text[key["id"]]
    # The photo reserves its space and names its author.
    assert re.search(
        r'<img src="https://images.example/barranco.jpg" alt="El barranco, esta mañana." '
        r'width="1200" height="675"',
        text,
    )
    # The video is a link to the provider: no frame, nothing the browser would fetch from it.
    assert video["media"]["provider"] == "youtube" and video["media"]["embed_url"]
    assert video["media"]["embed_url"] not in text and "<iframe" not in text
    assert not re.search(r'(src|srcset|poster|data)="https://[^"]*(youtube|ytimg|youtube-nocookie)', text)
    link = next(a for a in page.anchors if a.get("href") == video["media"]["url"])
    assert link["rel"] == "noopener noreferrer nofollow"


# --- key events, tags, older pages, each entry's own page -----------------------------------------------


async def test_key_events_are_summed_up_above_the_stream_as_links_to_them(service):
    await service.create_blog()
    first = await service.post(headline="Sirens in Kyiv", key_event=True, body="<p>a</p>")
    await service.post(body="<p>ordinary</p>")
    second = await service.post(body="<p>Power restored across the left bank, officials say.</p>", key_event=True)
    text = (await service.http.get("/blogs/ukraine")).text
    summary = text[text.index('<nav class="lb-key-events"') : text.index("</nav>")]
    lines = Html(summary)
    assert [a["href"] for a in lines.anchors] == [f"#{second['id']}", f"#{first['id']}"]  # newest first
    assert " ".join(lines.text).split("Key events", 1)[1].split() == (
        [*clock(second["time"]).split(), *"Power restored across the left bank, officials say.".split()]
        + [*clock(first["time"]).split(), "Sirens", "in", "Kyiv"]
    )
    assert all(f'id="{a["href"][1:]}"' in text for a in lines.anchors)  # each jumps to its entry


async def test_a_tag_view_shows_only_that_tags_entries(service):
    await service.create_blog()
    kyiv = await service.post(body="<p>one</p>", tags=["kyiv"])
    ceasefire = [await service.post(body=f"<p>talks {i}</p>", tags=["odesa", "alto el fuego"]) for i in range(6)]
    await service.post(body="<p>two</p>", tags=["odesa"], pinned=True)
    front = Html((await service.http.get("/blogs/ukraine")).text)
    # Readers get there by following an entry's tag.
    [href] = {a["href"] for a in front.anchors if a.get("rel") == "tag" and a["href"].endswith("fuego")}
    assert href == "/blogs/ukraine?tag=alto%20el%20fuego"
    response = await service.http.get(href)
    view = Html(response.text)
    assert "Updates tagged “alto el fuego”" in " ".join(view.text)
    assert view.link("canonical") == f"{service.base_url}{href}"
    assert "data-liveblog=" not in response.text and '<nav class="lb-key-events"' not in response.text  # not live
    seen, url = [], href
    while url is not None:  # its older pages stay in the tag
        page = Html((await service.http.get(url)).text)
        assert page.copies == 0 and len(page.articles) <= PAGE_SIZE
        seen += page.articles
        url = next((a["href"] for a in page.anchors if a.get("rel") == "next"), None)
        assert url is None or url.startswith("/blogs/ukraine?tag=alto%20el%20fuego&before=")
    assert seen == [e["id"] for e in reversed(ceasefire)]
    assert Html((await service.http.get("/blogs/ukraine?tag=kyiv")).text).articles == [kyiv["id"]]
    assert Html((await service.http.get("/blogs/ukraine?tag=nothing")).text).articles == []
    for wrong in ("x" * 41, "a%0Ab", ""):
        assert (await service.http.get(f"/blogs/ukraine?tag={wrong}")).status_code == 404, wrong


async def test_older_links_lead_a_crawler_to_the_first_entry(service):
    await service.create_blog()
    posted = [await service.post(body=f"<p>update {i}</p>") for i in range(2 * PAGE_SIZE + 3)]
    url, seen, pages = "/blogs/ukraine", [], 0
    while url is not None:
        page = Html((await service.http.get(url)).text)
        pages += 1
        assert len(page.articles) <= PAGE_SIZE
        if pages > 1:  # older pages lead back to the newest
            assert "/blogs/ukraine" == next(a["href"] for a in page.anchors if a.get("rel") == "prev")
        seen += page.articles
        url = next((a["href"] for a in page.anchors if a.get("rel") == "next"), None)
        assert pages <= len(posted)
    assert seen == [e["id"] for e in reversed(posted)]  # every entry once, newest first, to the first
    assert pages == 3
    assert (await service.http.get("/blogs/ukraine?before=nosuchentry")).status_code == 404
    assert (await service.http.get("/blogs/ukraine?before=../x")).status_code == 404


async def test_an_empty_blog_says_nothing_has_been_posted_yet(service):
    await service.create_blog()
    await service.create_blog("vacio", language="es")
    page = Html((await service.http.get("/blogs/ukraine")).text)
    assert "No updates have been posted yet." in page.text and page.articles == []
    assert not [a for a in page.anchors if a.get("rel") in ("next", "prev")]
    assert (
        "Todavía no se ha publicado ninguna actualización." in Html((await service.http.get("/blogs/vacio")).text).text
    )


async def test_each_entry_has_its_own_page_with_canonical_opengraph_and_json_ld(service):
    blog, (key, video, photo, summary) = await a_spanish_blog(service)
    front = Html((await service.http.get("/blogs/dana")).text)
    # The time on each entry links to its page.
    href = next(a["href"] for a in front.anchors if a.get("class") == "lb-time" and a["href"].endswith(photo["id"]))
    response = await service.http.get(href)
    assert response.status_code == 200
    page = Html(response.text)
    url = f"{service.base_url}/blogs/dana/entries/{photo['id']}"
    assert page.link("canonical") == url == page.meta["og:url"]
    assert page.meta["og:title"] == "El barranco del Poyo, desbordado."
    assert page.meta["og:image"] == "https://images.example/barranco.jpg"
    assert page.meta["article:tag"] == "paiporta"
    assert page.articles == [photo["id"]]
    [posting] = [json.loads(block) for block in page.json_ld]
    assert posting["@type"] == "BlogPosting" and posting["url"] == url and posting["inLanguage"] == "es"
    assert posting["isPartOf"]["@id"] == f"{service.base_url}/blogs/dana"
    assert posting["publisher"]["name"] == PUBLISHER
    share = re.search(r'<button type="button" data-url="([^"]+)"', response.text)
    assert share is not None and share.group(1) == url
    assert "navigator.share" in response.text and "navigator.clipboard" in response.text


async def test_an_entry_page_is_404_for_anything_not_published(service):
    await service.create_blog()
    draft = await service.post(body="<p>not yet</p>", status="draft")
    gone = await service.post(body="<p>wrong</p>")
    retracted = await service.http.request(
        "DELETE", f"/api/v1/blogs/ukraine/entries/{gone['id']}", headers={**service.auth(), "If-Match": '"1"'}
    )
    assert retracted.status_code == 204
    for entry_id in (draft["id"], gone["id"], "0000000000000000", "..%2Fx"):
        assert (await service.http.get(f"/blogs/ukraine/entries/{entry_id}")).status_code == 404, entry_id
    assert (await service.http.get(f"/blogs/nosuchblog/entries/{draft['id']}")).status_code == 404


async def test_json_ld_lists_only_the_entries_inside_the_coverage_window(service):
    blog = await service.create_blog()
    backdated = await service.post(body="<p>from before the coverage began</p>", time="2020-01-01T00:00:00Z")
    inside = await service.post(body="<p>covered</p>")  # now: after the coverage began, before it ends
    later = await service.post(body="<p>set for the future</p>", time=in_hours(blog, 24 * 365))

    def listed(text: str) -> list[str]:
        doc = json.loads(Html(text).json_ld[0])
        return [update["@id"].split("#")[1] for update in doc["liveBlogUpdate"]]

    page = (await service.http.get("/blogs/ukraine")).text
    assert listed(page) == [later["id"], inside["id"]]  # while live, the window has no end
    assert Html(page).articles == [later["id"], inside["id"], backdated["id"]]  # readers see them all
    ended = await service.http.patch("/api/v1/blogs/ukraine", json={"status": "ended"}, headers=service.auth())
    assert ended.status_code == 200
    assert listed((await service.http.get("/blogs/ukraine")).text) == [inside["id"]]


# --- rendered once, served many times ------------------------------------------------------------------


async def test_an_unchanged_page_is_not_rendered_again(service):
    pages = service.services.pages
    pages.ttl = 3600  # this story is about rendering, not about the cache's second
    await service.create_blog()
    for i in range(3):
        await service.post(body=f"<p>{'A long paragraph of the day. ' * 50}{i}</p>", headline=f"Update {i}")

    def counts() -> tuple[int, int, int]:
        return pages.builds, RENDERED.misses, RENDERED.hits

    before = counts()
    first = await service.http.get("/blogs/ukraine")
    assert counts()[:2] == (before[0] + 1, before[1] + 3)  # built once, each entry rendered once
    before = counts()
    again = await service.http.get("/blogs/ukraine")
    assert again.content == first.content and again.headers["etag"] == first.headers["etag"]
    assert counts() == before  # no page built, not even an entry looked up

    await service.post(body="<p>news</p>")  # a write forgets the blog's pages at once
    before = counts()
    assert "news" in (await service.http.get("/blogs/ukraine")).text
    assert counts()[:2] == (before[0] + 1, before[1] + 1)  # only the new entry rendered

    before = counts()
    await service.http.get("/blogs/ukraine/feed.atom")
    await service.http.get("/blogs/ukraine/feed.json")
    assert counts() == (before[0] + 2, before[1], before[2] + 8)  # the feeds reuse the page's rendering

    language = await service.http.patch("/api/v1/blogs/ukraine", json={"language": "es"}, headers=service.auth())
    assert language.status_code == 200
    before = counts()
    assert "En directo" in (await service.http.get("/blogs/ukraine")).text
    assert counts()[:2] == (before[0] + 1, before[1] + 4)  # another language: every entry anew


async def test_readers_who_ask_while_a_page_is_built_wait_for_that_build():
    cache = ShortCache(ttl=3600)
    started, gate, calls = asyncio.Event(), asyncio.Event(), []

    async def build() -> bytes:
        calls.append(1)
        started.set()
        await gate.wait()
        return b"<p>page</p>"

    first = asyncio.ensure_future(cache.prepared("b", "page", build))
    await started.wait()
    rest = [asyncio.ensure_future(cache.prepared("b", "page", build)) for _ in range(4)]
    await asyncio.sleep(0)  # a turn of the loop: each is now waiting for the build
    assert not any(task.done() for task in [first, *rest])
    gate.set()
    results = await asyncio.gather(first, *rest)
    assert len(calls) == 1 and cache.builds == 1 and all(r is results[0] for r in results)
    assert gzip.decompress(results[0].gzipped) == b"<p>page</p>"
    assert cache.get_prepared("b", "page") is results[0]

    # A write while a page is being built: those waiting get it, the cache does not keep it.
    started.clear(), gate.clear()
    waiting = asyncio.ensure_future(cache.prepared("c", "page", build))
    await started.wait()
    cache.forget("c")
    gate.set()
    assert (await waiting).body == b"<p>page</p>" and cache.get_prepared("c", "page") is None


async def test_an_expired_page_is_served_while_its_successor_is_built():
    cache = ShortCache(ttl=0.0)
    old = await cache.prepared("b", "page", _body(b"<p>old</p>"))
    _until_the_clock_moves()  # "old" has expired
    cache.ttl = 3600
    gate = asyncio.Event()

    async def slow() -> bytes:
        await gate.wait()
        return b"<p>new</p>"

    assert await cache.prepared("b", "page", slow) is old  # at once, though stale
    assert await cache.prepared("b", "page", slow) is old and cache.builds == 2  # one build under way
    gate.set()
    while (new := cache.get_prepared("b", "page")) is None:
        await asyncio.sleep(0)  # until the build is done and kept
    assert new.body == b"<p>new</p>" and await cache.prepared("b", "page", slow) is new
    cache.forget("b")  # a write: nothing stale is served after it
    assert (await cache.prepared("b", "page", _body(b"<p>newest</p>"))).body == b"<p>newest</p>"

    # A page that is gone (an entry purged by another process) is not served stale any longer.
    gone = ShortCache(ttl=0.0)
    await gone.prepared("e", "entry", _body(b"<p>purged text</p>"))
    _until_the_clock_moves()
    failing = asyncio.Event()

    async def not_found() -> bytes:
        await failing.wait()
        raise LookupError("no such entry")

    assert (await gone.prepared("e", "entry", not_found)).body == b"<p>purged text</p>"  # while it is rebuilt
    failing.set()
    with pytest.raises(LookupError):
        while True:  # stale until that build has failed, then its error
            await gone.prepared("e", "entry", not_found)
            await asyncio.sleep(0)
    assert len(gone) == 0


def _body(body: bytes):  # noqa: ANN202
    async def build() -> bytes:
        return body

    return build


def _until_the_clock_moves() -> None:
    start = time.monotonic()
    while time.monotonic() == start:
        pass


async def test_the_caches_stay_within_their_byte_budgets():
    cache = ShortCache(ttl=3600, budget=50_000)
    for i in range(200):  # a crowd asking for ever new variants
        cache.put("ukraine", ("page", f"tag-{i}"), b"x" * 1000)
    assert cache.size <= 50_000 and 0 < len(cache) < 200
    assert cache.get("ukraine", ("page", "tag-199")) is not None and cache.get("ukraine", ("page", "tag-0")) is None
    cache.forget("ukraine")
    assert len(cache) == 0 and cache.size == 0

    brief = ShortCache(ttl=0.0)
    brief.put("a", "page", b"old")
    _until_the_clock_moves()  # "a" has expired
    brief.put("b", "page", b"new")
    assert len(brief) == 1  # "a" was freed, though nobody asked for it again

    lru: Lru[int, str] = Lru(10_000, len)
    for i in range(100):
        lru.put(i, "y" * 500)
    assert lru.size <= 10_000 and lru.evictions > 0 and lru.get(0) is None and lru.get(99) == "y" * 500


# --- compressed, and cached for good where it never changes ------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/blogs/ukraine", "/embed/ukraine", "/blogs/ukraine/feed.atom", "/blogs/ukraine/feed.json", "/embed.js"]
)
async def test_pages_feeds_and_the_widget_come_gzipped_when_asked(service, path):
    await service.create_blog()
    await service.post(body=f"<p>{'Long enough to be worth compressing. ' * 40}</p>")
    zipped = await service.http.get(path, headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip" and "Accept-Encoding" in zipped.headers["vary"]
    plain = await service.http.get(path, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert zipped.content == plain.content  # httpx decoded it: the same bytes
    assert int(zipped.headers["content-length"]) < len(plain.content)
    # Either representation revalidates with either ETag.
    again = await service.http.get(path, headers={"Accept-Encoding": "gzip", "If-None-Match": plain.headers["etag"]})
    assert again.status_code == 304


async def test_the_api_and_live_streams_are_gzipped_when_asked(service):
    await service.create_blog()
    for i in range(5):
        await service.post(body=f"<p>{'Some words of an update. ' * 20}{i}</p>")
    listing = await service.http.get("/api/v1/blogs/ukraine/entries", headers={"Accept-Encoding": "gzip"})
    assert listing.headers["content-encoding"] == "gzip" and len(listing.json()["entries"]) == 5
    # The gzipped listing is another representation: a weak ETag, and either revalidates either.
    plain = await service.http.get("/api/v1/blogs/ukraine/entries", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.json() == listing.json()
    assert listing.headers["etag"] == "W/" + plain.headers["etag"]
    assert "Accept-Encoding" in listing.headers["vary"] and "Accept-Encoding" in plain.headers["vary"]
    for etag, encoding in ((plain.headers["etag"], "gzip"), (listing.headers["etag"], "identity")):
        again = await service.http.get(
            "/api/v1/blogs/ukraine/entries", headers={"Accept-Encoding": encoding, "If-None-Match": etag}
        )
        assert again.status_code == 304

    async with service.http.stream(
        "GET", "/api/v1/blogs/ukraine/events", headers={"Accept-Encoding": "gzip", "Accept": "text/event-stream"}
    ) as events:
        assert events.headers["content-type"].startswith("text/event-stream")
        assert events.headers["content-encoding"] == "gzip"
        lines = events.aiter_lines()
        assert await asyncio.wait_for(anext_data(lines), 10)  # the snapshot arrives while the stream is open
        posted = await service.post(body="<p>live</p>")
        while posted["id"] not in await asyncio.wait_for(anext_data(lines), 10):
            pass  # each event is delivered as it happens, not held back in a compressor

    async with service.live(additional_headers={"Accept-Encoding": "gzip"}) as ws:
        assert (await receive(ws))["type"] == "snapshot"


async def anext_data(lines: AsyncIterator[str]) -> str:
    async for line in lines:
        if line.startswith("data:"):
            return line
    raise AssertionError("the event stream ended")


async def test_our_pages_load_the_widget_by_a_versioned_url_cached_for_good(service):
    await service.create_blog()
    page = Html((await service.http.get("/blogs/ukraine")).text)
    [src] = [s["src"] for s in page.scripts if "src" in s]
    assert src == SCRIPT_URL == f"/embed.js?v={EMBED_VERSION}"
    versioned = await service.http.get(src)
    assert versioned.headers["cache-control"] == "public, max-age=31536000, immutable"
    for other in ("/embed.js", "/embed.js?v=stale"):  # partners' tags, and yesterday's version
        short = (await service.http.get(other)).headers["cache-control"]
        assert "immutable" not in short and int(re.search(r"max-age=(\d+)", short).group(1)) <= 300
    assert (await service.http.get("/embed.js")).content == versioned.content


# --- in a browser --------------------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser():  # noqa: ANN201
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            raise RuntimeError(f"browser tests need Debian's chromium at {CHROMIUM}; .ci/run installs it")
        pytest.skip(f"browser tests need Debian's chromium at {CHROMIUM}")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
        yield launched
        await launched.close()


@pytest.mark.browser
async def test_in_a_browser_an_arabic_page_mirrors_its_layout(service, browser):
    await service.create_blog("gaza", title="غزة: آخر التطورات", language="ar")
    await service.post("gaza", headline="عاجل", body="<p>تحديث</p>", key_event=True)
    context = await browser.new_context(java_script_enabled=False, viewport={"width": 1000, "height": 800})
    try:
        page = await context.new_page()
        await page.goto(f"{service.base_url}/blogs/gaza")
        box = page.locator(".lb-key-events")
        assert await box.evaluate("e => getComputedStyle(e).direction") == "rtl"
        # The accent rule on the summary's start side is on the right in Arabic.
        assert await box.evaluate("e => getComputedStyle(e).borderRightWidth") == "4px"
        assert await box.evaluate("e => getComputedStyle(e).borderLeftWidth") == "0px"
        title, time_ = await page.locator("h1").bounding_box(), await page.locator(".lb-time").first.bounding_box()
        # Lines start on the right: the entry's time sits against the column's right edge.
        right = title["x"] + title["width"]
        assert abs(time_["x"] + time_["width"] - right) < 2 and time_["x"] > title["x"] + 300
    finally:
        await context.close()


@pytest.mark.browser
async def test_in_a_browser_a_reader_shares_an_entry(service, browser):
    blog, (key, *_) = await a_spanish_blog(service)
    url = f"{service.base_url}/blogs/dana/entries/{key['id']}"

    # Where the browser has the Web Share API, the button hands it the entry's title and link.
    context = await browser.new_context()
    try:
        await context.add_init_script("navigator.share = d => { window.__shared = d; return Promise.resolve(); }")
        page = await context.new_page()
        await page.goto(url)
        button = page.get_by_role("button", name="Compartir")
        await button.click()
        shared = await page.wait_for_function("() => window.__shared", timeout=WAIT_MS)
        assert await shared.json_value() == {"title": "El alcalde pide maquinaria pesada", "url": url}
    finally:
        await context.close()

    # Elsewhere it copies the link, and says so in the blog's language.
    context = await browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    try:
        await context.add_init_script("delete Navigator.prototype.share; delete navigator.share;")
        page = await context.new_page()
        await page.goto(url)
        await page.get_by_role("button", name="Compartir").click()
        await page.get_by_role("status").filter(has_text="Enlace copiado").wait_for(timeout=WAIT_MS)
        assert await page.evaluate("navigator.clipboard.readText()") == url
    finally:
        await context.close()
