"""The one retry mechanism: a wall-clock budget for transient failures.

The message bus's retry middleware wraps every handler in it; a handler wraps a cheap step
that follows an expensive one (the commit after an upload) in it too, so a blip retries the
step that failed, not a whole download. The budget is time spent failing: its clock starts at
the first transient failure, not when the handler started, so a long download followed by a
database blip still has its whole budget for the commit. Nested calls share that one clock,
so a handler never retries longer than one budget in all. When the budget is spent the last
:class:`TransientError` propagates: the worker stops without acknowledging the event, and a
restart redelivers it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TypeVar

import structlog
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    wait_exponential_jitter,
)

from ..domain.errors import TransientError

log = structlog.get_logger("callvault.retry")
T = TypeVar("T")


@dataclass
class _Budget:
    """The deadline of one outermost call, set by its first transient failure."""

    deadline: float | None = None


_BUDGET: ContextVar[_Budget | None] = ContextVar("callvault_retry_budget", default=None)


@dataclass(frozen=True)
class RetryPolicy:
    budget_seconds: float = 120.0
    initial_seconds: float = 0.2
    max_seconds: float = 5.0
    max_attempts: int | None = None  # a test's bound; in service the budget alone decides
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    def call(self, step: Callable[[], T], what: str = "step") -> T:
        """``step``, retried while it fails transiently and the budget lasts. The first try
        runs bare (most steps succeed at once); a failure goes on in tenacity's loop as its
        first attempt, so the attempts, waits and warnings are the same."""
        with self._budget() as budget:
            try:
                return step()
            except TransientError as error:
                first = [error]

            def attempt() -> T:
                if first:
                    raise first.pop()
                return step()

            retrying = Retrying(
                retry=retry_if_exception_type(TransientError),
                stop=lambda state: self._spent(state, budget),
                wait=wait_exponential_jitter(multiplier=self.initial_seconds, max=self.max_seconds),
                sleep=self.sleep,
                reraise=True,
                before_sleep=lambda state: _warn(what, state),
            )
            return retrying(attempt)

    @contextmanager
    def _budget(self) -> Iterator[_Budget]:
        """This call's budget: the enclosing call's, when there is one."""
        outer = _BUDGET.get()
        budget = outer if outer is not None else _Budget()
        token = _BUDGET.set(budget)
        try:
            yield budget
        finally:
            _BUDGET.reset(token)

    def _spent(self, state: RetryCallState, budget: _Budget) -> bool:
        """Asked after each failed attempt; the first failure starts the budget's clock."""
        if budget.deadline is None:
            budget.deadline = self.clock() + self.budget_seconds
        if self.max_attempts is not None and state.attempt_number >= self.max_attempts:
            return True
        return self.clock() >= budget.deadline


def _warn(what: str, state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    log.warning(
        "transient_failure_retrying",
        step=what,
        attempt=state.attempt_number,
        error_type=type(error).__name__ if error else None,
        error=str(error) if error else None,
    )
