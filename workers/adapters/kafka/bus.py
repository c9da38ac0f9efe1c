"""Kafka through kafka-python: the producer behind the outbox and the dead-letter topic, and
the reader of a whole topic (``callvault deadletter``). Every record produced carries the
CloudEvents Kafka binding's ``content-type`` header (structured mode)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import AuthorizationError, KafkaError

from ...domain.errors import AccessRefused, SchemaMissing, TransientError
from ...domain.events import ORIGINAL_HEADER_PREFIX as ORIGINAL
from ...domain.events import STRUCTURED_HEADER as STRUCTURED
from .security import PLAINTEXT, KafkaSecurity

SEND_TIMEOUT = 30.0
Header = tuple[str, bytes]


class KafkaBus:
    """Publishes records and returns only when the broker has acknowledged every one."""

    def __init__(self, bootstrap: str, client_id: str, security: KafkaSecurity = PLAINTEXT) -> None:
        try:
            self._producer = KafkaProducer(
                bootstrap_servers=bootstrap.split(","),
                client_id=client_id,
                acks="all",
                linger_ms=5,
                enable_idempotence=True,
                request_timeout_ms=15_000,
                **security.options(),
            )
        except (KafkaError, OSError) as exc:
            raise TransientError(f"Kafka unreachable at {bootstrap}: {type(exc).__name__}") from exc

    def publish(
        self,
        records: list[tuple[str, str | None, bytes]],
        headers: list[list[Header]] | None = None,
    ) -> None:
        """Publish ``(topic, key, value)`` records; each carries the structured-mode
        ``content-type`` header, or, when ``headers`` gives a record's own, those."""
        try:
            futures = [
                self._producer.send(
                    topic,
                    key=key.encode() if key is not None else None,
                    value=value,
                    headers=(headers[i] if headers and headers[i] else [STRUCTURED]),
                )
                for i, (topic, key, value) in enumerate(records)
            ]
            self._producer.flush(timeout=SEND_TIMEOUT)
            for future in futures:
                future.get(timeout=SEND_TIMEOUT)
        except AuthorizationError as exc:
            topics = ", ".join(sorted({topic for topic, _, _ in records}))
            raise AccessRefused(
                f"Kafka refused this principal writing to {topics} ({type(exc).__name__}): "
                "see the ACL plan, deploy/kafka/acl-plan.sh"
            ) from exc
        except KafkaError as exc:
            raise TransientError(f"Kafka did not acknowledge: {type(exc).__name__}") from exc

    def close(self) -> None:
        self._producer.close(timeout=5)


@dataclass(frozen=True)
class DeadLetter:
    """One record of the dead-letter topic, as the ops commands show it."""

    partition: int
    offset: int
    data: dict[str, Any]
    headers: tuple[Header, ...] = ()  # the rejected input's own ce_* headers (binary mode)

    def original_headers(self) -> list[Header]:
        """The headers to replay the original record with (binary content mode), if any."""
        return [(k.removeprefix(ORIGINAL), v) for k, v in self.headers if k.startswith(ORIGINAL)]


def read_topic(
    bootstrap: str, topic: str, timeout_ms: int = 1500, security: KafkaSecurity = PLAINTEXT
) -> list[DeadLetter]:
    """Every record still retained on ``topic``, read from the start (no consumer group)."""
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap.split(","),
            enable_auto_commit=False,
            consumer_timeout_ms=timeout_ms,
            **security.options(),
        )
    except (KafkaError, OSError) as exc:
        raise TransientError(f"Kafka unreachable at {bootstrap}: {type(exc).__name__}") from exc
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise SchemaMissing(f"topic {topic} does not exist: run `callvault migrate`")
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        consumer.seek_to_beginning()
        found = []
        for message in consumer:
            try:
                data = json.loads(message.value).get("data", {})
            except (ValueError, AttributeError):
                data = {}
            headers = tuple((k, bytes(v or b"")) for k, v in message.headers or ())
            found.append(DeadLetter(message.partition, message.offset, data, headers))
        return found
    except KafkaError as exc:
        raise TransientError(f"Kafka did not answer: {type(exc).__name__}") from exc
    finally:
        consumer.close()
