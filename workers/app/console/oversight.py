"""The DPO's desk: legal holds, requests and their deadlines, the access log, a compliance
overview and the monthly report for the regulator. Counts and ids only - never a customer."""

from __future__ import annotations

import statistics
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from ...domain.calendar import LocalCalendar, Localities
from ...domain.identifiers import Subject
from ...domain.keyed import Mac
from ...domain.messages import PlaceHold, ReleaseHold
from ...domain.text import N_
from ..context import Context
from ..handlers.holds import hold_from_data
from ..messagebus import MessageBus
from ..ports.console import ComplianceFacts, DsrRecord, HoldView, Registers
from .disclosures import require_dpo, tenants_of
from .errors import Conflict, Invalid, NotAllowed, NotFound
from .model import Access, Disclosure, Principal, valid_reference

OVERVIEW_DAYS = 30
STORED = N_("stored")
PURGED = {
    "retention": N_("purged (retention)"),
    "erasure": N_("purged (erasure)"),
    "objection": N_("purged (objection)"),
}
WORST_LAG = N_("max lag (s)")


@dataclass(frozen=True)
class HoldOrder:
    """A hold as the DPO places it: exactly one kind of scope."""

    reason: str
    case_ref: str | None = None
    hold_id: str | None = None
    recording_ids: tuple[str, ...] = ()
    call_ids: tuple[str, ...] = ()
    subject: Subject = field(default_factory=Subject)

    def scope(self) -> dict[str, Any]:
        identifiers = {k: v for k, v in self.subject.as_dict().items() if v}
        scopes = [
            s
            for s in (
                {"recording_ids": list(self.recording_ids)} if self.recording_ids else None,
                {"call_ids": list(self.call_ids)} if self.call_ids else None,
                {"subject": identifiers} if identifiers else None,
            )
            if s
        ]
        if len(scopes) != 1:
            raise Invalid("a hold covers recording ids, call ids or a person - exactly one kind")
        return scopes[0]


@dataclass(frozen=True)
class Series:
    """One chart: a value per local day in one or more rows, named by texts for people."""

    days: list[date]
    rows: dict[str, list[float]]


@dataclass(frozen=True)
class Overview:
    generated_at: datetime
    recordings: dict[str, int]
    overdue: int
    oldest_overdue_seconds: float
    per_day: Series
    purge_lag: dict[str, float]
    lag_per_day: Series
    requests_open: int
    requests_on_time: int
    requests_late: int
    requests_open_overdue: int
    disclosures_by_kind: dict[str, int]
    accesses_by_purpose: dict[str, int]


@dataclass(frozen=True)
class MonthlyReport:
    month: str
    timezone: str  # the local days and month of the report
    period_start: datetime
    period_end: datetime
    generated_at: datetime
    deletions: dict[str, int]
    purge_lag: dict[str, float]
    overdue_at_end: int
    requests: dict[str, dict[str, int]]  # type -> status -> count
    requests_on_time: int
    requests_late: int
    disclosures: list[Disclosure]
    accesses_by_purpose: dict[str, int]
    holds_active: int
    audit_entries: int
    audit_broken_at: int | None
    recordings: dict[str, int]


