"""Operations: reconciliation of the vault against the database, and the status summary."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from ..domain.model import RecordingStatus
from ..domain.retention import rfc3339
from .context import Context

PAGE = 1000


@dataclass
class Reconciliation:
    orphan_objects: list[str] = field(default_factory=list)
    missing_objects: list[str] = field(default_factory=list)
    overdue_not_purged: list[str] = field(default_factory=list)
    repaired: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {
            "orphan_object": len(self.orphan_objects),
            "missing_object": len(self.missing_objects),
            "overdue_not_purged": len(self.overdue_not_purged),
        }


class Reconciler:
    """Compares the vault bucket with PostgreSQL: objects nobody references (orphans),
    stored recordings whose object is gone (missing), and recordings overdue but not purged."""

    def __init__(self, ctx: Context, *, overdue_grace_seconds: float = 300) -> None:
        self._ctx = ctx
        self._grace = overdue_grace_seconds

    def run(self, *, repair: bool = False) -> Reconciliation:
        now = self._ctx.clock()
        bucket = self._ctx.settings.vault_bucket
        keys = set(self._ctx.objects.list_keys(bucket, "recordings/"))
        result = Reconciliation()
        referenced: set[str] = set()
        after = "00000000-0000-0000-0000-000000000000"  # recording_id is a uuid: start below all
        while True:
            with self._ctx.store.transaction() as tx:
                page = tx.recordings_page(after, PAGE)
            if not page:
                break
            after = page[-1].recording_id
            for rec in page:
                if rec.status in (RecordingStatus.STORED, RecordingStatus.STORING):
                    referenced.add(rec.object_key)
                if rec.status is RecordingStatus.STORED and rec.object_key not in keys:
                    result.missing_objects.append(rec.recording_id)
                overdue = (now - rec.retention_due_at).total_seconds() > self._grace
                if (
                    rec.status in (RecordingStatus.STORED, RecordingStatus.PURGING)
                    and not rec.held
                    and overdue
                ):
                    result.overdue_not_purged.append(rec.recording_id)
        result.orphan_objects = sorted(keys - referenced)
        if repair:
            result.repaired = self._repair(result)
        for kind, count in result.counts().items():
            self._ctx.metrics.reconcile_findings.labels(kind=kind).set(count)
        return result

    def _repair(self, found: Reconciliation) -> dict[str, int]:
        objects, bucket = self._ctx.objects, self._ctx.settings.vault_bucket
        for key in found.orphan_objects:
            objects.delete_versions(bucket, key, objects.list_versions(bucket, key))
        with self._ctx.store.transaction() as tx:
            for recording_id in found.overdue_not_purged:
                rec = tx.recording(recording_id, for_update=True)
                if rec is not None and rec.status is RecordingStatus.STORED:
                    tx.save_recording(replace(rec, due_announced_at=None))  # announce again
        return {
            "orphan_objects_deleted": len(found.orphan_objects),
            "overdue_reannounced": len(found.overdue_not_purged),
        }


def status_summary(ctx: Context, now: datetime | None = None) -> dict[str, Any]:
    now = now or ctx.clock()
    with ctx.store.transaction() as tx:
        counts = tx.count_recordings()
        overdue, oldest = tx.overdue_summary(now)
        open_requests = tx.open_dsr_requests()
        holds = tx.active_holds()
    nearest = min((r.due_at for r in open_requests if r.due_at), default=None)
    return {
        "recordings": counts,
        "overdue": overdue,
        "oldest_overdue_seconds": (now - oldest).total_seconds() if oldest else 0.0,
        "open_dsr_requests": len(open_requests),
        "nearest_dsr_deadline": rfc3339(nearest) if nearest else None,
        "holds_active": len(holds),
    }
