"""Group commit: handlers committing at the same moment share one transaction, each gets its
own outcome, one member's error costs the others nothing, and no thread is left waiting."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from workers.app.group_commit import GroupCommit
from workers.domain.errors import PermanentError, TransientError

WAIT = 10.0  # seconds a test waits for a thread before it fails


class Transaction:
    """A unit of work that records what ran in it and whether it committed."""

    def __init__(self, log: list[Transaction]) -> None:
        self.ran: list[str] = []
        self.committed = False
        log.append(self)

    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def commit(self) -> None:
        self.committed = True


def transactions() -> tuple[list[Transaction], Callable[[], Any]]:
    log: list[Transaction] = []
    return log, lambda: Transaction(log)


def writes(name: str, *, before: Callable[[], None] = lambda: None) -> Callable[[Any], str]:
    def work(uow: Transaction) -> str:
        before()
        uow.ran.append(name)
        return f"done:{name}"

    return work


def fails(error: BaseException) -> Callable[[Any], str]:
    def work(uow: Transaction) -> str:
        uow.ran.append("failing")
        raise error

    return work


class Members:
    """Threads that each run one unit of work through the group commit."""

    def __init__(self, commits: GroupCommit) -> None:
        self.commits = commits
        self.outcomes: dict[str, object] = {}
        self.threads: list[threading.Thread] = []

    def start(self, name: str, work: Callable[[Any], str]) -> None:
        def run() -> None:
            try:
                self.outcomes[name] = self.commits.run(work, order=name)
            except BaseException as error:  # noqa: BLE001 - the test looks at it
                self.outcomes[name] = error

        thread = threading.Thread(target=run, daemon=True)
        self.threads.append(thread)
        thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join(WAIT)
            assert not thread.is_alive(), "a member was left waiting"


def queued(commits: GroupCommit, count: int) -> Callable[[], None]:
    """Blocks the first transaction's work until ``count`` members wait behind it."""

    def wait() -> None:
        for _ in range(int(WAIT / 0.001)):
            with commits._guard:
                if len(commits._waiting) >= count:
                    return
            threading.Event().wait(0.001)
        raise AssertionError("the other members never queued")

    return wait


def behind_a_first(
    others: dict[str, Callable[[Any], str]], limit: int | None = None
) -> tuple[list[Transaction], Members]:
    """A member "first" whose transaction is held open until ``others`` all wait behind it,
    then those; returns the transactions and the members once every one has finished."""
    log, uow = transactions()
    commits = GroupCommit(uow) if limit is None else GroupCommit(uow, limit=limit)
    members = Members(commits)
    members.start("first", writes("first", before=queued(commits, len(others))))
    for name, work in others.items():
        members.start(name, work)
    members.join()
    return log, members


def test_a_lone_commit_runs_at_once_in_its_own_transaction() -> None:
    log, uow = transactions()
    assert GroupCommit(uow).run(writes("a"), order="a") == "done:a"
    assert [(t.ran, t.committed) for t in log] == [(["a"], True)]


def test_members_that_arrive_together_share_one_transaction_in_their_order() -> None:
    log, members = behind_a_first({name: writes(name) for name in ("c", "a", "b")})
    assert members.outcomes == {n: f"done:{n}" for n in ("first", "a", "b", "c")}
    assert [(t.ran, t.committed) for t in log] == [(["first"], True), (["a", "b", "c"], True)]


def test_a_group_holds_at_most_its_limit() -> None:
    log, _ = behind_a_first({name: writes(name) for name in ("a", "b", "c")}, limit=2)
    assert [t.ran for t in log] == [["first"], ["a", "b"], ["c"]]
    assert all(t.committed for t in log)


def test_one_members_permanent_error_is_its_own_and_the_others_commit() -> None:
    log, members = behind_a_first(
        {"a": writes("a"), "b": fails(PermanentError("bad row")), "c": writes("c")}
    )
    assert members.outcomes["a"] == "done:a"
    assert members.outcomes["c"] == "done:c"
    assert isinstance(members.outcomes["b"], PermanentError)
    committed = [t.ran for t in log if t.committed]
    assert committed == [["first"], ["a"], ["c"]]  # the group failed; each then ran alone


def test_a_transient_error_fails_the_whole_group_for_each_to_retry() -> None:
    log, members = behind_a_first({"a": writes("a"), "b": fails(TransientError("database away"))})
    assert isinstance(members.outcomes["a"], TransientError)
    assert isinstance(members.outcomes["b"], TransientError)
    assert [t.ran for t in log if t.committed] == [["first"]]


def test_an_error_of_a_lone_member_is_raised_to_it() -> None:
    _, uow = transactions()
    with pytest.raises(PermanentError):
        GroupCommit(uow).run(fails(PermanentError("bad row")), order="a")


def test_many_threads_all_finish_and_each_commits_once() -> None:
    log, uow = transactions()
    commits = GroupCommit(uow, limit=4)
    members = Members(commits)
    names = [f"m{i:02d}" for i in range(40)]
    for name in names:
        members.start(name, writes(name))
    members.join()
    assert members.outcomes == {n: f"done:{n}" for n in names}
    ran = [name for t in log if t.committed for name in t.ran]
    assert sorted(ran) == names
    assert max(len(t.ran) for t in log) <= 4
