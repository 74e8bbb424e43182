"""The catalogues readers' strings come from: complete enough, consistent with English, and with
the plural forms CLDR gives each language."""

from __future__ import annotations

import pytest
from babel import Locale

from liveblog import i18n
from liveblog.i18n import DEFAULT, Catalogue, _load, catalogue, languages, placeholders, resolve

REQUIRED = ["en", "es", "ca", "fr", "de", "it", "pt", "uk", "ar"]


def test_every_required_language_has_a_catalogue():
    assert set(REQUIRED) <= set(languages())


@pytest.mark.parametrize("language", [lang for lang in REQUIRED if lang != DEFAULT])
def test_a_catalogue_translates_only_english_keys_with_the_same_placeholders(language):
    english, own = _load(DEFAULT), _load(language)
    assert set(own) <= set(english), "a key English lacks is a typo: nothing would ever show it"
    assert set(english) - set(own) == set(), "every string is translated (a gap would fall back to English)"
    tags = Locale.parse(language).plural_form.tags | {"other"}
    for key, value in own.items():
        if isinstance(english[key], dict):
            assert isinstance(value, dict) and "other" in value, key
            assert set(value) <= tags, f"{key}: {set(value) - tags} are not {language}'s plural categories"
            for form in value.values():
                assert placeholders(form) <= placeholders(english[key]["other"]), (key, form)
        else:
            assert placeholders(value) == placeholders(english[key]), (key, value)


def test_plurals_follow_each_languages_rules():
    assert [catalogue("es").plural("new_updates", n) for n in (1, 2)] == [
        "1 actualización nueva",
        "2 actualizaciones nuevas",
    ]
    assert catalogue("es").plural("new_updates", 1_000_000).endswith(" actualizaciones nuevas"), "CLDR 'many'"
    assert [catalogue("uk").plural("new_updates", n) for n in (1, 3, 5, 21, 22, 25)] == [
        "1 нове оновлення",
        "3 нові оновлення",
        "5 нових оновлень",
        "21 нове оновлення",
        "22 нові оновлення",
        "25 нових оновлень",
    ]
    arabic = [catalogue("ar").plural("new_updates", n) for n in (0, 1, 2, 3, 11, 100)]
    assert arabic[:3] == ["لا تحديثات جديدة", "تحديث جديد واحد", "تحديثان جديدان"]
    assert len(set(arabic)) == 6, "zero, one, two, few, many and other all differ"


def test_a_missing_string_falls_back_to_english_and_a_tag_to_its_language(monkeypatch):
    assert resolve("pt-BR") == "pt" and resolve("es-419") == "es"
    assert resolve("nl") == DEFAULT and resolve("zz") == DEFAULT
    assert catalogue("nl").text("live") == "Live"
    english = _load(DEFAULT)
    monkeypatch.setattr(i18n, "_load", lambda language: english if language == DEFAULT else {"live": "En directo"})
    partial = Catalogue("es")
    assert (partial.text("live"), partial.text("load_more")) == ("En directo", "Load more")


def test_arabic_lays_out_right_to_left_and_times_follow_the_blogs_zone():
    from datetime import UTC, datetime

    assert catalogue("ar").direction == "rtl" and catalogue("es").direction == "ltr"
    moment = datetime(2026, 12, 2, 16, 45, tzinfo=UTC)
    assert catalogue("es").time(moment, "Europe/Madrid") == "17:45"
    assert catalogue("en").time(moment, "America/New_York") == "11:45\u202fAM"


async def test_the_widget_fetches_its_languages_strings_cacheably(service):
    spanish = await service.http.get("/i18n/es.json")
    assert spanish.status_code == 200 and "max-age" in spanish.headers["cache-control"]
    document = spanish.json()
    assert (document["lang"], document["dir"], document["strings"]["live"]) == ("es", "ltr", "En directo")
    assert (await service.http.get("/i18n/ar.json")).json()["dir"] == "rtl"
    assert (await service.http.get("/i18n/pt-BR.json")).json()["lang"] == "pt"
    assert (await service.http.get("/i18n/nl.json")).json()["strings"]["live"] == "Live"
    again = await service.http.get("/i18n/es.json", headers={"If-None-Match": spanish.headers["etag"]})
    assert again.status_code == 304
    assert (await service.http.get("/i18n/..%2Fetc.json")).status_code == 404


def test_the_served_widget_is_small_has_its_strings_and_no_comments():
    import gzip

    from liveblog import widget

    served = widget.script()
    assert len(gzip.compress(served, 9)) <= 12 * 1024  # the widget's budget: 12 KB gzipped
    assert served.startswith(b"/*! liveblog widget.")  # the licence header stays
    lines = served.decode().splitlines()
    assert [line for line in lines if line.startswith(("//", " ", "\t"))] == []
    assert b"__LIVEBLOG_STRINGS" not in served and widget.strings_version().encode() in served
    assert '"load_more":"Load more"' in served.decode()  # English built in; the browser tests run it


@pytest.mark.parametrize("language", [lang for lang in languages() if i18n.console_strings(lang)])
def test_the_consoles_strings_translate_english_with_the_same_placeholders(language):
    english, own = i18n.console_strings(DEFAULT), i18n.console_strings(language)
    assert set(own) == set(english)
    for key, value in own.items():
        assert placeholders(value) == placeholders(english[key]), (key, value)
    assert i18n.CONSOLE not in catalogue(language).strings  # staff strings stay out of readers' catalogue
