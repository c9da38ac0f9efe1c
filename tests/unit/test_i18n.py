"""Texts people read, in Lithuanian and English, and times in local time: the catalogues are
complete, plurals and formats follow the locale, and local days and months are cut at local
midnight, also on the days the clocks change."""

from __future__ import annotations

import ast
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog

from workers.domain.calendar import LocalCalendar, Localities
from workers.domain.retention import IsoDuration
from workers.i18n import LANGUAGES, Localizer, negotiate
from workers.i18n.catalogues import extract, read, untranslated

ROOT = Path(__file__).resolve().parents[2]
VILNIUS = LocalCalendar()


# --- the catalogues --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def texts() -> Catalog:
    return extract()


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_text_of_the_code_is_translated(texts: Catalog, language: str) -> None:
    catalog = read(language)
    missing = [m.id for m in texts if m.id and m.id not in catalog]
    assert not missing, f"run `make messages`, then translate in {language}: {missing}"
    waiting = [m.id for m in untranslated(catalog)]
    assert not waiting, f"{language}: untranslated or fuzzy (check and translate): {waiting}"


@pytest.mark.parametrize("language", LANGUAGES)
def test_translations_keep_the_placeholders(language: str) -> None:
    problems = [(m.id, errors) for m, errors in read(language).check() if errors]
    assert not problems, problems


def test_no_text_of_the_catalogues_is_left_unused(texts: Catalog) -> None:
    used = {m.id for m in texts if m.id}
    for language in LANGUAGES:
        stale = [m.id for m in read(language) if m.id and m.id not in used]
        assert not stale, f"{language}: no longer in the code (run `make messages`): {stale}"


def test_refusals_name_their_message_in_words_not_fstrings() -> None:
    """A console refusal is shown translated: its message must be a literal the extractor
    finds, or a constant marked with N_ (values go in as named placeholders)."""
    refusals = {"ConsoleError", "Invalid", "NotAllowed", "NotFound", "Conflict", "Unauthenticated"}
    wrong = []
    for folder in ("app/console", "adapters/http"):
        for path in (ROOT / "workers" / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id in refusals
                    and node.args
                    and not isinstance(node.args[0], ast.Constant | ast.Name)
                ):
                    wrong.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not wrong, wrong


# what a template may show without the catalogue: names, codes, symbols
UNTRANSLATED = {"callvault", "SHA-256", "s", "&lt;", "&gt;"}
JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}|<(script|style)\b.*?</\1>", re.S)
SHOWN_ATTRIBUTE = re.compile(r'\b(?:title|placeholder|aria-label|alt)="([^"]*)"')


@pytest.mark.parametrize("folder", ["adapters/http/templates", "app/letters/templates"])
def test_every_word_of_a_template_goes_through_the_catalogue(folder: str) -> None:
    """A text written straight into a template would read English in every language."""
    stray = []
    for path in sorted((ROOT / "workers" / folder).glob("*.html")):
        markup = JINJA.sub(" ", path.read_text(encoding="utf-8"))
        shown = [*SHOWN_ATTRIBUTE.findall(markup), re.sub(r"<[^>]*>", " ", markup)]
        words = {w for text in shown for w in text.split() if re.search(r"[^\W\d_]", w)}
        stray += [f"{path.name}: {w}" for w in sorted(words - UNTRANSLATED)]
    assert not stray, stray


def test_lithuanian_has_three_plural_forms() -> None:
    lt = Localizer("lt")
    forms = {
        n: lt.ngettext("%(num)d recording", "%(num)d recordings", n) % {"num": n}
        for n in (1, 2, 5, 10, 11, 21, 22, 112)
    }
    assert forms == {
        1: "1 įrašas",
        2: "2 įrašai",
        5: "5 įrašai",  # 2-9: "įrašai"; 10-20 and whole tens: "įrašų"
        10: "10 įrašų",
        11: "11 įrašų",
        21: "21 įrašas",
        22: "22 įrašai",
        112: "112 įrašų",
    }
    assert Localizer("en").ngettext("%(num)d recording", "%(num)d recordings", 1) == (
        "%(num)d recording"
    )


def test_codes_are_shown_in_words_and_nothing_as_a_dash() -> None:
    from jinja2 import DictLoader

    from workers.i18n import environment

    page = environment(DictLoader({"p": "{{ code|label }}"})).get_template("p")
    for code, shown in (
        ("legal_claim", "teisinis reikalavimas"),
        ("identity_not_verified", "asmens tapatybė nepatikrinta"),
        ("a-code-without-words", "a-code-without-words"),
        ("", "\N{EN DASH}"),
        (None, "\N{EN DASH}"),
    ):
        assert page.render(code=code, l10n=Localizer("lt")) == shown


