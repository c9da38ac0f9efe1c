"""In-memory fakes of the console's ports over a :class:`MemoryDatabase`: the repositories
its unit of work holds (accounts, consultations, disclosures - their state is the database's,
so a rollback undoes them), and the read models and sign-in tallies. One contract suite
(tests/integration/test_console_ports.py) runs them against PostgreSQL's."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

from workers.app.console.model import (
    Access,
    AccessKind,
    ApiToken,
    Disclosure,
    Purpose,
    Role,
    SearchCriteria,
    User,
)
from workers.app.console.service import ConsoleReads
from workers.app.console.throttle import R, Tally
from workers.app.effects import ACCESS
from workers.app.ports.console import DayCounts, DsrRecord, HoldView, hold_view
from workers.domain.audit import AuditEntry, verify_chain
from workers.domain.calendar import LocalCalendar
from workers.domain.model import PurgeReason, Recording, RecordingStatus


@dataclass
class ConsoleState:
    """The console's tables, kept in the fake database's state."""

    users: dict[str, User] = field(default_factory=dict)
    tokens: dict[str, ApiToken] = field(default_factory=dict)
    identities: dict[tuple[str, str], str] = field(default_factory=dict)  # (iss, sub) -> name
    accesses: list[Access] = field(default_factory=list)
    disclosures: list[Disclosure] = field(default_factory=list)


class MemoryAccounts:
    def __init__(self, state: ConsoleState) -> None:
        self._s = state

    def get(self, username: str, *, lock: bool = False) -> User | None:
        return self._s.users.get(username)

    def all(self) -> list[User]:
        return [self._s.users[k] for k in sorted(self._s.users)]

    def add(self, user: User) -> bool:
        if user.username in self._s.users:
            return False
        self._s.users[user.username] = user
        return True

    def update(self, user: User) -> None:
        self._s.users[user.username] = user

    def for_identity(self, issuer: str, subject: str) -> User | None:
        username = self._s.identities.get((issuer, subject))
        return self._s.users.get(username) if username else None

    def bind(self, username: str, issuer: str, subject: str, at: datetime) -> bool:
        user = self._s.users.get(username)
        if (
            user is None
            or user.password_hash is not None
            or (issuer, subject) in self._s.identities
            or username in self._s.identities.values()
        ):
            return False
        self._s.identities[issuer, subject] = username
        return True

    def token(self, token_id: str) -> ApiToken | None:
        return self._s.tokens.get(token_id)

    def tokens_of(self, username: str) -> list[ApiToken]:
        found = [t for t in self._s.tokens.values() if t.username == username]
        return sorted(found, key=lambda t: (t.created_at, t.token_id))

    def add_token(self, token: ApiToken) -> None:
        if token.username not in self._s.users or token.token_id in self._s.tokens:
            raise ValueError("unknown user or duplicate token id")
        self._s.tokens[token.token_id] = token

    def revoke_token(self, token_id: str, at: datetime) -> bool:
        token = self._s.tokens.get(token_id)
        if token is None or token.revoked_at is not None:
            return False
        self._s.tokens[token_id] = replace(token, revoked_at=at)
        return True


class MemoryAccesses:
    def __init__(self, state: ConsoleState) -> None:
        self._s = state

    def seen_since(self, access: Access, since: datetime) -> bool:
        return any(
            a.recording_id == access.recording_id
            and a.username == access.username
            and a.purpose is access.purpose
            and a.kind is access.kind
            and a.case_ref == access.case_ref
            and a.at >= since
            for a in self._s.accesses
        )


class MemoryDisclosures:
    def __init__(self, state: ConsoleState) -> None:
        self._s = state

    def add(self, disclosure: Disclosure) -> None:
        ids = tuple(sorted(disclosure.recording_ids))
        self._s.disclosures.append(replace(disclosure, recording_ids=ids))


class MemoryRegistrations:
    def __init__(self, audit: list[AuditEntry]) -> None:
        self._audit = audit

    def registered(self, request_id: str) -> bool:
        return any(
            e.action == "request_registered" and e.entity_id == request_id for e in self._audit
        )


def project_accesses(state: ConsoleState, entries: list[AuditEntry]) -> None:
    """The access log's rows for the ``access`` entries just chained, as PostgreSQL's."""
    for e in entries:
        if e.action == ACCESS:
            d = e.details
            state.accesses.append(
                Access(
                    e.at,
                    d["user"],
                    Role(d["role"]),
                    Purpose(d["purpose"]),
                    d["case_ref"],
                    e.entity_id,
                    AccessKind(d["kind"]),
                )
            )


class _Reads:
    def __init__(self, db: Any) -> None:
        self._store = db

    @property
    def _state(self) -> ConsoleState:
        state: ConsoleState = self._store.state.console
        return state

    def _tenant(self, recording_id: str) -> str | None:
        found = self._store.state.recordings.get(recording_id)
        return found.tenant if found else None


class MemoryLoginTallies:
    def __init__(self) -> None:
        self._tallies: dict[bytes, Tally] = {}
        self._lock = threading.Lock()

    def update(self, key: bytes, change: Callable[[Tally], tuple[R, Tally]]) -> R:
        with self._lock:
            result, tally = change(self._tallies.get(key, Tally()))
            self._tallies.pop(key, None)
            if tally != Tally():
                self._tallies[key] = tally
            return result

    def forget(self, key: bytes, now: datetime) -> None:
        with self._lock:
            quiet = now - timedelta(days=1)
            self._tallies = {
                k: t
                for k, t in self._tallies.items()
                if k != key and t.last_at is not None and t.last_at >= quiet
            }


class MemoryRecordingSearch(_Reads):
    def search(self, criteria: SearchCriteria) -> list[Recording]:
        state = self._store.state
        tenants = criteria.tenants
        found = []
        for rec in state.recordings.values():
            if rec.status is not RecordingStatus.STORED:
                continue
            digests = state.subject_keys.get(rec.recording_id, frozenset())
            if criteria.by_identity and not (
                digests & criteria.digests or rec.call_id in criteria.call_ids
            ):
                continue
            if criteria.start is not None and rec.collected_at < criteria.start:
                continue
            if criteria.end is not None and rec.started_at > criteria.end:
                continue
            if criteria.agent_id is not None and rec.agent_id != criteria.agent_id:
                continue
            if tenants is not None and rec.tenant not in tenants:
                continue
            found.append(replace(rec))
        found.sort(key=lambda r: r.recording_id)
        found.sort(key=lambda r: r.started_at, reverse=True)
        return found[: criteria.limit]


class MemoryRegisters(_Reads):
    def accesses(
        self,
        *,
        recording_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 500,
        tenants: frozenset[str] | None = None,
    ) -> list[Access]:
        chosen = [
            a
            for a in reversed(self._state.accesses)
            if (recording_id is None or a.recording_id == recording_id)
            and (tenants is None or self._tenant(a.recording_id) in tenants)
            and (since is None or a.at >= since)
            and (until is None or a.at < until)
        ]
        chosen.sort(key=lambda a: a.at, reverse=True)
        return chosen[:limit]

    def accesses_of(self, recording_ids: list[str]) -> list[Access]:
        wanted = set(recording_ids)
        chosen = [a for a in self._state.accesses if a.recording_id in wanted]
        return sorted(chosen, key=lambda a: a.at)

    def access_counts(self, since: datetime, until: datetime) -> dict[str, int]:
        counts: dict[str, int] = {}
        for access in self._state.accesses:
            if since <= access.at < until:
                counts[access.purpose.value] = counts.get(access.purpose.value, 0) + 1
        return counts

    def disclosures(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 500,
        tenants: frozenset[str] | None = None,
    ) -> list[Disclosure]:
        chosen = [
            d
            for d in self._state.disclosures
            if (since is None or d.disclosed_at >= since)
            and (until is None or d.disclosed_at < until)
            and (tenants is None or {self._tenant(r) for r in d.recording_ids} <= tenants)
        ]
        return sorted(chosen, key=lambda d: d.disclosed_at, reverse=True)[:limit]

    def disclosures_of(self, recording_ids: list[str]) -> list[Disclosure]:
        wanted = set(recording_ids)
        chosen = [d for d in self._state.disclosures if wanted & set(d.recording_ids)]
        return sorted(chosen, key=lambda d: d.disclosed_at)


class MemoryComplianceFacts(_Reads):
    def day_counts(self, since: datetime, until: datetime, calendar: LocalCalendar) -> DayCounts:
        stored: dict[date, int] = {}
        purged: dict[date, dict[str, int]] = {}
        for rec in self._store.state.recordings.values():
            if rec.stored_at is not None and since <= rec.stored_at < until:
                day = calendar.day_of(rec.stored_at)
                stored[day] = stored.get(day, 0) + 1
            if rec.purged_at is not None and since <= rec.purged_at < until:
                reason = (rec.purge_reason or PurgeReason.RETENTION).value
                per_reason = purged.setdefault(calendar.day_of(rec.purged_at), {})
                per_reason[reason] = per_reason.get(reason, 0) + 1
        return DayCounts(stored, purged)

    def retention_lags(self, since: datetime, until: datetime) -> list[tuple[datetime, float]]:
        lags = [
            (r.purged_at, max(0.0, (r.purged_at - r.retention_due_at).total_seconds()))
            for r in self._store.state.recordings.values()
            if r.purge_reason is PurgeReason.RETENTION
            and r.purged_at is not None
            and since <= r.purged_at < until
        ]
        return sorted(lags)

    def overdue(self, now: datetime) -> tuple[int, datetime | None]:
        with self._store.unit_of_work() as uow:
            return uow.counts.overdue_summary(now)

    def recording_counts(self) -> dict[str, int]:
        with self._store.unit_of_work() as uow:
            return uow.counts.count_by_status()

    def requests(
        self,
        *,
        open_only: bool = False,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[DsrRecord]:
        chosen = [
            DsrRecord.of(r)
            for r in self._store.state.requests.values()
            if (not open_only or r.status == "processing" or r.pending)
            and (since is None or (r.received_at is not None and r.received_at >= since))
            and (until is None or (r.received_at is not None and r.received_at < until))
        ]
        chosen.sort(key=lambda r: r.request_id)
        chosen.sort(key=lambda r: (r.due_at is None, r.due_at or datetime.min))
        return chosen

    def holds(self) -> list[HoldView]:
        with self._store.unit_of_work() as uow:
            return [hold_view(h, uow.recordings.in_scope(h)) for h in uow.holds.active()]

    def audit_chain(self) -> tuple[int, int | None]:
        return verify_chain(list(self._store.state.audit))


def memory_console_reads(db: Any) -> ConsoleReads:
    return ConsoleReads(
        MemoryRecordingSearch(db),
        MemoryRegisters(db),
        MemoryComplianceFacts(db),
        MemoryLoginTallies(),
    )
