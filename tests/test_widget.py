"""The embed widget in a real browser, on a partner's page served from another origin.

Chromium (Debian's, at /usr/bin/chromium) is driven by Playwright. The partner site is a tiny
server of its own on another port whose page pastes the README's snippet; the widget then talks
to the real service, which talks to a real redis-server. Nothing is mocked: to block WebSockets
the page's WebSocket is pointed at a port where nothing listens, and to restart the server it is
stopped and started again behind a fixed address.
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
import uvicorn
from conftest import ADMIN_TOKEN, Served, Service, running_service
from playwright.async_api import Browser, Page, async_playwright
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from liveblog.sanitize import clean_text, media_in
from liveblog.server import bind

CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    # CI (.ci/run) installs it, and there a missing browser must fail, not skip.
    if os.environ.get("CI"):
        raise RuntimeError(f"browser tests need Debian's chromium at {CHROMIUM}; .ci/run installs it")
    pytest.skip(
        f"browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True
    )
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).parent / "artifacts"
WAIT_MS = 5000

#: One browser for the whole file; each test gets its own service, context and page.
pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.browser]

#: The entry ids the widget shows, in order (null until it has rendered).
SHOWN_IDS = """() => {
  const host = [...document.querySelectorAll("div")].find(d => d.shadowRoot);
  const list = host && host.shadowRoot.querySelector(".list");
  return list ? [...list.querySelectorAll("article")].map(a => a.dataset.id) : null;
}"""


# --- fixtures ---------------------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@pytest_asyncio.fixture(loop_scope="module")
async def service(redis_server, settings) -> AsyncIterator[Service]:
    async with running_service(redis_server.url, settings) as svc:
        yield svc


class PartnerSite:
    """A third-party news site on its own origin: it serves the pages a test hands it."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}

    async def _page(self, request: Request) -> Response:
        name = request.path_params["name"]
        return HTMLResponse(self.pages[name]) if name in self.pages else Response(status_code=404)

    async def __aenter__(self) -> PartnerSite:
        app = Starlette(routes=[Route("/{name}", self._page)])
        self.server = uvicorn.Server(uvicorn.Config(app, loop="none", lifespan="off", log_level="warning"))
        sock = bind("127.0.0.1", 0, backlog=128)
        self.task = asyncio.create_task(self.server.serve(sockets=[sock]))
        while not self.server.started:
            await asyncio.sleep(0.01)
        self.origin = f"http://127.0.0.1:{sock.getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        await self.task

    def publish(self, body: str, css: str = "", name: str = "article") -> str:
        """Serve an article page with ``body`` in it; returns its URL."""
        self.pages[name] = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Partner news</title>
