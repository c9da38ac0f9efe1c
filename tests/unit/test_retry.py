"""The retry budget is time spent failing: a slow step that succeeded does not use it up, and
nested calls share one budget."""

from __future__ import annotations

import pytest

from workers.app.retry import RetryPolicy
from workers.domain.errors import TransientError


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def policy(time: FakeTime, budget: float = 10.0) -> RetryPolicy:
    return RetryPolicy(
        budget_seconds=budget,
        initial_seconds=1.0,
        max_seconds=1.0,
        sleep=time.sleep,
        clock=time.clock,
    )


def flaky(time: FakeTime, failures: int, seconds_each: float = 0.0) -> object:
    attempts: list[float] = []

    def step() -> str:
        attempts.append(time.now)
        time.now += seconds_each
        if len(attempts) <= failures:
            raise TransientError("database unavailable")
        return "committed"

    step.attempts = attempts  # type: ignore[attr-defined]
    return step


def test_a_commit_after_a_download_longer_than_the_budget_is_still_retried() -> None:
    time = FakeTime()
    retry = policy(time, budget=10)
    commit = flaky(time, failures=2)

    def store() -> str:
        time.now += 300  # a long download and upload that went well
        return retry.call(commit, "commit")  # type: ignore[arg-type]

    assert retry.call(store, "StoreCall") == "committed"
    assert len(commit.attempts) == 3  # type: ignore[attr-defined]


def test_the_budget_runs_from_the_first_failure_and_is_shared_by_nested_calls() -> None:
    time = FakeTime()
    retry = policy(time, budget=10)
    commit = flaky(time, failures=1000, seconds_each=0.5)

    def store() -> str:
        time.now += 300
        return retry.call(commit, "commit")  # type: ignore[arg-type]

    with pytest.raises(TransientError):
        retry.call(store, "StoreCall")
    attempts = commit.attempts  # type: ignore[attr-defined]
    first_failure = attempts[0] + 0.5
    # retried although the handler had run for 300 s before its first failure ...
    assert len(attempts) > 5
    # ... for one budget after it (an attempt and a pause of at most 1 s may end past it),
    # and the outer call, whose budget is the same, did not start the handler over
    assert first_failure + 10 <= time.now < first_failure + 10 + 1.5
    assert attempts[0] == 300
