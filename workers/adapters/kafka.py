"""Kafka through kafka-python: the producer behind the outbox and the dead-letter topic, topic
administration for ``callvault migrate``, and the consumer-lag probe."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError, TopicAlreadyExistsError

from ..domain.errors import TransientError

SEND_TIMEOUT = 30.0


class KafkaBus:
    """Publishes records and returns only when the broker has acknowledged every one."""

    def __init__(self, bootstrap: str, client_id: str) -> None:
        try:
            self._producer = KafkaProducer(
                bootstrap_servers=bootstrap.split(","),
                client_id=client_id,
                acks="all",
                linger_ms=5,
                enable_idempotence=True,
                request_timeout_ms=15_000,
            )
        except (KafkaError, OSError) as exc:
            raise TransientError(f"Kafka unreachable at {bootstrap}: {type(exc).__name__}") from exc

    def publish(self, records: list[tuple[str, str | None, bytes]]) -> None:
        try:
            futures = [
                self._producer.send(
                    topic, key=key.encode() if key is not None else None, value=value
                )
                for topic, key, value in records
            ]
            self._producer.flush(timeout=SEND_TIMEOUT)
            for future in futures:
                future.get(timeout=SEND_TIMEOUT)
        except KafkaError as exc:
            raise TransientError(f"Kafka did not acknowledge: {type(exc).__name__}") from exc

    def close(self) -> None:
        self._producer.close(timeout=5)


def ensure_topics(
    bootstrap: str, topics: dict[str, dict[str, str]], partitions: int, replication: int
) -> list[str]:
    """Create the missing topics with their configs; returns the names created."""
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap.split(","), client_id="callvault-migrate"
        )
    except (KafkaError, OSError) as exc:
        raise TransientError(f"Kafka unreachable at {bootstrap}: {type(exc).__name__}") from exc
    try:
        existing = set(admin.list_topics())
        missing = {
            name: {
                "num_partitions": partitions,
                "replication_factor": replication,
                "configs": configs,
            }
            for name, configs in topics.items()
            if name not in existing
        }
        if missing:
            # Another migrate may create them at the same moment: that is success too.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(missing, wait_for_metadata=True)
        return sorted(missing)
    finally:
        admin.close()


class LagProbe:
    """Consumer lag per topic and partition: end offset minus the group's committed offset
    (Faust has no lag metric; this is what kafka-lag-exporter style dashboards expect)."""

    def __init__(self, bootstrap: str, group: str) -> None:
        self._bootstrap = bootstrap.split(",")
        self._group = group
        self._admin: Any = None
        self._consumer: Any = None

    def measure(self, topics: Iterable[str]) -> dict[tuple[str, int], int]:
        if self._admin is None:
            self._admin = KafkaAdminClient(
                bootstrap_servers=self._bootstrap, client_id="callvault-lag"
            )
            self._consumer = KafkaConsumer(
                bootstrap_servers=self._bootstrap,
                client_id="callvault-lag",
                enable_auto_commit=False,
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


@dataclass(frozen=True)
class DeadLetter:
    """One record of the dead-letter topic, as the ops commands show it."""

    partition: int
    offset: int
    data: dict[str, Any]


def read_topic(bootstrap: str, topic: str, timeout_ms: int = 1500) -> list[DeadLetter]:
    """Every record still retained on ``topic``, read from the start (no consumer group)."""
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap.split(","),
            enable_auto_commit=False,
            consumer_timeout_ms=timeout_ms,
        )
    except (KafkaError, OSError) as exc:
        raise TransientError(f"Kafka unreachable at {bootstrap}: {type(exc).__name__}") from exc
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        consumer.seek_to_beginning()
        found = []
        for message in consumer:
            try:
                data = json.loads(message.value).get("data", {})
            except (ValueError, AttributeError):
                data = {}
            found.append(DeadLetter(message.partition, message.offset, data))
        return found
    except KafkaError as exc:
        raise TransientError(f"Kafka did not answer: {type(exc).__name__}") from exc
    finally:
        consumer.close()
