"""The work a worker does on its own: publishing the outbox, carrying out follow-ups,
refreshing gauges, and the status summary. Each step is idempotent and may be repeated by any
worker after a crash."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from ..domain.errors import PermanentError, TransientError
from ..domain.retention import rfc3339
from .context import Context
from .messagebus import MessageBus
from .ports.bus import EventBus
from .ports.unit_of_work import FollowUp, FollowUpQueue, Outbox, Partitions

log = structlog.get_logger("callvault.background")
RELAY_BATCH = 500
MAX_BACKOFF_SECONDS = 300.0


@dataclass
class Relay:
    """Publishes events written in the same transaction as their effects: at least once, with
    stable CloudEvent ids (a consumer drops repeats by id); a published row is forgotten."""

    outbox: Outbox
    bus: EventBus
    ctx: Context

    def publish_pending(self) -> int:
        topics = self.ctx.settings.topics()
        with self.outbox.pending(RELAY_BATCH) as rows:
            if rows:
                records = [(topics[r.topic], r.key, _value(r.event)) for r in rows]
                self.bus.publish(records)
        self.ctx.metrics.outbox_published.inc(len(rows))
        return len(rows)


def _value(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass
class Dispatcher:
    """Carries out follow-up rows, oldest first. A transient failure postpones the row with
    backoff; a permanent one parks it (logged and counted, never blocking the others)."""

    queue: FollowUpQueue
    bus: MessageBus
    ctx: Context

    def run_once(self) -> bool:
        """Handle one due follow-up; ``False`` when there was none."""
        claimed: FollowUp | None = None
        try:
            with self.queue.claim() as follow_up:
                if follow_up is None:
                    return False
                claimed = follow_up
                self.bus.handle(follow_up.command)
        except Exception as error:
            if claimed is None:
                raise  # the queue itself is unreachable: the timer tries again
            self._failed(claimed, error)
        return True

    def drain(self, limit: int = 100) -> int:
        done = 0
        while done < limit and self.run_once():
            done += 1
        return done

    def _failed(self, follow_up: FollowUp, error: Exception) -> None:
        name = type(follow_up.command).__name__
        if isinstance(error, TransientError):
            delay = min(MAX_BACKOFF_SECONDS, 2.0 ** min(follow_up.attempts, 9))
            self.queue.postpone(follow_up.id, delay, str(error))
            log.warning("follow_up_postponed", follow_up=name, seconds=delay, error=str(error))
            return
        code = error.error_code if isinstance(error, PermanentError) else "internal_error"
        if not isinstance(error, PermanentError):
            log.error(
                "follow_up_bug", follow_up=name, error_type=type(error).__name__, exc_info=error
            )
        self.queue.give_up(follow_up.id, f"{code}: {error}")
        self.ctx.metrics.followups_failed.labels(kind=name).inc()
        log.error("follow_up_failed", follow_up=name, error_code=code)


def refresh_gauges(ctx: Context, outbox: Outbox, queue: FollowUpQueue) -> None:
    now = ctx.clock()
    with ctx.uow() as uow:
        count, oldest = uow.counts.overdue_summary(now)
        holds = len(uow.holds.active())
        held = uow.counts.held_count()
        open_requests = uow.requests.open()
    metrics = ctx.metrics
    metrics.overdue.set(count)
    metrics.oldest_overdue.set((now - oldest).total_seconds() if oldest else 0)
    metrics.holds_active.set(holds)
    metrics.held_recordings.set(held)
    metrics.dsr_open.set(len(open_requests))
    deadlines = [r.due_at for r in open_requests if r.due_at is not None]
    metrics.dsr_nearest_deadline.set(
        (min(deadlines) - now).total_seconds() if deadlines else float("nan")
    )
    backlog, oldest_event = outbox.outbox_backlog()
    metrics.outbox_backlog.set(backlog)
    metrics.outbox_oldest.set((now - oldest_event).total_seconds() if oldest_event else 0)
    metrics.followups_backlog.set(queue.follow_up_backlog())
    metrics.followups_parked.set(queue.parked_count())


def maintain_partitions(ctx: Context, partitions: Partitions) -> list[str]:
    """The partitions ahead made, and the rows that fell past them counted (an alert fires
    on any: the DEFAULT partition is a safety net, and its rows move out at the next round)."""
    made = partitions.ensure_partitions()
    if made:
        log.info("partitions_made", partitions=made)
    for table, rows in partitions.stray_rows().items():
        ctx.metrics.partition_default_rows.labels(table=table).set(rows)
        if rows:
            log.warning("rows_in_default_partition", table=table, rows=rows)
    return made


def status_summary(ctx: Context, now: datetime | None = None) -> dict[str, Any]:
    now = now or ctx.clock()
    with ctx.uow() as uow:
        counts = uow.counts.count_by_status()
        overdue, oldest = uow.counts.overdue_summary(now)
        open_requests = uow.requests.open()
        holds = uow.holds.active()
    nearest = min((r.due_at for r in open_requests if r.due_at), default=None)
    return {
        "recordings": counts,
        "overdue": overdue,
        "oldest_overdue_seconds": (now - oldest).total_seconds() if oldest else 0.0,
        "open_dsr_requests": len(open_requests),
        "nearest_dsr_deadline": rfc3339(nearest) if nearest else None,
        "holds_active": len(holds),
    }
