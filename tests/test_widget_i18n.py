"""The widget in its blog's language, in real Chromium: a Spanish reader sees no English, an Arabic
blog reads right to left, counts follow each language's plural rules, and entries look like the
seed page (related stories, quotes, bylines, credits, click-to-load embeds, key events, tags).

test_widget.py's harness (a partner site on another origin, a real service and redis-server)
serves as this module's fixtures; nothing is mocked. Where a test must know that no request left
for a third party, every request the browser makes goes through Playwright's router.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import test_widget
from babel import Locale
from playwright.async_api import Route
from test_widget import WAIT_MS, Gateway, Reader, open_widget, patch, snippet

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.browser]

# test_widget.py's browser harness, as this module's fixtures.
browser, partner, reader, service = test_widget.browser, test_widget.partner, test_widget.reader, test_widget.service

LOCALES = Path(__file__).parent.parent / "liveblog" / "locales"
YOUTUBE = "https://www.youtube.com/watch?v=dQw4w9WgXcQ"

#: The widget's visible text, its aria-live region and its buttons' and regions' labels.
WIDGET_TEXT = """() => {
  const root = [...document.querySelectorAll("div")].find(d => d.shadowRoot).shadowRoot;
  const lb = root.querySelector(".lb");
  const labels = [...root.querySelectorAll("[aria-label],[title]")].map(el => el.getAttribute("aria-label") || "");
  return [lb.innerText, root.querySelector("[aria-live]").textContent, ...labels].join("\\n");
}"""


def strings(language: str) -> dict:
    return json.loads((LOCALES / f"{language}.json").read_text(encoding="utf-8"))


def english_words() -> set[str]:
    """Every literal piece of the English catalogue that a Spanish reader must not see."""
    pieces: set[str] = set()
    for key, value in strings("en").items():
        if key.startswith("_") or key in ("live_title", "feed_updated", "last_updated", "older", "newer"):
            continue  # pages' strings, not the widget's
        for text in value.values() if isinstance(value, dict) else [value]:
            pieces |= {p.strip(" .:·") for p in re.split(r"\{\w+\}", text) if len(p.strip(" .:·")) > 2}
    return pieces | {"ago", "min ago", "this minute"}


def minutes_ago(minutes: int) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


async def no_english(reader: Reader) -> None:
    text = await reader.page.evaluate(WIDGET_TEXT)
    found = sorted(w for w in english_words() if re.search(rf"(?<!\w){re.escape(w)}(?!\w)", text))
    assert found == [], (found, text)


async def pill_says(reader: Reader, text: str) -> None:
    await reader.widget("button.more").filter(has_text=re.compile(f"^{re.escape(text)}$")).wait_for(timeout=WAIT_MS)


async def spanish_blog(service) -> dict:  # noqa: ANN001
    return await service.create_blog(
        title="La DANA en Valencia", description="Última hora", language="es", timezone="Europe/Madrid"
    )


# --- stories ----------------------------------------------------------------------------------------


async def test_a_spanish_reader_sees_no_english_through_a_reconnect_and_the_end(service, partner, reader):
    await spanish_blog(service)
    key = await service.post(
        headline="Alerta roja en Valencia",
        key_event=True,
        time=minutes_ago(5),
        body="<p>La AEMET activa el <mark>aviso rojo</mark>.</p>"
        "<blockquote><p>Quedaos en casa.</p><footer>Carlos Mazón</footer></blockquote>",
        author={"name": "Lucía Ferrer", "role": "Enviada especial", "location": "Paiporta"},
        media={
            "type": "image",
            "url": "https://images.example/riada.jpg",
            "caption": "La riada",
            "credit": "EFE",
            "width": 1200,
            "height": 675,
        },
        related=[{"url": "https://news.example/dana", "title": "Qué es una DANA", "kicker": "Explicador"}],
        tags=["paiporta"],
    )
    await service.post(headline="Resumen", pinned=True, time=minutes_ago(90), body="<p>Lo que sabemos.</p>")
    async with Gateway() as gateway:
        gateway.target = service
        css = "script + div { --lb-accent: rgb(0, 100, 0) }"
        await reader.page.goto(partner.publish(snippet(gateway.url), css))
        await reader.widget(".st .dot").wait_for(timeout=WAIT_MS)

        entry = reader.widget(f".list article[data-id='{key['id']}']")
        assert await reader.widget(".st").text_content() == "En directo"
        assert await entry.locator(".ago").text_content() == " · hace 5 min"
        title = await entry.locator("time").first.get_attribute("title")
        assert "CET" in title or "hora estándar de Europa central" in title, title  # the blog's zone
        assert await entry.locator(".k").text_content() == "Clave"
        assert await entry.locator(".k").evaluate("el => getComputedStyle(el).backgroundColor") == "rgb(0, 100, 0)"
        assert await entry.locator(".by").text_content() == "Lucía Ferrer, Enviada especial, Paiporta"
        assert await entry.locator("mark").text_content() == "aviso rojo"
        assert await entry.locator("blockquote footer").text_content() == "Carlos Mazón"
        image = entry.locator("img")
        assert (await image.get_attribute("width"), await image.get_attribute("height")) == ("1200", "675")
        assert await entry.locator("figcaption").text_content() == "La riada Foto: EFE"
        assert await entry.locator(".rel h4").text_content() == "Para saber más"
        assert await entry.locator(".rel a small").text_content() == "Explicador"
        assert await entry.locator(".rel a").get_attribute("href") == "https://news.example/dana"
        assert await entry.locator(".sh").text_content() == "Compartir"
        assert await reader.widget(".ke h4").text_content() == "Lo más importante"
        assert await reader.widget(".pins .b").text_content() == "Fijado"
        await no_english(reader)

        gateway.cut()  # the connection drops: it says so, in Spanish, and comes back
        await reader.widget(".st").filter(has_text="Reconectando…").wait_for(timeout=WAIT_MS)
        await no_english(reader)
        gateway.target = service
        await reader.widget(".st .dot").wait_for(timeout=10_000)

        await reader.page.evaluate("() => window.scrollTo(0, 2500)")  # reading further down
        await reader.settled()
        await service.post(headline="Nuevos cortes de carretera", body="<p>La A-7, cortada.</p>")
        await pill_says(reader, "1 actualización nueva")
        await no_english(reader)

        response = await service.http.patch("/api/v1/blogs/ukraine", json={"status": "ended"}, headers=service.auth())
        assert response.status_code == 200
        await reader.widget(".st").filter(has_text="Este directo ha terminado.").wait_for(timeout=WAIT_MS)
        await no_english(reader)


async def test_relative_times_keep_themselves_current(service, partner, reader):
    await spanish_blog(service)
    entry = await service.post(body="<p>Ahora.</p>", time=minutes_ago(5))
    await reader.page.clock.install()
    await open_widget(reader, partner, service)
    ago = reader.widget(f"article[data-id='{entry['id']}'] .ago")
    assert await ago.text_content() == " · hace 5 min"
    await reader.page.clock.fast_forward(10 * 60_000)
    await ago.filter(has_text="hace 15 min").wait_for(timeout=WAIT_MS)
    await reader.page.clock.fast_forward(60 * 60_000)
    await ago.filter(has_text="hace 1 h").wait_for(timeout=WAIT_MS)


async def test_an_arabic_blog_reads_right_to_left(service, partner, reader):
    await service.create_blog(title="مباشر", language="ar", timezone="Asia/Beirut")
    entry = await service.post(body="<p>تحديث</p>", key_event=True)
    await open_widget(reader, partner, service)
    await reader.widget(".st .dot").wait_for(timeout=WAIT_MS)
    arabic = strings("ar")
    lb = reader.widget(".lb")
    assert (await lb.get_attribute("dir"), await lb.get_attribute("lang")) == ("rtl", "ar")
    assert await lb.evaluate("el => getComputedStyle(el).direction") == "rtl"
    assert await reader.widget(".st").text_content() == arabic["live"]
    assert await reader.widget(f"article[data-id='{entry['id']}'] .k").text_content() == arabic["key_event"]
    # The key-event bar is on the start side, which in Arabic is the right.
    bar = await reader.widget(f"article[data-id='{entry['id']}']").evaluate(
        "el => [getComputedStyle(el).borderRightWidth, getComputedStyle(el).borderLeftWidth]"
    )
    assert bar == ["4px", "0px"]


@pytest.mark.parametrize(("language", "counts"), [("es", [1, 2]), ("uk", [1, 2, 5]), ("ar", [1, 2, 3, 11])])
async def test_counts_take_each_languages_plural_forms(service, partner, reader, language, counts):
    await service.create_blog(language=language)
    for i in range(4):
        await service.post(body="<p>" + "Texto. " * 60 + f"{i}</p>")
    await open_widget(reader, partner, service)
    await reader.widget(".st .dot").wait_for(timeout=WAIT_MS)
    await reader.page.evaluate("() => window.scrollTo(0, 2500)")
    await reader.settled()
    forms, locale, posted = strings(language)["new_updates"], Locale.parse(language), 0
    seen = set()
    for n in counts:
        while posted < n:
            await service.post(body=f"<p>new {posted}</p>")
            posted += 1
        form = locale.plural_form(n)
        seen.add(form)
        await pill_says(reader, forms[form].replace("{n}", str(n)))
    assert len(seen) == len(counts)  # each count was a different form


async def test_a_social_embed_asks_nothing_of_the_provider_until_clicked(service, partner, reader):
    await spanish_blog(service)
    entry = await service.post(body="<p>El vídeo.</p>", media={"type": "embed", "url": YOUTUBE, "caption": "Vídeo"})
    assert entry["media"]["embed_url"].startswith("https://www.youtube-nocookie.com/embed/")
    outside: list[str] = []

    async def route(route: Route) -> None:
        if route.request.url.startswith("http://127.0.0.1:"):
            await route.continue_()
        else:
            outside.append(route.request.url)
            await route.fulfill(body="<!doctype html><p>frame</p>", content_type="text/html")

    await reader.page.context.route("**/*", route)
    await open_widget(reader, partner, service)
    box = reader.widget(f"article[data-id='{entry['id']}'] .emb")
    spanish = strings("es")
    assert await box.locator("p").text_content() == spanish["embed_notice"].replace("{provider}", "YouTube")
    load = box.locator("button")
    assert await load.text_content() == "Cargar contenido de YouTube"
    assert await box.locator("a").get_attribute("href") == YOUTUBE  # a link loads nothing by itself
    await reader.settled()
    assert outside == []

    async with reader.page.expect_request(lambda r: r.url == entry["media"]["embed_url"]):
        await load.click()
    frame = reader.widget(f"article[data-id='{entry['id']}'] iframe")
    assert await frame.get_attribute("src") == entry["media"]["embed_url"]
    assert outside == [entry["media"]["embed_url"]]


async def test_the_key_events_summary_stays_current_and_jumps_to_the_entry(service, partner, reader):
    await spanish_blog(service)
    first = await service.post(headline="Primera alerta", key_event=True, time=minutes_ago(30))
    for i in range(3):
        await service.post(body="<p>" + "Texto. " * 80 + f"{i}</p>")
    await open_widget(reader, partner, service)
    await reader.widget(".st .dot").wait_for(timeout=WAIT_MS)
    lines = reader.widget(".ke li")
    assert await lines.count() == 1 and "Primera alerta" in await lines.first.text_content()

    second = await service.post(headline="Evacuación en Paiporta", key_event=True)
    await lines.filter(has_text="Evacuación en Paiporta").wait_for(timeout=WAIT_MS)
    assert await lines.count() == 2
    await patch(service, second, key_event=False)
    await lines.filter(has_text="Evacuación en Paiporta").wait_for(state="detached", timeout=WAIT_MS)

    await reader.widget(".ke a").first.click()
    await reader.page.wait_for_function(
        """id => [...document.querySelectorAll("div")].find(d => d.shadowRoot).shadowRoot
             .activeElement?.dataset.id === id""",
        arg=first["id"],
        timeout=WAIT_MS,
    )


async def test_load_more_pages_back_to_the_first_entry(service, partner, reader):
    await spanish_blog(service)
    entries = [await service.post(body=f"<p>{i}</p>", time=f"2025-03-01T08:0{i}:00Z") for i in range(7)]
    newest_first = [e["id"] for e in reversed(entries)]
    await open_widget(reader, partner, service, limit="3")
    await reader.wait_for_shown(newest_first[:3])
    more = reader.widget("button.lm")
    assert await more.text_content() == "Cargar más"
    await more.click()
    await reader.wait_for_shown(newest_first[:6])
    await more.click()
    await reader.wait_for_shown(newest_first)
    await more.wait_for(state="hidden", timeout=WAIT_MS)


async def test_a_tag_shows_only_its_entries_until_the_reader_goes_back(service, partner, reader):
    await spanish_blog(service)
    a = await service.post(body="<p>En Paiporta.</p>", tags=["paiporta"], time="2025-03-01T08:00:00Z")
    b = await service.post(body="<p>En Valencia.</p>", tags=["valencia"], time="2025-03-01T08:01:00Z")
    c = await service.post(body="<p>Otra vez Paiporta.</p>", tags=["paiporta"], time="2025-03-01T08:02:00Z")
    await open_widget(reader, partner, service)
    await reader.wait_for_shown([c["id"], b["id"], a["id"]])
    await reader.widget(f"article[data-id='{a['id']}'] .tags button").click()
    view = reader.widget(".tv")
    await view.locator("h3").filter(has_text="Actualizaciones sobre «paiporta»").wait_for(timeout=WAIT_MS)
    assert await view.locator("article").evaluate_all("els => els.map(e => e.dataset.id)") == [c["id"], a["id"]]
    assert await reader.widget(".list").is_hidden()
    await view.locator("button.all").filter(has_text="Todas las actualizaciones").click()
    await reader.widget(".list").wait_for(timeout=WAIT_MS)
    assert await view.is_hidden()


async def test_share_copies_the_permalink_where_there_is_no_web_share(service, partner, reader):
    await spanish_blog(service)
    entry = await service.post(headline="Para compartir")
    await reader.page.add_init_script("delete Navigator.prototype.share")
    await reader.page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=partner.origin)
    await open_widget(reader, partner, service)
    await reader.widget(f"article[data-id='{entry['id']}'] .sh").click()
    await reader.page.wait_for_function(
        """() => [...document.querySelectorAll("div")].find(d => d.shadowRoot).shadowRoot
             .querySelector("[aria-live=polite]").textContent === "Enlace copiado" """,
        timeout=WAIT_MS,
    )
    copied = await reader.page.evaluate("() => navigator.clipboard.readText()")
    assert copied == f"{service.base_url}/blogs/ukraine/entries/{entry['id']}"


async def test_a_blogs_brand_is_its_widgets_and_pages_default_and_a_partner_still_overrides_it(
    service, partner, reader
):
    brand = {"accent": "#006400", "font": "Georgia, 'Times New Roman', serif", "radius": 0}
    await service.create_blog(brand=brand)
    await service.post(key_event=True, body="<p>Key</p>")
    badge = reader.widget(".list .k")

    async def look() -> tuple[str, str, str]:
        await badge.wait_for(timeout=WAIT_MS)
        style = "el => { const s = getComputedStyle(el); return [s.backgroundColor, s.fontFamily, s.borderRadius]; }"
        return tuple(await badge.evaluate(style))

    await open_widget(reader, partner, service)
    assert await look() == ("rgb(0, 100, 0)", 'Georgia, "Times New Roman", serif', "0px")
    await open_widget(reader, partner, service, css="div { --lb-accent: rgb(0, 0, 139); --lb-radius: 9px }")
    assert await look() == ("rgb(0, 0, 139)", 'Georgia, "Times New Roman", serif', "9px")
    await open_widget(reader, partner, service, theme="dark")
    assert (await look())[0] == "rgb(255, 138, 128)"  # the dark theme keeps its own, legible accent

    page = (await service.http.get("/blogs/ukraine")).text
    assert "--lb-accent: #006400; --lb-font: Georgia, 'Times New Roman', serif; --lb-radius: 0px;" in page

    for bad in ({"accent": "red;}body{display:none"}, {"font": "x</style><script>"}, {"radius": 99}, {"logo": "x"}):
        response = await service.http.patch("/api/v1/blogs/ukraine", json={"brand": bad}, headers=service.auth())
        assert response.status_code == 422, response.text
        assert response.json()["error"]["field"].startswith("$.brand"), response.text
    response = await service.http.patch("/api/v1/blogs/ukraine", json={"brand": None}, headers=service.auth())
    assert response.status_code == 200 and response.json()["brand"] is None
    assert "--lb-accent: #006400" not in (await service.http.get("/blogs/ukraine")).text
