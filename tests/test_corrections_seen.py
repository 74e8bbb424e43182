"""Corrections, edits and retractions as readers notice them.

A reader sees "Corrected HH:MM: …" on a corrected entry wherever it is shown (the widget, live;
the public page; the iframe page; both feeds; the JSON-LD crawlers read), "· updated" only when
what they read changed (not for a pin, a key event or a tag), and, where a retracted entry was,
the newsroom's note. The widget stories run in real Chromium with test_widget.py's harness; the
rest is plain HTTP against the real service.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from html.parser import HTMLParser
from xml.etree import ElementTree
from zoneinfo import ZoneInfo

import pytest
import test_widget
from conftest import UNLIMITED, Service
from test_pages import ATOM, Html, clock, rfc3339
from test_widget import WAIT_MS, Reader, open_widget, patch

from liveblog.config import Settings
from liveblog.i18n import catalogue

pytestmark = pytest.mark.asyncio(loop_scope="module")
# test_widget.py's browser harness, as this module's fixtures.
browser, partner, reader, service = test_widget.browser, test_widget.partner, test_widget.reader, test_widget.service

VOTE = "The vote was 171 in favour, not 172."
#: Plain text with characters HTML would read as markup: readers must see them as typed.
TOWN = 'The town is Sviatohirsk, not "Sviatogorsk" & <3 km further east.'
NOTE = "The source withdrew the claim."
LOGO = "https://news.example/logo.png"
#: The reader's time zone in test_widget.py's browser context.
READER_ZONE = ZoneInfo("Europe/Kyiv")


@pytest.fixture
def settings() -> Settings:
    return replace(UNLIMITED, publisher_name="Kyiv Daily", publisher_logo=LOGO)


def local_clock(moment: str) -> str:
    """The widget's HH:MM for a time, in the reader's zone."""
    return f"{rfc3339(moment).astimezone(READER_ZONE):%H:%M}"


async def correct(service: Service, entry: dict, text: str) -> dict:
    return await patch(service, entry, correction=text)


async def retract(service: Service, entry: dict, note: str | None = None) -> None:
    response = await service.http.request(
        "DELETE",
        f"/api/v1/blogs/ukraine/entries/{entry['id']}",
        json={"retraction_note": note} if note else None,
        headers={**service.auth(), "If-Match": f'"{entry["version"]}"'},
    )
    assert response.status_code == 204, response.text


def in_widget(reader: Reader, entry: dict, selector: str = ""):  # noqa: ANN201
    return reader.widget(f"article[data-id='{entry['id']}'] {selector}".strip())


async def aria_live_says(reader: Reader, text: str) -> None:
    await reader.page.wait_for_function(
        """text => [...document.querySelectorAll("div")].find(d => d.shadowRoot).shadowRoot
             .querySelector("[aria-live=polite]").textContent === text""",
        arg=text,
        timeout=WAIT_MS,
    )


# --- the widget ------------------------------------------------------------------------------------


@pytest.mark.browser
async def test_a_reader_with_the_widget_open_sees_corrections_arrive(service, partner, reader):
    await service.create_blog()
    entry = await service.post(headline="Parliament votes", body="<p>The bill passed with 172 votes.</p>")
    await open_widget(reader, partner, service)
    await reader.wait_for_shown([entry["id"]])
    await reader.widget(".st .dot").wait_for(timeout=WAIT_MS)

    entry = await correct(service, entry, VOTE)
    corrections = in_widget(reader, entry, ".cx")
    await corrections.first.wait_for(timeout=WAIT_MS)
    [first] = entry["corrections"]
    assert await corrections.all_text_contents() == [f"Corrected {local_clock(first['at'])}: {VOTE}"]
    assert await corrections.locator("time").get_attribute("datetime") == first["at"]
    # A correction is not an edit of what was written.
    assert "updated" not in await in_widget(reader, entry, ".meta").text_content()

    entry = await correct(service, entry, TOWN)
    await corrections.nth(1).wait_for(timeout=WAIT_MS)
    second = entry["corrections"][1]
    assert await corrections.all_text_contents() == [  # oldest first, the text exactly as written
        f"Corrected {local_clock(first['at'])}: {VOTE}",
        f"Corrected {local_clock(second['at'])}: {TOWN}",
    ]
    assert await corrections.locator("*:not(time)").count() == 0  # text, not markup

    await reader.page.reload()  # and a reader arriving later sees them in the snapshot
    await reader.wait_for_shown([entry["id"]])
    assert await corrections.count() == 2


@pytest.mark.browser
async def test_pinning_tagging_and_key_events_are_not_shown_as_updates_but_edits_are(service, partner, reader):
    await service.create_blog()
    entry = await service.post(headline="Bridge closed", body="<p>Traffic diverted.</p>")
    await open_widget(reader, partner, service)
    await reader.wait_for_shown([entry["id"]])
    meta = in_widget(reader, entry, ".meta")

    entry = await patch(service, entry, pinned=True, key_event=True, tags=["traffic"])
    await in_widget(reader, entry, ".tags li").filter(has_text="#traffic").wait_for(timeout=WAIT_MS)
    assert await in_widget(reader, entry, ".b").all_text_contents() == ["Pinned", "Key event"]
    assert "updated" not in await meta.text_content()

    entry = await patch(service, entry, body="<p>Traffic diverted via the ring road.</p>")
    await in_widget(reader, entry, ".body").filter(has_text="via the ring road").wait_for(timeout=WAIT_MS)
    assert (await meta.text_content()).endswith(f" · updated {local_clock(entry['edited_at'])}")
    edited_at = entry["edited_at"]

    entry = await patch(service, entry, key_event=False)  # a later non-edit leaves the time of the edit
    await in_widget(reader, entry, ".k").wait_for(state="detached", timeout=WAIT_MS)
    assert entry["edited_at"] == edited_at != entry["updated_at"]
    assert await meta.locator("time").nth(1).get_attribute("datetime") == edited_at


@pytest.mark.browser
async def test_a_retraction_with_a_note_leaves_the_note_where_the_entry_was(service, partner, reader):
    await service.create_blog()
    a, b, c = [await service.post(body=f"<p>Report {i}</p>", time=f"2025-03-01T08:0{i}:00Z") for i in range(3)]
    await open_widget(reader, partner, service)
    await reader.wait_for_shown([c["id"], b["id"], a["id"]])
    await reader.widget(".st .dot").wait_for(timeout=WAIT_MS)

    await retract(service, b, NOTE)
    retracted = in_widget(reader, b)
    await retracted.filter(has_text=NOTE).wait_for(timeout=WAIT_MS)
    assert await retracted.text_content() == f"This update was retracted: {NOTE}"
    await reader.wait_for_shown([c["id"], b["id"], a["id"]])  # in its place
    await aria_live_says(reader, f"This update was retracted: {NOTE}")

    await retract(service, a)  # without a note it just goes
    await reader.wait_for_shown([c["id"], b["id"]])


# --- pages, feeds and JSON-LD ---------------------------------------------------------------------


async def a_corrected_entry(service: Service) -> tuple[dict, dict, dict]:
    """A blog with a corrected entry (corrected twice), an edited one (tagged after the edit) and
    one that was only pinned and tagged; each as it is now."""
    await service.create_blog()
    corrected = await service.post(headline="Parliament votes", body="<p>The bill passed.</p>")
    corrected = await correct(service, await correct(service, corrected, VOTE), TOWN)
    edited = await service.post(body="<p>Two injured.</p>")
    edited = await patch(service, edited, body="<p>Five injured.</p>")
    edited = await patch(service, edited, tags=["casualties"])
    assert edited["edited_at"] != edited["updated_at"]
    pinned = await service.post(body="<p>What we know.</p>")
    pinned = await patch(service, pinned, pinned=True, tags=["summary"])
    return corrected, edited, pinned


class _Paragraphs(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self.emphasised = 0

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag == "p":
            self.found.append("")
        elif tag == "em":
            self.emphasised += 1

    def handle_data(self, data: str) -> None:
        self.found[-1] += data


def paragraphs(html: str) -> list[str]:
    """The text of each paragraph of a feed item's HTML, as a feed reader shows it; the
    corrections must be in italics."""
    parser = _Paragraphs()
    parser.feed(html)
    parser.close()
    assert parser.emphasised == len(parser.found) - 1, html
    return parser.found


def corrected_lines(entry: dict, collapsed: bool = True) -> list[str]:
    """What readers see of the entry's corrections, English and UTC as the blog is; its spaces
    collapsed as :attr:`Html.article_text` has them, or as feeds carry them."""
    exact = catalogue("en").time
    return [
        f"Corrected {clock(c['at']) if collapsed else exact(rfc3339(c['at']), 'UTC')}: {c['text']}"
        for c in entry["corrections"]
    ]


@pytest.mark.parametrize("path", ["/blogs/ukraine", "/embed/ukraine"])
async def test_the_public_page_and_the_iframe_page_show_corrections_and_real_edits(service, path):
    corrected, edited, pinned = await a_corrected_entry(service)
    assert [c["text"] for c in corrected["corrections"]] == [VOTE, TOWN]
    response = await service.http.get(path)
    assert "&lt;3 km" in response.text  # the correction is text, escaped into the page
    text = Html(response.text).article_text
    assert " ".join(corrected_lines(corrected)) in text[corrected["id"]]  # oldest first, as typed
    assert "updated" not in text[corrected["id"]] and "Corrected" not in text[edited["id"]]
    assert f"· updated {clock(edited['edited_at'])}" in text[edited["id"]]
    assert "Pinned" in text[pinned["id"]] and "updated" not in text[pinned["id"]]


async def test_both_feeds_carry_the_corrections_and_date_real_changes_only(service):
    corrected, edited, pinned = await a_corrected_entry(service)
    last_correction = rfc3339(corrected["corrections"][-1]["at"])
    seen = ["The bill passed.", *corrected_lines(corrected, collapsed=False)]

    atom = ElementTree.fromstring((await service.http.get("/blogs/ukraine/feed.atom")).content)
    items = {item.findtext(f"{ATOM}id").split("#")[1]: item for item in atom.findall(f"{ATOM}entry")}
    assert paragraphs(content := items[corrected["id"]].findtext(f"{ATOM}content")) == seen
    assert "&lt;3 km" in content  # the correction is text, escaped into the HTML

    feed = (await service.http.get("/blogs/ukraine/feed.json")).json()
    by_id = {item["id"].split("#")[1]: item for item in feed["items"]}
    assert paragraphs(content := by_id[corrected["id"]]["content_html"]) == seen
    assert "&lt;3 km" in content
    assert by_id[corrected["id"]]["content_text"].splitlines() == seen

    def modified(entry: dict) -> tuple[datetime, datetime]:
        return rfc3339(items[entry["id"]].findtext(f"{ATOM}updated")), rfc3339(by_id[entry["id"]]["date_modified"])

    assert modified(corrected) == (last_correction, last_correction)
    assert modified(edited) == (rfc3339(edited["edited_at"]),) * 2
    assert modified(pinned) == (rfc3339(pinned["time"]),) * 2  # a pin and a tag are not a change of content


async def test_json_ld_carries_correction_comments_and_the_publisher(service):
    corrected, edited, pinned = await a_corrected_entry(service)
    doc = json.loads(Html((await service.http.get("/blogs/ukraine")).text).json_ld[0])
    assert doc["publisher"] == {
        "@type": "Organization",
        "name": "Kyiv Daily",
        "logo": {"@type": "ImageObject", "url": LOGO},
    }
    postings = {p["@id"].split("#")[1]: p for p in doc["liveBlogUpdate"]}
    posting = postings[corrected["id"]]
    assert posting["correction"] == [
        {"@type": "CorrectionComment", "text": c["text"], "datePublished": c["at"]} for c in corrected["corrections"]
    ]
    assert rfc3339(posting["dateModified"]) == rfc3339(corrected["corrections"][-1]["at"])
    assert rfc3339(postings[edited["id"]]["dateModified"]) == rfc3339(edited["edited_at"])
    assert postings[pinned["id"]]["dateModified"] == postings[pinned["id"]]["datePublished"]
    assert "correction" not in postings[edited["id"]]
