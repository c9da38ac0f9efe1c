"""In-memory fakes of the ports, for unit tests and for the contract suites that keep them
honest against the real adapters. Units of work are serialised and roll back on error; the
locking behaviour itself is proven on the real PostgreSQL by the contract suite."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self

from tests.fakes.console import (
    ConsoleState,
    MemoryAccesses,
    MemoryAccounts,
    MemoryDisclosures,
    MemoryRegistrations,
    project_accesses,
)
from workers.adapters.kafka import codec
from workers.app import followups
from workers.app.effects import effects_of
from workers.app.ports.keys import KeyCheck
from workers.app.ports.objects import ObjectMissing, ObjectVersion, VersionRef
from workers.app.ports.unit_of_work import (
    Discard,
    ErasedSubject,
    ExportRecord,
    FollowUp,
    Outbound,
    ParkedFollowUp,
    StoredKeyCheck,
)
from workers.app.ports.wakeups import CHANNELS, Channel
from workers.domain.audit import GENESIS, AuditEntry, canonical, chain_hash
from workers.domain.errors import StoreRejected, TransientError
from workers.domain.events import STRUCTURED_HEADER
from workers.domain.messages import Event
from workers.domain.model import (
    Hold,
    HoldScopeKind,
    Recording,
    RecordingStatus,
    RequestRecord,
    canonical_recording_id,
)
from workers.domain.retention import IsoDuration


@dataclass
class _Version:
    version_id: str
    data: bytes | None  # None: a delete marker
    legal_hold: bool = False
    modified: datetime | None = None


class MemoryObjectStore:
    """Versioned buckets in a dict: every put adds a version, deletes remove versions, and a
    version under legal hold cannot be deleted. A write that fails aborts its upload; one cut
    short by a crash (an exception that is not an ``Exception``) leaves it open, as a killed
    process leaves a multipart upload."""

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self._clock = clock
        self.buckets: dict[str, dict[str, list[_Version]]] = {}
        self.versioned: set[str] = set()
        self.locked: set[str] = set()  # buckets with object lock
        self.uploads: dict[int, tuple[str, datetime]] = {}  # open ones: bucket, begun at
        self._counter = 0
        self._lock = threading.Lock()

    def ensure_bucket(self, bucket: str, *, versioned: bool, object_lock: bool) -> None:
        self.buckets.setdefault(bucket, {})
        if versioned or object_lock:  # object lock needs versions
            self.versioned.add(bucket)
        if object_lock:
            self.locked.add(bucket)

    def has_object_lock(self, bucket: str) -> bool:
        return bucket in self.locked

    def _now(self) -> datetime | None:
        return self._clock() if self._clock is not None else None

    def is_versioned(self, bucket: str) -> bool:
        return bucket in self.versioned

    def _bucket(self, bucket: str) -> dict[str, list[_Version]]:
        if bucket not in self.buckets:
            raise ObjectMissing(bucket)
        return self.buckets[bucket]

    def put_stream(
        self,
        bucket: str,
        key: str,
        chunks: Iterable[bytes],
        *,
        content_type: str,
        retain_until: datetime | None = None,
    ) -> str | None:
        upload = id(chunks)
        self.uploads[upload] = (bucket, self._now() or datetime.now(UTC))
        try:
            data = b"".join(chunks)
        except Exception:
            del self.uploads[upload]
            raise
        del self.uploads[upload]
        with self._lock:
            if bucket not in self.buckets:  # as S3's NoSuchBucket on a write: no retry cures it
                raise StoreRejected(f"object store refused put: NoSuchBucket {bucket}")
            self._counter += 1
            version = f"v{self._counter}"
            versions = self._bucket(bucket).setdefault(key, [])
            if bucket not in self.versioned:
                versions.clear()
            versions.append(_Version(version, data, modified=self._now()))
        return version if bucket in self.versioned else None

    def _find(self, bucket: str, key: str, version_id: str | None) -> bytes:
        versions = self._bucket(bucket).get(key) or []
        if version_id is None:
            chosen = versions[-1] if versions else None
        else:
            chosen = next((v for v in versions if v.version_id == version_id), None)
        if chosen is None or chosen.data is None:
            raise ObjectMissing(f"{bucket}/{key}")
        return chosen.data

    def get_stream(
        self, bucket: str, key: str, *, version_id: str | None = None
    ) -> Iterator[bytes]:
        data = self._find(bucket, key, version_id)
        return iter([data[i : i + 65536] for i in range(0, len(data), 65536)] or [b""])

    def get_range(
        self, bucket: str, key: str, offset: int, length: int, *, version_id: str | None = None
    ) -> Iterator[bytes]:
        return iter([self._find(bucket, key, version_id)[offset : offset + length]])

    def list_versions(self, bucket: str, key: str) -> list[ObjectVersion]:
        versions = self._bucket(bucket).get(key, [])
        return [ObjectVersion(v.version_id, v.data is None) for v in reversed(versions)]

    def all_versions(self, bucket: str, prefix: str = "") -> Iterator[VersionRef]:
        for key, versions in sorted(self._bucket(bucket).items()):
            if key.startswith(prefix):
                for v in reversed(versions):
                    yield VersionRef(key, v.version_id, v.data is None, v.modified)

    def list_keys(self, bucket: str, prefix: str = "") -> Iterator[str]:
        for key, versions in sorted(self._bucket(bucket).items()):
            if key.startswith(prefix) and versions and versions[-1].data is not None:
                yield key

    def delete_versions(self, bucket: str, targets: list[VersionRef]) -> list[VersionRef]:
        locked = []
        with self._lock:
            objects = self._bucket(bucket)
            for target in targets:
                versions = objects.get(target.key, [])
                match = [v for v in versions if v.version_id == target.version_id]
                if match and match[0].legal_hold:
                    locked.append(target)
                    continue
                kept = [v for v in versions if v.version_id != target.version_id]
                if kept:
                    objects[target.key] = kept
                else:
                    objects.pop(target.key, None)
        return locked

    def delete_object(self, bucket: str, key: str) -> None:
        with self._lock:
            if bucket in self.versioned:
                self._counter += 1
                marker = _Version(f"v{self._counter}", None, modified=self._now())
                self._bucket(bucket).setdefault(key, []).append(marker)
            else:
                self._bucket(bucket).pop(key, None)

    def abort_stale_uploads(self, bucket: str, older_than: datetime) -> int:
        stale = [k for k, (b, begun) in self.uploads.items() if b == bucket and begun < older_than]
        for upload in stale:
            del self.uploads[upload]
        return len(stale)

    def _version(self, bucket: str, target: VersionRef) -> _Version:
        for version in self._bucket(bucket).get(target.key, []):
            if version.version_id == target.version_id and version.data is not None:
                return version
        raise ObjectMissing(f"{bucket}/{target.key}@{target.version_id}")

    def set_legal_hold(self, bucket: str, target: VersionRef, on: bool) -> None:
        self._version(bucket, target).legal_hold = on

    def legal_hold(self, bucket: str, target: VersionRef) -> bool:
        return self._version(bucket, target).legal_hold

    def presigned_get(self, bucket: str, key: str, expires: timedelta) -> str:
        # An http(s) URL, as the contract (and the dsr.completed schema) requires of export.url;
        # the reserved .invalid domain never resolves, so nothing outside the fake can follow it.
        return f"https://memory.invalid/{bucket}/{key}?X-Amz-Expires={int(expires.total_seconds())}"


class MemoryHoldCommands:
    """Hold commands published and not yet applied: as many as a test says."""

    def __init__(self) -> None:
        self.waiting = 0

    def pending(self) -> int:
        return self.waiting

    def close(self) -> None:
        """Nothing to release."""


class MemoryBus:
    STRUCTURED = STRUCTURED_HEADER

    def __init__(self) -> None:
        self.records: list[tuple[str, str | None, bytes]] = []
        self.headers: list[list[tuple[str, bytes]]] = []  # of each record, as Kafka has them
        self.fail_next = 0

    def publish(
        self,
        records: list[tuple[str, str | None, bytes]],
        headers: list[list[tuple[str, bytes]]] | None = None,
    ) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise TransientError("fake broker unavailable")
        self.records.extend(records)
        for i in range(len(records)):
            self.headers.append(list(headers[i]) if headers and headers[i] else [self.STRUCTURED])

    def close(self) -> None:
        """Nothing to release."""


@dataclass
class _State:
    recordings: dict[str, Recording] = field(default_factory=dict)
    subject_keys: dict[str, frozenset[bytes]] = field(default_factory=dict)
    holds: dict[str, Hold] = field(default_factory=dict)
    discards: dict[str, Discard] = field(default_factory=dict)
    outbox: list[Outbound] = field(default_factory=list)
    outbox_times: list[datetime] = field(default_factory=list)  # of each row, when written
    followups: list[dict[str, Any]] = field(default_factory=list)
    audit: list[AuditEntry] = field(default_factory=list)
    audit_marks: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: dict[str, RequestRecord] = field(default_factory=dict)
    exports: dict[str, ExportRecord] = field(default_factory=dict)
    policies: dict[str, str] = field(default_factory=dict)
    erased: list[ErasedSubject] = field(default_factory=list)
    key_checks: dict[tuple[str, str], StoredKeyCheck] = field(default_factory=dict)
    discarded_letters: set[tuple[str, int, int]] = field(default_factory=set)
    console: ConsoleState = field(default_factory=ConsoleState)
    sequence: int = 0

    def next_id(self) -> int:
        self.sequence += 1
        return self.sequence


def _copy(aggregate: Any) -> Any:
    return replace(aggregate)


class MemoryRecordings:
    def __init__(self, state: _State, events: list[Event]) -> None:
        self._s = state
        self._events = events

    def get(self, recording_id: str, *, lock: bool = False) -> Recording | None:
        found = self._s.recordings.get(recording_id)
        return _copy(found) if found else None

    def get_many(self, recording_ids: list[str]) -> list[Recording]:
        return [
            _copy(self._s.recordings[i])
            for i in sorted(set(recording_ids))
            if i in self._s.recordings
        ]

    def by_call(self, call_digest: str) -> Recording | None:
        return next(
            (_copy(r) for r in self._s.recordings.values() if r.call_digest == call_digest), None
        )

    def lock(
        self, recording_ids: list[str], collected: Collection[datetime] = ()
    ) -> list[Recording]:
        return self.get_many(recording_ids)

    def add(self, recording: Recording, digests: frozenset[bytes]) -> bool:
        _, events = recording.collect()
        known = self.by_call(recording.call_digest) or recording.call_digest in self._s.discards
        if recording.recording_id in self._s.recordings or known:
            return False
        self._s.recordings[recording.recording_id] = _copy(recording)
        self._s.subject_keys[recording.recording_id] = frozenset(digests)
        self._events.extend(events)
        return True

    def update(self, recording: Recording) -> None:
        changed, events = recording.collect()
        stored = self._s.recordings[recording.recording_id]
        for name, value in changed.items():
            setattr(stored, name, value)
        self._events.extend(events)

    def update_many(self, recordings: list[Recording]) -> None:
        for recording in recordings:
            self.update(recording)

    def forget_digests(self, recording_ids: list[str]) -> None:
        for recording_id in recording_ids:
            self._s.subject_keys[recording_id] = frozenset()

    def digests_of(self, recording_id: str) -> frozenset[bytes]:
        return self._s.subject_keys.get(recording_id, frozenset())

    def replace_digests(self, recording_id: str, digests: frozenset[bytes]) -> None:
        self._s.subject_keys[recording_id] = frozenset(digests)

    def matching(self, digests: frozenset[bytes], tenant: str | None = None) -> list[Recording]:
        found = [
            _copy(r)
            for r in self._s.recordings.values()
            if r.status in (RecordingStatus.STORED, RecordingStatus.PURGING)
            and self.digests_of(r.recording_id) & digests
            and (tenant is None or r.tenant == tenant)
        ]
        return sorted(found, key=lambda r: (r.collected_at, r.recording_id))

    def in_scope(self, hold: Hold, *, lock: bool = True) -> list[Recording]:
        alive = [r for r in self._s.recordings.values() if r.status is not RecordingStatus.PURGED]
        if hold.scope_kind is HoldScopeKind.SUBJECT:
            chosen = [r for r in alive if self.digests_of(r.recording_id) & hold.subject_digests]
        elif hold.scope_kind is HoldScopeKind.RECORDINGS:
            chosen = [r for r in alive if r.recording_id in hold.targets]
        else:
            chosen = [r for r in alive if r.call_digest in hold.targets]
        return sorted((_copy(r) for r in chosen), key=lambda r: r.recording_id)

    def claim_due(self, now: datetime, limit: int) -> list[Recording]:
        due = sorted(
            (
                r
                for r in self._s.recordings.values()
                if r.status is RecordingStatus.STORED
                and not r.held
                and r.due_announced_at is None
                and r.retention_due_at <= now
            ),
            key=lambda r: r.retention_due_at,
        )
        return [_copy(r) for r in due[:limit]]

    def reschedule(self, tenant: str | None, policy: IsoDuration, others: list[str]) -> int:
        changed = 0
        for r in self._s.recordings.values():
            in_scope = r.tenant == tenant if tenant is not None else r.tenant not in others
            if r.status is RecordingStatus.STORED and r.policy != policy.text and in_scope:
                r.policy, r.retention_due_at = policy.text, policy.after(r.collected_at)
                r.due_announced_at = None
                changed += 1
        return changed


def _wrapped_elsewhere(state: _State, master_key_id: str) -> list[str]:
    return sorted(
        k
        for k, r in state.recordings.items()
        if r.wrapped_key is not None and r.master_key_id != master_key_id
    )


class MemoryRecordingScans:
    def __init__(self, state: _State) -> None:
        self._s = state

    def page(self, after_id: str, limit: int) -> list[Recording]:
        ids = sorted(k for k in self._s.recordings if k > after_id)[:limit]
        return [_copy(self._s.recordings[k]) for k in ids]

    def wrapped_elsewhere(self, master_key_id: str, after_id: str, limit: int) -> list[str]:
        return [k for k in _wrapped_elsewhere(self._s, master_key_id) if k > after_id][:limit]

    def stalled(self, announced_before: datetime, limit: int) -> list[str]:
        found = [
            r.recording_id
            for r in self._s.recordings.values()
            if r.status is RecordingStatus.PURGING
            or (
                r.status is RecordingStatus.STORED
                and not r.held
                and r.due_announced_at is not None
                and r.due_announced_at < announced_before
            )
        ]
        return found[:limit]

    def held_flags_in_doubt(self) -> list[str]:
        return sorted(
            r.recording_id
            for r in self._s.recordings.values()
            if r.status is RecordingStatus.STORED
        )


class MemoryRecordingCounts:
    def __init__(self, state: _State) -> None:
        self._s = state

    def overdue_summary(self, now: datetime) -> tuple[int, datetime | None]:
        overdue = [
            r.retention_due_at
            for r in self._s.recordings.values()
            if r.status in (RecordingStatus.STORED, RecordingStatus.PURGING)
            and not r.held
            and r.retention_due_at <= now
        ]
        return len(overdue), min(overdue, default=None)

    def held_count(self) -> int:
        return sum(
            1
            for r in self._s.recordings.values()
            if r.held and r.status is not RecordingStatus.PURGED
        )

    def count_by_status(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self._s.recordings.values():
            counts[r.status.value] = counts.get(r.status.value, 0) + 1
        counts["held"] = self.held_count()
        return counts

    def count_wrapped_elsewhere(self, master_key_id: str) -> int:
        return len(_wrapped_elsewhere(self._s, master_key_id))


class MemoryHolds:
    def __init__(self, state: _State, events: list[Event]) -> None:
        self._s = state
        self._events = events

    def get(self, hold_id: str, *, lock: bool = False) -> Hold | None:
        found = self._s.holds.get(hold_id)
        return _copy(found) if found else None

    def add(self, hold: Hold) -> bool:
        _, events = hold.collect()
        if hold.hold_id in self._s.holds:
            return False
        self._s.holds[hold.hold_id] = _copy(hold)
        self._events.extend(events)
        return True

    def update(self, hold: Hold) -> None:
        changed, events = hold.collect()
        stored = self._s.holds[hold.hold_id]
        for name, value in changed.items():
            setattr(stored, name, value)
        self._events.extend(events)

    def active(self) -> list[Hold]:
        found = [h for h in self._s.holds.values() if h.active]
        return [_copy(h) for h in sorted(found, key=lambda h: (h.placed_at, h.hold_id))]

    def covering(
        self, recording_id: str, call_digest: str, digests: frozenset[bytes]
    ) -> list[Hold]:
        return [
            _copy(h)
            for h in self._s.holds.values()
            if h.active
            and (
                (h.scope_kind is HoldScopeKind.RECORDINGS and recording_id in h.targets)
                or (h.scope_kind is HoldScopeKind.CALLS and call_digest in h.targets)
                or (h.scope_kind is HoldScopeKind.SUBJECT and bool(h.subject_digests & digests))
            )
        ]

    def covered(self, recordings: list[Recording]) -> set[str]:
        return {
            r.recording_id
            for r in recordings
            if self.covering(
                r.recording_id, r.call_digest, self._s.subject_keys.get(r.recording_id, frozenset())
            )
        }

    def replace_subject_digests(self, hold_id: str, digests: frozenset[bytes]) -> None:
        self._s.holds[hold_id].subject_digests = frozenset(digests)

    def replace_call_digests(self, hold_id: str, digests: tuple[str, ...]) -> None:
        self._s.holds[hold_id].targets = tuple(digests)

    def reseal(self) -> int:
        return len(self._s.holds)  # the fake keeps texts in the clear


class MemoryKeyChecks:
    def __init__(self, state: _State) -> None:
        self._s = state

    def all(self) -> list[StoredKeyCheck]:
        return list(self._s.key_checks.values())

    def put(self, check: KeyCheck, at: datetime) -> None:
        self._s.key_checks[(check.kind, check.key_id)] = StoredKeyCheck(check)

    def retire(self, kind: str, key_id: str, at: datetime) -> None:
        found = self._s.key_checks.get((kind, key_id))
        if found is not None and found.retired_at is None:
            self._s.key_checks[(kind, key_id)] = StoredKeyCheck(found.check, at)

    def remove(self, kind: str, key_id: str) -> None:
        self._s.key_checks.pop((kind, key_id), None)


class MemoryRequests:
    def __init__(self, state: _State, events: list[Event]) -> None:
        self._s = state
        self._events = events

    def get(self, request_id: str, *, lock: bool = False) -> RequestRecord | None:
        found = self._s.requests.get(request_id)
        return copy.deepcopy(found) if found else None

    def add(self, record: RequestRecord) -> bool:
        _, events = record.collect()
        if record.request_id in self._s.requests:
            return False
        self._s.requests[record.request_id] = copy.deepcopy(record)
        self._events.extend(events)
        return True

    def update(self, record: RequestRecord) -> None:
        changed, events = record.collect()
        stored = self._s.requests[record.request_id]
        for name, value in changed.items():
            setattr(stored, name, copy.deepcopy(value))
        self._events.extend(events)

    def open(self) -> list[RequestRecord]:
        found = [r for r in self._s.requests.values() if r.pending or not r.answered]
        return [
            copy.deepcopy(r)
            for r in sorted(found, key=lambda r: (r.due_at is None, r.due_at, r.request_id))
        ]

    def waiting_for(self, recording_ids: list[str]) -> list[str]:
        wanted = set(recording_ids)
        return sorted(
            r.request_id
            for r in self._s.requests.values()
            if r.answered and wanted & set(r.pending)
        )

    def remember_erased(self, erased: ErasedSubject) -> None:
        self._s.erased.append(erased)

    def erasures_covering(
        self, digests: frozenset[bytes], collected_at: datetime, now: datetime
    ) -> list[str]:
        return sorted(
            {
                e.request_id
                for e in self._s.erased
                if e.digests & digests
                and e.forget_at > now
                and (e.covers_later or e.received_at >= collected_at)
            }
        )

    def forget_erased(self, now: datetime) -> int:
        kept = [e for e in self._s.erased if e.forget_at > now]
        forgotten = len(self._s.erased) - len(kept)
        self._s.erased = kept
        return forgotten

    def scrub_answer_urls(self, request_id: str) -> None:
        record = self._s.requests.get(request_id)
        for block in ("export", "letter"):
            if record is not None and block in record.result:
                kept = {k: v for k, v in record.result[block].items() if k != "url"}
                record.result = record.result | {block: kept}


class MemoryExports:
    def __init__(self, state: _State) -> None:
        self._s = state

    def add(self, export: ExportRecord) -> None:
        self._s.exports[export.object_key] = export

    def containing(self, recording_ids: list[str]) -> list[ExportRecord]:
        wanted = set(recording_ids)
        return sorted(
            (e for e in self._s.exports.values() if wanted & set(e.recording_ids)),
            key=lambda e: e.object_key,
        )

    def expired(self, now: datetime) -> list[ExportRecord]:
        return sorted(
            (e for e in self._s.exports.values() if e.expires_at <= now), key=lambda e: e.object_key
        )

    def remove(self, object_key: str) -> None:
        self._s.exports.pop(object_key, None)


class MemoryDiscards:
    def __init__(self, state: _State) -> None:
        self._s = state

    def add(self, discard: Discard) -> bool:
        if discard.call_digest in self._s.discards:
            return False
        self._s.discards[discard.call_digest] = discard
        return True

    def get(self, call_digest: str) -> Discard | None:
        return self._s.discards.get(call_digest)


class MemoryPolicies:
    def __init__(self, state: _State) -> None:
        self._s = state

    def current(self) -> dict[str, str]:
        return dict(self._s.policies)

    def set(self, tenant: str, policy: str, at: datetime) -> None:
        self._s.policies[tenant] = policy

    def remove_others(self, tenants: list[str]) -> None:
        self._s.policies = {t: p for t, p in self._s.policies.items() if t in tenants}


class MemoryUnitOfWork:
    def __init__(self, db: MemoryDatabase) -> None:
        self._db = db
        self._events: list[Event] = []
        self._snapshot: _State | None = None

    def __enter__(self) -> Self:
        self._db.lock.acquire()
        state = self._db.state
        self._snapshot = copy.deepcopy(state)
        self._events = []
        self.recordings = MemoryRecordings(state, self._events)
        self.scans = MemoryRecordingScans(state)
        self.counts = MemoryRecordingCounts(state)
        self.holds = MemoryHolds(state, self._events)
        self.requests = MemoryRequests(state, self._events)
        self.exports = MemoryExports(state)
        self.discards = MemoryDiscards(state)
        self.policies = MemoryPolicies(state)
        self.key_checks = MemoryKeyChecks(state)
        self.accounts = MemoryAccounts(state.console)
        self.accesses = MemoryAccesses(state.console)
        self.disclosures = MemoryDisclosures(state.console)
        self.registrations = MemoryRegistrations(state.audit)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._snapshot is not None:  # not committed: roll back
                self._db.state.__dict__.update(self._snapshot.__dict__)
        finally:
            self._snapshot = None
            self._db.lock.release()

    def lock_holds(self, *, exclusive: bool) -> None:
        """Units of work are serialised already."""

    def record(self, *events: Event) -> None:
        self._events.extend(events)

    def commit(self) -> None:
        if self._db.fail_commits:
            self._db.fail_commits -= 1
            raise TransientError("fake database unavailable")
        state = self._db.state
        effects = effects_of(self._events, self._db.clock())
        for audit in effects.audit:
            _append_audit(state, audit.action, audit.entity_id, audit.details, audit.at)
        project_accesses(state.console, state.audit[len(state.audit) - len(effects.audit) :])
        for event in effects.outbound:
            cloudevent = codec.outbound(event, self._db.source)
            state.outbox.append(Outbound(state.next_id(), event.topic, event.key, cloudevent))
            state.outbox_times.append(self._db.clock())
        for command in effects.follow_ups:
            kind, payload = followups.encode(command)
            state.followups.append(
                {
                    "id": state.next_id(),
                    "kind": kind,
                    "payload": payload,
                    "attempts": 0,
                    "not_before": None,
                    "failed": None,
                    "failed_at": None,
                }
            )
        self._events.clear()
        self._snapshot = None
        for listener in self._db.listeners:
            listener.notify(outbox=bool(effects.outbound), followups=bool(effects.follow_ups))

    def audit_entries(self, after_seq: int, limit: int) -> list[AuditEntry]:
        return [e for e in self._db.state.audit if e.seq > after_seq][:limit]

    def audit_head(self) -> AuditEntry | None:
        return self._db.state.audit[-1] if self._db.state.audit else None

    def audit_ranges(self) -> list[tuple[str, int | None, int | None]]:
        return [("audit_log", None, None)]

    def audit_marks(self) -> list[dict[str, Any]]:
        return list(self._db.state.audit_marks.values())

    def mark_verified(self, partition: str, entry: AuditEntry, signed: dict[str, Any]) -> None:
        self._db.state.audit_marks[partition] = signed


def _append_audit(
    state: _State, action: str, entity_id: str, details: dict[str, Any], at: datetime
) -> None:
    prev = state.audit[-1].hash if state.audit else GENESIS
    seq = len(state.audit) + 1
    details = json.loads(json.dumps(details))
    entry_hash = chain_hash(prev, canonical(seq, at, action, entity_id, details))
    state.audit.append(AuditEntry(seq, at, action, entity_id, details, prev, entry_hash))


class MemoryWakeups:
    """The fake database's wake-ups: its commits wake the subscribers at once, on the
    committing thread; it listens from the moment it is subscribed to."""

    def __init__(self) -> None:
        self._subscribers: dict[Channel, list[Callable[[], None]]] = {c: [] for c in CHANNELS}
        self._closed = False

    def subscribe(self, channel: Channel, wake: Callable[[], None]) -> None:
        if not self._closed:
            self._subscribers[channel].append(wake)
            wake()

    def close(self) -> None:
        self._closed = True
        self._subscribers = {c: [] for c in CHANNELS}

    def notify(self, *, outbox: bool, followups: bool) -> None:
        """What a commit that wrote outbox (follow-up) rows announces."""
        for channel, wrote in (("outbox", outbox), ("followups", followups)):
            for wake in list(self._subscribers[channel]) if wrote else ():
                wake()


class MemoryDatabase:
    """The fake database: the same unit of work, outbox and follow-up queue as PostgreSQL."""

    def __init__(self, *, source: str = "urn:callvault:test", clock: Any = None) -> None:
        from workers.app.context import utc_now

        self.state = _State()
        self.lock = threading.RLock()
        self.source = source
        self.clock = clock or utc_now
        self.fail_commits = 0
        self._claimed: set[int] = set()
        self.listeners: list[MemoryWakeups] = []

    def unit_of_work(self) -> MemoryUnitOfWork:
        return MemoryUnitOfWork(self)

    def listener(self) -> MemoryWakeups:
        """Wake-ups of this database's commits (one per process, as PostgreSQL's listener)."""
        self.listeners.append(MemoryWakeups())
        return self.listeners[-1]

    def close(self) -> None:
        """Nothing to release."""

    @contextmanager
    def pending(self, limit: int) -> Iterator[list[Outbound]]:
        with self.lock:
            rows = list(self.state.outbox[:limit])
            yield rows
            done = {r.id for r in rows}
            kept = [i for i, r in enumerate(self.state.outbox) if r.id not in done]
            self.state.outbox = [self.state.outbox[i] for i in kept]
            self.state.outbox_times = [self.state.outbox_times[i] for i in kept]

    def outbox_backlog(self) -> tuple[int, datetime | None]:
        return len(self.state.outbox), min(self.state.outbox_times, default=None)

    def ensure_partitions(self) -> list[str]:
        return []  # one list per table: nothing to make ahead

    def stray_rows(self) -> dict[str, int]:
        return {}

    @contextmanager
    def claim(self) -> Iterator[FollowUp | None]:
        now = self.clock()
        with self.lock:
            row = next(
                (
                    f
                    for f in sorted(self.state.followups, key=lambda f: f["kind"] == followups.LAST)
                    if f["failed"] is None
                    and f["id"] not in self._claimed
                    and (f["not_before"] is None or f["not_before"] <= now)
                ),
                None,
            )
            if row is not None:
                self._claimed.add(row["id"])
        if row is None:
            yield None
            return
        try:
            yield FollowUp(
                row["id"], followups.decode(row["kind"], row["payload"]), row["attempts"]
            )
            with self.lock:
                self.state.followups = [f for f in self.state.followups if f["id"] != row["id"]]
        finally:
            self._claimed.discard(row["id"])

    def postpone(self, follow_up_id: int, seconds: float, error: str) -> None:
        for row in self.state.followups:
            if row["id"] == follow_up_id:
                row["attempts"] += 1
                row["not_before"] = self.clock() + timedelta(seconds=seconds)

    def give_up(self, follow_up_id: int, error: str) -> None:
        for row in self.state.followups:
            if row["id"] == follow_up_id:
                row["attempts"] += 1
                row["failed"] = error
                row["failed_at"] = self.clock()

    def follow_up_backlog(self) -> int:
        return sum(1 for f in self.state.followups if f["failed"] is None)

    def discarded_dead_letters(self, topic: str) -> set[tuple[int, int]]:
        with self.lock:
            return {(p, o) for t, p, o in self.state.discarded_letters if t == topic}

    def discard_dead_letter(self, topic: str, partition: int, offset: int, at: datetime) -> None:
        with self.lock:
            self.state.discarded_letters.add((topic, partition, offset))

    def parked_follow_ups(self, limit: int) -> list[ParkedFollowUp]:
        parked = sorted(
            (f for f in self.state.followups if f["failed"] is not None),
            key=lambda f: (f["failed_at"], f["id"]),
        )
        return [
            ParkedFollowUp(f["id"], f["kind"], f["attempts"], f["failed"], f["failed_at"])
            for f in parked[:limit]
        ]

    def parked_count(self) -> int:
        return sum(1 for f in self.state.followups if f["failed"] is not None)

    def retry_parked(self, ids: Collection[int] | None) -> int:
        done = 0
        for row in self.state.followups:
            if row["failed"] is not None and (ids is None or row["id"] in ids):
                row["failed"] = row["failed_at"] = None
                row["not_before"] = self.clock()
                done += 1
        return done


__all__ = ["MemoryBus", "MemoryDatabase", "MemoryObjectStore", "canonical_recording_id"]