def test_the_compiled_catalogue_is_what_is_read() -> None:
    assert Localizer("lt").gettext("Sign in") == "Prisijungti"
    assert Localizer("en").gettext("Sign in") == "Sign in"
    assert Localizer("lt").gettext("a text nobody wrote") == "a text nobody wrote"


# --- choosing a language ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "chosen"),
    [
        ("lt-LT,lt;q=0.9,en-US;q=0.8,en;q=0.7", "lt"),
        ("en-GB,en;q=0.9,lt;q=0.8", "en"),
        ("de-DE,de;q=0.9,en;q=0.5,lt;q=0.4", "en"),
        ("lt;q=0.2, EN;q=0.8", "en"),
        ("en;q=0, lt", "lt"),
        ("de, fr", None),
        ("", None),
        (None, None),
        ("*", None),
        ("en;q=bad", "en"),
    ],
)
def test_accept_language_picks_the_best_language_we_have(header: str | None, chosen: str) -> None:
    assert negotiate(header) == chosen


# --- formats ---------------------------------------------------------------------------------


def test_dates_and_numbers_follow_the_locale_in_local_time() -> None:
    moment = datetime(2026, 12, 6, 23, 30, tzinfo=UTC)  # 01:30 on 7 December in Vilnius
    lt, en = Localizer("lt"), Localizer("en")
    assert lt.when(moment) == "2026-12-07 01:30"
    assert en.when(moment) == "7 Dec 2026, 01:30"
    assert lt.when(moment, seconds=True) == "2026-12-07 01:30:00"
    assert lt.day(moment) == "2026-12-07"
    assert en.day("2026-12-07") == "7 Dec 2026"
    assert lt.month(2026, 12) == "2026 m. gruodis"
    assert en.month(2026, 12) == "December 2026"
    assert lt.number(12345.5, 1) == "12\N{NO-BREAK SPACE}345,5"
    assert en.number(12345.5, 1) == "12,345.5"
    assert Localizer("en", LocalCalendar.named("UTC")).when(moment) == "6 Dec 2026, 23:30"


# --- local days and months -------------------------------------------------------------------


def test_a_local_day_starts_at_local_midnight() -> None:
    start, end = VILNIUS.day(date(2026, 12, 7))
    assert start == datetime(2026, 12, 6, 22, 0, tzinfo=UTC)  # EET, UTC+2
    assert end == datetime(2026, 12, 7, 22, 0, tzinfo=UTC)
    assert VILNIUS.day_of(datetime(2026, 12, 6, 22, 0, tzinfo=UTC)) == date(2026, 12, 7)
    assert VILNIUS.day_of(datetime(2026, 12, 6, 21, 59, 59, tzinfo=UTC)) == date(2026, 12, 6)


def test_the_day_the_clocks_go_forward_has_23_hours() -> None:
    start, end = VILNIUS.day(date(2026, 3, 29))  # last Sunday of March: 03:00 -> 04:00
    assert start == datetime(2026, 3, 28, 22, 0, tzinfo=UTC)
    assert end == datetime(2026, 3, 29, 21, 0, tzinfo=UTC)  # EEST, UTC+3
    assert end - start == timedelta(hours=23)


def test_the_day_the_clocks_go_back_has_25_hours() -> None:
    start, end = VILNIUS.day(date(2026, 10, 25))  # last Sunday of October: 04:00 -> 03:00
    assert end - start == timedelta(hours=25)
    # 03:30 happens twice that night; both are that day
    assert VILNIUS.day_of(datetime(2026, 10, 25, 0, 30, tzinfo=UTC)) == date(2026, 10, 25)
    assert VILNIUS.day_of(datetime(2026, 10, 25, 1, 30, tzinfo=UTC)) == date(2026, 10, 25)
    assert Localizer("lt").when(datetime(2026, 10, 25, 0, 30, tzinfo=UTC)) == "2026-10-25 03:30"
    assert Localizer("lt").when(datetime(2026, 10, 25, 1, 30, tzinfo=UTC)) == "2026-10-25 03:30"


def test_months_are_local_months_across_the_clock_changes() -> None:
    march = VILNIUS.month(2026, 3)
    assert march == (
        datetime(2026, 2, 28, 22, 0, tzinfo=UTC),
        datetime(2026, 3, 31, 21, 0, tzinfo=UTC),
    )
    october = VILNIUS.month(2026, 10)
    assert october[1] == datetime(2026, 10, 31, 22, 0, tzinfo=UTC)
    december = VILNIUS.month(2026, 12)
    assert december[1] == datetime(2026, 12, 31, 22, 0, tzinfo=UTC)  # into January


