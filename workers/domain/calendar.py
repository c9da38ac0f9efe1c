"""Local time for people: days and months as the people of a tenant live them. Instants stay
aware UTC datetimes everywhere else (events, rows, the API); a person's "7 December" or
"March" becomes a half-open UTC interval here, and back.

A local day is not always 24 hours: in Europe/Vilnius the last Sunday of March has 23 and the
last Sunday of October 25. Intervals are therefore computed from local midnights, never by
adding 24 hours to one."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .retention import IsoDuration

DEFAULT_TIMEZONE = "Europe/Vilnius"


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; ValueError when there is none of that name."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone (e.g. Europe/Vilnius)") from None


@dataclass(frozen=True)
class LocalCalendar:
    """Days and months in one time zone. ``labelled``: its reader also works for tenants in
    other time zones, so every time they read carries its offset from UTC."""

    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo(DEFAULT_TIMEZONE))
    labelled: bool = False

    @classmethod
    def named(cls, name: str) -> LocalCalendar:
        return cls(zone(name))

    @property
    def name(self) -> str:
        return self.zone.key

    def local(self, moment: datetime) -> datetime:
        """The same instant on the local clock (with its offset)."""
        return moment.astimezone(self.zone)

    def day_of(self, moment: datetime) -> date:
        """The local date of an instant."""
        return self.local(moment).date()

    def midnight(self, day: date) -> datetime:
        """The instant (UTC) at which ``day`` begins locally."""
        return datetime.combine(day, time(), tzinfo=self.zone).astimezone(UTC)

    def day(self, day: date) -> tuple[datetime, datetime]:
        """``day`` as a half-open UTC interval [start, end)."""
        return self.midnight(day), self.midnight(day + timedelta(days=1))

    def days(self, first: date, count: int) -> tuple[datetime, datetime]:
        """``count`` local days from ``first`` as one half-open UTC interval."""
        return self.midnight(first), self.midnight(first + timedelta(days=count))

    def after(self, duration: IsoDuration, moment: datetime) -> datetime:
        """``duration`` after ``moment``, counted on the local calendar and clock: a month
        from 00:30 on 1 March here is 00:30 on 1 April here - counted on the UTC calendar it
        would be the 29th (28 February 22:30 plus a month)."""
        wall = self.local(moment).replace(tzinfo=UTC)  # the local clock, as plain arithmetic
        return duration.after(wall).replace(tzinfo=self.zone).astimezone(UTC)

    def month(self, year: int, month: int) -> tuple[datetime, datetime]:
        """A calendar month as a half-open UTC interval."""
        following = date(year + month // 12, month % 12 + 1, 1)
        return self.midnight(date(year, month, 1)), self.midnight(following)


@dataclass(frozen=True)
class Localities:
    """The language and time zone of each tenant's people: a default, and overrides for the
    tenants that differ (``CALLVAULT_LANGUAGE_TENANTS``, ``CALLVAULT_TIMEZONE_TENANTS``)."""

    language: str = "lt"
    calendar: LocalCalendar = field(default_factory=LocalCalendar)
    languages: tuple[tuple[str, str], ...] = ()
    calendars: tuple[tuple[str, LocalCalendar], ...] = ()

    def language_of(self, tenant: str | None) -> str:
        return dict(self.languages).get(tenant or "", self.language)

    def calendar_of(self, tenant: str | None) -> LocalCalendar:
        return dict(self.calendars).get(tenant or "", self.calendar)

    def language_for(self, tenants: Collection[str]) -> str:
        """The language of someone who works for these tenants (when neither they nor their
        browser chose one): their tenants' when they all share one, else the default."""
        found = self._for(tenants, self.language_of, {lang for _, lang in self.languages})
        return found.pop() if len(found) == 1 else self.language

    def calendar_for(self, tenants: Collection[str]) -> LocalCalendar:
        """The calendar of someone who works for these tenants: their time zone when they
        all share one (``*``, every tenant, shares one when no tenant's differs); else the
        default zone, ``labelled`` - each time shown with its offset, so that nobody takes
        a Vilnius 09:00 for a London one."""
        found = self._for(
            tenants, lambda t: self.calendar_of(t).name, {c.name for _, c in self.calendars}
        )
        if len(found) == 1:
            return LocalCalendar.named(found.pop())
        return replace(self.calendar, labelled=len(found) > 1)

    def _for(
        self, tenants: Collection[str], of: Callable[[str | None], str], overrides: set[str]
    ) -> set[str]:
        """The settings these tenants have (``*``: the overrides and the default)."""
        found = {of(t) for t in set(tenants) - {"*"}}
        return found | overrides | {of(None)} if "*" in tenants else found
