"""The wake-up port's contract, against the fake database's wake-ups and PostgreSQL's
``LISTEN``/``NOTIFY`` listener (connected as the application role, the least privileged)."""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from testbed.stack import Instance
from tests.contracts import covers
from tests.fakes.memory import MemoryDatabase
from tests.integration.test_port_contracts import NOW, postgres, recording
from workers.adapters.postgres.wakeups import APPLICATION_NAME, PostgresWakeups
from workers.app.ports.wakeups import CHANNELS, Channel, Wakeups
from workers.domain.messages import PolicyApplied, PurgesScheduled
from workers.domain.model import PurgeReason
from workers.settings import load_settings

WAIT = 15.0  # the longest a word may take (a reconnect's backoff included)


@dataclass
class World:
    db: Any
    listen: Callable[[], Wakeups]


@pytest.fixture(params=["memory", "postgres"])
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    listeners: list[Wakeups] = []
    if request.param == "memory":
        fake = MemoryDatabase(source="urn:test", clock=lambda: NOW)
        db: Any = fake
        make: Callable[[], Wakeups] = fake.listener
    else:
        instance: Instance = request.getfixturevalue("instance")
        db = postgres(instance)
        dsn = load_settings(**instance.settings_kwargs()).dsn  # the application role

        def make() -> Wakeups:
            return PostgresWakeups(dsn)

    def listen() -> Wakeups:
        listeners.append(make())
        return listeners[-1]

    yield World(db, listen)
    for listener in listeners:
        listener.close()
    db.close()


class Ear:
    """What a subscriber was told, word by word, for every channel."""

    def __init__(self, wakeups: Wakeups) -> None:
        self.words: queue.SimpleQueue[Channel] = queue.SimpleQueue()
        for channel in CHANNELS:
            wakeups.subscribe(channel, self._hear(channel))

    def _hear(self, channel: Channel) -> Callable[[], None]:
        return lambda: self.words.put(channel)

    def next(self) -> Channel:
        return self.words.get(timeout=WAIT)

    def listening(self) -> None:
        """Until the word that it listens (one per channel) came."""
        assert {self.next(), self.next()} == set(CHANNELS)

    def nothing_more(self) -> None:
        assert self.words.empty()


def announce(db: Any, call_id: str, *, commit: bool = True) -> None:
    """A unit of work that writes an outbox row (a recording falls due)."""
    r = recording(call_id)
    r.announce_due(NOW)
    with db.unit_of_work() as uow:
        uow.recordings.add(r, frozenset())
        if commit:
            uow.commit()


def schedule(db: Any) -> None:
    """A unit of work that writes a follow-up row (a purge to carry out)."""
    with db.unit_of_work() as uow:
        uow.record(PurgesScheduled(("r1",), PurgeReason.RETENTION))
        uow.commit()


@covers(Wakeups.subscribe)
def test_a_commit_wakes_the_subscribers_of_what_it_wrote(world: World) -> None:
    ear = Ear(world.listen())
    ear.listening()
    announce(world.db, "c1")
    assert ear.next() == "outbox"
    schedule(world.db)
    assert ear.next() == "followups"
    ear.nothing_more()


@covers(Wakeups.subscribe)
def test_a_rollback_or_a_commit_without_such_rows_wakes_no_one(world: World) -> None:
    ear = Ear(world.listen())
    ear.listening()
    announce(world.db, "rolled-back", commit=False)
    with world.db.unit_of_work() as uow:  # an audit entry only
        uow.record(PolicyApplied("*", None, "P1Y", 0, NOW))
        uow.commit()
    schedule(world.db)  # words come in commit order: nothing came before this one's
    assert ear.next() == "followups"
    ear.nothing_more()


@covers(Wakeups.subscribe, Wakeups.close)
def test_a_closed_listener_wakes_no_one(world: World) -> None:
    closed, witness = world.listen(), Ear(world.listen())
    ear = Ear(closed)
    ear.listening()
    witness.listening()
    closed.close()
    announce(world.db, "c1")
    assert witness.next() == "outbox"
    ear.nothing_more()
    closed.subscribe("outbox", lambda: pytest.fail("a closed listener took a subscriber"))


@pytest.mark.parametrize("world", ["postgres"], indirect=True)
def test_the_listener_listens_again_when_its_connection_is_cut_and_wakes_everyone(
    instance: Instance, world: World
) -> None:
    """PostgreSQL restarted (or the backend was terminated): words sent meanwhile are lost, so
    listening again wakes every subscriber once; later commits wake them as before."""
    ear = Ear(world.listen())
    ear.listening()
    with psycopg.connect(instance.admin_url, autocommit=True) as admin:
        cut = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = %s AND datname = %s",
            (APPLICATION_NAME, instance.name),
        ).fetchone()
    assert cut == (1,)
    ear.listening()
    announce(world.db, "c1")
    assert ear.next() == "outbox"
    ear.nothing_more()
