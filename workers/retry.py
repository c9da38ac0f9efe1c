"""The one retry mechanism: a wall-clock budget for transient failures.

The message bus's retry middleware wraps every handler in it; a handler wraps a cheap step
that follows an expensive one (the commit after an upload) in it too, so a blip retries the
step that failed, not a whole download. Nested calls share the outermost deadline, so a
handler never retries longer than one budget in all. When the budget is spent the last
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

from .domain.errors import TransientError

log = structlog.get_logger("callvault.retry")
T = TypeVar("T")
_DEADLINE: ContextVar[float | None] = ContextVar("callvault_retry_deadline", default=None)


@dataclass(frozen=True)
class RetryPolicy:
    budget_seconds: float = 120.0
    initial_seconds: float = 0.2
    max_seconds: float = 5.0
    max_attempts: int | None = None  # a test's bound; in service the budget alone decides
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    def call(self, step: Callable[[], T], what: str = "step") -> T:
        with self._deadline() as deadline:
            retrying = Retrying(
                retry=retry_if_exception_type(TransientError),
                stop=lambda state: self._spent(state, deadline),
                wait=wait_exponential_jitter(multiplier=self.initial_seconds, max=self.max_seconds),
                sleep=self.sleep,
                reraise=True,
                before_sleep=lambda state: _warn(what, state),
            )
            return retrying(step)

    @contextmanager
    def _deadline(self) -> Iterator[float]:
        """This call's deadline: the enclosing call's, when there is one."""
        outer = _DEADLINE.get()
        deadline = outer if outer is not None else self.clock() + self.budget_seconds
        token = _DEADLINE.set(deadline)
        try:
            yield deadline
        finally:
            _DEADLINE.reset(token)

    def _spent(self, state: RetryCallState, deadline: float) -> bool:
        if self.max_attempts is not None and state.attempt_number >= self.max_attempts:
            return True
        return self.clock() >= deadline


def _warn(what: str, state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    log.warning(
        "transient_failure_retrying",
        step=what,
        attempt=state.attempt_number,
        error_type=type(error).__name__ if error else None,
        error=str(error) if error else None,
    )
