"""Legal holds: while one is in force, the recordings it covers are never purged.

Hold changes take the holds lock exclusively; ingest commits and purges take it shared. So a
hold committed before a recording's commit covers it, and a purge sees every hold committed
before it. A recording's ``held`` flag (which lets the scheduler's index skip held rows) is
written alone, under the row's lock; a periodic job re-derives it from the holds table and
repairs any drift. The store's object legal hold follows the flag through a follow-up."""

from __future__ import annotations

import contextlib
from typing import Any

from ...domain.identifiers import subject_keys
from ...domain.keyed import Mac
from ...domain.messages import (
    HoldDriftRepaired,
    PlaceHold,
    ReleaseHold,
    RepairHoldDrift,
    SyncLegalHolds,
)
from ...domain.model import (
    CALL_ID,
    Hold,
    HoldScopeKind,
    Recording,
    call_digests,
    canonical_recording_id,
    parse_subject,
)
from ..context import Context
from ..ports.objects import ObjectMissing, VersionRef


def hold_from_data(data: dict[str, Any], hash_key: Mac, region: str) -> Hold:
    scope = data["scope"]
    common = {
        "hold_id": data["hold_id"],
        "reason": data["reason"],
        "case_ref": data.get("case_ref"),
    }
    if "subject" in scope:
        pairs = parse_subject(scope["subject"]).normalized(region)
        digests = subject_keys(hash_key, pairs).digests
        return Hold(
            **common,
            scope_kind=HoldScopeKind.SUBJECT,
            subject_digests=digests,
            identifiers=frozenset(pairs),
        )
    if "recording_ids" in scope:
        targets = tuple(canonical_recording_id(str(t)) for t in scope["recording_ids"])
        return Hold(**common, scope_kind=HoldScopeKind.RECORDINGS, targets=targets)
    # call ids may carry phone numbers: a hold matches by their keyed digests
    call_ids = [str(t) for t in scope["call_ids"]]
    return Hold(
        **common,
        scope_kind=HoldScopeKind.CALLS,
        targets=tuple(call_digests(hash_key, call_ids)),
        identifiers=frozenset((CALL_ID, c) for c in call_ids),
    )


def place_hold(command: PlaceHold, ctx: Context) -> str:
    hold = command.hold
    with ctx.uow() as uow:
        uow.lock_holds(exclusive=True)
        if uow.holds.get(hold.hold_id, lock=True) is not None:
            return "duplicate"  # placed before, or released before it was placed
        recordings = uow.recordings.in_scope(hold)
        hold.place(ctx.clock(), tuple(r.recording_id for r in recordings if r.alive), command.by)
        uow.holds.add(hold)
        for recording in recordings:
            recording.set_held(True)
            uow.recordings.update(recording)
        uow.commit()
    return "placed"


def release_hold(command: ReleaseHold, ctx: Context) -> str:
    now = ctx.clock()
    with ctx.uow() as uow:
        uow.lock_holds(exclusive=True)
        hold = uow.holds.get(command.hold_id, lock=True)
        if hold is None:
            uow.holds.add(Hold.released_before_placed(command.hold_id, now))
            uow.commit()
            return "released_before_placed"
        if not hold.active:
            return "duplicate"
        hold.release(now)
        uow.holds.update(hold)
        hold.freed(_free(uow.recordings.in_scope(hold), uow), now, command.by)
        uow.holds.update(hold)
        uow.commit()
    return "released"


def _free(recordings: list[Recording], uow: Any) -> list[Recording]:
    """The recordings no other hold in force keeps, flagged free."""
    still = uow.holds.covered(recordings)
    freed = [r for r in recordings if r.recording_id not in still and r.held]
    for recording in freed:
        recording.set_held(False)
        uow.recordings.update(recording)
    return freed


def repair_hold_drift(command: RepairHoldDrift, ctx: Context) -> str:
    with ctx.uow() as uow:
        uow.lock_holds(exclusive=False)
        recordings = uow.recordings.lock(uow.scans.held_flags_in_doubt())
        covered = uow.holds.covered(recordings)
        repaired = [r for r in recordings if r.set_held(r.recording_id in covered)]
        for recording in repaired:
            uow.recordings.update(recording)
        if repaired:
            ids = tuple(r.recording_id for r in repaired)
            uow.record(HoldDriftRepaired(ids, ctx.clock()))
        uow.commit()
    ctx.metrics.hold_drift_repaired.inc(len(repaired))
    return f"repaired:{len(repaired)}"


def sync_legal_holds(command: SyncLegalHolds, ctx: Context) -> str:
    """Make the store's legal hold on each recording's object follow its ``held`` flag (the
    store then refuses to delete or expire a held recording even outside callvault)."""
    ids = list(command.recording_ids)
    seen = ctx.read(lambda uow: uow.recordings.get_many(ids))
    wanted = {r.recording_id: r.held for r in seen}
    for recording in seen:
        if recording.alive and recording.object_version is not None:
            _set_legal_hold(recording, recording.held, ctx)
    with ctx.uow() as uow:
        for recording in uow.recordings.lock(ids):
            if recording.alive and recording.held == wanted[recording.recording_id]:
                recording.note_legal_hold(recording.held)
                uow.recordings.update(recording)
        uow.commit()
    return f"synced:{len(wanted)}"


def _set_legal_hold(recording: Recording, on: bool, ctx: Context) -> None:
    target = VersionRef(recording.object_key, recording.object_version)
    with contextlib.suppress(ObjectMissing):  # purged meanwhile, or missing (reconcile says so)
        ctx.legal_holds.set_legal_hold(ctx.vault, target, on)
