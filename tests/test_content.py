"""The content shapes of DESIGN §6, as a reporter writes them and as they are stored: Markdown and
plain-text bodies, highlighted phrases, quotes with attribution, related links, image sizes and
credits, social embeds of known providers, and the blog's time zone."""

from __future__ import annotations

import pytest
from conftest import assert_error, receive

from liveblog import keys
from liveblog.embeds import embed_of
from liveblog.formats import text_to_html
from liveblog.sanitize import clean_html

ENTRIES = "/api/v1/blogs/ukraine/entries"


async def test_a_markdown_body_becomes_paragraphs_links_and_emphasis(service):
    await service.create_blog()
    entry = await service.post(
        body="## Votación\n\nEl pleno aprueba **la ley** con 171 votos: https://elpais.com/espana/\n\n"
        "> Es un día histórico\n\n<script>alert(1)</script>",
        body_format="markdown",
    )
    assert entry["body"] == (
        "<h3>Votación</h3>\n<p>El pleno aprueba <strong>la ley</strong> con 171 votos: "
        '<a href="https://elpais.com/espana/" rel="noopener noreferrer nofollow">https://elpais.com/espana/</a></p>\n'
        "<blockquote>\n<p>Es un día histórico</p>\n</blockquote>\n<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"
    )
    assert "body_format" not in entry, "stored as HTML: readers never convert anything"


async def test_a_plain_text_body_keeps_its_lines_and_links_its_urls(service):
    await service.create_blog()
    entry = await service.post(body="Primera línea\nsegunda <b>línea</b>\n\nMás en www.elpais.com", body_format="text")
    assert entry["body"] == (
        "<p>Primera línea<br>segunda &lt;b&gt;línea&lt;/b&gt;</p>"
        '<p>Más en <a href="http://www.elpais.com" rel="noopener noreferrer nofollow">www.elpais.com</a></p>'
    )


async def test_a_patch_converts_its_body_in_the_format_it_names(service):
    await service.create_blog()
    entry = await service.post()
    response = await service.http.patch(
        f"{ENTRIES}/{entry['id']}",
        json={"body": "*ahora* en Markdown", "body_format": "markdown"},
        headers={**service.auth(), "If-Match": '"1"'},
    )
    assert response.json()["body"] == "<p><em>ahora</em> en Markdown</p>"


def test_highlights_and_quote_attributions_are_kept_and_a_stray_footer_is_unwrapped():
    quote = '<blockquote><p>"Es un día histórico"</p><footer>Pedro Sánchez, presidente</footer></blockquote>'
    assert (
        clean_html(f"<p>La ley <mark>sale adelante</mark></p>{quote}")
        == f"<p>La ley <mark>sale adelante</mark></p>{quote}"
    )
    assert clean_html("<footer>Firma</footer><p>x</p>") == "Firma<p>x</p>"
    assert clean_html("<blockquote><p>q</p></blockquote><footer>suelto</footer>") == (
        "<blockquote><p>q</p></blockquote>suelto"
    )


@pytest.mark.parametrize("tag", ["<img src=https://x.test/a.png>", "<video src=https://x.test/a.mp4>", "<iframe>"])
async def test_media_in_a_body_is_refused_naming_media_not_dropped(service, tag):
    await service.create_blog()
    response = await service.http.post(ENTRIES, json={"body": f"<p>Foto:</p>{tag}"}, headers=service.auth())
    assert "media" in assert_error(response, 422, "$.body")["message"]


async def test_an_image_keeps_its_size_and_credit_and_related_links_their_cards(service):
    await service.create_blog()
    entry = await service.post(
        media={
            "type": "image",
            "url": "https://img.example/pleno.jpg",
            "caption": "El pleno del Congreso",
            "credit": "<b>EFE</b>",
            "width": 1200,
            "height": 800,
        },
        related=[
            {"url": "https://elpais.com/a", "title": "Lo que cambia con la ley", "kicker": "Economía"},
            {"url": "https://elpais.com/b", "title": "<i>Cronología</i>", "image": "https://img.example/c.jpg"},
        ],
    )
    assert entry["media"]["credit"] == "EFE" and (entry["media"]["width"], entry["media"]["height"]) == (1200, 800)
    assert [link["title"] for link in entry["related"]] == ["Lo que cambia con la ley", "Cronología"]
    assert entry["related"][0]["kicker"] == "Economía"


async def test_more_than_five_related_links_or_a_plain_http_one_is_refused(service):
    await service.create_blog()
    six = [{"url": f"https://elpais.com/{i}", "title": str(i)} for i in range(6)]
    assert_error(
        await service.http.post(ENTRIES, json={"body": "<p>x</p>", "related": six}, headers=service.auth()), 422
    )


@pytest.mark.parametrize(
    ("url", "provider", "frame"),
    [
        (
            "https://www.youtube.com/watch?v=dQw4w9WgXcQ",
            "youtube",
            "https://www.youtube-nocookie.com/embed/dQw4w9WgXcQ",
        ),
        ("https://youtu.be/dQw4w9WgXcQ", "youtube", "https://www.youtube-nocookie.com/embed/dQw4w9WgXcQ"),
        ("https://vimeo.com/76979871", "vimeo", "https://player.vimeo.com/video/76979871?dnt=1"),
        (
            "https://x.com/el_pais/status/1790000000000000000",
            "x",
            "https://platform.twitter.com/embed/Tweet.html?id=1790000000000000000&dnt=true",
        ),
        ("https://www.instagram.com/p/C7abcDEF/", "instagram", "https://www.instagram.com/p/C7abcDEF/embed/"),
        ("https://www.tiktok.com/@elpais/video/7364", "tiktok", "https://www.tiktok.com/embed/v2/7364"),
        ("https://bsky.app/profile/elpais.com/post/3kabc", "bluesky", None),
    ],
)
def test_known_providers_are_recognised_with_the_frame_a_click_loads(url, provider, frame):
    assert embed_of(url) == (provider, frame)


