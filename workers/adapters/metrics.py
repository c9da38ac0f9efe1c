"""Prometheus metrics. Labels carry only codes and types - never an identifier of a person."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from .. import __version__

# Label values known in advance start at 0, so rate() sees the first event of each.
ERROR_CODES = (
    "invalid_json",
    "schema_violation",
    "unsupported_uri",
    "uri_not_allowed",
    "fetch_failed",
    "checksum_mismatch",
    "not_audio",
    "unsupported_audio",
    "internal_error",
)
PURGE_REASONS = ("retention", "erasure", "objection")
DSR_TYPES = ("access", "erasure", "rectification", "restriction", "objection", "portability")
DSR_STATUSES = ("completed", "partial", "rejected")

_LAG_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 6 * 3600, 86400, 7 * 86400)
_DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_DSR_BUCKETS = (0.1, 0.5, 1, 5, 30, 60, 300, 3600, 86400, 7 * 86400, 30 * 86400)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        # process_start_time_seconds (restarts), memory, file descriptors and GC, as every
        # Python exporter has them; the default registry's copies are not shared.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        Info("callvault_build", "The running callvault version", registry=r).info(
            {"version": __version__}
        )
        self.ready = Gauge(
            "callvault_worker_ready",
            "1 once the worker has joined its consumer group and holds its partitions",
            registry=r,
        )
        self.outbox_backlog = Gauge(
            "callvault_outbox_backlog",
            "Output events written but not yet published to Kafka",
            registry=r,
        )
        self.outbox_oldest = Gauge(
            "callvault_outbox_oldest_seconds",
            "Age of the oldest unpublished output event (0 when none)",
            registry=r,
        )
        self.followups_backlog = Gauge(
            "callvault_followups_backlog",
            "Follow-up work recorded but not yet carried out (freed recordings, resumed erasures)",
            registry=r,
        )
        self.followups_failed = Counter(
            "callvault_followups_failed",
            "Follow-up work that failed for good and was parked for inspection",
            ["kind"],
            registry=r,
        )
        self.followups_parked = Gauge(
            "callvault_followups_parked",
            "Follow-up work that failed for good and waits for an operator "
            "(`callvault followups list`)",
            registry=r,
        )
        self.audit_checkpointed_at = Gauge(
            "callvault_audit_last_checkpoint_timestamp_seconds",
            "When this worker last signed a checkpoint of the audit chain's head (Unix time; "
            "0 before its first, or without the scheduler role)",
            registry=r,
        )
        self.purge_strays = Counter(
            "callvault_purge_strays",
            "Versions and delete markers found beside a purged recording's own version, deleted",
            registry=r,
        )
        self.hold_drift_repaired = Counter(
            "callvault_hold_drift_repaired",
            "Recordings whose held flag disagreed with the holds table and was repaired",
            registry=r,
        )
        self.recordings_stored = Counter(
            "callvault_recordings_stored", "Recordings stored in the vault", registry=r
        )
        self.bytes_stored = Counter(
            "callvault_recordings_stored_bytes", "Original audio bytes stored", registry=r
        )
        self.ingest_duration = Histogram(
            "callvault_ingest_duration_seconds",
            "Time from a call-ended event's arrival to its recording being stored",
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.discarded = Counter(
            "callvault_recordings_discarded", "Recordings discarded", ["reason"], registry=r
        )
        self.purged = Counter(
            "callvault_recordings_purged", "Recordings purged", ["reason"], registry=r
        )
        self.purge_lag = Histogram(
            "callvault_purge_lag_seconds",
            "purged_at - due_at of each retention purge",
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.overdue = Gauge(
            "callvault_retention_overdue_recordings",
            "Recordings past their due time, not held and not purged",
            registry=r,
        )
        self.oldest_overdue = Gauge(
            "callvault_retention_oldest_overdue_seconds",
            "How long the oldest overdue recording has been overdue (0 when none)",
            registry=r,
        )
        self.deadletters = Counter(
            "callvault_deadletter",
            "Events sent to the dead-letter topic",
            ["error_code"],
            registry=r,
        )
        self.dsr_requests = Counter(
            "callvault_dsr_requests",
            "Data-subject requests answered",
            ["type", "status"],
            registry=r,
        )
        self.dsr_open = Gauge(
            "callvault_dsr_open_requests",
            "Data-subject requests not yet fully carried out",
            registry=r,
        )
        self.dsr_nearest_deadline = Gauge(
            "callvault_dsr_nearest_deadline_seconds",
            "Seconds until the deadline of the most urgent open request (absent when none)",
            registry=r,
        )
        self.dsr_duration = Histogram(
            "callvault_dsr_completion_seconds",
            "Time from a request's receipt to its result",
            ["type"],
            buckets=_DSR_BUCKETS,
            registry=r,
        )
        self.holds_active = Gauge("callvault_holds_active", "Legal holds in force", registry=r)
        self.held_recordings = Gauge(
            "callvault_held_recordings", "Recordings kept by a legal hold", registry=r
        )
        self.events_processed = Counter(
            "callvault_events_processed",
            "Input events handled",
            ["topic", "outcome"],
            registry=r,
        )
        self.outbox_published = Counter(
            "callvault_outbox_published", "Events published from the outbox", registry=r
        )
        self.consumer_lag = Gauge(
            "callvault_consumer_lag_messages",
            "Messages not yet committed by the consumer group (end offset - committed offset)",
            ["consumergroup", "topic", "partition"],
            registry=r,
        )
        self.partition_default_rows = Gauge(
            "callvault_partition_default_rows",
            "Rows held by a table's DEFAULT partition: calls or audit entries beyond the "
            "partitions made ahead (0 normally; they move out at the next partition round)",
            ["table"],
            registry=r,
        )
        self.reconcile_findings = Gauge(
            "callvault_reconcile_findings",
            "Problems found by the last vault/database reconciliation",
            ["kind"],
            registry=r,
        )
        self._start_known_series()

    def _start_known_series(self) -> None:
        for code in ERROR_CODES:
            self.deadletters.labels(error_code=code)
        for reason in PURGE_REASONS:
            self.purged.labels(reason=reason)
        self.discarded.labels(reason="notice_not_played")
        for dsr_type in DSR_TYPES:
            for status in DSR_STATUSES:
                self.dsr_requests.labels(type=dsr_type, status=status)
