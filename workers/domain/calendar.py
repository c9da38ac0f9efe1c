"""Local time for people: days and months as the people of a tenant live them. Instants stay
aware UTC datetimes everywhere else (events, rows, the API); a person's "7 December" or
"March" becomes a half-open UTC interval here, and back.

A local day is not always 24 hours: in Europe/Vilnius the last Sunday of March has 23 and the
last Sunday of October 25. Intervals are therefore computed from local midnights, never by
adding 24 hours to one."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_TIMEZONE = "Europe/Vilnius"


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; ValueError when there is none of that name."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone (e.g. Europe/Vilnius)") from None


@dataclass(frozen=True)
class LocalCalendar:
    """Days and months in one time zone."""

    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo(DEFAULT_TIMEZONE))

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

    def calendar_for(self, tenants: tuple[str, ...]) -> LocalCalendar:
        """The calendar of someone who works for these tenants: theirs when they agree
        (``*``, every tenant, agrees when no tenant differs), else the default."""
        named = set(tenants) - {"*"}
        found = {self.calendar_of(t).name for t in named}
        if "*" in tenants:
            found |= {c.name for _, c in self.calendars} | {self.calendar.name}
        if len(found) == 1:
            return LocalCalendar.named(found.pop())
        return self.calendar
