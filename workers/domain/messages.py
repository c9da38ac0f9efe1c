"""The messages of callvault's message bus.

*Commands* ask for something to be done (from Kafka, an HTTP route, the CLI, a timer or a
follow-up row); exactly one handler takes each. *Events* record what happened inside a unit of
work; on commit each becomes, in the same transaction, an audit entry, an outbound CloudEvent
and/or a follow-up row (see :mod:`workers.app.effects`). Nothing that must happen after a
commit lives only in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .model import CallEnded, DsrRequest, Hold, PurgeReason, Recording


class Message:
    """Base of commands and events."""


class Command(Message):
    """A request for work; one handler."""


class Event(Message):
    """A fact recorded by an aggregate; turned into audit, outbox and follow-up rows."""


# --- commands -------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoreCall(Command):
    call: CallEnded


@dataclass(frozen=True)
class PurgeRecordings(Command):
    """Purge these recordings for ``reason`` (one batch: one key-destroy statement, one
    multi-object delete, one tombstone transaction, each recording still proven one by one)."""

    recording_ids: tuple[str, ...]
    reason: PurgeReason
    # the first and last of their collection times, where known: the purge then searches
    # only the months' partitions between them (a follow-up written before carries none)
    collected: tuple[datetime, ...] = ()


@dataclass(frozen=True)
class AnnounceDue(Command):
    """One scheduler tick: announce a batch of due recordings and schedule their purge."""


@dataclass(frozen=True)
class PlaceHold(Command):
    hold: Hold
    by: str | None = None  # the console's user who placed it (a Kafka command names none)


@dataclass(frozen=True)
class ReleaseHold(Command):
    hold_id: str
    by: str | None = None


@dataclass(frozen=True)
class SyncLegalHolds(Command):
    """Make the store's object legal hold of these recordings match their ``held`` flag."""

    recording_ids: tuple[str, ...]


@dataclass(frozen=True)
class RepairHoldDrift(Command):
    """Re-derive ``held`` from the holds in force; count and repair what disagrees."""


@dataclass(frozen=True)
class CarryOutRequest(Command):
    request: DsrRequest


@dataclass(frozen=True)
class RejectRequest(Command):
    """Answer a request that cannot be carried out (malformed, unverified)."""

    request_id: str
    dsr_type: str | None
    reason: str
    received_at: datetime | None = None


@dataclass(frozen=True)
class ResumeErasures(Command):
    """Erase recordings whose erasure waited for a hold that has been released."""

    recording_ids: tuple[str, ...]


@dataclass(frozen=True)
class SweepPurgedKeys(Command):
    """After a purge: list each purged recording's key and delete any version or delete
    marker that another writer left beside the one callvault wrote."""

    recording_ids: tuple[str, ...]


@dataclass(frozen=True)
class EraseLateRecordings(Command):
    """Recordings stored after an erasure or objection that covers them: erase them and
    answer the request again."""

    request_id: str
    recording_ids: tuple[str, ...]


@dataclass(frozen=True)
class SweepCopies(Command):
    """Delete landing copies older than any event that could still name them, and export
    objects older than their URL: callvault's own expiry where the store has no lifecycle."""


@dataclass(frozen=True)
class CheckpointAudit(Command):
    """Sign the audit chain's head and publish it (Kafka, the object store), so that a
    rewritten, shortened or emptied trail shows against the last checkpoint."""


@dataclass(frozen=True)
class ForgetErasedSubjects(Command):
    """Drop the digests an erasure kept to catch late calls, once no late call can come."""


@dataclass(frozen=True)
class DeleteExports(Command):
    """Delete these export objects (every version) and forget them."""

    object_keys: tuple[str, ...]


@dataclass(frozen=True)
class RemoveExpiredExports(Command):
    """Delete exports whose presigned URL has expired and scrub the URL where it was kept."""


@dataclass(frozen=True)
class ResumeStalledPurges(Command):
    """Finish purges that a crash or a lost follow-up left half-way, and purge announced
    recordings that are still stored long after their announcement."""


# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordingStored(Event):
    recording: Recording


@dataclass(frozen=True)
class CallDiscarded(Event):
    call_id: str
    call_digest: str
    tenant: str
    at: datetime


