"""Legal holds: while one is in force, the recordings it covers are never purged.

A recording's ``held`` flag is kept in step with the holds (so the scheduler's index can skip
held rows); a subject hold also catches recordings stored later, because ingest asks
``holds_covering`` before it stores.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..domain.identifiers import subject_keys
from ..domain.model import Hold, HoldScopeKind, RecordingStatus, parse_subject
from .context import Context


@dataclass(frozen=True)
class HoldChange:
    hold_id: str
    changed: bool
    recordings: tuple[str, ...] = ()
    # freed, past due and announced while held: their retention.due went out already, so the
    # release purges them itself rather than announcing them a second time
    announced_due: tuple[str, ...] = ()


class HoldService:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def hold_from_data(self, data: dict[str, Any]) -> Hold:
        scope = data["scope"]
        if "subject" in scope:
            pairs = parse_subject(scope["subject"]).normalized(self._ctx.settings.default_region)
            return Hold(
                hold_id=data["hold_id"],
                reason=data["reason"],
                case_ref=data.get("case_ref"),
                scope_kind=HoldScopeKind.SUBJECT,
                subject_digests=subject_keys(self._ctx.hash_key, pairs).digests,
            )
        kind = HoldScopeKind.RECORDINGS if "recording_ids" in scope else HoldScopeKind.CALLS
        return Hold(
            hold_id=data["hold_id"],
            reason=data["reason"],
            case_ref=data.get("case_ref"),
            scope_kind=kind,
            targets=tuple(str(t) for t in scope[kind.value]),
        )

    def place(self, hold: Hold) -> HoldChange:
        with self._ctx.store.exclusive(f"hold:{hold.hold_id}"):
            return self._place(hold)

    def release(self, hold_id: str) -> HoldChange:
        """Lift a hold. Freed recordings past due go at once: those already announced are
        listed in ``announced_due`` for the caller to purge, the others at the next tick."""
        with self._ctx.store.exclusive(f"hold:{hold_id}"):
            return self._release(hold_id)

    def _place(self, hold: Hold) -> HoldChange:
        now = self._ctx.clock()
        with self._ctx.store.transaction() as tx:
            if tx.hold(hold.hold_id) is not None:
                return HoldChange(hold.hold_id, changed=False)  # repeated, or released before
            placed = replace(hold, placed_at=now, released_at=None)
            tx.save_hold(placed)
            covered = []
            for recording in tx.recordings_in_scope(placed):
                if recording.status is not RecordingStatus.PURGED and not recording.held:
                    tx.save_recording(replace(recording, held=True))
                covered.append(recording.recording_id)
            tx.append_audit(
                "hold_placed",
                hold.hold_id,
                {
                    "scope": hold.scope_kind.value,
                    "case_ref": hold.case_ref,
                    "recording_ids": sorted(covered),
                },
                now,
            )
        return HoldChange(hold.hold_id, True, tuple(covered))

    def _release(self, hold_id: str) -> HoldChange:
        now = self._ctx.clock()
        with self._ctx.store.transaction() as tx:
            hold = tx.hold(hold_id)
            if hold is None:
                # Released before it was placed (out-of-order delivery): remember the release
                # so that the late 'placed' command cannot hold anything.
                tombstone = Hold(
                    hold_id, "released before placed", None, HoldScopeKind.CALLS, released_at=now
                )
                tx.save_hold(tombstone)
                return HoldChange(hold_id, changed=False)
            if hold.released_at is not None:
                return HoldChange(hold_id, changed=False)
            tx.save_hold(replace(hold, released_at=now))
            freed, announced = [], []
            for recording in tx.recordings_in_scope(hold):
                digests = tx.subject_keys_of(recording.recording_id)
                if recording.held and not tx.holds_covering(recording, digests):
                    tx.save_recording(replace(recording, held=False))
                    freed.append(recording.recording_id)
                    if recording.due_announced_at is not None and recording.retention_due_at <= now:
                        announced.append(recording.recording_id)
            tx.append_audit("hold_released", hold_id, {"recording_ids": sorted(freed)}, now)
        # Freed recordings never announced are announced by the scheduler at its next tick.
        return HoldChange(hold_id, True, tuple(freed), tuple(announced))