<style>body {{ font-family: Georgia, serif; margin: 0 auto; max-width: 720px }} {css}</style></head>
<body><h1>Our coverage</h1><p class="intro">The latest from our partner's live blog:</p>
{body}
<div style="height: 3000px"></div></body></html>"""
        return f"{self.origin}/{name}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def partner() -> AsyncIterator[PartnerSite]:
    async with PartnerSite() as site:
        yield site


class Reader:
    """One browser tab: the page, and what its console said."""

    def __init__(self, page: Page):
        self.page = page
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.connections: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        page.on("dialog", self._dialog)
        page.on("websocket", lambda ws: self.connections.append(ws.url))
        page.on("request", lambda r: self.connections.append(r.url) if "/events" in r.url else None)

    async def _dialog(self, dialog) -> None:  # noqa: ANN001
        self.dialogs.append(dialog.message)
        await dialog.dismiss()

    async def shown(self) -> list[str] | None:
        return await self.page.evaluate(SHOWN_IDS)

    async def wait_for_shown(self, ids: list[str], timeout: float = WAIT_MS) -> None:
        """Until the widget shows exactly ``ids``, in this order."""
        try:
            await self.page.wait_for_function(
                f"want => JSON.stringify(({SHOWN_IDS})()) === JSON.stringify(want)", arg=ids, timeout=timeout
            )
        except Exception:
            raise AssertionError(f"widget shows {await self.shown()}, expected {ids}") from None

    def widget(self, selector: str):  # noqa: ANN201
        """A locator inside the widget (Playwright's CSS pierces open shadow roots)."""
        return self.page.locator(f"div >> css={selector}")

    async def settled(self) -> None:
        """Two animation frames: observers and renders triggered so far have run."""
        await self.page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


@pytest_asyncio.fixture(loop_scope="module")
async def reader(browser: Browser) -> AsyncIterator[Reader]:
    context = await browser.new_context(
        timezone_id="Europe/Kyiv", locale="en-GB", viewport={"width": 800, "height": 700}, reduced_motion="reduce"
    )
    yield Reader(await context.new_page())
    await context.close()


def snippet(service: Service | str, blog: str = "ukraine", **options: str) -> str:
    """The README's snippet."""
    base = service if isinstance(service, str) else service.base_url
    attrs = "".join(f' data-{name}="{value}"' for name, value in options.items())
    return f'<script src="{base}/embed.js" data-blog="{blog}"{attrs} async></script>'


async def open_widget(reader: Reader, partner: PartnerSite, service: Service | str, css: str = "", **options: str):
    await reader.page.goto(partner.publish(snippet(service, **options), css))
    await reader.page.wait_for_function(f"() => ({SHOWN_IDS})() !== null", timeout=WAIT_MS)


async def patch(service: Service, entry: dict, **fields: object) -> dict:
    response = await service.http.patch(
        f"/api/v1/blogs/ukraine/entries/{entry['id']}",
        json=fields,
        headers={**service.auth(), "If-Match": f'"{entry["version"]}"'},
    )
    assert response.status_code == 200, response.text
    return response.json()


# --- stories ----------------------------------------------------------------------------------------


async def test_the_widget_renders_the_snapshot_on_a_partner_page(service, partner, reader):
    await service.create_blog(description="Russia's war in Ukraine, as it happens")
    pinned = await service.post(
        headline="What we know so far",
        pinned=True,
        time="2025-03-01T06:00:00Z",
        body="<ul><li>Overnight strikes on the capital</li><li>Power cut in three districts</li></ul>",
    )
    key = await service.post(
        headline="Air raid alert in Kyiv",
        key_event=True,
        time="2025-03-01T08:42:00Z",
        body="<p>Sirens sounded across the capital; residents went to <strong>metro stations</strong>.</p>",
        author={"name": "Olena Kovalenko", "role": "Correspondent", "location": "Kyiv"},
        media={"type": "image", "url": "https://example.com/kyiv.jpg", "caption": "Kyiv metro, 08:45"},
        tags=["kyiv", "air-raid"],
    )
    latest = await service.post(body="<p>All clear.</p>", time="2025-03-01T09:10:00Z")

    await open_widget(reader, partner, service)
    await reader.wait_for_shown([latest["id"], key["id"], pinned["id"]])  # newest first
    assert await reader.widget(".pins article").get_attribute("data-pin") == pinned["id"]  # and pinned on top

    assert await reader.widget("h2").text_content() == "Live: ukraine"
    entry = reader.widget(f"article[data-id='{key['id']}']")
    assert await entry.locator("h3").text_content() == "Air raid alert in Kyiv"
    time_el = entry.locator("time").first
    assert await time_el.text_content() == "1 Mar, 10:42"  # 08:42 UTC in the reader's Kyiv time
    assert "2025" in await time_el.get_attribute("title") and "March" in await time_el.get_attribute("title")
    assert await entry.locator(".k").text_content() == "Key event"
    assert await entry.locator(".by").text_content() == "Olena Kovalenko, Correspondent, Kyiv"
    assert await entry.locator(".body strong").text_content() == "metro stations"
    assert await entry.locator("img").get_attribute("src") == "https://example.com/kyiv.jpg"
    assert await entry.locator("figcaption").text_content() == "Kyiv metro, 08:45"
    assert await entry.locator(".tags li").all_text_contents() == ["#kyiv", "#air-raid"]
    assert await reader.widget(f".list article[data-id='{pinned['id']}'] .b").text_content() == "Pinned"

    ARTIFACTS.mkdir(exist_ok=True)
    await reader.page.locator("script[data-blog] + div").screenshot(path=ARTIFACTS / "widget.png")


async def test_a_posted_entry_is_pushed_into_the_open_widget_and_announced(service, partner, reader):
    await service.create_blog()
    first = await service.post(body="<p>first</p>")
    frames: list[str | bytes] = []
    reader.page.on("websocket", lambda ws: ws.on("framereceived", lambda frame: frames.append(frame)))
    await open_widget(reader, partner, service)
    await reader.wait_for_shown([first["id"]])
    await reader.widget(".st .dot").wait_for(timeout=WAIT_MS)  # connected
    connections, requests = list(reader.connections), []
    reader.page.on("request", lambda request: requests.append(request.url))

    entry = await service.post(headline="Explosions heard in Odesa", body="<p>Our reporter heard three blasts.</p>")
    await reader.wait_for_shown([entry["id"], first["id"]])
    await reader.page.wait_for_function(
        """() => [...document.querySelectorAll("div")].find(d => d.shadowRoot).shadowRoot
             .querySelector("[aria-live=polite]").textContent === "New update: Explosions heard in Odesa" """,
        timeout=WAIT_MS,
    )
    # It came down the WebSocket the widget had open: no reload, no reconnect, nothing fetched.
    assert [frame for frame in frames if entry["id"] in str(frame)] != []
    assert (reader.connections, requests) == (connections, [])


async def test_the_widget_reads_compressed_frames(service, partner, reader):
    # Chromium offers permessage-deflate on every WebSocket; what it agreed shows in DevTools' record.
    devtools = await reader.page.context.new_cdp_session(reader.page)
    handshakes: list[dict[str, str]] = []
    devtools.on("Network.webSocketHandshakeResponseReceived", lambda e: handshakes.append(e["response"]["headers"]))
    await devtools.send("Network.enable")
    await service.create_blog()
    prose = "".join(f"<p>Paragraph {i} of a long update from the front line, as it came in.</p>" for i in range(12))
    first = await service.post(headline="Overnight", body=prose)
    await open_widget(reader, partner, service)
    await reader.wait_for_shown([first["id"]])
    await reader.widget(".st .dot").wait_for(timeout=WAIT_MS)  # connected
    [headers] = handshakes
    agreed = {name.lower(): value for name, value in headers.items()}["sec-websocket-extensions"]
    assert agreed.startswith("permessage-deflate") and "server_no_context_takeover" in agreed

    entry = await service.post(headline="Morning", body=prose.replace("front line", "capital"))
    await reader.wait_for_shown([entry["id"], first["id"]])
    text = await reader.widget(f"article[data-id='{entry['id']}'] .body").text_content()
    assert text is not None and "Paragraph 11 of a long update from the capital" in text
    assert reader.errors == []


async def test_edits_and_deletes_apply_in_place(service, partner, reader):
    await service.create_blog()
    a = await service.post(headline="Casualty figures", body="<p>Two injured.</p>", time="2025-03-01T08:00:00Z")
    b = await service.post(headline="Bridge closed", body="<p>Traffic diverted.</p>", time="2025-03-01T09:00:00Z")
    await open_widget(reader, partner, service)
    await reader.wait_for_shown([b["id"], a["id"]])

    a = await patch(service, a, body="<p>Five injured, officials say.</p>")
    body = reader.widget(f"article[data-id='{a['id']}'] .body")
    await body.filter(has_text="Five injured, officials say.").wait_for(timeout=WAIT_MS)
    meta = await reader.widget(f"article[data-id='{a['id']}'] .meta").text_content()
    assert "· updated" in meta  # "10:00 · updated 12:34": an edit of the text is visible as one
    await reader.wait_for_shown([b["id"], a["id"]])  # in place, not moved
    a = await patch(service, a, pinned=True)  # pinning puts a copy on top, and it keeps its place
    await reader.widget(f".pins article[data-pin='{a['id']}']").wait_for(timeout=WAIT_MS)
    await reader.wait_for_shown([b["id"], a["id"]])

    await reader.widget(f"article[data-id='{a['id']}'] .b").filter(has_text="Pinned").wait_for(timeout=WAIT_MS)
    response = await service.http.delete(
        f"/api/v1/blogs/ukraine/entries/{b['id']}", headers={**service.auth(), "If-Match": f'"{b["version"]}"'}
    )
    assert response.status_code == 204
    await reader.wait_for_shown([a["id"]])


async def test_new_entries_wait_behind_a_button_while_the_reader_is_further_down(service, partner, reader):
    await service.create_blog()
    old = [await service.post(headline=f"Earlier update {i}", body="<p>" + "Details. " * 60 + "</p>") for i in range(4)]
    await open_widget(reader, partner, service)
    shown = [e["id"] for e in reversed(old)]
    await reader.wait_for_shown(shown)
    await reader.widget(".st .dot").wait_for(timeout=WAIT_MS)

    page = reader.page
    await page.evaluate("() => window.scrollTo(0, document.querySelector('script[data-blog] + div').offsetTop + 400)")
    await reader.settled()
    scrolled = await page.evaluate("() => window.scrollY")
    reading = reader.widget(f"article[data-id='{shown[1]}']")
    top = (await reading.bounding_box())["y"]
    new = [await service.post(headline=f"Breaking {i}", body="<p>New.</p>") for i in range(3)]

    button = reader.widget("button.more")
    await button.filter(has_text="3 new updates").wait_for(timeout=WAIT_MS)
    assert await reader.shown() == shown, "new entries pushed the text the reader was reading"
    assert await page.evaluate("() => window.scrollY") == scrolled
    assert (await reading.bounding_box())["y"] == top

    await button.focus()  # keyboard: the button is a real button
    await page.keyboard.press("Enter")
    await reader.wait_for_shown([e["id"] for e in reversed(new)] + shown)
    await button.wait_for(state="hidden", timeout=WAIT_MS)
    focused = await page.evaluate(
        "() => document.activeElement.shadowRoot && document.activeElement.shadowRoot.activeElement.dataset.id"
    )
    assert focused == new[-1]["id"]


async def test_options_set_how_many_entries_and_in_which_order(service, partner, reader):
    await service.create_blog()
    entries = [await service.post(body=f"<p>{i}</p>", time=f"2025-03-01T08:0{i}:00Z") for i in range(3)]
    await open_widget(reader, partner, service, limit="2", order="oldest", theme="dark")
    await reader.wait_for_shown([entries[0]["id"], entries[1]["id"]])  # from the first entry on
    latest = await service.post(body="<p>latest</p>")
    await reader.widget("button.lm").click()  # what came since waits at the end, behind "Load more"
    await reader.wait_for_shown([*(e["id"] for e in entries), latest["id"]])
    assert await reader.widget("button.lm").is_hidden()
    background = await reader.widget(".lb").evaluate("el => getComputedStyle(el).backgroundColor")
    assert background == "rgb(22, 22, 22)"


async def test_a_server_restart_resumes_without_loss(redis_server, settings, partner, reader):
    async with Gateway() as gateway:
        async with running_service(redis_server.url, settings) as first:
            gateway.target = first
            await first.create_blog()
            posted = [await first.post(body="<p>before the restart 1</p>")]
            await open_widget(reader, partner, gateway.url)
            await reader.wait_for_shown([e["id"] for e in posted])
            posted.append(await first.post(body="<p>before the restart 2</p>"))
            await reader.wait_for_shown([e["id"] for e in reversed(posted)])
            connections = len(reader.connections)
            gateway.cut()  # the process is gone: every connection drops at once, new ones are refused
        async with running_service(redis_server.url, settings) as replica:  # writes go on elsewhere meanwhile
            posted += [await replica.post(body=f"<p>while it was down {i}</p>") for i in range(2)]
        async with running_service(redis_server.url, settings) as second:
            gateway.target = second
            posted.append(await second.post(body="<p>after the restart</p>"))
            await reader.wait_for_shown([e["id"] for e in reversed(posted)], timeout=20_000)
    assert any("cursor=" in url for url in reader.connections[connections:]), reader.connections


#: Records, in the page, when each WebSocket was made and when (and how) each one closed.
SOCKET_LOG = """(() => {
  const Real = window.WebSocket, log = window.__sockets = [];
  window.WebSocket = function (url, protocols) {
    const ws = new Real(url, protocols);
    log.push({ made: performance.now(), url: String(url) });
    ws.addEventListener("close", e => log.push({ closed: performance.now(), code: e.code, reason: e.reason }));
    return ws;
  };
  window.WebSocket.prototype = Real.prototype;
})()"""


async def test_a_deploy_tells_each_widget_when_to_come_back_and_it_waits_that_long(
    redis_server, data_dir, partner, browser
):
    env = {
        "LIVEBLOG_REDIS_URL": redis_server.url,
        "LIVEBLOG_ADMIN_TOKEN": ADMIN_TOKEN,
        "LIVEBLOG_RECONNECT_SPREAD_MS": "4000",
    }
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    first = await asyncio.to_thread(Served, data_dir, env)
    port = first.url.rsplit(":", 1)[1]
    second = None
    contexts = [await browser.new_context() for _ in range(2)]
    try:
        assert first.http.post("/api/v1/blogs", json={"id": "ukraine", "title": "Live"}, headers=admin).is_success
        before = first.http.post("/api/v1/blogs/ukraine/entries", json={"body": "<p>before</p>"}, headers=admin)
        readers = [Reader(await context.new_page()) for context in contexts]
        for reader in readers:
            await reader.page.add_init_script(SOCKET_LOG)
            await open_widget(reader, partner, first.url)
            await reader.wait_for_shown([before.json()["id"]])
        first.process.send_signal(15)  # SIGTERM: a deploy
        assert await asyncio.to_thread(first.wait) == 0
        second = await asyncio.to_thread(Served, data_dir, env, ("--port", port))
        after = second.http.post("/api/v1/blogs/ukraine/entries", json={"body": "<p>after</p>"}, headers=admin)
        for reader in readers:
            await reader.wait_for_shown([after.json()["id"], before.json()["id"]], timeout=20_000)
        logs = [await reader.page.evaluate("window.__sockets") for reader in readers]
    finally:
        for context in contexts:
            await context.close()
        if second is not None:
            await asyncio.to_thread(second.stop)
    told = []
    for log in logs:
        closed = next(i for i, e in enumerate(log) if e.get("code") == 1012)
        retry_ms = json.loads(log[closed]["reason"])["retry_ms"]
        again = next(e for e in log[closed:] if "made" in e)
        # it waited as long as it was told (not its own backoff), then resumed from its cursor
        assert again["made"] - log[closed]["closed"] >= retry_ms - 1, (retry_ms, log)
        assert "cursor=" in again["url"]
        told.append(retry_ms)
    assert len(set(told)) == 2 and all(0 <= ms < 4000 for ms in told), told


async def test_the_widget_falls_back_to_sse_when_websockets_are_blocked(service, partner, reader):
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))  # bound, never listening: connections to it are refused
    await reader.page.add_init_script(
        "(() => { const Real = window.WebSocket;"
        f" window.WebSocket = function () {{ return new Real('ws://127.0.0.1:{dead.getsockname()[1]}/'); }}; }})()"
    )
    try:
        await service.create_blog()
        first = await service.post(body="<p>first</p>")
        await open_widget(reader, partner, service)
        await reader.wait_for_shown([first["id"]])
        entry = await service.post(body="<p>over SSE</p>")
        await reader.wait_for_shown([entry["id"], first["id"]])
    finally:
        dead.close()
    assert any("/api/v1/blogs/ukraine/events" in url for url in reader.connections)


