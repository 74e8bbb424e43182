"""The reporter console in a real browser: a newsroom signs in, writes, reviews and corrects.

Chromium drives ``/console`` of a real service on a free port, backed by a real redis-server;
readers watch through the embed widget on a partner site of another origin. Nothing is mocked:
going offline is Chromium's own network switch.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from conftest import ADMIN_TOKEN, Service, running_service
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect
from test_widget import CHROMIUM, CHROMIUM_ARGS, SHOWN_IDS, PartnerSite, snippet

WAIT_MS = 8000
ARTIFACTS = Path(__file__).parent / "artifacts"

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.browser]


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


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def partner() -> AsyncIterator[PartnerSite]:
    async with PartnerSite() as site:
        yield site


class Desk:
    """One person at the console: a browser context of their own, and what went wrong in it."""

    def __init__(self, context: BrowserContext, page: Page, service: Service):
        self.context, self.page, self.service = context, page, service
        self.errors: list[str] = []
        # A refused request is logged by Chromium itself ("Failed to load resource"): the stories
        # check what the console does with it, not that it happened.
        page.on(
            "console",
            lambda m: (
                self.errors.append(m.text)
                if m.type == "error" and not m.text.startswith("Failed to load resource")
                else None
            ),
        )
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        page.on("dialog", self._dialog)
        self.answers: list[str | bool] = []

    async def _dialog(self, dialog) -> None:  # noqa: ANN001
        answer = self.answers.pop(0) if self.answers else True
        if answer is False:
            await dialog.dismiss()
        else:
            await dialog.accept(answer if isinstance(answer, str) else "")

    async def sign_in(self, token: str = ADMIN_TOKEN) -> None:
        await self.page.goto(f"{self.service.base_url}/console")
        await self.page.get_by_label("Token").fill(token)
        await self.page.get_by_role("button", name="Sign in").click()
        await expect(self.page.get_by_role("button", name="Sign out")).to_be_visible(timeout=WAIT_MS)

    async def open_blog(self, title: str) -> None:
        await self.page.get_by_role("link", name=title).click()
        await expect(self.page.locator("#timeline")).to_be_visible(timeout=WAIT_MS)
        # The listings load after the staff channel is up; until then the timeline is aria-busy.
        await expect(self.page.locator("#timeline")).to_have_attribute("aria-busy", "false", timeout=WAIT_MS)

    async def write(self, body: str, headline: str = "") -> None:
        if headline:
            await self.page.get_by_label("Headline").fill(headline)
        await self.page.locator("#body").click()
        await self.page.keyboard.type(body)

    def entry(self, text: str):  # noqa: ANN201
        return self.page.locator("#timeline li.entry", has_text=text)


@pytest_asyncio.fixture(loop_scope="module")
async def desks(browser: Browser, service: Service) -> AsyncIterator[object]:
    made: list[BrowserContext] = []

    async def desk(width: int = 1280, height: int = 900) -> Desk:
        context = await browser.new_context(viewport={"width": width, "height": height}, locale="en-GB")
        made.append(context)
        return Desk(context, await context.new_page(), service)

    yield desk
    for context in made:
        await context.close()


async def entries_of(service: Service, blog: str = "ukraine") -> list[dict]:
    return [e for e in (await service.http.get(f"/api/v1/blogs/{blog}/entries?limit=100")).json()["entries"]]


# --- stories ----------------------------------------------------------------------------------------


async def test_the_front_page_leads_to_the_console_and_the_blogs(service):
    await service.create_blog(title="War in Ukraine")
    page = await service.http.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'href="/console"' in page.text
    assert 'href="/blogs/ukraine"' in page.text and "War in Ukraine" in page.text


async def test_the_console_works_under_a_strict_content_security_policy(service, desks):
    policy = (await service.http.get("/console")).headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert f"connect-src 'self' {service.ws_url}" in policy and "default-src 'none'" in policy
    await service.create_blog(title="War in Ukraine")
    desk = await desks()
    violations: list[str] = []
    desk.page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    await desk.sign_in()
    await desk.open_blog("War in Ukraine")
    await desk.write("Under policy")
    await desk.page.get_by_role("button", name="Preview").click()
    await expect(desk.page.locator(".preview")).to_contain_text("Under policy", timeout=WAIT_MS)
    assert violations == [] and desk.errors == []
    # The token went to the session endpoint only: nothing in page storage or the URL.
    stored = await desk.page.evaluate("() => JSON.stringify([{...localStorage}, {...sessionStorage}, location.href])")
    assert ADMIN_TOKEN not in stored
    cookies = await desk.context.cookies()
    assert [(c["name"], c["httpOnly"], c["sameSite"]) for c in cookies] == [("lb_session", True, "Strict")]


async def test_a_reporter_signs_in_posts_and_a_reader_on_another_site_sees_it(service, desks, partner):
    await service.create_blog(title="War in Ukraine")
    token = (await service.mint("reporter", name="Olena"))["token"]
    reader = await desks()
    await reader.page.goto(partner.publish(snippet(service)))
    await reader.page.wait_for_function(f"() => ({SHOWN_IDS})() !== null", timeout=WAIT_MS)

    desk = await desks()
    await desk.sign_in(token)
    await desk.open_blog("War in Ukraine")
    await desk.page.get_by_label("Your role").fill("Correspondent")
    await desk.page.get_by_label("Your location").fill("Kyiv")
    await desk.write("Sirens across the capital. ", headline="Air raid alert")
    await desk.page.get_by_role("button", name="Bold").click()
    await desk.page.keyboard.type("Go to shelters.")
    await desk.page.keyboard.press("Control+Enter")

    await expect(desk.entry("Air raid alert")).to_have_attribute("data-status", "published", timeout=WAIT_MS)
    [entry] = await entries_of(service)
    assert entry["author"] == {"name": "Olena", "role": "Correspondent", "location": "Kyiv"}
    assert "<strong>Go to shelters.</strong>" in entry["body"]
    await reader.page.wait_for_function(
        f"id => JSON.stringify(({SHOWN_IDS})()) === JSON.stringify([id])", arg=entry["id"], timeout=WAIT_MS
    )
    # The byline is remembered on this device.
    await desk.page.reload()
    await expect(desk.page.get_by_label("Your location")).to_have_value("Kyiv", timeout=WAIT_MS)
    assert desk.errors == []


async def test_tags_complete_from_the_blogs_tags_one_after_another(service, desks):
    await service.create_blog(title="War in Ukraine")
    await service.post(body="<p>One</p>", tags=["kyiv", "lviv", "energy"])
    desk = await desks()
    await desk.sign_in()
    await desk.open_blog("War in Ukraine")
    # Suggestions come from the timeline's entries: wait until it shows them, as an editor would.
    await desk.page.wait_for_function("() => document.body.innerText.includes('One')", timeout=WAIT_MS)
    tags = desk.page.get_by_label("Tags")
    await tags.fill("kyiv, l")
    options = desk.page.locator("#tag-names option")
    await expect(options).to_have_count(1, timeout=WAIT_MS)
    assert await options.first.get_attribute("value") == "kyiv, lviv"
    await tags.fill("")
    await expect(options).to_have_count(3, timeout=WAIT_MS)


async def test_a_signed_in_browser_cannot_be_made_to_write_from_another_origin(service, desks, partner):
    await service.create_blog(title="War in Ukraine")
    desk = await desks()
    await desk.sign_in()
    # A page on another origin makes the signed-in browser post: the cookie goes along
    # (same site), the Origin check refuses it.
    attack = partner.publish("<p>nothing to see</p>", name="attack")
    await desk.page.goto(attack)
    status = await desk.page.evaluate(
        """url => fetch(url, {method: "POST", credentials: "include", mode: "no-cors",
             headers: {"Content-Type": "text/plain"}, body: JSON.stringify({body: "<p>forged</p>"})})
           .then(r => r.type)""",
        f"{service.base_url}/api/v1/blogs/ukraine/entries",
    )
    assert status == "opaque"
    assert await entries_of(service) == []
    [cookie] = await desk.context.cookies()
    forged = await service.http.post(
        "/api/v1/blogs/ukraine/entries",
        json={"body": "<p>forged</p>"},
        headers={"Origin": partner.origin, "Cookie": f"lb_session={cookie['value']}"},
    )
    assert forged.status_code == 403 and forged.json()["error"]["code"] == "cross_origin"
    assert await entries_of(service) == []


async def test_a_contributor_submits_and_an_editor_approves(service, desks):
    await service.create_blog(title="War in Ukraine")
    contributor = (await service.mint("contributor", name="Taras"))["token"]
    editor = (await service.mint("editor", name="Iryna"))["token"]
    writer, desk = await desks(), await desks()
    await writer.sign_in(contributor)
    await writer.open_blog("War in Ukraine")
    await expect(writer.page.get_by_role("button", name="Publish", exact=True)).to_have_count(0)
    await desk.sign_in(editor)
    await desk.open_blog("War in Ukraine")

    await writer.write("Shelling reported in Kharkiv", headline="Kharkiv")
    await writer.page.get_by_role("button", name="Submit for review").click()
    queued = desk.page.locator("#review li", has_text="Kharkiv")
    await expect(queued).to_be_visible(timeout=WAIT_MS)  # over the staff channel, no reload
    assert await entries_of(service) == []
    await desk.page.get_by_role("button", name="Approve: Kharkiv").click()
    await expect(writer.entry("Kharkiv")).to_have_attribute("data-status", "published", timeout=WAIT_MS)
    [entry] = await entries_of(service)
    assert entry["author"]["name"] == "Taras"

    # A second submission goes back with a note, which the writer sees.
    await writer.write("Unconfirmed: a second blast", headline="Second blast")
    await writer.page.get_by_role("button", name="Submit for review").click()
    desk.answers.append("Please name a source")
    await desk.page.get_by_role("button", name="Return with a note: Second blast").click()
    await expect(writer.entry("Second blast").locator(".note")).to_have_text(
        "Returned: Please name a source", timeout=WAIT_MS
    )
    assert writer.errors == desk.errors == []


async def test_two_editors_in_conflict_lose_nothing(service, desks):
    await service.create_blog(title="War in Ukraine")
    entry = await service.post(headline="Casualties", body="<p>Two injured.</p>")
    first, second = await desks(), await desks()
    for desk in (first, second):
        await desk.sign_in()
        await desk.open_blog("War in Ukraine")
        await desk.page.get_by_role("button", name="Edit: Casualties").click()

    await first.page.locator("#body").fill("Three injured.")
    await first.page.get_by_role("button", name="Save changes").click()
    await expect(first.page.locator("#notice")).to_have_text("Saved.", timeout=WAIT_MS)

    await second.page.locator("#body").fill("Two injured, one seriously.")
    await second.page.get_by_role("button", name="Save changes").click()
    panel = second.page.get_by_role("alert")
    await expect(panel).to_contain_text("Someone else edited this entry", timeout=WAIT_MS)
    await expect(panel.locator(".mine")).to_contain_text("Two injured, one seriously.")
    await expect(panel.locator(".theirs")).to_contain_text("Three injured.")
    await panel.get_by_role("button", name="Merge by hand").click()
    await second.page.locator("#body").fill("Three injured, one seriously.")
    await second.page.get_by_role("button", name="Save changes").click()
    await expect(second.page.locator("#notice")).to_have_text("Saved.", timeout=WAIT_MS)
    now = (await service.http.get(f"/api/v1/blogs/ukraine/entries/{entry['id']}")).json()
    assert (now["version"], now["body"]) == (3, "<p>Three injured, one seriously.</p>")
    await expect(first.entry("Casualties")).to_contain_text("Three injured, one seriously.", timeout=WAIT_MS)


async def test_entries_written_offline_are_published_once_when_back_online(service, desks):
    await service.create_blog(title="War in Ukraine")
    desk = await desks()
    await desk.sign_in()
    await desk.open_blog("War in Ukraine")
    await desk.context.set_offline(True)
    for n in (1, 2):
        await desk.write(f"Written offline {n}")
        await desk.page.keyboard.press("Control+Enter")
    items = desk.page.locator("#outbox li[data-state=queued]")
    await expect(items).to_have_count(2, timeout=WAIT_MS)
    assert await entries_of(service) == []

    # Back online and reloaded at once: whatever was in flight is sent again with its key.
    await desk.context.set_offline(False)
    await desk.page.reload()
    await expect(desk.page.locator("#outbox li[data-state=published]")).to_have_count(2, timeout=WAIT_MS)
    await desk.page.reload()
    await expect(desk.page.locator("#outbox li[data-state=published]")).to_have_count(2, timeout=WAIT_MS)
    bodies = sorted(e["body"] for e in await entries_of(service))
    assert bodies == ["<p>Written offline 1</p>", "<p>Written offline 2</p>"]
    assert len([e for e in await service.stream() if e["event"] == "entry.created"]) == 2


async def test_a_refused_entry_in_the_outbox_can_be_fixed_and_sent_again(service, desks):
    await service.create_blog(title="War in Ukraine")
    desk = await desks()
    await desk.sign_in()
    await desk.open_blog("War in Ukraine")
    await desk.write("With a bad photo")
    await desk.page.get_by_text("Media or social embed URL").first.click()
    await desk.page.get_by_label("Media or social embed URL", exact=True).fill("http://insecure.example/a.jpg")
    await desk.page.keyboard.press("Control+Enter")
    failed = desk.page.locator("#outbox li[data-state=failed]")
    await expect(failed.locator(".reason")).to_contain_text("https", timeout=WAIT_MS)
    await failed.get_by_role("button", name="Fix and re-send: With a bad photo").click()
    await expect(failed).to_have_count(0, timeout=WAIT_MS)
    await expect(desk.page.locator("#body")).to_have_text("With a bad photo")
    await desk.page.get_by_label("Media or social embed URL", exact=True).fill("https://images.example/a.jpg")
    await desk.page.keyboard.press("Control+Enter")
    await expect(desk.page.locator("#outbox li[data-state=published]")).to_have_count(1, timeout=WAIT_MS)
    [entry] = await entries_of(service)
    assert entry["media"]["url"] == "https://images.example/a.jpg"


async def test_a_scheduled_entry_goes_out_on_time(service, desks):
    await service.create_blog(title="War in Ukraine")
    desk = await desks()
    await desk.sign_in()
    await desk.open_blog("War in Ukraine")
    await desk.write("The curfew starts now", headline="Curfew")
    when = (datetime.now(UTC) + timedelta(seconds=3)).astimezone()
    await desk.page.get_by_label("Publish at").fill(when.strftime("%Y-%m-%dT%H:%M:%S"))
    await desk.page.get_by_role("button", name="Schedule", exact=True).click()
    await expect(desk.page.locator("#scheduled li", has_text="Curfew")).to_be_visible(timeout=WAIT_MS)
    await expect(desk.entry("Curfew")).to_have_attribute("data-status", "published", timeout=WAIT_MS)
    await expect(desk.page.locator("#scheduled li", has_text="Curfew")).to_have_count(0)
    [entry] = await entries_of(service)
    assert entry["headline"] == "Curfew"


async def test_retract_restore_and_purge_from_the_timeline(service, desks):
    await service.create_blog(title="War in Ukraine")
    await service.post(headline="Wrong figure", body="<p>Ten dead.</p>")
    desk = await desks()
    await desk.sign_in()
    await desk.open_blog("War in Ukraine")
    desk.answers.append("The figure was wrong: six dead")
    await desk.page.get_by_role("button", name="Correct: Wrong figure").click()
    await expect(desk.page.locator("#notice")).to_have_text("Saved.", timeout=WAIT_MS)
    desk.answers.append("Retracted pending confirmation")
    await desk.page.get_by_role("button", name="Retract: Wrong figure").click()
    await expect(desk.entry("Wrong figure")).to_have_attribute("data-status", "retracted", timeout=WAIT_MS)
    assert await entries_of(service) == []
    await desk.page.get_by_role("button", name="Restore: Wrong figure").click()
    await expect(desk.entry("Wrong figure")).to_have_attribute("data-status", "published", timeout=WAIT_MS)
    messages: list[str] = []
    desk.page.on("dialog", lambda d: messages.append(d.message))
    await desk.page.get_by_role("button", name="Purge: Wrong figure").click()
    await expect(desk.entry("Wrong figure")).to_have_count(0, timeout=WAIT_MS)
    assert "legal takedown" in messages[0] and "Wrong figure" in messages[0]
    assert await entries_of(service) == []


async def test_the_console_speaks_the_blogs_language_and_fits_a_phone(service, desks):
    await service.create_blog(title="Elecciones en Valencia", blog_id="valencia", language="es")
    await service.post(
        "valencia", headline="Abren los colegios", body="<p>Los colegios electorales abren a las 9:00.</p>"
    )
    desk = await desks(390, 844)
    await desk.sign_in()
    await desk.open_blog("Elecciones en Valencia")
    await expect(desk.page.get_by_role("button", name="Publicar", exact=True)).to_be_visible()
    await expect(desk.page.get_by_role("button", name="Editar: Abren los colegios")).to_be_visible()
    wide = await desk.page.evaluate("() => document.documentElement.scrollWidth")
    assert wide <= 390
    # Every control has an accessible name.
    unnamed = await desk.page.evaluate(
        """() => [...document.querySelectorAll("button, input, select, [contenteditable]")]
             .filter(el => !(el.labels && el.labels.length) && !el.getAttribute("aria-label") && !el.textContent.trim())
             .map(el => el.outerHTML)"""
    )
    assert unnamed == []
    ARTIFACTS.mkdir(exist_ok=True)
    await desk.page.screenshot(path=ARTIFACTS / "console-phone.png", full_page=True)


async def test_an_admin_creates_a_blog_and_mints_a_token_shown_once(service, desks):
    desk = await desks()
    await desk.sign_in()
    await desk.page.get_by_label("Title").fill("Storm Boris")
    await expect(desk.page.get_by_label("Slug (URL name)")).to_have_value("storm-boris")
    await desk.page.get_by_label("Language").fill("en")
    await desk.page.get_by_role("button", name="Create").click()
    await expect(desk.page.locator("h1", has_text="Storm Boris")).to_be_visible(timeout=WAIT_MS)
    blog = (await service.http.get("/api/v1/blogs/storm-boris")).json()
    assert blog["title"] == "Storm Boris"

    await desk.page.goto(f"{service.base_url}/console#/tokens")
    await desk.page.get_by_label("Name").fill("Marta")
    await desk.page.get_by_label("Role").select_option("reporter")
    await desk.page.get_by_role("button", name="Mint token").click()
    secret = await desk.page.locator(".token-secret").text_content()
    assert secret
    me = await httpx.AsyncClient(base_url=service.base_url).get("/api/v1/session", headers=service.auth(secret))
    assert me.json()["name"] == "Marta"
    await desk.page.get_by_role("button", name="Revoke Marta").click()
    await expect(desk.page.get_by_role("button", name="Revoke Marta")).to_have_count(0, timeout=WAIT_MS)


async def test_a_desktop_screenshot_of_the_console(service, desks):
    await service.create_blog(title="War in Ukraine")
    await service.post(headline="Air raid alert", body="<p>Sirens sounded across the capital.</p>", key_event=True)
    await service.post(headline="Summary", body="<ul><li>Power cut</li><li>Metro open</li></ul>", pinned=True)
    await service.post(body="<p>Draft on the bridge</p>", headline="Bridge", status="submitted")
    desk = await desks(1280, 900)
    await desk.sign_in()
    await desk.open_blog("War in Ukraine")
    await expect(desk.entry("Air raid alert")).to_be_visible(timeout=WAIT_MS)
    await desk.write("Residents are advised to stay indoors.", headline="Curfew extended")
    ARTIFACTS.mkdir(exist_ok=True)
    await desk.page.screenshot(path=ARTIFACTS / "console-desktop.png", full_page=True)


PASTE = """([html]) => {
  const data = new DataTransfer();
  data.setData("text/html", html);
  document.querySelector("#body").dispatchEvent(
    new ClipboardEvent("paste", {clipboardData: data, bubbles: true, cancelable: true}));
}"""


async def test_the_composer_makes_only_the_allowed_html_and_pasting_says_what_it_dropped(service, desks):
    await service.create_blog(title="War in Ukraine")
    await service.post(body="<p>earlier</p>", tags=["kyiv"])
    desk = await desks()
    await desk.sign_in()
    await desk.open_blog("War in Ukraine")
    page = desk.page
    await page.locator("#body").click()
    pasted = (
        '<div style="color:red" class="x">Officials <b>confirmed</b> <span style="font-weight: 700">it</span>'
        '<img src="https://example.com/x.jpg"><script>alert(1)</script> <a href="javascript:alert(1)">here</a></div>'
    )
    await page.evaluate(PASTE, [pasted])
    await expect(page.locator("#notice")).to_have_text(
        "Pasted formatting that readers cannot see was removed.", timeout=WAIT_MS
    )
    await page.keyboard.press("Enter")
    await page.keyboard.type("Calm now")
    await page.keyboard.press("Shift+Home")
    await page.get_by_role("button", name="Highlight").click()
    await page.keyboard.press("End")
    await page.keyboard.press("Enter")
    await page.keyboard.type("We will rebuild")
    await page.keyboard.press("Shift+Home")
    desk.answers.append("The mayor")
    await page.get_by_role("button", name="Quote").click()
    await page.get_by_label("Tags (comma-separated)").focus()
    assert await page.locator("#tag-names option").evaluate_all("os => os.map(o => o.value)") == ["kyiv"]
    await page.get_by_label("Tags (comma-separated)").fill("kyiv")
    await page.get_by_text("Related stories").click()
    await page.get_by_label("One a line").fill(
        "https://news.example/dam The dam, explained\nhttps://news.example/map Map of the front"
    )
    await page.get_by_role("button", name="Preview").click()
    await expect(page.locator(".preview blockquote footer")).to_have_text("The mayor", timeout=WAIT_MS)
    await page.keyboard.press("Control+Enter")
    await expect(page.locator("#outbox li[data-state=published]")).to_have_count(1, timeout=WAIT_MS)
    entry = next(e for e in await entries_of(service) if e["body"] != "<p>earlier</p>")
    assert entry["body"] == (
        "<p>Officials <strong>confirmed</strong> <strong>it</strong> here</p><p><mark>Calm now</mark></p>"
        "<blockquote><p>We will rebuild</p><footer>The mayor</footer></blockquote>"
    )
    assert entry["tags"] == ["kyiv"]
    assert [(r["url"], r["title"]) for r in entry["related"]] == [
        ("https://news.example/dam", "The dam, explained"),
        ("https://news.example/map", "Map of the front"),
    ]


async def test_an_editor_edits_a_submission_then_approves_and_manages_the_schedule(service, desks):
    await service.create_blog(title="War in Ukraine")
    contributor = (await service.mint("contributor", name="Taras"))["token"]
    await service.post(token=contributor, headline="Bridge", body="<p>The bridge is closd.</p>", status="submitted")
    later = (datetime.now(UTC) + timedelta(hours=2)).isoformat().replace("+00:00", "Z")
    for headline in ("Summary", "Briefing"):
        await service.post(headline=headline, body="<p>soon</p>", status="scheduled", publish_at=later)
    desk = await desks()
    await desk.sign_in()
    await desk.open_blog("War in Ukraine")

    await desk.page.get_by_role("button", name="Edit: Bridge").first.click()
    await desk.page.locator("#body").fill("The bridge is closed.")
    await desk.page.get_by_role("button", name="Approve", exact=True).click()
    await expect(desk.entry("Bridge")).to_have_attribute("data-status", "published", timeout=WAIT_MS)
    [bridge] = await entries_of(service)
    assert (bridge["body"], bridge["author"]["name"]) == ("<p>The bridge is closed.</p>", "Taras")

    await desk.page.get_by_role("button", name="Publish now: Summary").click()
    await expect(desk.entry("Summary")).to_have_attribute("data-status", "published", timeout=WAIT_MS)
    desk.answers.append("2031-01-02 03:04")
    await desk.page.get_by_role("button", name="Reschedule: Briefing").click()
    # The card shows the new time ("Saved." is still up from publishing Summary: no sign of this change).
    briefing_time = desk.page.locator("#scheduled li", has_text="Briefing").locator("time")
    await expect(briefing_time).to_have_attribute("datetime", re.compile(r"^2031-01-0"), timeout=WAIT_MS)
    [briefing] = (
        await service.http.get("/api/v1/blogs/ukraine/entries?status=scheduled", headers=service.auth())
    ).json()["entries"]
    assert briefing["publish_at"].startswith("2031-01-0")
    await desk.page.get_by_role("button", name="Unschedule: Briefing").click()
    await expect(desk.entry("Briefing")).to_have_attribute("data-status", "draft", timeout=WAIT_MS)
    assert sorted(e["headline"] for e in await entries_of(service)) == ["Bridge", "Summary"]


async def test_a_revoked_token_sends_the_console_back_to_sign_in(service, desks):
    await service.create_blog(title="War in Ukraine")
    made = await service.mint("reporter", name="Olena")
    desk = await desks()
    await desk.sign_in(made["token"])
    await desk.open_blog("War in Ukraine")
    assert (await service.http.delete(f"/api/v1/tokens/{made['id']}", headers=service.auth())).status_code == 204
    await desk.write("Too late")
    await desk.page.get_by_role("button", name="Preview").click()
    await expect(desk.page.get_by_label("Token")).to_be_visible(timeout=WAIT_MS)
    await expect(desk.page.locator("#notice")).to_contain_text("revoked")
