"""Group commit: handlers that each need one short transaction of the same kind, at the same
time, share one. A commit costs far more than the few rows it writes (a round trip per
statement for the holds lock and the audit chain, the outbox's word, the WAL flush), and
under load several handler threads reach their commit together.

The first thread to arrive leads: it takes every waiting unit of work (up to ``limit``), runs
them in one transaction in a fixed order (the row locks of two groups never cross) and hands
each its own outcome. Threads that arrive meanwhile wait; when the leader is done, the first
of them leads the next group. No thread waits for company: a lone commit runs at once.

A group fails together only for a transient error (the database away: every member retries
as it would alone). Any other error may be one member's own: then each runs alone, so one
bad unit of work costs no other its commit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ..domain.errors import TransientError
from .ports.unit_of_work import UnitOfWork

T = TypeVar("T")
LIMIT = 16  # units of work in one transaction: their rows stay locked until it commits

Work = Callable[[UnitOfWork], T]


@dataclass
class _Member(Generic[T]):
    work: Work[T]
    order: str
    settled: threading.Event = field(default_factory=threading.Event)
    leads: bool = False  # woken to lead the next group, not settled
    result: T | None = None
    error: BaseException | None = None

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]  # set together with settled


class GroupCommit:
    def __init__(self, uow: Callable[[], UnitOfWork], limit: int = LIMIT) -> None:
        self._uow = uow
        self._limit = limit
        self._guard = threading.Lock()
        self._waiting: list[_Member[Any]] = []
        self._leading = False

    def run(self, work: Work[T], order: str) -> T:
        """``work`` inside a transaction that commits after it (maybe shared with others);
        ``order``: its place among the group's members (their row locks follow it)."""
        member = _Member(work, order)
        with self._guard:
            self._waiting.append(member)
            follows, self._leading = self._leading, True
        if follows:
            member.settled.wait()
            if not member.leads:
                return member.outcome()
        self._lead()
        return member.outcome()

    def _lead(self) -> None:
        with self._guard:
            group = self._waiting[: self._limit]
            del self._waiting[: self._limit]
        try:
            self._commit(sorted(group, key=lambda m: m.order))
        finally:
            with self._guard:
                if self._waiting:
                    following = self._waiting[0]
                    following.leads = True
                    following.settled.set()
                else:
                    self._leading = False

    def _commit(self, group: Sequence[_Member[Any]]) -> None:
        try:
            results = self._together([m.work for m in group])
        except TransientError as error:
            for member in group:
                _settle(member, error=error)
            return
        except BaseException as error:  # noqa: BLE001 - whose it is is found out below
            if len(group) == 1:
                _settle(group[0], error=error)
                return
            for member in group:
                self._alone(member)
            return
        for member, result in zip(group, results, strict=True):
            _settle(member, result=result)

    def _alone(self, member: _Member[Any]) -> None:
        try:
            (result,) = self._together([member.work])
        except BaseException as error:  # noqa: BLE001 - the member's own: raised in its thread
            _settle(member, error=error)
        else:
            _settle(member, result=result)

    def _together(self, works: list[Work[Any]]) -> list[Any]:
        with self._uow() as uow:
            results = [work(uow) for work in works]
            uow.commit()
        return results


def _settle(
    member: _Member[Any], *, result: Any = None, error: BaseException | None = None
) -> None:
    member.result, member.error, member.leads = result, error, False
    member.settled.set()