HOSTILE_CSS = """
* { color: red !important; }
div, section, article, header, p, h2, h3, time, button, ul, li, figure,
.lb, .e, .hd, .list, .body, .meta, .by, .st, .tags
  { display: none !important; color: red !important; font-size: 40px !important; }
script + div { display: none !important; visibility: hidden !important; opacity: 0 !important; letter-spacing: 1em; }
"""


async def test_the_partner_pages_css_does_not_reach_into_the_widget(service, partner, reader):
    await service.create_blog()
    entry = await service.post(headline="Styled by us", body="<p>Readable.</p>")
    await open_widget(reader, partner, service, css=HOSTILE_CSS)
    await reader.wait_for_shown([entry["id"]])
    headline = reader.widget(f"article[data-id='{entry['id']}'] h3")
    assert await headline.is_visible()
    style = await headline.evaluate(
        "el => { const s = getComputedStyle(el); return [s.color, s.fontSize, s.letterSpacing]; }"
    )
    assert style[0] != "rgb(255, 0, 0)" and style[1] != "40px" and style[2] == "normal", style
    assert not await reader.page.locator("p.intro").is_visible()  # the rules do apply to the page itself
    box = await reader.page.locator("script[data-blog] + div").bounding_box()
    assert box is not None and box["height"] > 50


