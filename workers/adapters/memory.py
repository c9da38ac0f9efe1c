"""In-memory fakes of the ports, for unit tests and for the contract suite that keeps them
honest against the real adapters."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from ..domain.audit import GENESIS, AuditEntry, canonical, chain_hash
from ..domain.errors import TransientError
from ..domain.events import OutboundEvent
from ..domain.model import Hold, HoldScopeKind, Recording, RecordingStatus
from ..domain.retention import IsoDuration
from ..ports import DsrRecord, ObjectMissing, ObjectVersion


class MemoryObjectStore:
    """Versioned buckets in a dict: every put adds a version, deletes remove versions."""

    def __init__(self) -> None:
        self.buckets: dict[str, dict[str, list[tuple[str, bytes | None]]]] = {}
        self.versioned: set[str] = set()
        self._counter = 0
        self._lock = threading.Lock()

    def ensure_bucket(self, bucket: str, *, versioned: bool, object_lock: bool) -> None:
        self.buckets.setdefault(bucket, {})
        if versioned:
            self.versioned.add(bucket)

    def _bucket(self, bucket: str) -> dict[str, list[tuple[str, bytes | None]]]:
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
        data = b"".join(chunks)
        with self._lock:
            self._counter += 1
            version = f"v{self._counter}"
            versions = self._bucket(bucket).setdefault(key, [])
            if bucket not in self.versioned:
                versions.clear()
            versions.append((version, data))
        return version if bucket in self.versioned else None

    def get_stream(self, bucket: str, key: str) -> Iterator[bytes]:
        versions = self._bucket(bucket).get(key)
        if not versions or versions[-1][1] is None:
            raise ObjectMissing(f"{bucket}/{key}")
        data = versions[-1][1]
        return iter([data[i : i + 65536] for i in range(0, len(data), 65536)] or [b""])

    def get_range(self, bucket: str, key: str, offset: int, length: int) -> Iterator[bytes]:
        # console: the ranged GET the player's seeking needs
        data = b"".join(self.get_stream(bucket, key))
        return iter([data[offset : offset + length]])

    def list_versions(self, bucket: str, key: str) -> list[ObjectVersion]:
        versions = self._bucket(bucket).get(key, [])
        return [ObjectVersion(v, data is None) for v, data in reversed(versions)]

    def is_versioned(self, bucket: str) -> bool:
        return bucket in self.versioned

    def delete_versions(self, bucket: str, key: str, versions: list[ObjectVersion]) -> int:
        doomed = {v.version_id for v in versions}
        with self._lock:
            kept = [(v, d) for v, d in self._bucket(bucket).get(key, []) if v not in doomed]
            if kept:
                self._bucket(bucket)[key] = kept
            else:
                self._bucket(bucket).pop(key, None)
        return len(versions)

    def delete_object(self, bucket: str, key: str) -> None:
        with self._lock:
            if bucket in self.versioned:
                self._counter += 1
                self._bucket(bucket).setdefault(key, []).append((f"v{self._counter}", None))
            else:
                self._bucket(bucket).pop(key, None)

    def presigned_get(self, bucket: str, key: str, expires: timedelta) -> str:
        # An http(s) URL, as the contract (and the dsr.completed schema) requires of export.url;
        # the reserved .invalid domain never resolves, so nothing outside the fake can follow it.
        return f"https://memory.invalid/{bucket}/{key}?X-Amz-Expires={int(expires.total_seconds())}"

    def list_keys(self, bucket: str, prefix: str = "") -> Iterator[str]:
        for key, versions in sorted(self._bucket(bucket).items()):
            if key.startswith(prefix) and versions and versions[-1][1] is not None:
                yield key

    def has_object_lock(self, bucket: str) -> bool:
        return bucket in self.versioned


class MemoryBus:
    def __init__(self) -> None:
        self.records: list[tuple[str, str | None, bytes]] = []
        self.fail_next = 0

    def publish(self, records: list[tuple[str, str | None, bytes]]) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise TransientError("fake broker unavailable")
        self.records.extend(records)

    def close(self) -> None:
        """Nothing to release."""


@dataclass
class _State:
    recordings: dict[str, Recording] = field(default_factory=dict)
    subject_keys: dict[str, frozenset[bytes]] = field(default_factory=dict)
    holds: dict[str, Hold] = field(default_factory=dict)
    discards: dict[str, tuple[str, datetime]] = field(default_factory=dict)
    outbox: list[tuple[int, OutboundEvent, bool]] = field(default_factory=list)
    audit: list[AuditEntry] = field(default_factory=list)
    dsr: dict[str, DsrRecord] = field(default_factory=dict)
    exports: dict[str, tuple[str, datetime]] = field(default_factory=dict)


class MemoryTx:
    def __init__(self, state: _State) -> None:
        self._s = state

    def recording(self, recording_id: str, *, for_update: bool = False) -> Recording | None:
        found = self._s.recordings.get(recording_id)
        return replace(found) if found else None

    def recording_by_call(self, call_id: str, *, for_update: bool = False) -> Recording | None:
        return next((replace(r) for r in self._s.recordings.values() if r.call_id == call_id), None)

    def insert_recording(self, rec: Recording) -> bool:
        if rec.recording_id in self._s.recordings or self.recording_by_call(rec.call_id):
            return False
        self._s.recordings[rec.recording_id] = replace(rec)
        return True

    def save_recording(self, rec: Recording) -> None:
        self._s.recordings[rec.recording_id] = replace(rec)

    def delete_recording(self, recording_id: str) -> None:
        self._s.recordings.pop(recording_id, None)
        self._s.subject_keys.pop(recording_id, None)

    def set_subject_keys(self, recording_id: str, digests: frozenset[bytes]) -> None:
        self._s.subject_keys[recording_id] = frozenset(digests)

    def subject_keys_of(self, recording_id: str) -> frozenset[bytes]:
        return self._s.subject_keys.get(recording_id, frozenset())

    def recordings_matching(self, digests: frozenset[bytes]) -> list[Recording]:
        found = [
            replace(r)
            for r in self._s.recordings.values()
            if r.status in (RecordingStatus.STORED, RecordingStatus.PURGING)
            and self.subject_keys_of(r.recording_id) & digests
        ]
        return sorted(found, key=lambda r: (r.collected_at, r.recording_id))

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
        return [replace(r) for r in due[:limit]]

    def overdue_summary(self, now: datetime) -> tuple[int, datetime | None]:
        overdue = [
            r.retention_due_at
            for r in self._s.recordings.values()
            if r.status in (RecordingStatus.STORED, RecordingStatus.PURGING)
            and not r.held
            and r.retention_due_at <= now
        ]
        return len(overdue), min(overdue, default=None)

    def reschedule(self, tenant: str | None, policy: IsoDuration, others: list[str]) -> int:
        changed = 0
        for r in self._s.recordings.values():
            in_scope = r.tenant == tenant if tenant is not None else r.tenant not in others
            if r.status is RecordingStatus.STORED and r.policy != policy.text and in_scope:
                r.policy, r.retention_due_at = policy.text, policy.after(r.collected_at)
                r.due_announced_at = None
                changed += 1
        return changed

    def recordings_page(self, after_id: str, limit: int) -> list[Recording]:
        ids = sorted(k for k in self._s.recordings if k > after_id)[:limit]
        return [replace(self._s.recordings[k]) for k in ids]

    def hold(self, hold_id: str) -> Hold | None:
        return self._s.holds.get(hold_id)

    def save_hold(self, hold: Hold) -> None:
        self._s.holds[hold.hold_id] = hold

    def recordings_in_scope(self, hold: Hold) -> list[Recording]:
        if hold.scope_kind is HoldScopeKind.SUBJECT:
            return self.recordings_matching(hold.subject_digests)
        return [
            replace(r)
            for r in self._s.recordings.values()
            if (r.recording_id if hold.scope_kind is HoldScopeKind.RECORDINGS else r.call_id)
            in hold.targets
        ]

    def holds_covering(self, rec: Recording, digests: frozenset[bytes]) -> list[Hold]:
        return [h for h in self._s.holds.values() if h.covers(rec, digests)]

    def active_holds(self) -> list[Hold]:
        return [h for h in self._s.holds.values() if h.active]

    def record_discard(self, call_id: str, tenant: str, at: datetime) -> bool:
        if call_id in self._s.discards:
            return False
        self._s.discards[call_id] = (tenant, at)
        return True

    def enqueue(self, event: OutboundEvent) -> None:
        self._s.outbox.append((len(self._s.outbox) + 1, event, False))

    def unpublished(self, limit: int) -> list[tuple[int, OutboundEvent]]:
        return [(i, e) for i, e, done in self._s.outbox if not done][:limit]

    def mark_published(self, ids: list[int]) -> None:
        chosen = set(ids)
        self._s.outbox = [(i, e, done or i in chosen) for i, e, done in self._s.outbox]

    def append_audit(
        self, action: str, entity_id: str, details: dict[str, Any], at: datetime
    ) -> AuditEntry:
        prev = self._s.audit[-1].hash if self._s.audit else GENESIS
        seq = len(self._s.audit) + 1
        details = json.loads(json.dumps(details))
        entry = AuditEntry(
            seq,
            at,
            action,
            entity_id,
            details,
            prev,
            chain_hash(prev, canonical(seq, at, action, entity_id, details)),
        )
        self._s.audit.append(entry)
        return entry

    def audit_entries(self, after_seq: int, limit: int) -> list[AuditEntry]:
        return [e for e in self._s.audit if e.seq > after_seq][:limit]

    def dsr_request(self, request_id: str, *, for_update: bool = False) -> DsrRecord | None:
        found = self._s.dsr.get(request_id)
        return copy.deepcopy(found) if found else None

    def save_dsr_request(self, record: DsrRecord) -> None:
        self._s.dsr[record.request_id] = copy.deepcopy(record)

    def open_dsr_requests(self) -> list[DsrRecord]:
        return [copy.deepcopy(r) for r in self._s.dsr.values() if r.pending_recording_ids]

    def add_export(self, key: str, request_id: str, expires_at: datetime) -> None:
        self._s.exports.setdefault(key, (request_id, expires_at))

    def expired_exports(self, now: datetime) -> list[str]:
        return [k for k, (_, at) in self._s.exports.items() if at <= now]

    def remove_export(self, key: str) -> None:
        self._s.exports.pop(key, None)

    def held_count(self) -> int:
        return sum(
            1
            for r in self._s.recordings.values()
            if r.held and r.status is not RecordingStatus.PURGED
        )

    def count_recordings(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self._s.recordings.values():
            counts[r.status.value] = counts.get(r.status.value, 0) + 1
        counts["held"] = sum(1 for r in self._s.recordings.values() if r.held)
        return counts


class MemoryStore:
    """Transactions are serialised and roll back on error, like the real thing."""

    def __init__(self) -> None:
        self.state = _State()
        self._lock = threading.RLock()
        self._keyed: dict[str, threading.Lock] = {}

    @contextmanager
    def transaction(self) -> Iterator[MemoryTx]:
        with self._lock:
            snapshot = copy.deepcopy(self.state)
            try:
                yield MemoryTx(self.state)
            except BaseException:
                self.state.__dict__.update(snapshot.__dict__)
                raise

    @contextmanager
    def exclusive(self, key: str) -> Iterator[None]:
        with self._lock:
            lock = self._keyed.setdefault(key, threading.Lock())
        with lock:
            yield
