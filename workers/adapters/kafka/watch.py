"""Watching callvault's output topics from the outside, as a consumer would: the demo narrates
what callvault publishes from the moment it starts watching (no consumer group, nothing
committed)."""

from __future__ import annotations

import json
import time
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from ...domain.errors import TransientError
from .security import PLAINTEXT, KafkaSecurity


class TopicWatch:
    """The events published on ``topics`` after the watch was opened, in arrival order."""

    def __init__(
        self,
        bootstrap: str,
        topics: dict[str, str],
        security: KafkaSecurity = PLAINTEXT,
        wait_seconds: float = 30,
    ) -> None:
        """``topics`` maps a Kafka topic to the name events from it are reported under."""
        self._names = topics
        try:
            self._consumer = KafkaConsumer(
                bootstrap_servers=bootstrap.split(","),
                enable_auto_commit=False,
                consumer_timeout_ms=200,
                **security.options(),
            )
            self._consumer.assign(self._partitions(wait_seconds))
            self._consumer.seek_to_end()
            for partition in self._consumer.assignment():
                self._consumer.position(partition)  # fix "the end" now, before anything is sent
        except (KafkaError, OSError) as exc:
            raise TransientError(f"Kafka unreachable at {bootstrap}: {type(exc).__name__}") from exc

    def _partitions(self, wait_seconds: float) -> list[TopicPartition]:
        deadline = time.monotonic() + wait_seconds
        found: list[TopicPartition] = []
        for topic in self._names:
            while (partitions := self._consumer.partitions_for_topic(topic)) is None:
                if time.monotonic() > deadline:
                    raise TransientError(f"topic {topic} does not exist (run callvault migrate)")
                time.sleep(0.2)
            found += [TopicPartition(topic, p) for p in sorted(partitions)]
        return found

    def poll(self) -> list[tuple[str, dict[str, Any]]]:
        """(name, CloudEvent) of what arrived since the last call; waits at most a moment."""
        try:
            batches = self._consumer.poll(timeout_ms=500)
        except KafkaError as exc:
            raise TransientError(f"Kafka did not answer: {type(exc).__name__}") from exc
        arrived = []
        for partition, messages in batches.items():
            for message in messages:
                try:
                    arrived.append((self._names[partition.topic], json.loads(message.value)))
                except ValueError:
                    continue  # not ours to judge: the watch only narrates
        return arrived

    def close(self) -> None:
        self._consumer.close()