XSS = [
    "<script>window.__xss=1</script>",
    '<img src=x onerror="window.__xss=1">',
    '<svg onload="window.__xss=1"></svg>',
    "<svg><script>window.__xss=1</script></svg>",
    '<a href="javascript:window.__xss=1">click</a>',
    '<a href="JaVaScRiPt:window.__xss=1">click</a>',
    '<a href="jav&#x09;ascript:window.__xss=1">click</a>',
    '<iframe src="javascript:window.__xss=1"></iframe>',
    '<body onload="window.__xss=1">',
    '<math><mtext><table><mglyph><style><img src=x onerror="window.__xss=1">',
    '"><script>window.__xss=1</script>',
    '<details open ontoggle="window.__xss=1">',
    '<input autofocus onfocus="window.__xss=1">',
    '<object data="javascript:window.__xss=1"></object>',
    '<form action="javascript:window.__xss=1"><button>go</button></form>',
    '<noscript><p title="</noscript><img src=x onerror=window.__xss=1>">',
    '<a href="data:text/html,<script>parent.__xss=1</script>">data</a>',
    '<video><source onerror="window.__xss=1"></video>',
    '<div style="background:url(javascript:window.__xss=1)">styled</div>',
    "<IMG SRC=`javascript:window.__xss=1`>",
    "<<SCRIPT>window.__xss=1//<</SCRIPT>",
    '<p onmouseover="window.__xss=1">hover me</p>',
]
#: The images in the corpus point nowhere; the browser logs their failed loads, which is fine.
NOT_AN_ATTACK = "Failed to load resource"


