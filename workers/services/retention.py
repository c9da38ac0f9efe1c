"""The retention scheduler: announces each recording once when it falls due and is not held.

Several worker processes may run it at once: ``claim_due`` takes rows ``FOR UPDATE SKIP
LOCKED`` and marks them announced in the same transaction that enqueues the event in the
outbox, so no recording is announced twice and none is missed if a worker dies.
"""

from __future__ import annotations

from dataclasses import replace

from ..domain import events
from ..domain.retention import rfc3339
from .context import Context


class RetentionScheduler:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def announce_due(self) -> int:
        """One batch of due recordings announced; returns how many."""
        now = self._ctx.clock()
        with self._ctx.store.transaction() as tx:
            due = tx.claim_due(now, self._ctx.settings.purge_batch)
            for recording in due:
                tx.save_recording(replace(recording, due_announced_at=now))
                tx.enqueue(
                    events.OutboundEvent(
                        "retention_due",
                        recording.recording_id,
                        events.cloudevent(
                            events.DUE,
                            self._ctx.source,
                            f"{recording.recording_id}/{rfc3339(now)}",
                            now,
                            events.due_data(recording),
                        ),
                    )
                )
        return len(due)

    def apply_policies(self) -> int:
        """Re-compute due dates of stored recordings whose policy has changed since."""
        policy = self._ctx.settings.policy
        changed = 0
        with self._ctx.store.transaction() as tx:
            for tenant, duration in policy.per_tenant:
                changed += tx.reschedule(tenant, duration, [])
            others = [tenant for tenant, _ in policy.per_tenant]
            changed += tx.reschedule(None, policy.default, others)
        return changed

    def refresh_gauges(self) -> None:
        now = self._ctx.clock()
        with self._ctx.store.transaction() as tx:
            count, oldest = tx.overdue_summary(now)
            holds = len(tx.active_holds())
            held = tx.held_count()
            open_requests = tx.open_dsr_requests()
        metrics = self._ctx.metrics
        metrics.dsr_open.set(len(open_requests))
        deadlines = [r.due_at for r in open_requests if r.due_at is not None]
        nearest = (min(deadlines) - now).total_seconds() if deadlines else float("nan")
        metrics.dsr_nearest_deadline.set(nearest)
        metrics.overdue.set(count)
        metrics.oldest_overdue.set((now - oldest).total_seconds() if oldest else 0)
        metrics.holds_active.set(holds)
        metrics.held_recordings.set(held)

    def remove_expired_exports(self) -> int:
        now = self._ctx.clock()
        bucket = self._ctx.settings.export_bucket
        objects = self._ctx.objects
        with self._ctx.store.transaction() as tx:
            keys = tx.expired_exports(now)
        for key in keys:
            objects.delete_versions(bucket, key, objects.list_versions(bucket, key))
            with self._ctx.store.transaction() as tx:
                tx.remove_export(key)
        return len(keys)