@dataclass(frozen=True)
class RecordingDue(Event):
    """Announced once per recording; its purge is scheduled in the same transaction."""

    recording: Recording
    at: datetime


@dataclass(frozen=True)
class RecordingPurged(Event):
    recording: Recording  # the tombstone, with the call_id it had (for the output event)
    call_id: str


@dataclass(frozen=True)
class AuditCheckpointed(Event):
    checkpoint: dict[str, Any]  # seq, hash, at, source, key_id, algorithm, signature


@dataclass(frozen=True)
class LateRecordingFound(Event):
    """Follow-up: a recording just stored belongs to a person an erasure covers."""

    request_id: str
    recording_id: str


@dataclass(frozen=True)
class KeysToSweep(Event):
    """Follow-up: sweep the keys of these purged recordings for strays."""

    recording_ids: tuple[str, ...]


@dataclass(frozen=True)
class PurgesScheduled(Event):
    """Follow-up: purge these recordings (a batch) for ``reason``."""

    recording_ids: tuple[str, ...]
    reason: PurgeReason
    collected: tuple[datetime, ...] = ()  # their collection times (see PurgeRecordings)


@dataclass(frozen=True)
class HoldPlaced(Event):
    hold: Hold
    recording_ids: tuple[str, ...]
    at: datetime
    by: str | None = None


@dataclass(frozen=True)
class HoldReleased(Event):
    hold_id: str
    freed_ids: tuple[str, ...]
    at: datetime
    by: str | None = None


@dataclass(frozen=True)
class LegalHoldsChanged(Event):
    """Follow-up: the store's legal hold of these recordings must follow their flag."""

    recording_ids: tuple[str, ...]


@dataclass(frozen=True)
class RecordingsFreed(Event):
    """Follow-up: recordings whose last hold went; erasures waiting for them resume."""

    recording_ids: tuple[str, ...]


@dataclass(frozen=True)
class HoldDriftRepaired(Event):
    recording_ids: tuple[str, ...]
    at: datetime


@dataclass(frozen=True)
class RequestAnswered(Event):
    request_id: str
    dsr_type: str
    status: str
    data: dict[str, Any]  # the dsr.completed data
    revision: str = ""  # a later answer to the same request gets a new event id
    at: datetime | None = None
    outcomes: tuple[dict[str, str], ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class ExportsDoomed(Event):
    """Follow-up: these exports hold erased recordings and must be deleted."""

    object_keys: tuple[str, ...]


@dataclass(frozen=True)
class PolicyApplied(Event):
    tenant: str
    old: str | None
    new: str
    rescheduled: int
    at: datetime


# --- keys: master-key and hash-key rotation (`callvault keys rotate|rehash`) -------------------


@dataclass(frozen=True)
class RewrapDataKeys(Command):
    """Re-wrap under the current master key a batch of data keys wrapped under another one,
    in recording-id order after ``after_id`` (the outcome names the last id looked at)."""

    after_id: str = ""
    limit: int = 500


@dataclass(frozen=True)
class RetireMasterKeys(Command):
    """Once no data key is wrapped under them, mark every master key but the current one
    retired (it may then be removed from the settings) and seal hold texts anew."""


@dataclass(frozen=True)
class RekeyDigests(Command):
    """Re-compute under the current hash key the call digest and look-up digests of a batch
    of recordings after ``after_id`` (from the call id and the sealed personal data)."""

    after_id: str = ""
    limit: int = 500


@dataclass(frozen=True)
class FinishHashRotation(Command):
    """Re-key the subject holds and make the current hash key the one in force;
    ``previous`` is the check value of the (retired) hash key their digests were made with."""

    previous: str


@dataclass(frozen=True)
class DataKeysRewrapped(Event):
    recording_ids: tuple[str, ...]
    from_key_ids: tuple[str, ...]
    to_key_id: str
    at: datetime


@dataclass(frozen=True)
class MasterKeysRetired(Event):
    key_ids: tuple[str, ...]
    current: str
    at: datetime


@dataclass(frozen=True)
class DigestsRekeyed(Event):
    recording_ids: tuple[str, ...]
    at: datetime


@dataclass(frozen=True)
class HashKeyRotated(Event):
    holds: tuple[str, ...]  # subject holds re-keyed
    unmapped: int  # hold digests no identifier on record could re-compute (kept as they were)
    at: datetime