async def test_an_xss_corpus_executes_nothing(service, partner, reader):
    await service.create_blog(description='<img src=x onerror="window.__xss=1">')
    posted = []

    async def post_payload(payload: str) -> None:
        short = payload[:40]
        posted.append(
            await service.post(
                headline=payload,
                # Media tags in a body are refused outright (test_bad_input.py); here they ride as text.
                body=f"<p>Payload:</p>{payload if media_in(payload) is None else html.escape(payload)}",
                author={"name": f"Reporter {payload}"[:120], "role": short, "location": short},
                media={
                    "type": "image",
                    "url": 'https://127.0.0.1:1/x.png"onerror="window.__xss=1',
                    "caption": payload,
                    "alt": payload,
                },
                tags=[short],
            )
        )

    for payload in XSS[:12]:  # these arrive in the snapshot…
        await post_payload(payload)
    await reader.page.add_init_script("window.__xss = undefined")
    await open_widget(reader, partner, service, limit="100")
    await reader.wait_for_shown([e["id"] for e in reversed(posted)])
    for payload in XSS[12:]:  # …and these as live events
        await post_payload(payload)
    await reader.wait_for_shown([e["id"] for e in reversed(posted)])
    await post_payload('<a href="https://example.com/" onclick="window.__xss=1">a plain link</a>')
    await reader.wait_for_shown([e["id"] for e in reversed(posted)])

    # Headlines are plain text: what is left once markup is stripped on write, shown as text.
    headlines = await reader.widget("article h3").all_text_contents()
    assert headlines[1:] == [text for text in map(clean_text, reversed(XSS)) if text]
    # Hover, focus and click what could carry a handler.
    await reader.widget("article .body p").last.hover()
    await reader.widget("article .body a").first.click(modifiers=["Control"])
    # Nothing executable survived into the widget.
    leftovers = await reader.page.evaluate("""() => {
      const root = [...document.querySelectorAll("div")].find(d => d.shadowRoot).shadowRoot;
      return [...root.querySelectorAll("*")].flatMap(el => [
        ...(["SCRIPT", "IFRAME", "OBJECT", "EMBED", "SVG", "svg", "MATH", "FORM", "INPUT", "STYLE"].includes(el.tagName)
            && el.parentNode !== root ? [el.tagName] : []),
        ...[...el.attributes].filter(a => /^on/i.test(a.name) || /^\\s*(javascript|data):/i.test(a.value))
            .map(a => `${el.tagName}[${a.name}=${a.value}]`),
      ]);
    }""")
    assert leftovers == []

    # The server-rendered page, with the widget taking over, is just as inert.
    await reader.page.goto(f"{service.base_url}/blogs/ukraine")
    snapshot_size = service.services.settings.snapshot_size
    await reader.page.wait_for_function(f"() => ({SHOWN_IDS})()?.length === {snapshot_size}", timeout=WAIT_MS)
    await reader.settled()

    assert await reader.page.evaluate("() => window.__xss") is None
    assert reader.dialogs == []
    assert [e for e in reader.errors if NOT_AN_ATTACK not in e] == []


