"""Purge: the one path by which recordings leave callvault - retention, erasure or objection -
a batch at a time, each recording still proven one by one.

1. One transaction, under the shared holds lock, locks the rows in id order, re-reads the
   holds in force and destroys the data keys of those that may go (status ``purging``): from
   this instant no copy of their ciphertext anywhere can be read.
2. The store deletes every version the vault holds of them (known from ingest; the listing is
   needed only for rows of an older version), up to 1000 a request, clearing legal holds first.
3. One transaction turns them into tombstones and writes, per recording, an audit entry and a
   ``recording.purged`` event.
A batch killed after 1 or 2 finishes on redelivery; a finished purge is never redone.
Before 1, every hold command published so far must be in the database (a worker that was down
while a hold was placed reads it only after it starts again): while one is pending, the purge
fails as transient and its retry waits for it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from ...domain.errors import HoldsPending
from ...domain.messages import KeysToSweep, PurgeRecordings, SweepPurgedKeys
from ...domain.model import PurgeReason, Recording, RecordingStatus, Verdict
from ...domain.retention import lag_seconds
from ..context import Context
from ..ports.objects import ObjectMissing, VersionRef


@dataclass(frozen=True)
class _Doomed:
    """What the store must delete of one shredded recording."""

    versions: list[VersionRef]
    legal_hold: bool  # the row knows of an object legal hold: cleared before the delete
    collected_at: datetime  # its partition's month: the tombstone's lock searches no other


def purge_recordings(command: PurgeRecordings, ctx: Context) -> str:
    verdicts = purge(list(command.recording_ids), command.reason, ctx, command.collected)
    done = sum(v is Verdict.PURGE for v in verdicts.values())
    return f"purged:{done}/{len(verdicts)}"


def purge(
    recording_ids: list[str],
    reason: PurgeReason,
    ctx: Context,
    collected: Collection[datetime] = (),
) -> dict[str, Verdict]:
    """Purge what may go; returns each id's verdict (``UNKNOWN`` for ids never stored).
    ``collected``: the recordings' collection times, where known (their partitions)."""
    _holds_applied(ctx)
    verdicts, shredded = _shred(recording_ids, reason, ctx, collected)
    _delete_versions(shredded, ctx)
    shredded_at = {doomed.collected_at for doomed in shredded.values()}
    ctx.retry.call(lambda: _tombstone(list(shredded), shredded_at, ctx), "tombstone")
    return verdicts


def _holds_applied(ctx: Context) -> None:
    if (pending := ctx.hold_commands.pending()) > 0:
        raise HoldsPending(f"{pending} hold command(s) not applied yet: the purge waits for them")


def _shred(
    recording_ids: list[str], reason: PurgeReason, ctx: Context, collected: Collection[datetime]
) -> tuple[dict[str, Verdict], dict[str, _Doomed]]:
    """The key-destroy transaction; returns the verdicts and, for each recording that goes,
    the versions to delete."""
    now = ctx.clock()
    verdicts = dict.fromkeys(recording_ids, Verdict.UNKNOWN)
    shredded: dict[str, _Doomed] = {}
    with ctx.uow() as uow:
        uow.lock_holds(exclusive=False)
        recordings = uow.recordings.lock(recording_ids, collected)
        covered = uow.holds.covered([r for r in recordings if r.alive])
        for recording in recordings:
            verdict = recording.verdict(reason, now, covered=recording.recording_id in covered)
            verdicts[recording.recording_id] = verdict
            if verdict is Verdict.PURGE:
                versions = _versions(recording, ctx)
                doomed = _Doomed(versions, recording.legal_hold, recording.collected_at)
                shredded[recording.recording_id] = doomed
                recording.shred(reason, len(doomed.versions))
            else:
                _apply(recording, verdict, ctx)
        uow.recordings.update_many(recordings)
        uow.commit()
    return verdicts, shredded


