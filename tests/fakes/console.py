"""In-memory fakes of the console's ports over a :class:`MemoryDatabase` (recordings, holds,
requests and the audit trail come from there), for unit tests and the contract suite."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

from workers.app.console.model import Access, ApiToken, Disclosure, Role, SearchCriteria, User
from workers.app.console.throttle import R, Tally
from workers.app.ports.console import DayCounts, DsrRecord, HoldView
from workers.domain.audit import verify_chain
from workers.domain.calendar import LocalCalendar
from workers.domain.model import PurgeReason, Recording, RecordingStatus

from .memory import MemoryDatabase, _append_audit


@dataclass
class _ConsoleState:
    users: dict[str, User] = field(default_factory=dict)
    tokens: dict[str, ApiToken] = field(default_factory=dict)
    tallies: dict[bytes, Tally] = field(default_factory=dict)
    identities: dict[tuple[str, str], str] = field(default_factory=dict)  # (iss, sub) -> name
    accesses: list[Access] = field(default_factory=list)
    disclosures: list[Disclosure] = field(default_factory=list)


class MemoryConsole:
    def __init__(self, db: MemoryDatabase) -> None:
        self._store = db
        self.state = _ConsoleState()
        self._lock = threading.RLock()

    # users ---------------------------------------------------------------------------------
    def add_user(self, user: User) -> bool:
        with self._lock:
            if user.username in self.state.users:
                return False
            self.state.users[user.username] = user
            return True

    def user(self, username: str) -> User | None:
        return self.state.users.get(username)

    def users(self) -> list[User]:
        return [self.state.users[k] for k in sorted(self.state.users)]

    def set_disabled(self, username: str, disabled: bool) -> bool:
        return self._change(username, disabled=disabled)

    def set_role(self, username: str, role: Role) -> bool:
        return self._change(username, role=role)

    def set_language(self, username: str, language: str | None) -> bool:
        return self._change(username, language=language)

    def user_for_identity(self, issuer: str, subject: str) -> User | None:
        username = self.state.identities.get((issuer, subject))
        return self.state.users.get(username) if username else None

    def add_federated_user(self, user: User, issuer: str, subject: str, at: datetime) -> bool:
        with self._lock:
            if (issuer, subject) in self.state.identities or not self.add_user(user):
                return False
            self.state.identities[issuer, subject] = user.username
            return True

    def bind_identity(self, username: str, issuer: str, subject: str, at: datetime) -> bool:
        with self._lock:
            user = self.state.users.get(username)
            if (
                user is None
                or user.password_hash is not None
                or (issuer, subject) in self.state.identities
                or username in self.state.identities.values()
            ):
                return False
            self.state.identities[issuer, subject] = username
            return True

    def _change(self, username: str, **changes: Any) -> bool:
        with self._lock:
            if username not in self.state.users:
                return False
            self.state.users[username] = replace(self.state.users[username], **changes)
            return True

    # tokens --------------------------------------------------------------------------------
    def add_token(self, token: ApiToken) -> None:
        with self._lock:
            if token.username not in self.state.users or token.token_id in self.state.tokens:
                raise ValueError("unknown user or duplicate token id")
            self.state.tokens[token.token_id] = token

    def token(self, token_id: str) -> ApiToken | None:
        return self.state.tokens.get(token_id)

    def tokens_of(self, username: str) -> list[ApiToken]:
        found = [t for t in self.state.tokens.values() if t.username == username]
        return sorted(found, key=lambda t: t.created_at)

    def revoke_token(self, token_id: str, at: datetime) -> bool:
        with self._lock:
            token = self.state.tokens.get(token_id)
            if token is None or token.revoked_at is not None:
                return False
            self.state.tokens[token_id] = replace(token, revoked_at=at)
            return True

    # sign-in throttle ----------------------------------------------------------------------
    def update(self, key: bytes, change: Callable[[Tally], tuple[R, Tally]]) -> R:
        with self._lock:
            result, tally = change(self.state.tallies.get(key, Tally()))
            self.state.tallies.pop(key, None)
            if tally != Tally():
                self.state.tallies[key] = tally
            return result

    def forget(self, key: bytes, now: datetime) -> None:
        with self._lock:
            quiet = now - timedelta(days=1)
            self.state.tallies = {
                k: t
                for k, t in self.state.tallies.items()
                if k != key and t.last_at is not None and t.last_at >= quiet
            }

    # recordings ----------------------------------------------------------------------------
    def search(self, criteria: SearchCriteria) -> list[Recording]:
        state = self._store.state
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
            found.append(replace(rec))
        found.sort(key=lambda r: r.recording_id)
        found.sort(key=lambda r: r.started_at, reverse=True)
        return found[: criteria.limit]

    def recording(self, recording_id: str) -> Recording | None:
        with self._store.unit_of_work() as uow:
            return uow.recordings.get(recording_id)

    # access log ----------------------------------------------------------------------------
    def record_access(self, access: Access, *, unless_since: datetime | None = None) -> bool:
        with self._lock, self._store.lock:
            if unless_since is not None and any(
                a.recording_id == access.recording_id
                and a.username == access.username
                and a.purpose is access.purpose
                and a.case_ref == access.case_ref
                and a.at >= unless_since
                for a in self.state.accesses
            ):
                return False
            _append_audit(
                self._store.state,
                "access",
                access.recording_id,
                {
                    "user": access.username,
                    "role": access.role.value,
                    "purpose": access.purpose.value,
                    "case_ref": access.case_ref,
                    "kind": access.kind.value,
                },
                access.at,
            )
            self.state.accesses.append(access)
            return True

    def accesses(
        self,
        *,
        recording_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 500,
    ) -> list[Access]:
        chosen = [
            a
            for a in reversed(self.state.accesses)
            if (recording_id is None or a.recording_id == recording_id)
            and (since is None or a.at >= since)
            and (until is None or a.at < until)
        ]
        chosen.sort(key=lambda a: a.at, reverse=True)
        return chosen[:limit]

    def accesses_of(self, recording_ids: list[str]) -> list[Access]:
        wanted = set(recording_ids)
        chosen = [a for a in self.state.accesses if a.recording_id in wanted]
        return sorted(chosen, key=lambda a: a.at)

    def access_counts(self, since: datetime, until: datetime) -> dict[str, int]:
        counts: dict[str, int] = {}
        for access in self.state.accesses:
            if since <= access.at < until:
                counts[access.purpose.value] = counts.get(access.purpose.value, 0) + 1
        return counts

    # requests registered by the DPO -----------------------------------------------------------
    def request_registered(self, request_id: str, details: dict[str, Any], at: datetime) -> bool:
        with self._lock, self._store.lock:
            state = self._store.state
            if any(
                e.action == "request_registered" and e.entity_id == request_id for e in state.audit
            ):
                return False
            _append_audit(state, "request_registered", request_id, details, at)
            return True

    # disclosures ---------------------------------------------------------------------------
    def register(self, disclosure: Disclosure) -> None:
        stored = replace(disclosure, recording_ids=tuple(sorted(disclosure.recording_ids)))
        with self._lock, self._store.lock:
            _append_audit(
                self._store.state,
                "disclosure",
                disclosure.disclosure_id,
                {
                    "recipient_kind": disclosure.recipient_kind.value,
                    "by": disclosure.disclosed_by,
                    "recording_ids": list(disclosure.recording_ids),
                },
                disclosure.disclosed_at,
            )
            self.state.disclosures.append(stored)

    def disclosures(
        self, *, since: datetime | None = None, until: datetime | None = None, limit: int = 500
    ) -> list[Disclosure]:
        chosen = [
            d
            for d in self.state.disclosures
            if (since is None or d.disclosed_at >= since)
            and (until is None or d.disclosed_at < until)
        ]
        return sorted(chosen, key=lambda d: d.disclosed_at, reverse=True)[:limit]

    def disclosures_of(self, recording_ids: list[str]) -> list[Disclosure]:
        wanted = set(recording_ids)
        chosen = [d for d in self.state.disclosures if wanted & set(d.recording_ids)]
        return sorted(chosen, key=lambda d: d.disclosed_at)

    # compliance facts ----------------------------------------------------------------------
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
            return uow.recordings.overdue_summary(now)

    def recording_counts(self) -> dict[str, int]:
        with self._store.unit_of_work() as uow:
            return uow.recordings.count_by_status()

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
            return [
                HoldView(h, [(r.recording_id, r.call_id or "") for r in uow.recordings.in_scope(h)])
                for h in uow.holds.active()
            ]

    def audit_chain(self) -> tuple[int, int | None]:
        return verify_chain(list(self._store.state.audit))
