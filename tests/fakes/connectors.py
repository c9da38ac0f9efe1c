"""Fakes of S3 and Kafka for the connectors' unit tests, and a publisher wired to them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workers.adapters.connectors.metrics import ConnectorMetrics
from workers.adapters.connectors.publisher import Publisher
from workers.adapters.connectors.settings import ConnectorSettings
from workers.adapters.kafka.codec import Codec
from workers.bootstrap import connector
from workers.domain.errors import TransientError

LANDING = "landing"


@dataclass
class FakeLanding:
    objects: dict[str, bytes] = field(default_factory=dict)
    away: bool = False
    puts: int = 0

    def put_stream(
        self, bucket: str, key: str, chunks: Iterator[bytes], *, content_type: str
    ) -> str | None:
        assert bucket == LANDING
        if self.away:
            raise TransientError("object store unreachable: ConnectionRefusedError")
        self.objects[key] = b"".join(chunks)
        self.puts += 1
        return None


@dataclass
class FakeKafka:
    records: list[tuple[str, str | None, bytes]] = field(default_factory=list)
    away: bool = False

    def publish(self, records: list[tuple[str, str | None, bytes]]) -> None:
        if self.away:
            raise TransientError("Kafka did not acknowledge: KafkaTimeoutError")
        self.records.extend(records)

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(value) for _, _, value in self.records]

    def data(self) -> list[dict[str, Any]]:
        codec = Codec()
        found = []
        for event in self.events():
            codec.check("cloudevent", event)
            codec.check(event["type"], event["data"])
            found.append(event["data"])
        return found


@dataclass
class Rig:
    """A connector's publisher over the fakes, restartable on the same state directory."""

    state: Path
    landing: FakeLanding = field(default_factory=FakeLanding)
    kafka: FakeKafka = field(default_factory=FakeKafka)
    backlog_max: int = 100
    connector: str = "test"
    publisher: Publisher = field(init=False)
    metrics: ConnectorMetrics = field(init=False)

    def __post_init__(self) -> None:
        self.restart()

    def restart(self) -> Publisher:
        settings = ConnectorSettings(
            kafka_bootstrap="kafka.invalid:9092",
            s3_endpoint="http://s3.invalid",
            s3_access_key="k",
            s3_secret_key="s",
            landing_bucket=LANDING,
            connector_backlog_max=self.backlog_max,
            topic_calls_ended="calls.ended",
        )
        self.publisher = connector(
            settings, self.connector, self.state, objects=self.landing, bus=lambda: self.kafka
        )
        self.metrics = self.publisher.metrics
        return self.publisher

    def sample(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(
            name, {"connector": self.connector, **labels}
        )
        return value or 0.0
