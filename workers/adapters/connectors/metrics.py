"""Each connector's own Prometheus registry (served on its own port): what it queued, sent,
refused and still holds. Labels carry the connector kind and reason codes only."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

REJECT_REASONS = (
    "not_audio",
    "unreadable_name",
    "backlog_full",
    "audio_missing",
    "bad_request",
    "too_large",
    "unsafe_path",
    "too_long",
    "error",
)
FAILURE_STAGES = ("upload", "publish")
PARTIES = ("caller", "callee")
PROVIDERS = ("twilio", "telnyx", "vonage")


@dataclass
class ConnectorMetrics:
    connector: str
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r, labels = self.registry, ["connector"]
        self.queued = Counter(
            "callvault_connector_calls_queued_total",
            "Finished recordings taken into the local backlog",
            labels,
            registry=r,
        ).labels(self.connector)
        self.published = Counter(
            "callvault_connector_calls_published_total",
            "call.ended events acknowledged by Kafka (their local audio is then deleted)",
            labels,
            registry=r,
        ).labels(self.connector)
        self.duplicates = Counter(
            "callvault_connector_duplicates_total",
            "Recordings seen again after they were queued or sent (nothing sent twice)",
            labels,
            registry=r,
        ).labels(self.connector)
        rejected = Counter(
            "callvault_connector_rejected_total",
            "Recordings or requests refused, by reason",
            [*labels, "reason"],
            registry=r,
        )
        self.rejected = {
            reason: rejected.labels(self.connector, reason) for reason in REJECT_REASONS
        }
        refused = Counter(
            "callvault_connector_parties_refused_total",
            "Callers or callees that were no phone number, tel:/sip: URI or withheld spelling "
            "(shell or option syntax, say); the call is sent with that party withheld",
            [*labels, "party"],
            registry=r,
        )
        self.parties_refused = {party: refused.labels(self.connector, party) for party in PARTIES}
        failures = Counter(
            "callvault_connector_failures_total",
            "Attempts that failed because S3 (upload) or Kafka (publish) was away; retried",
            [*labels, "stage"],
            registry=r,
        )
        self.failures = {stage: failures.labels(self.connector, stage) for stage in FAILURE_STAGES}
        deleted = Counter(
            "callvault_connector_provider_copies_deleted_total",
            "Recordings deleted at the cloud provider after Kafka acknowledged the call",
            [*labels, "provider"],
            registry=r,
        )
        self.provider_deleted = {p: deleted.labels(self.connector, p) for p in PROVIDERS}
        failed = Counter(
            "callvault_connector_provider_copy_failures_total",
            "Attempts to delete a recording at the cloud provider that failed; retried",
            [*labels, "provider"],
            registry=r,
        )
        self.provider_failures = {p: failed.labels(self.connector, p) for p in PROVIDERS}
        self.provider_waiting = Gauge(
            "callvault_connector_provider_copies_waiting",
            "Recordings still kept at the cloud provider that callvault is to delete",
            labels,
            registry=r,
        ).labels(self.connector)
        self.provider_oldest = Gauge(
            "callvault_connector_provider_copies_oldest_seconds",
            "How long the oldest recording still to delete has been kept at the provider since "
            "Kafka acknowledged its call (0 when none)",
            labels,
            registry=r,
        ).labels(self.connector)
        self.backlog = Gauge(
            "callvault_connector_backlog_calls",
            "Recordings queued locally and not yet acknowledged by Kafka",
            labels,
            registry=r,
        ).labels(self.connector)
        self.oldest = Gauge(
            "callvault_connector_backlog_oldest_seconds",
            "Age of the oldest recording in the backlog (0 when empty)",
            labels,
            registry=r,
        ).labels(self.connector)

    def serve(self, port: int, addr: str) -> None:
        """Expose /metrics on ``addr:port`` in a daemon thread (port 0: not served)."""
        if port:
            start_http_server(port, addr=addr, registry=self.registry)
