"""Retention policies and deadlines: ISO 8601 durations added with calendar arithmetic in UTC."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_DURATION = re.compile(
    r"^P(?!$)(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?!$)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


@dataclass(frozen=True)
class IsoDuration:
    """An ISO 8601 duration such as ``P1Y`` or ``PT30S``; years and months are calendar units."""

    text: str
    months: int = 0
    days: int = 0
    seconds: float = 0.0

    @classmethod
    def parse(cls, text: str) -> IsoDuration:
        match = _DURATION.match(text.strip().upper())
        if match is None:
            raise ValueError(f"not an ISO 8601 duration: {text!r} (expected e.g. P1Y, P30D, PT30S)")
        part = {k: v or "0" for k, v in match.groupdict().items()}
        return cls(
            text=text.strip().upper(),
            months=int(part["years"]) * 12 + int(part["months"]),
            days=int(part["weeks"]) * 7 + int(part["days"]),
            seconds=int(part["hours"]) * 3600 + int(part["minutes"]) * 60 + float(part["seconds"]),
        )

    def after(self, moment: datetime) -> datetime:
        """The instant this duration after ``moment``, counted on the UTC calendar.

        Months first (a day past the end of the target month is clamped to its last day, so
        29 February + P1Y is 28 February), then days, then the clock part - the order
        PostgreSQL's interval arithmetic uses too, so SQL re-computations agree.
        """
        utc = as_utc(moment)
        month_index = utc.month - 1 + self.months
        year, month = utc.year + month_index // 12, month_index % 12 + 1
        day = min(utc.day, calendar.monthrange(year, month)[1])
        shifted = utc.replace(year=year, month=month, day=day)
        return shifted + timedelta(days=self.days, seconds=self.seconds)

    def before(self, moment: datetime) -> datetime:
        """The instant this duration before ``moment`` (the clock part, then days, then
        months, clamped like :meth:`after`)."""
        utc = as_utc(moment) - timedelta(days=self.days, seconds=self.seconds)
        month_index = utc.month - 1 - self.months
        year, month = utc.year + month_index // 12, month_index % 12 + 1
        day = min(utc.day, calendar.monthrange(year, month)[1])
        return utc.replace(year=year, month=month, day=day)

    def as_timedelta(self) -> timedelta:
        """A fixed length; only for durations without calendar months (timeouts, intervals)."""
        if self.months:
            raise ValueError(f"{self.text} has calendar months; it has no fixed length")
        return timedelta(days=self.days, seconds=self.seconds)

    def __str__(self) -> str:
        return self.text


def as_utc(moment: datetime) -> datetime:
    """The same instant in UTC; a naive datetime is refused rather than guessed."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("timestamps must carry a UTC offset")
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class RetentionPolicy:
    """How long a tenant's recordings are kept after collection."""

    default: IsoDuration
    per_tenant: tuple[tuple[str, IsoDuration], ...] = ()

    def for_tenant(self, tenant: str) -> IsoDuration:
        return dict(self.per_tenant).get(tenant, self.default)

    def due_at(self, tenant: str, collected_at: datetime) -> datetime:
        return self.for_tenant(tenant).after(collected_at)


def lag_seconds(due_at: datetime, purged_at: datetime) -> float:
    """How late a purge was against the law's deadline (negative never happens by design)."""
    return (as_utc(purged_at) - as_utc(due_at)).total_seconds()


def parse_timestamp(text: str) -> datetime:
    """An RFC 3339 timestamp with an explicit offset."""
    normalized = text.strip()
    if normalized.endswith(("Z", "z")):
        normalized = normalized[:-1] + "+00:00"
    moment = datetime.fromisoformat(normalized)
    if moment.tzinfo is None:
        raise ValueError(f"timestamp without UTC offset: {text!r}")
    return moment


def rfc3339(moment: datetime) -> str:
    """UTC, ``Z`` suffix, microseconds kept only when present."""
    return as_utc(moment).isoformat().replace("+00:00", "Z")
