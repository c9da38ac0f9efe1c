"""Consumer lag as a metric. Faust exposes none, so a worker measures it itself, every
``CALLVAULT_METRICS_INTERVAL``: for each partition of the input topics of the roles it runs,
the end offset minus the consumer group's committed offset, published as
``callvault_consumer_lag_messages{consumergroup, topic, partition}`` - a name of its own, so
that it never collides with a Kafka lag exporter's ``kafka_consumergroup_lag`` scraped by the
same Prometheus."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, Protocol

import structlog
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from ...domain.errors import TransientError
from ..metrics import Metrics
from .security import PLAINTEXT, KafkaSecurity

log = structlog.get_logger("callvault.lag")


class Probe(Protocol):
    def measure(self, topics: Iterable[str]) -> dict[tuple[str, int], int]: ...

    def close(self) -> None: ...


class LagProbe:
    """Consumer lag per topic and partition: end offset minus the group's committed offset
    (Faust has no lag metric; this is what kafka-lag-exporter style dashboards expect)."""

    def __init__(self, bootstrap: str, group: str, security: KafkaSecurity = PLAINTEXT) -> None:
        self._bootstrap = bootstrap.split(",")
        self._group = group
        self._security = security
        self._admin: Any = None
        self._consumer: Any = None

    def measure(self, topics: Iterable[str]) -> dict[tuple[str, int], int]:
        if self._admin is None:
            options = self._security.options()
            self._admin = KafkaAdminClient(
                bootstrap_servers=self._bootstrap, client_id="callvault-lag", **options
            )
            self._consumer = KafkaConsumer(
                bootstrap_servers=self._bootstrap,
                client_id="callvault-lag",
                enable_auto_commit=False,
                **options,
            )
        wanted = set(topics)
        committed = self._admin.list_group_offsets({self._group: None}).get(self._group, {})
        partitions = [
            TopicPartition(topic, p)
            for topic in wanted
            for p in sorted(self._consumer.partitions_for_topic(topic) or ())
        ]
        ends = self._consumer.end_offsets(partitions)
        starts = self._consumer.beginning_offsets(partitions)
        lag = {}
        for tp in partitions:
            done = committed.get(tp)
            # Nothing committed yet: everything still retained is waiting.
            offset = done.offset if done is not None and done.offset >= 0 else starts.get(tp, 0)
            lag[(tp.topic, tp.partition)] = max(0, ends.get(tp, 0) - offset)
        return lag

    def close(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._consumer.close()


class _OnDemand:
    """A probe opened on first use; a broker error closes it (the next call opens a fresh
    one) and is a :class:`TransientError` that says what was not measured."""

    def __init__(self, open_probe: Callable[[], Probe], what: str) -> None:
        self._open = open_probe
        self._what = what
        self._probe: Probe | None = None

    def measure(self, topics: Iterable[str]) -> dict[tuple[str, int], int]:
        try:
            if self._probe is None:
                self._probe = self._open()
            return self._probe.measure(topics)
        except (KafkaError, OSError) as exc:
            self.close()
            raise TransientError(f"{self._what}: {type(exc).__name__}") from exc

    def close(self) -> None:
        probe, self._probe = self._probe, None
        if probe is not None:
            try:
                probe.close()
            except (KafkaError, OSError) as exc:  # closing a broken client may fail too
                log.debug("lag_probe_close_failed", error_type=type(exc).__name__)


class ConsumerLag:
    """Refreshes ``metrics.consumer_lag`` for ``topics`` as seen by consumer group ``group``."""

    def __init__(
        self,
        bootstrap: str,
        group: str,
        topics: Iterable[str],
        metrics: Metrics,
        *,
        security: KafkaSecurity = PLAINTEXT,
        probe_factory: Callable[[str, str], Probe] | None = None,
    ) -> None:
        self._group = group
        self._topics = tuple(dict.fromkeys(topics))
        self._metrics = metrics
        factory = probe_factory or partial(LagProbe, security=security)
        self._probe = _OnDemand(lambda: factory(bootstrap, group), "consumer lag not measured")

    @property
    def topics(self) -> tuple[str, ...]:
        return self._topics

    def refresh(self) -> int:
        """Measure and publish the lag; returns the total. A broker problem is a
        :class:`TransientError` (the next tick tries again with fresh connections)."""
        if not self._topics:
            return 0
        lag = self._probe.measure(self._topics)
        gauge = self._metrics.consumer_lag
        for (topic, partition), value in lag.items():
            gauge.labels(consumergroup=self._group, topic=topic, partition=str(partition)).set(
                value
            )
        return sum(lag.values())

    def close(self) -> None:
        self._probe.close()


class PendingHoldCommands:
    """The ``HoldCommands`` port: the consumer group's lag on the holds topic - hold commands
    that no worker has applied yet (Faust commits an offset only once its event is handled).
    Shared by the purges of several threads: one probe, one at a time."""

    def __init__(
        self,
        bootstrap: str,
        group: str,
        topic: str,
        *,
        security: KafkaSecurity = PLAINTEXT,
        probe_factory: Callable[[str, str], Probe] | None = None,
    ) -> None:
        self._topic = topic
        factory = probe_factory or partial(LagProbe, security=security)
        self._probe = _OnDemand(
            lambda: factory(bootstrap, group), "pending hold commands not known"
        )
        self._lock = threading.Lock()

    def pending(self) -> int:
        with self._lock:
            return sum(self._probe.measure([self._topic]).values())

    def close(self) -> None:
        with self._lock:
            self._probe.close()
