"""Texts people read, in their language and local time: gettext catalogues (``locale/``,
see :mod:`workers.i18n.catalogues`), the choice of a language, and a :class:`Localizer` that
translates and formats dates, numbers and plurals by the locale, in a tenant's time zone.

Code marks a text with ``N_`` (or, for the console's refusals, passes it as the message of a
``ConsoleError``) and translates it where a person is shown it; templates use ``_()`` and
``ngettext()`` with named placeholders, and the filters ``when``, ``day``, ``number``."""

from __future__ import annotations

import gettext as gnu
import io
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache
from typing import Any

from babel import Locale
from babel.dates import (
    format_date,
    format_skeleton,
    format_time,
    get_datetime_format,
    get_timezone_gmt,
)
from babel.lists import format_list
from babel.numbers import format_decimal
from babel.units import format_unit
from jinja2 import BaseLoader, Environment, pass_context, select_autoescape
from markupsafe import Markup

from ..domain.calendar import LocalCalendar
from ..domain.retention import IsoDuration
from ..domain.text import N_
from .catalogues import DOMAIN, LANGUAGES, po_path
from .labels import LABELS

__all__ = ["DOMAIN", "LANGUAGES", "N_", "Localizer", "environment", "negotiate"]

# How each language writes dates and numbers (English as in Europe: day first, 24 hours).
FORMATS = {"lt": "lt_LT", "en": "en_GB"}
NAMES = {"lt": "lietuvių", "en": "English"}  # each language in its own words
NONE = "\N{EN DASH}"  # what a table shows for no value
STALE_AFTER = 1.0  # seconds between a .po and its older .mo
_QUALITY = re.compile(r"^q=([01](?:\.\d{0,3})?)$")


@cache
def translations(language: str) -> gnu.NullTranslations:
    """The compiled catalogue of ``language`` (the wheel ships it). A source checkout whose
    ``.po`` changed after the ``.mo`` was compiled (a merge, an edit) compiles it in memory;
    installed files are written within a second of each other, so they never do."""
    source = po_path(language)
    compiled = source.with_suffix(".mo")
    if compiled.exists() and source.stat().st_mtime - compiled.stat().st_mtime < STALE_AFTER:
        with compiled.open("rb") as file:
            return gnu.GNUTranslations(file)
    from .catalogues import compiled as compile_po

    return gnu.GNUTranslations(io.BytesIO(compile_po(language)))


def negotiate(accept_language: str | None) -> str | None:
    """The first of our languages the ``Accept-Language`` header asks for, by quality."""
    wanted: list[tuple[float, int, str]] = []
    for position, item in enumerate((accept_language or "").split(",")):
        tag, *params = (part.strip() for part in item.split(";"))
        quality = 1.0
        for param in params:
            match = _QUALITY.match(param)
            if match:
                quality = float(match.group(1))
        primary = tag.split("-")[0].lower()
        if quality > 0 and primary in LANGUAGES:
            wanted.append((-quality, position, primary))
    return min(wanted)[2] if wanted else None