async def test_the_widget_says_when_the_blog_has_ended_and_stops(service, partner, reader):
    await service.create_blog()
    await open_widget(reader, partner, service)
    await reader.widget(".st .dot").wait_for(timeout=WAIT_MS)
    response = await service.http.patch("/api/v1/blogs/ukraine", json={"status": "ended"}, headers=service.auth())
    assert response.status_code == 200
    await reader.widget(".st").filter(has_text="This live blog has ended.").wait_for(timeout=WAIT_MS)
    hub = service.services.hub
    connections = len(reader.connections)
    await reader.page.evaluate("() => dispatchEvent(new Event('online'))")  # would normally reconnect at once
    await reader.settled()
    assert len(reader.connections) == connections
    for _ in range(100):
        if hub.readers("ukraine") == 0:
            break
        await asyncio.sleep(0.02)
    assert hub.readers("ukraine") == 0


async def test_back_online_it_catches_up_and_says_what_was_missed(service, partner, reader):
    await service.create_blog()
    first = await service.post(body="<p>first</p>")
    await open_widget(reader, partner, service)
    await reader.wait_for_shown([first["id"]])
    await reader.widget(".st .dot").wait_for(timeout=WAIT_MS)
    await reader.page.context.set_offline(True)
    await reader.page.wait_for_function("() => !navigator.onLine")
    missed = [await service.post(body=f"<p>missed {i}</p>") for i in range(2)]
    await reader.page.context.set_offline(False)
    await reader.widget("button.more").filter(has_text="2 updates since you left").wait_for(timeout=WAIT_MS)
    await reader.wait_for_shown([e["id"] for e in reversed(missed)] + [first["id"]])