def test_several_days_are_one_interval_of_local_midnights() -> None:
    start, end = VILNIUS.days(date(2026, 3, 28), 3)  # across the spring change
    assert (start, end) == (
        datetime(2026, 3, 27, 22, 0, tzinfo=UTC),
        datetime(2026, 3, 30, 21, 0, tzinfo=UTC),
    )


def test_each_tenant_reads_in_its_own_language_and_time_zone() -> None:
    tallinn = LocalCalendar.named("Europe/Tallinn")
    london = LocalCalendar.named("Europe/London")
    places = Localities(
        "lt", VILNIUS, (("shop-uk", "en"),), (("shop-ee", tallinn), ("shop-uk", london))
    )
    assert places.language_of("shop-uk") == "en"
    assert places.language_of("shop-lt") == "lt"
    assert places.language_of(None) == "lt"
    assert places.calendar_of("shop-uk").name == "Europe/London"
    assert places.calendar_for(("shop-uk",)).name == "Europe/London"
    assert places.calendar_for(("shop-uk", "shop-ee")).name == "Europe/Vilnius"  # they differ
    assert places.calendar_for(("*",)).name == "Europe/Vilnius"
    assert places.language_for(("shop-uk",)) == "en"  # their tenant's language
    assert places.language_for(("shop-uk", "shop-lt")) == "lt"  # they differ: the default
    assert places.language_for(("*",)) == "lt"
    assert places.language_for(()) == "lt"


def test_someone_across_time_zones_reads_the_default_zone_with_offsets() -> None:
    london = LocalCalendar.named("Europe/London")
    places = Localities("lt", VILNIUS, (), (("shop-uk", london),))
    assert places.calendar_for(("shop-uk",)) == london  # one zone: theirs, unlabelled
    assert places.calendar_for(("shop-lt", "shop-lv")) == VILNIUS  # both in the default
    assert places.calendar_for(()) == VILNIUS
    for mixed in (("shop-lt", "shop-uk"), ("*",)):
        calendar = places.calendar_for(mixed)
        assert (calendar.name, calendar.labelled) == ("Europe/Vilnius", True), mixed
    assert Localities("lt", VILNIUS, (), (("shop-lv", VILNIUS),)).calendar_for(("*",)) == VILNIUS

    lt, en = (
        Localizer("lt", places.calendar_for(("*",))),
        Localizer("en", places.calendar_for(("*",))),
    )
    midnight = datetime(2026, 12, 6, 23, 30, tzinfo=UTC)  # the 7th in Vilnius, the 6th in UTC
    assert lt.when(midnight) == "2026-12-07 01:30 GMT+02:00"
    assert en.when(midnight) == "7 Dec 2026, 01:30 GMT+02:00"
    assert lt.day(midnight) == "2026-12-07"  # a day alone has no offset
    # spring: 03:00 becomes 04:00; autumn: 03:30 happens twice, told apart by the offset
    assert lt.when(datetime(2026, 3, 29, 0, 30, tzinfo=UTC)) == "2026-03-29 02:30 GMT+02:00"
    assert lt.when(datetime(2026, 3, 29, 1, 30, tzinfo=UTC)) == "2026-03-29 04:30 GMT+03:00"
    assert lt.when(datetime(2026, 10, 25, 0, 30, tzinfo=UTC)) == "2026-10-25 03:30 GMT+03:00"
    assert lt.when(datetime(2026, 10, 25, 1, 30, tzinfo=UTC)) == "2026-10-25 03:30 GMT+02:00"
    assert Localizer("en", london).when(midnight) == "6 Dec 2026, 23:30"


@pytest.mark.parametrize(
    ("period", "lithuanian", "english"),
    [
        ("P1Y", "1 metai", "1 year"),
        ("P2Y", "2 metai", "2 years"),
        ("P10Y", "10 metų", "10 years"),
        ("P6M", "6 mėnesiai", "6 months"),
        ("P1M", "1 mėnuo", "1 month"),
        ("P18M", "1 metai ir 6 mėnesiai", "1 year, 6 months"),
        ("P30D", "30 dienų", "30 days"),
        ("P21D", "21 diena", "21 days"),
        ("PT36H", "36 valandos", "36 hours"),
    ],
)
def test_periods_are_said_in_words_with_the_plural_forms_of_the_locale(
    period: str, lithuanian: str, english: str
) -> None:
    duration = IsoDuration.parse(period)
    assert Localizer("lt").period(duration) == lithuanian
    assert Localizer("en").period(duration) == english


def test_time_zone_names_are_checked() -> None:
    with pytest.raises(ValueError, match="IANA"):
        LocalCalendar.named("Europe/Atlantis")
    with pytest.raises(ValueError, match="IANA"):
        LocalCalendar.named("../../etc/passwd")
