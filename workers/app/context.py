"""What every handler shares: the unit of work factory, the object store (its data path, its
legal holds, its buckets' upkeep), the keys, the clock, the metrics, the retry policy and the
settings. Built once by :func:`workers.bootstrap.bootstrap`; tests pass fakes."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from ..settings import Settings
from .group_commit import GroupCommit
from .letters import LetterWriter
from .ports.console import AccessHistory
from .ports.hold_commands import HoldCommands
from .ports.keys import Keys
from .ports.metrics import Metrics
from .ports.objects import Buckets, LegalHolds, ObjectStore
from .ports.unit_of_work import UnitOfWork
from .retry import RetryPolicy

T = TypeVar("T")


def utc_now() -> datetime:
    return datetime.now(UTC)


class KeyedLocks:
    """In-process locks by name: two events for one call handled at once by the same worker
    take turns, so the second finds the first's recording instead of uploading again. (Kafka
    keys calls by call_id, so one call reaches one worker, but for a rebalance.)"""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextmanager
    def hold(self, name: str) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.get(name, (threading.Lock(), 0))
            self._locks[name] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._locks[name]
                if users == 1:
                    del self._locks[name]
                else:
                    self._locks[name] = (lock, users - 1)


@dataclass
class Context:
    settings: Settings
    uow: Callable[[], UnitOfWork]
    objects: ObjectStore
    keys: Keys
    metrics: Metrics
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    clock: Callable[[], datetime] = field(default=utc_now)
    locks: KeyedLocks = field(default_factory=KeyedLocks)
    history: AccessHistory | None = None  # disclosures and consultations, for the subject
    letters: LetterWriter = field(kw_only=True)  # what the data subject reads
    legal_holds: LegalHolds = field(kw_only=True)  # of the object store's versions
    buckets: Buckets = field(kw_only=True)  # the object store's upkeep
    hold_commands: HoldCommands = field(kw_only=True)  # published, not yet applied
    commits: GroupCommit = field(init=False)  # transactions shared by concurrent handlers

    def __post_init__(self) -> None:
        self.commits = GroupCommit(self.uow)

    @property
    def vault(self) -> str:
        return self.settings.vault_bucket

    def read(self, query: Callable[[UnitOfWork], T]) -> T:
        """A read-only look in its own short transaction."""
        with self.uow() as uow:
            return query(uow)
