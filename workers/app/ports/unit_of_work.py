"""The unit of work and its repositories: the port between handlers and the database.

A unit of work is one transaction. Handlers load aggregates through repositories (row-locked
where they will change them), call their methods, hand them back with ``update``/``add`` and
``commit``. On commit the unit of work writes, in the same transaction, every event the
aggregates recorded as audit entries, outbound CloudEvents (the outbox) and follow-up rows
(:mod:`workers.app.effects`). Locks are taken in one order everywhere: the holds lock, then
hold rows, then recording rows by id, then request rows.
"""

from __future__ import annotations

from collections.abc import Collection
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol, Self

from ...domain.audit import AuditEntry
from ...domain.messages import Command, Event
from ...domain.model import Hold, Recording, RequestRecord
from ...domain.retention import IsoDuration
from .console import (
    AccessRepository,
    AccountRepository,
    DisclosureRepository,
    RegistrationRepository,
)
from .keys import KeyCheck


class RecordingRepository(Protocol):
    """The recording aggregate: loaded (row-locked where it will change), added, written back,
    with the look-up digests of its customer."""

    def get(self, recording_id: str, *, lock: bool = False) -> Recording | None: ...
    def get_many(self, recording_ids: list[str]) -> list[Recording]: ...
    def by_call(self, call_digest: str) -> Recording | None: ...
    def lock(
        self, recording_ids: list[str], collected: Collection[datetime] = ()
    ) -> list[Recording]:
        """Row-lock these recordings, in id order; unknown ids are skipped. ``collected``:
        their collection times, where the caller knows them - only those months' partitions
        are searched (an id not found there is looked for in all)."""
        ...

    def add(self, recording: Recording, digests: frozenset[bytes]) -> bool:
        """Insert a stored recording and its look-up digests; ``False`` (and nothing
        written) when a recording of the same call exists already, or the call was
        discarded."""
        ...

    def update(self, recording: Recording) -> None:
        """Write the columns the recording's methods changed, and take its events."""
        ...

    def update_many(self, recordings: list[Recording]) -> None:
        """``update`` of each, in as few statements as their changes allow (a batch)."""
        ...

    def digests_of(self, recording_id: str) -> frozenset[bytes]: ...
    def replace_digests(self, recording_id: str, digests: frozenset[bytes]) -> None: ...
    def forget_digests(self, recording_ids: list[str]) -> None:
        """Remove every look-up digest of these recordings (a purge)."""
        ...

    def matching(self, digests: frozenset[bytes], tenant: str | None = None) -> list[Recording]:
        """Recordings not yet purged whose customer has any of these digests."""
        ...

    def in_scope(self, hold: Hold, *, lock: bool = True) -> list[Recording]:
        """Recordings not yet purged that the hold's scope names (row-locked, in id order)."""
        ...

    def claim_due(self, now: datetime, limit: int) -> list[Recording]:
        """Due, unheld, unannounced recordings, locked ``SKIP LOCKED`` so that schedulers in
        several processes never claim the same one."""
        ...

    def reschedule(self, tenant: str | None, policy: IsoDuration, others: list[str]) -> int:
        """Apply a policy to the stored recordings of ``tenant`` (``None``: of every tenant
        but ``others``) whose due date was computed from another one; returns how many."""
        ...


class RecordingScans(Protocol):
    """Walks over every recording for the background duties: key rotations (in id order,
    resumable from the last id seen), reconcile, and repairs of purges and held flags."""

    def page(self, after_id: str, limit: int) -> list[Recording]: ...
    def wrapped_elsewhere(self, master_key_id: str, after_id: str, limit: int) -> list[str]:
        """Ids after ``after_id`` (in order) of recordings whose data key is wrapped under a
        master key other than ``master_key_id``."""
        ...

    def stalled(self, announced_before: datetime, limit: int) -> list[str]:
        """Purges that should be over: rows left ``purging``, and rows announced due before
        ``announced_before`` and still stored, not held."""
        ...

    def held_flags_in_doubt(self) -> list[str]:
        """Recordings whose ``held`` flag may disagree with the holds in force."""
        ...


class RecordingCounts(Protocol):
    """What the gauges, the operators' commands and the DPO's pages count: numbers, never
    recordings."""

    def overdue_summary(self, now: datetime) -> tuple[int, datetime | None]:
        """Recordings due by ``now``, not held and not yet purged, and the oldest due date."""
        ...

    def held_count(self) -> int: ...
    def count_by_status(self) -> dict[str, int]:
        """Recordings per status, and ``held``: those a hold keeps."""
        ...

    def count_wrapped_elsewhere(self, master_key_id: str) -> int: ...