def _apply(recording: Recording, verdict: Verdict, ctx: Context) -> None:
    if verdict is Verdict.HELD and recording.set_held(True):
        ctx.metrics.hold_drift_repaired.inc()  # a hold the flag had missed: repaired here
    elif verdict is Verdict.NOT_DUE:
        recording.postpone()


def _versions(recording: Recording, ctx: Context) -> list[VersionRef]:
    """Every version the vault holds of the recording: the one ingest recorded; rows stored
    before versions were recorded are listed."""
    key = recording.object_key
    if recording.object_version is not None:
        return [VersionRef(key, recording.object_version)]
    listed = ctx.objects.list_versions(ctx.vault, key)
    return [VersionRef(key, v.version_id, v.is_delete_marker) for v in listed]


def _delete_versions(shredded: dict[str, _Doomed], ctx: Context) -> None:
    """One multi-object delete for the whole batch (the store takes up to 1000 a request);
    legal holds the rows know of are cleared first, ones they did not know of on refusal."""
    targets = [v for doomed in shredded.values() for v in doomed.versions]
    held = [v for doomed in shredded.values() if doomed.legal_hold for v in doomed.versions]
    if not targets:
        return
    _clear_legal_holds(held, ctx)
    locked = ctx.objects.delete_versions(ctx.vault, targets)
    if locked:  # a legal hold the row did not know about
        _clear_legal_holds(locked, ctx)
        ctx.objects.delete_versions(ctx.vault, locked)


def _clear_legal_holds(targets: list[VersionRef], ctx: Context) -> None:
    for target in targets:
        if target.is_delete_marker:
            continue
        try:
            ctx.legal_holds.set_legal_hold(ctx.vault, target, False)
        except ObjectMissing:
            continue


def _tombstone(recording_ids: list[str], collected: set[datetime], ctx: Context) -> None:
    now = ctx.clock()
    with ctx.uow() as uow:
        locked = uow.recordings.lock(recording_ids, collected)
        tombstones = [r for r in locked if r.status is RecordingStatus.PURGING]
        for recording in tombstones:
            recording.tombstone(now)
        uow.recordings.update_many(tombstones)
        if tombstones:
            ids = [r.recording_id for r in tombstones]
            uow.recordings.forget_digests(ids)
            uow.record(KeysToSweep(tuple(ids)))
        uow.commit()
    _count(tombstones, ctx)


def sweep_purged_keys(command: SweepPurgedKeys, ctx: Context) -> str:
    """Every version goes, not only the one callvault wrote: a stray version or delete marker
    that another writer (an operator, a replication rule) left under a purged key is found by
    listing the key and deleted. The data key is gone already, so a stray was unreadable."""
    recordings = ctx.read(lambda uow: uow.recordings.get_many(list(command.recording_ids)))
    strays = 0
    for recording in recordings:
        if recording.status is RecordingStatus.PURGED:
            listed = ctx.objects.list_versions(ctx.vault, recording.object_key)
            targets = [
                VersionRef(recording.object_key, v.version_id, v.is_delete_marker) for v in listed
            ]
            if targets:
                _clear_legal_holds(targets, ctx)
                ctx.objects.delete_versions(ctx.vault, targets)
                strays += len(targets)
    ctx.metrics.purge_strays.inc(strays)
    return f"strays:{strays}"


def _count(tombstones: list[Recording], ctx: Context) -> None:
    """The purges by reason, and each retention purge's lag against its due time."""
    reasons = Counter(r.purge_reason or PurgeReason.RETENTION for r in tombstones)
    for reason, purged in reasons.items():
        ctx.metrics.purged.labels(reason=reason.value).inc(purged)
    for recording in tombstones:
        retention = recording.purge_reason in (None, PurgeReason.RETENTION)
        if retention and recording.purged_at is not None:
            lag = lag_seconds(recording.retention_due_at, recording.purged_at)
            ctx.metrics.purge_lag.observe(max(0.0, lag))