@dataclass(frozen=True)
class Localizer:
    """One reader's language and calendar: translations and formats."""

    language: str = LANGUAGES[0]
    calendar: LocalCalendar = field(default_factory=LocalCalendar)

    def __post_init__(self) -> None:
        if self.language not in LANGUAGES:
            raise ValueError(f"no catalogue for language {self.language!r}")

    @property
    def locale(self) -> Locale:
        return Locale.parse(FORMATS[self.language])

    def gettext(self, message: str) -> str:
        return translations(self.language).gettext(message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return translations(self.language).ngettext(singular, plural, n)

    def when(self, moment: datetime | str, *, seconds: bool = False) -> str:
        """A date and time on the reader's local clock, as the locale writes them; with its
        offset from UTC when the reader's tenants live in different time zones."""
        local = self.calendar.local(_instant(moment))
        clock = format_time(local, "medium" if seconds else "short", locale=self.locale)
        if self.calendar.labelled:
            clock += " " + get_timezone_gmt(local, "long", locale=self.locale)
        glue = str(get_datetime_format("medium", locale=self.locale)).replace("'", "")
        return glue.format(clock, format_date(local, "medium", self.locale))

    def local_date(self, value: date | datetime | str) -> date:
        """A date as given; an instant's date on the reader's calendar."""
        if isinstance(value, str):
            value = _instant(value) if "T" in value else date.fromisoformat(value)
        return self.calendar.day_of(value) if isinstance(value, datetime) else value

    def day(self, value: date | datetime | str) -> str:
        """A date as the locale writes it; an instant's local date."""
        return format_date(self.local_date(value), "medium", locale=self.locale)

    def short_day(self, value: date) -> str:
        """A day of the year without the year: ``12-07`` / ``07/12`` (a chart's axis)."""
        return format_skeleton("MMdd", value, locale=self.locale)

    def period(self, duration: IsoDuration) -> str:
        """A period in words as the locale names it (CLDR's units, with their plural forms;
        in Lithuanian the nominative, for a table or a label): ``1 metai``, ``6 mėnesiai``,
        ``1 year, 6 months``. A sentence that needs another case says it in the catalogue
        (``ngettext``)."""
        years, months = divmod(duration.months, 12)
        minutes, seconds = divmod(round(duration.seconds), 60)
        hours, minutes = divmod(minutes, 60)
        parts = [
            format_unit(amount, f"duration-{unit}", length="long", locale=self.locale)
            for amount, unit in (
                (years, "year"),
                (months, "month"),
                (duration.days, "day"),
                (hours, "hour"),
                (minutes, "minute"),
                (seconds, "second"),
            )
            if amount
        ]
        if not parts:
            return format_unit(0, "duration-day", length="long", locale=self.locale)
        return format_list(parts, style="unit", locale=self.locale)

    def month(self, year: int, month: int) -> str:
        """``2026 m. gruodis`` / ``December 2026``."""
        return format_skeleton("yMMMM", date(year, month, 1), locale=self.locale)

    def number(self, value: float, digits: int | None = None) -> str:
        pattern = None if digits is None else "#,##0." + "0" * digits if digits else "#,##0"
        return format_decimal(value, format=pattern, locale=self.locale)


def _instant(moment: datetime | str) -> datetime:
    if isinstance(moment, datetime):
        return moment
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


# --- templates ---------------------------------------------------------------------------------
# Every template is rendered with the reader's Localizer as ``l10n`` in its context; the
# functions below find it there, so one Environment serves every reader at once.


@pass_context
def _gettext(context: Any, message: str) -> str:
    localizer: Localizer = context["l10n"]
    return localizer.gettext(message)


@pass_context
def _ngettext(context: Any, singular: str, plural: str, n: int) -> str:
    localizer: Localizer = context["l10n"]
    return localizer.ngettext(singular, plural, n)


@pass_context
def _when(context: Any, moment: datetime | str | None, seconds: bool = False) -> Markup | str:
    """``<time datetime="RFC 3339 with the local offset">local text</time>``."""
    if moment is None or moment == "":
        return NONE
    localizer: Localizer = context["l10n"]
    local = localizer.calendar.local(_instant(moment))
    text = localizer.when(local, seconds=seconds)
    return Markup('<time datetime="{}">{}</time>').format(local.isoformat(), text)


@pass_context
def _day(context: Any, value: date | datetime | str | None) -> Markup | str:
    """``<time datetime="the local date">the date as the locale writes it</time>``."""
    if value is None or value == "":
        return NONE
    localizer: Localizer = context["l10n"]
    local = localizer.local_date(value)
    return Markup('<time datetime="{}">{}</time>').format(local.isoformat(), localizer.day(local))


@pass_context
def _label(context: Any, code: str | None) -> str:
    if not code:  # (gettext("") would be the catalogue's header)
        return NONE
    localizer: Localizer = context["l10n"]
    return localizer.gettext(LABELS.get(code, code))


@pass_context
def _number(context: Any, value: float, digits: int | None = None) -> str:
    localizer: Localizer = context["l10n"]
    return localizer.number(value, digits)


def environment(loader: BaseLoader) -> Environment:
    """A Jinja environment whose ``_``, ``gettext``, ``ngettext`` and the filters ``when``,
    ``day``, ``number`` and ``label`` speak the language of the ``l10n`` in each render's
    context."""
    env = Environment(loader=loader, autoescape=select_autoescape(), extensions=["jinja2.ext.i18n"])
    env.install_gettext_callables(  # type: ignore[attr-defined]
        _gettext, _ngettext, newstyle=True
    )
    env.filters.update(when=_when, day=_day, number=_number, label=_label)
    env.globals.update(language_names=NAMES)
    return env
