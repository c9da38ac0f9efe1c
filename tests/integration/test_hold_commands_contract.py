"""The pending hold commands port's contract, against the fake's counter and Kafka: the
consumer group's lag on an instance's own holds topic, as the worker's purges ask for it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from testbed.stack import Instance, free_port
from tests.contracts import covers
from tests.fakes.memory import MemoryHoldCommands
from workers.adapters.kafka.lag import PendingHoldCommands
from workers.adapters.kafka.security import kafka_security
from workers.app.ports.hold_commands import HoldCommands
from workers.domain.errors import TransientError
from workers.settings import load_settings


@dataclass
class World:
    commands: HoldCommands
    publish: Callable[[int], None]  # hold commands sent to the topic
    apply: Callable[[int], None]  # the oldest of them read into the database, offsets committed
    closing: list[Callable[[], None]] = field(default_factory=list)


@pytest.fixture(params=["memory", "kafka"])
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    if request.param == "memory":
        fake = MemoryHoldCommands()

        def publish(n: int) -> None:
            fake.waiting += n

        def apply(n: int) -> None:
            fake.waiting -= n

        yield World(fake, publish, apply)
        return
    instance: Instance = request.getfixturevalue("instance")
    built = kafka_world(instance)
    yield built
    for close in built.closing:
        close()


def kafka_world(instance: Instance) -> World:
    settings = load_settings(**instance.settings_kwargs())
    servers, topic = settings.kafka.split(","), settings.topic_holds_commands
    options = kafka_security(settings).options()
    producer = KafkaProducer(bootstrap_servers=servers, acks="all", **options)
    group = KafkaConsumer(
        bootstrap_servers=servers, group_id=settings.app_id, enable_auto_commit=False, **options
    )
    sent: list[tuple[int, int]] = []  # (partition, offset) of each command, in order

    def publish(n: int) -> None:
        for _ in range(n):
            done = producer.send(topic, key=f"hold-{len(sent)}".encode(), value=b"{}")
            meta: Any = done.get(timeout=30)
            sent.append((meta.partition, meta.offset))

    applied = [0]

    def apply(n: int) -> None:
        applied[0] += n
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for partition, offset in sent[: applied[0]]:
            tp = TopicPartition(topic, partition)
            offsets[tp] = OffsetAndMetadata(offset + 1, "", -1)
        group.commit(offsets)

    commands = PendingHoldCommands(
        settings.kafka, settings.app_id, topic, security=kafka_security(settings)
    )
    return World(commands, publish, apply, [commands.close, producer.close, group.close])


@covers(HoldCommands.pending)
def test_none_pending_before_any_is_published(world: World) -> None:
    assert world.commands.pending() == 0


@covers(HoldCommands.pending)
def test_published_commands_are_pending_until_applied(world: World) -> None:
    world.publish(3)
    assert world.commands.pending() == 3
    world.apply(2)
    assert world.commands.pending() == 1
    world.apply(1)
    assert world.commands.pending() == 0
    world.publish(1)
    assert world.commands.pending() == 1


@covers(HoldCommands.pending, HoldCommands.close)
def test_closing_releases_and_returns_at_once(world: World) -> None:
    world.publish(1)
    assert world.commands.pending() == 1
    world.commands.close()
    world.commands.close()  # twice is harmless


def test_a_broker_that_does_not_answer_is_transient() -> None:
    away = PendingHoldCommands(f"127.0.0.1:{free_port()}", "group", "holds.commands")
    with pytest.raises(TransientError, match="pending hold commands not known"):
        away.pending()
    away.close()
