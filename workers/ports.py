"""The small interfaces the services depend on. Each has a real adapter (Kafka, S3,
PostgreSQL) and a fake (in memory); one contract test suite runs against both."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from .domain.audit import AuditEntry
from .domain.events import OutboundEvent
from .domain.model import Hold, Recording
from .domain.retention import IsoDuration


class ObjectMissing(Exception):
    """The object (or bucket) does not exist."""


@dataclass(frozen=True)
class ObjectVersion:
    version_id: str | None
    is_delete_marker: bool = False


class ObjectStore(Protocol):
    def ensure_bucket(self, bucket: str, *, versioned: bool, object_lock: bool) -> None: ...

    def put_stream(
        self,
        bucket: str,
        key: str,
        chunks: Iterable[bytes],
        *,
        content_type: str,
        retain_until: datetime | None = None,
    ) -> str | None:
        """Store the bytes; returns the version id where the bucket is versioned."""
        ...

    def get_stream(self, bucket: str, key: str) -> Iterator[bytes]:
        """The object's bytes in chunks; :class:`ObjectMissing` when absent."""
        ...

    def list_versions(self, bucket: str, key: str) -> list[ObjectVersion]: ...

    def delete_versions(self, bucket: str, key: str, versions: list[ObjectVersion]) -> int:
        """Delete these versions for good (governance retention bypassed); returns how many."""
        ...

    def delete_object(self, bucket: str, key: str) -> None:
        """Delete the current object of an unversioned bucket; absent is not an error."""
        ...

    def presigned_get(self, bucket: str, key: str, expires: timedelta) -> str: ...

    def list_keys(self, bucket: str, prefix: str = "") -> Iterator[str]: ...


class EventBus(Protocol):
    def publish(self, events: list[tuple[str, str | None, bytes]]) -> None:
        """Send (topic, key, value) records; returns only once all are acknowledged."""
        ...


@dataclass
class DsrRecord:
    request_id: str
    dsr_type: str
    status: str
    received_at: datetime | None
    due_at: datetime | None
    completed_at: datetime | None = None
    pending_recording_ids: list[str] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)


class Tx(Protocol):
    """One database transaction: everything in it becomes durable together, or nothing."""

    # recordings
    def recording(self, recording_id: str, *, for_update: bool = False) -> Recording | None: ...
    def recording_by_call(self, call_id: str, *, for_update: bool = False) -> Recording | None: ...
    def insert_recording(self, rec: Recording) -> bool: ...
    def save_recording(self, rec: Recording) -> None: ...
    def delete_recording(self, recording_id: str) -> None: ...
    def set_subject_keys(self, recording_id: str, digests: frozenset[bytes]) -> None: ...
    def subject_keys_of(self, recording_id: str) -> frozenset[bytes]: ...
    def recordings_matching(self, digests: frozenset[bytes]) -> list[Recording]: ...
    def claim_due(self, now: datetime, limit: int) -> list[Recording]: ...
    def overdue_summary(self, now: datetime) -> tuple[int, datetime | None]: ...
    def reschedule(self, tenant: str | None, policy: IsoDuration, others: list[str]) -> int: ...
    def recordings_page(self, after_id: str, limit: int) -> list[Recording]: ...

    # holds
    def hold(self, hold_id: str) -> Hold | None: ...
    def save_hold(self, hold: Hold) -> None: ...
    def recordings_in_scope(self, hold: Hold) -> list[Recording]: ...
    def holds_covering(self, rec: Recording, digests: frozenset[bytes]) -> list[Hold]: ...
    def active_holds(self) -> list[Hold]: ...

    # notice-not-played discards
    def record_discard(self, call_id: str, tenant: str, at: datetime) -> bool: ...

    # transactional outbox
    def enqueue(self, event: OutboundEvent) -> None: ...
    def unpublished(self, limit: int) -> list[tuple[int, OutboundEvent]]: ...
    def mark_published(self, ids: list[int]) -> None: ...

    # audit trail
    def append_audit(
        self, action: str, entity_id: str, details: dict[str, Any], at: datetime
    ) -> AuditEntry: ...
    def audit_entries(self, after_seq: int, limit: int) -> list[AuditEntry]: ...

    # data-subject requests
    def dsr_request(self, request_id: str, *, for_update: bool = False) -> DsrRecord | None: ...
    def save_dsr_request(self, record: DsrRecord) -> None: ...
    def open_dsr_requests(self) -> list[DsrRecord]: ...

    # exports
    def add_export(self, key: str, request_id: str, expires_at: datetime) -> None: ...
    def expired_exports(self, now: datetime) -> list[str]: ...
    def remove_export(self, key: str) -> None: ...

    # counters for gauges
    def count_recordings(self) -> dict[str, int]: ...


class Store(Protocol):
    def transaction(self) -> AbstractContextManager[Tx]: ...

    def call_lock(self, call_id: str) -> AbstractContextManager[None]:
        """Held while one worker ingests a call, so two workers never store it twice."""
        ...