@pytest.mark.parametrize("url", ["https://youtube.com.evil.test/watch?v=x", "https://evil.test/youtube.com/"])
def test_a_lookalike_host_is_no_provider(url):
    assert embed_of(url) is None


async def test_an_embed_records_its_provider_and_an_unknown_one_is_refused(service):
    await service.create_blog()
    entry = await service.post(
        media={"type": "embed", "url": "https://youtu.be/dQw4w9WgXcQ", "provider": "forged", "embed_url": "https://x"}
    )
    assert entry["media"]["provider"] == "youtube"
    assert entry["media"]["embed_url"] == "https://www.youtube-nocookie.com/embed/dQw4w9WgXcQ"
    unknown = await service.http.post(
        ENTRIES,
        json={"body": "<p>x</p>", "media": {"type": "embed", "url": "https://evil.test/player"}},
        headers=service.auth(),
    )
    assert_error(unknown, 422, "$.media.url")


async def test_a_blog_keeps_its_time_zone_and_an_unknown_zone_is_refused(service):
    assert (await service.create_blog("madrid", timezone="Europe/Madrid"))["timezone"] == "Europe/Madrid"
    assert (await service.create_blog("plain"))["timezone"] == "UTC"
    for bad in ("Mars/Olympus_Mons", "Europe/../etc"):
        refused = await service.http.post(
            "/api/v1/blogs", json={"id": "bad", "title": "t", "timezone": bad}, headers=service.auth()
        )
        assert_error(refused, 422, "$.timezone")
    patched = await service.http.patch(
        "/api/v1/blogs/madrid", json={"timezone": "Nowhere/City"}, headers=service.auth()
    )
    assert_error(patched, 422, "$.timezone")


def test_text_is_escaped_before_it_is_linked():
    assert text_to_html('<a href="javascript:x">https://a.test/?q=<b></a>') == (
        '<p>&lt;a href=&quot;javascript:x&quot;&gt;<a href="https://a.test/?q=">https://a.test/?q=</a>'
        "&lt;b&gt;&lt;/a&gt;</p>"
    )


async def _tagged(service, tag: str, **params: str) -> dict:
    response = await service.http.get(ENTRIES, params={"tag": tag, **params})
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_tag_view_lists_only_that_tags_published_entries_and_follows_every_change(service):
    await service.create_blog()
    vote = await service.post(body="<p>La votación</p>", tags=["Congreso", "Ley de Amnistía"])
    other = await service.post(body="<p>Otra cosa</p>", tags=["Economía"])
    second = await service.post(body="<p>Resultado</p>", tags=["Congreso"])
    await service.post(body="<p>Borrador</p>", tags=["Congreso"], status="draft")
    assert [e["id"] for e in (await _tagged(service, "Congreso"))["entries"]] == [second["id"], vote["id"]]

    page = await _tagged(service, "Congreso", limit="1")
    assert [e["id"] for e in page["entries"]] == [second["id"]] and page["next"] == second["id"]
    older = await _tagged(service, "Congreso", limit="1", before=page["next"])
    assert [e["id"] for e in older["entries"]] == [vote["id"]] and older["next"] is None

    retagged = await service.http.patch(
        f"{ENTRIES}/{vote['id']}", json={"tags": ["Ley de Amnistía"]}, headers={**service.auth(), "If-Match": '"1"'}
    )
    assert retagged.status_code == 200
    assert [e["id"] for e in (await _tagged(service, "Congreso"))["entries"]] == [second["id"]]
    retracted = await service.http.delete(f"{ENTRIES}/{second['id']}", headers={**service.auth(), "If-Match": '"1"'})
    assert retracted.status_code == 204
    assert (await _tagged(service, "Congreso"))["entries"] == []
    purged = await service.http.delete(f"{ENTRIES}/{vote['id']}?purge=true", headers=service.auth())
    assert purged.status_code == 204
    assert (await _tagged(service, "Ley de Amnistía"))["entries"] == []
    assert not await service.services.store.redis.exists(keys.tag("ukraine", "Ley de Amnistía")), "nothing stale left"
    assert [e["id"] for e in (await _tagged(service, "Economía"))["entries"]] == [other["id"]]
    assert (await _tagged(service, "nunca usada"))["entries"] == []


async def test_a_scheduled_entry_joins_its_tag_view_when_it_goes_out(service):
    await service.create_blog()
    async with service.live() as reader:
        assert (await receive(reader))["type"] == "snapshot"
        entry = await service.post(tags=["Directo"], status="scheduled", publish_at="2999-01-01T00:00:00Z")
        assert (await _tagged(service, "Directo"))["entries"] == []
        due = await service.http.patch(
            f"{ENTRIES}/{entry['id']}",
            json={"publish_at": "2000-01-01T00:00:00Z"},
            headers={**service.auth(), "If-Match": '"1"'},
        )
        assert due.status_code == 200, due.text
        while (message := await receive(reader))["type"] != "event":
            pass
    assert message["entry"]["id"] == entry["id"]
    assert [e["id"] for e in (await _tagged(service, "Directo"))["entries"]] == [entry["id"]]


@pytest.mark.parametrize("tag", ["", "a" * 41, "line\nbreak"])
async def test_a_malformed_tag_is_a_400(service, tag):
    await service.create_blog()
    assert_error(await service.http.get(ENTRIES, params={"tag": tag}), 400, "tag")