async def test_colours_meet_wcag_aa_in_light_and_dark(service, partner, reader):
    await service.create_blog(description="Contrast check")
    await service.post(headline="Pinned", body='<p>Read <a href="https://example.com">this</a>.</p>', pinned=True)
    await service.post(headline="Key", body="<blockquote>Quote</blockquote>", key_event=True, tags=["t"])
    for scheme in ("light", "dark"):
        await reader.page.emulate_media(color_scheme=scheme)
        await open_widget(reader, partner, service)
        await reader.widget("article").first.wait_for(timeout=WAIT_MS)
        ratios = await reader.page.evaluate(CONTRAST)
        assert ratios, "nothing measured"
        low = [r for r in ratios if r["ratio"] < 4.5]
        assert low == [], (scheme, low)


#: Each text-bearing element's contrast ratio against its nearest opaque background (WCAG 2.x).
CONTRAST = """() => {
  const root = [...document.querySelectorAll("div")].find(d => d.shadowRoot).shadowRoot;
  const lum = c => { const [r, g, b] = c.match(/[\\d.]+/g).slice(0, 3).map(v => {
    v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const background = el => {
    for (; el && el.nodeType === 1; el = el.parentNode && el.parentNode.host || el.parentElement) {
      const c = getComputedStyle(el).backgroundColor;
      if (c !== "transparent" && !/, 0\\)$/.test(c)) return c;
    }
    return "rgb(255, 255, 255)";
  };
  return [...root.querySelectorAll("*")]
    .filter(el => [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim()) && el.offsetParent)
    .map(el => { const [hi, lo] = [lum(getComputedStyle(el).color), lum(background(el))].sort((x, y) => y - x);
      return { element: `${el.tagName}.${el.className}`, text: el.textContent.slice(0, 30),
               ratio: (hi + 0.05) / (lo + 0.05) }; });
}"""