class HoldRepository(Protocol):
    def get(self, hold_id: str, *, lock: bool = False) -> Hold | None: ...
    def add(self, hold: Hold) -> bool: ...
    def update(self, hold: Hold) -> None: ...
    def active(self) -> list[Hold]: ...
    def covering(
        self, recording_id: str, call_digest: str, digests: frozenset[bytes]
    ) -> list[Hold]:
        """Holds in force that cover a recording with these ids and customer digests."""
        ...

    def covered(self, recordings: list[Recording]) -> set[str]:
        """The ids among ``recordings`` that a hold in force covers (read fresh)."""
        ...

    def replace_subject_digests(self, hold_id: str, digests: frozenset[bytes]) -> None:
        """A hash-key rotation: the subject hold's digests under the new key."""
        ...

    def replace_call_digests(self, hold_id: str, digests: tuple[str, ...]) -> None:
        """A hash-key rotation: the call hold's call digests under the new key."""
        ...

    def reseal(self) -> int:
        """Seal every hold's texts anew under the current master key; returns how many."""
        ...


@dataclass(frozen=True)
class ErasedSubject:
    request_id: str
    digests: frozenset[bytes]
    received_at: datetime
    covers_later: bool  # an objection: calls ending after the request are erased too
    forget_at: datetime


class RequestRepository(Protocol):
    def get(self, request_id: str, *, lock: bool = False) -> RequestRecord | None: ...
    def add(self, record: RequestRecord) -> bool: ...
    def update(self, record: RequestRecord) -> None: ...
    def open(self) -> list[RequestRecord]: ...
    def waiting_for(self, recording_ids: list[str]) -> list[str]:
        """Ids of answered erasures still waiting for any of these held recordings."""
        ...

    def scrub_answer_urls(self, request_id: str) -> None:
        """Forget the (expired) URLs of the export and the letter kept in the last answer."""
        ...

    def remember_erased(self, erased: ErasedSubject) -> None:
        """Keep an erasure's digests, to catch its person's late calls until ``forget_at``."""
        ...

    def erasures_covering(
        self, digests: frozenset[bytes], collected_at: datetime, now: datetime
    ) -> list[str]:
        """Erasures (and objections) that a call of these digests collected then falls under."""
        ...

    def forget_erased(self, now: datetime) -> int: ...


@dataclass(frozen=True)
class ExportRecord:
    object_key: str
    request_id: str
    expires_at: datetime
    recording_ids: tuple[str, ...]


class ExportRepository(Protocol):
    def add(self, export: ExportRecord) -> None: ...
    def containing(self, recording_ids: list[str]) -> list[ExportRecord]: ...
    def expired(self, now: datetime) -> list[ExportRecord]: ...
    def remove(self, object_key: str) -> None: ...


@dataclass(frozen=True)
class Discard:
    call_digest: str
    tenant: str
    discarded_at: datetime
    landing_sha256: str | None


class DiscardRepository(Protocol):
    def add(self, discard: Discard) -> bool: ...
    def get(self, call_digest: str) -> Discard | None: ...


class PolicyRepository(Protocol):
    def current(self) -> dict[str, str]:
        """Tenant (``*`` for the default) to the ISO 8601 policy in force."""
        ...

    def set(self, tenant: str, policy: str, at: datetime) -> None: ...
    def remove_others(self, tenants: list[str]) -> None: ...


@dataclass(frozen=True)
class StoredKeyCheck:
    check: KeyCheck
    retired_at: datetime | None = None


class KeyCheckRepository(Protocol):
    """The check values of the keys the database was set up with (``key_checks``)."""

    def all(self) -> list[StoredKeyCheck]: ...
    def put(self, check: KeyCheck, at: datetime) -> None:
        """Insert or replace (a replaced check is in force again: not retired)."""
        ...

    def retire(self, kind: str, key_id: str, at: datetime) -> None: ...
    def remove(self, kind: str, key_id: str) -> None: ...


