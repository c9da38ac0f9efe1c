"""Purge: the one path by which a recording leaves callvault - retention, erasure or objection.

Order matters for crash safety and for proof:
1. the wrapped data key is destroyed (status ``purging``): from this instant every copy of the
   ciphertext anywhere - replica, backup, a version we have not reached yet - is unreadable;
2. every object version and delete marker is deleted (governance retention bypassed);
3. the row becomes a tombstone without personal data, an audit entry is chained and the
   ``recording.purged`` event is enqueued, in one transaction.
A purge killed after 1 or 2 finishes on the next attempt; a finished one is not redone.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from ..domain import events
from ..domain.model import PurgeReason, Recording, RecordingStatus
from ..domain.retention import lag_seconds, rfc3339
from ..ports import ObjectVersion
from .context import Context


class Verdict(StrEnum):
    PURGED = "purged"
    ALREADY_PURGED = "already_purged"
    HELD = "held"
    NOT_DUE = "not_due"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class PurgeResult:
    verdict: Verdict
    recording: Recording | None = None
    versions: list[ObjectVersion] | None = None  # listed while shredding, deleted next


class PurgeService:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def purge(self, recording_id: str, reason: PurgeReason) -> PurgeResult:
        started = self._shred_key(recording_id, reason)
        if started.verdict is not Verdict.PURGED or started.recording is None:
            return started
        recording = started.recording
        bucket = self._ctx.settings.vault_bucket
        objects = self._ctx.objects
        # Versions listed when the key was shredded; a resumed purge lists what is left.
        versions = started.versions
        if versions is None:
            versions = objects.list_versions(bucket, recording.object_key)
        objects.delete_versions(bucket, recording.object_key, versions)
        return self._tombstone(recording_id)

    def _shred_key(self, recording_id: str, reason: PurgeReason) -> PurgeResult:
        now = self._ctx.clock()
        bucket = self._ctx.settings.vault_bucket
        with self._ctx.store.transaction() as tx:
            recording = tx.recording(recording_id, for_update=True)
            if recording is None or recording.status is RecordingStatus.STORING:
                return PurgeResult(Verdict.UNKNOWN, recording)
            if recording.status is RecordingStatus.PURGED:
                return PurgeResult(Verdict.ALREADY_PURGED, recording)
            if recording.status is RecordingStatus.PURGING:
                return PurgeResult(Verdict.PURGED, recording)  # finish what a crash interrupted
            if recording.held:
                return PurgeResult(Verdict.HELD, recording)
            if reason is PurgeReason.RETENTION and recording.retention_due_at > now:
                # The policy was lengthened after the due event went out: wait for the new date.
                tx.save_recording(replace(recording, due_announced_at=None))
                return PurgeResult(Verdict.NOT_DUE, recording)
            versions = self._ctx.objects.list_versions(bucket, recording.object_key)
            shredding = replace(
                recording,
                status=RecordingStatus.PURGING,
                wrapped_key=None,
                purge_reason=reason,
                versions_deleted=len(versions),
            )
            tx.save_recording(shredding)
            return PurgeResult(Verdict.PURGED, shredding, versions)

    def _tombstone(self, recording_id: str) -> PurgeResult:
        now = self._ctx.clock()
        with self._ctx.store.transaction() as tx:
            recording = tx.recording(recording_id, for_update=True)
            if recording is None or recording.status is not RecordingStatus.PURGING:
                return PurgeResult(Verdict.ALREADY_PURGED, recording)
            reason = recording.purge_reason or PurgeReason.RETENTION
            tombstone = recording.tombstone(reason, recording.versions_deleted or 0, now)
            tx.save_recording(tombstone)
            tx.set_subject_keys(recording_id, frozenset())
            details = {
                "call_id": tombstone.call_id,
                "reason": reason.value,
                "sha256": tombstone.sha256,
                "versions_deleted": tombstone.versions_deleted,
                "due_at": rfc3339(tombstone.retention_due_at),
            }
            tx.append_audit("purge", recording_id, details, now)
            tx.enqueue(
                events.OutboundEvent(
                    "recordings_purged",
                    recording_id,
                    events.cloudevent(
                        events.PURGED,
                        self._ctx.source,
                        recording_id,
                        now,
                        events.purged_data(tombstone),
                    ),
                )
            )
        metrics = self._ctx.metrics
        metrics.purged.labels(reason=reason.value).inc()
        if reason is PurgeReason.RETENTION:
            metrics.purge_lag.observe(max(0.0, lag_seconds(tombstone.retention_due_at, now)))
        return PurgeResult(Verdict.PURGED, tombstone)