async def test_the_public_page_works_without_javascript_and_goes_live_with_it(service, browser, reader):
    await service.create_blog()
    entry = await service.post(headline="Readable without JavaScript", body="<p>Server-rendered.</p>")
    context = await browser.new_context(java_script_enabled=False)
    try:
        page = await context.new_page()
        await page.goto(f"{service.base_url}/blogs/ukraine")
        assert await page.locator(f"article[id='{entry['id']}'] h2").text_content() == "Readable without JavaScript"
    finally:
        await context.close()

    await reader.page.goto(f"{service.base_url}/blogs/ukraine")
    await reader.wait_for_shown([entry["id"]])  # the widget took over the same element
    assert not await reader.page.locator(f"article[id='{entry['id']}']").is_visible()
    later = await service.post(headline="Live on the public page", body="<p>Pushed.</p>")
    await reader.wait_for_shown([later["id"], entry["id"]])


RESIZE_SNIPPET = """<script>
addEventListener("message", function (e) {
  if (e.origin !== "%(origin)s" || !e.data || e.data.type !== "liveblog:height") return;
  for (const f of document.querySelectorAll('iframe[src^="%(origin)s/embed/"]'))
    if (f.contentWindow === e.source) f.style.height = e.data.height + "px";
});
</script>"""


async def test_the_iframe_page_reports_its_height_to_the_partner_page(service, partner, reader):
    await service.create_blog()
    for i in range(3):
        await service.post(headline=f"Update {i}", body="<p>" + "Text. " * 80 + "</p>")
    iframe = f'<iframe src="{service.base_url}/embed/ukraine" title="Live blog" style="border:0" height="100"></iframe>'
    await reader.page.goto(partner.publish(iframe + RESIZE_SNIPPET % {"origin": service.base_url}))
    await reader.page.wait_for_function(
        "() => parseInt(document.querySelector('iframe').style.height) > 400", timeout=WAIT_MS
    )
    frame = reader.page.frame_locator("iframe")
    await frame.locator("article.e").first.wait_for(timeout=WAIT_MS)


async def test_the_iframe_page_refuses_partners_not_in_embed_origins(service, partner, reader):
    await service.create_blog(embed_origins=["https://news.example"])
    await service.post(headline="Not for this site")
    iframe = f'<iframe src="{service.base_url}/embed/ukraine" title="Live blog"></iframe>'
    await reader.page.goto(partner.publish(iframe))
    await reader.page.wait_for_function("() => document.querySelector('iframe')")
    frame = reader.page.frames[-1]
    await frame.wait_for_load_state()
    assert await frame.locator("[data-liveblog]").count() == 0
    assert any("frame-ancestors" in e for e in reader.errors), reader.errors


class Gateway:
    """A fixed address in front of a service that comes and goes, as a load balancer would be."""

    def __init__(self) -> None:
        self.target: Service | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> Gateway:
        self.server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        self.cut()

    def cut(self) -> None:
        """Drop every connection and refuse new ones until a new target is set."""
        self.target = None
        for writer in self._writers:
            writer.transport.abort()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.target is None:
            writer.transport.abort()
            return
        host, port = self.target.base_url.removeprefix("http://").split(":")
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            writer.transport.abort()
            return
        pair = {writer, upstream_writer}
        self._writers |= pair
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        self._writers -= pair


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.transport.abort()