class UnitOfWork(Protocol):
    @property
    def recordings(self) -> RecordingRepository: ...
    @property
    def scans(self) -> RecordingScans: ...
    @property
    def counts(self) -> RecordingCounts: ...
    @property
    def holds(self) -> HoldRepository: ...
    @property
    def requests(self) -> RequestRepository: ...
    @property
    def exports(self) -> ExportRepository: ...
    @property
    def discards(self) -> DiscardRepository: ...
    @property
    def policies(self) -> PolicyRepository: ...
    @property
    def key_checks(self) -> KeyCheckRepository: ...
    @property
    def accounts(self) -> AccountRepository:
        """The console's staff, tokens and identities."""
        ...

    @property
    def accesses(self) -> AccessRepository: ...
    @property
    def disclosures(self) -> DisclosureRepository: ...
    @property
    def registrations(self) -> RegistrationRepository:
        """Requests the DPO registered."""
        ...

    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def lock_holds(self, *, exclusive: bool) -> None:
        """Serialise hold changes (exclusive) against ingest commits and purges (shared), so
        that a hold committed before a recording's commit covers it, and a purge sees every
        hold committed before it."""
        ...

    def record(self, *events: Event) -> None:
        """Events not owned by an aggregate (an unknown call discarded, a policy applied)."""
        ...

    def commit(self) -> None: ...

    def audit_entries(self, after_seq: int, limit: int) -> list[AuditEntry]: ...
    def audit_ranges(self) -> list[tuple[str, int | None, int | None]]:
        """The trail's partitions as (name, first seq, seq past the last), ``None`` where a
        range is open; the one heap of an unpartitioned trail is ``("audit_log", None, None)``."""
        ...

    def audit_marks(self) -> list[dict[str, Any]]:
        """The signed records of how far the chain was verified, one per partition."""
        ...

    def mark_verified(self, partition: str, entry: AuditEntry, signed: dict[str, Any]) -> None:
        """Record (replace) how far the chain of ``partition`` is verified."""
        ...

    def audit_head(self) -> AuditEntry | None:
        """The newest entry of the audit chain."""
        ...


@dataclass(frozen=True)
class FollowUp:
    id: int
    command: Command
    attempts: int


class FollowUpQueue(Protocol):
    def claim(self) -> AbstractContextManager[FollowUp | None]:
        """The oldest follow-up due, row-locked for as long as the block runs (a crashed
        worker's claim ends with its connection); done when the block exits normally."""
        ...

    def postpone(self, follow_up_id: int, seconds: float, error: str) -> None: ...
    def give_up(self, follow_up_id: int, error: str) -> None:
        """A permanent failure: kept for inspection, never retried, never blocking others."""
        ...

    def follow_up_backlog(self) -> int: ...

    def parked_follow_ups(self, limit: int) -> list[ParkedFollowUp]:
        """Follow-ups that failed for good, oldest failure first."""
        ...

    def parked_count(self) -> int: ...

    def retry_parked(self, ids: Collection[int] | None) -> int:
        """Make parked follow-ups due again (``None``: all of them); returns how many."""
        ...


@dataclass(frozen=True)
class ParkedFollowUp:
    """A follow-up an operator must look at: its kind (the command's name), how often it was
    tried, the error it failed with (a code and a message that names no person) and when."""

    id: int
    kind: str
    attempts: int
    error: str
    failed_at: datetime


@dataclass(frozen=True)
class Outbound:
    """One outbox row: the logical topic (a settings name), the key and the CloudEvent."""

    id: int
    topic: str
    key: str | None
    event: dict[str, Any]


class Partitions(Protocol):
    """The partitioned tables' upkeep: partitions made ahead, and what fell past them."""

    def ensure_partitions(self) -> list[str]:
        """Make the partitions the coming months and the audit trail's next range need (and
        any a stray row needs); returns the names of those made."""
        ...

    def stray_rows(self) -> dict[str, int]:
        """Rows per table held by its DEFAULT partition: none while every partition was made
        ahead."""
        ...


class Outbox(Protocol):
    def pending(self, limit: int) -> AbstractContextManager[list[Outbound]]:
        """Unpublished rows, oldest first, locked ``SKIP LOCKED``; removed when the block
        exits normally (published at least once, with stable CloudEvent ids)."""
        ...

    def outbox_backlog(self) -> tuple[int, datetime | None]: ...


class DeadLetterLedger(Protocol):
    """Dead letters an operator gave up on (``callvault deadletter discard``): never replayed."""

    def discarded_dead_letters(self, topic: str) -> set[tuple[int, int]]:
        """(partition, offset) of every discarded dead letter of ``topic``."""
        ...

    def discard_dead_letter(
        self, topic: str, partition: int, offset: int, at: datetime
    ) -> None: ...


class Database(Outbox, FollowUpQueue, DeadLetterLedger, Partitions, Protocol):
    """One database: units of work over it, its outbox, its follow-up queue, the upkeep of its
    partitioned tables."""

    def unit_of_work(self) -> UnitOfWork: ...

    def close(self) -> None: ...