class Oversight:
    def __init__(
        self,
        bus: MessageBus,
        ctx: Context,
        facts: ComplianceFacts,
        registers: Registers,
        *,
        hash_key: Mac,
        localities: Localities | None = None,
    ) -> None:
        self._bus, self._ctx, self._facts = bus, ctx, facts
        self._log = self._register = registers
        self._hash_key, self._clock = hash_key, ctx.clock
        self._localities = localities or Localities()

    def _calendar(self, principal: Principal) -> LocalCalendar:
        """Days and months as the DPO lives them: their tenants' time zone."""
        return self._localities.calendar_for(principal.tenants)

    # holds ---------------------------------------------------------------------------------
    def holds(self, principal: Principal) -> list[HoldView]:
        """Holds in force; for a DPO of some tenants, those that cover only their recordings."""
        require_dpo(principal)
        return [
            v
            for v in self._facts.holds()
            if principal.every_tenant or (v.recordings and all(map(principal.sees, v.tenants)))
        ]

    def place_hold(self, principal: Principal, order: HoldOrder) -> str:
        """Placed at once (the holds worker's own command, handled here), audited with the
        DPO's name; the store's legal hold follows as the worker's follow-up."""
        require_dpo(principal)
        if not order.reason.strip() or len(order.reason) > 500:
            raise Invalid("a hold needs a reason (at most 500 characters)")
        for text in (order.hold_id, order.case_ref):
            if text and not valid_reference(text):
                raise Invalid("hold ids and case references are codes: letters, digits, ._:/#-")
        scope = order.scope()
        if not principal.every_tenant:
            self._within_tenants(principal, scope)
        hold_id = order.hold_id or f"console-{uuid.uuid4()}"
        data = {"hold_id": hold_id, "reason": order.reason.strip(), "case_ref": order.case_ref}
        hold = hold_from_data(
            data | {"scope": scope}, self._hash_key, self._ctx.settings.default_region
        )
        if self._bus.handle(PlaceHold(hold, principal.username)) == "duplicate":
            raise Conflict(
                "a hold %(hold)s was placed (or released) before: choose another id", hold=hold_id
            )
        return hold_id

    def _within_tenants(self, principal: Principal, scope: dict[str, Any]) -> None:
        """A DPO of some tenants holds recordings of theirs by id; a call or a person may
        have recordings in any tenant, so only a DPO of every tenant holds those."""
        ids = [str(i) for i in scope.get("recording_ids", ())]
        if not ids:
            raise NotAllowed("a hold on calls or on a person covers every tenant: ask a DPO of all")
        found = self._ctx.read(lambda uow: uow.recordings.get_many(ids))
        if len(found) != len(set(ids)) or not all(principal.sees(r.tenant) for r in found):
            raise NotFound("unknown recordings")

    def release_hold(self, principal: Principal, hold_id: str) -> None:
        require_dpo(principal)
        if not valid_reference(hold_id):
            raise Invalid("not a hold id")
        # checked first: the holds worker remembers a release of an unknown id for good
        if hold_id not in {v.hold.hold_id for v in self.holds(principal)}:
            raise NotFound("no such hold in force")
        self._bus.handle(ReleaseHold(hold_id, principal.username))

    # requests and the access log -----------------------------------------------------------
    def requests(self, principal: Principal, *, open_only: bool) -> list[DsrRecord]:
        """Requests; a DPO of some tenants sees those limited to one of them."""
        require_dpo(principal)
        found = self._facts.requests(open_only=open_only)
        return [r for r in found if principal.every_tenant or principal.sees(r.tenant)]

    def access_log(
        self, principal: Principal, recording_id: str | None, limit: int = 500
    ) -> list[Access]:
        require_dpo(principal)
        return self._log.accesses(
            recording_id=recording_id, limit=limit, tenants=tenants_of(principal)
        )

    # the overview --------------------------------------------------------------------------
    def overview(self, principal: Principal, days: int = OVERVIEW_DAYS) -> Overview:
        require_whole_installation(principal)
        now, calendar = self._clock(), self._calendar(principal)
        first_day = calendar.day_of(now) - timedelta(days=days - 1)
        since, until = calendar.days(first_day, days)  # local midnights; until: end of today
        counts = self._facts.day_counts(since, until, calendar)
        day_list = [first_day + timedelta(days=i) for i in range(days)]
        per_day = Series(
            day_list,
            {
                STORED: [float(counts.stored.get(d, 0)) for d in day_list],
                **{
                    label: [float(counts.purged.get(d, {}).get(reason, 0)) for d in day_list]
                    for reason, label in PURGED.items()
                },
            },
        )
        lags = self._facts.retention_lags(since, until)
        worst: dict[date, float] = {}
        for purged_at, lag in lags:
            day = calendar.day_of(purged_at)
            worst[day] = max(lag, worst.get(day, 0.0))
        overdue, oldest = self._facts.overdue(now)
        requests = self._facts.requests(since=since, until=until)
        on_time, late = _deadlines(requests)
        open_requests = self._facts.requests(open_only=True)
        return Overview(
            generated_at=now,
            recordings=self._facts.recording_counts(),
            overdue=overdue,
            oldest_overdue_seconds=(now - oldest).total_seconds() if oldest else 0.0,
            per_day=per_day,
            purge_lag=_lag_summary([lag for _, lag in lags]),
            lag_per_day=Series(day_list, {WORST_LAG: [worst.get(d, 0.0) for d in day_list]}),
            requests_open=len(open_requests),
            requests_on_time=on_time,
            requests_late=late,
            requests_open_overdue=sum(1 for r in open_requests if r.due_at and r.due_at < now),
            disclosures_by_kind=dict(
                Counter(d.recipient_kind.value for d in self._register.disclosures(since=since))
            ),
            accesses_by_purpose=self._log.access_counts(since, until),
        )

    # the monthly report --------------------------------------------------------------------
    def monthly_report(self, principal: Principal, month: str | None) -> MonthlyReport:
        require_whole_installation(principal)
        now, calendar = self._clock(), self._calendar(principal)
        local_now = calendar.local(now)
        year, number = _month(month) if month else (local_now.year, local_now.month)
        start, end = calendar.month(year, number)
        counts = self._facts.day_counts(start, end, calendar)
        deletions: Counter[str] = Counter()
        for per_reason in counts.purged.values():
            deletions.update(per_reason)
        requests = self._facts.requests(since=start, until=end)
        by_type: dict[str, dict[str, int]] = {}
        for record in requests:
            by_type.setdefault(record.dsr_type, {}).setdefault(record.status, 0)
            by_type[record.dsr_type][record.status] += 1
        on_time, late = _deadlines(requests)
        checked, broken = self._facts.audit_chain()
        return MonthlyReport(
            month=f"{year:04d}-{number:02d}",
            timezone=calendar.name,
            period_start=start,
            period_end=end,
            generated_at=now,
            deletions=dict(deletions),
            purge_lag=_lag_summary([lag for _, lag in self._facts.retention_lags(start, end)]),
            overdue_at_end=self._facts.overdue(min(end, now))[0],
            requests=by_type,
            requests_on_time=on_time,
            requests_late=late,
            disclosures=list(reversed(self._register.disclosures(since=start, until=end))),
            accesses_by_purpose=self._log.access_counts(start, end),
            holds_active=len(self._facts.holds()),
            audit_entries=checked,
            audit_broken_at=broken,
            recordings=self._facts.recording_counts(),
        )


def require_whole_installation(principal: Principal) -> None:
    """The overview and the monthly report count every tenant's recordings."""
    require_dpo(principal)
    if not principal.every_tenant:
        raise NotAllowed("the overview and the report cover every tenant: ask a DPO of all")


def _month(text: str) -> tuple[int, int]:
    try:
        year, month = (int(part) for part in text.split("-"))
        date(year, month, 1)
    except ValueError:
        raise Invalid("month is YYYY-MM") from None
    return year, month


def _deadlines(requests: list[DsrRecord]) -> tuple[int, int]:
    """Answered requests (not counting rejections of malformed input) on time and late."""
    on_time = late = 0
    for record in requests:
        if record.completed_at is None or record.due_at is None:
            continue
        if record.completed_at <= record.due_at:
            on_time += 1
        else:
            late += 1
    return on_time, late


def _lag_summary(lags: list[float]) -> dict[str, float]:
    if not lags:
        return {"count": 0, "p50": 0.0, "p95": 0.0, "max": 0.0}
    ordered = sorted(lags)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "count": len(ordered),
        "p50": statistics.median(ordered),
        "p95": p95,
        "max": ordered[-1],
    }
