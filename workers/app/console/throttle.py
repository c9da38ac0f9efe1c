"""How many sign-in attempts a key (a keyed digest of an account, an address, or both) gets,
and how long it waits after them. Each attempt is counted *before* the password is checked, in
one atomic step of the store (the ``LoginThrottle`` port), so parallel attempts cannot slip past
the limit; a sign-in that succeeds takes its attempt back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TypeVar

R = TypeVar("R")


@dataclass(frozen=True)
class Tally:
    """A key's attempts since it was last quiet for a whole window, and its pause."""

    count: int = 0
    last_at: datetime | None = None
    paused_until: datetime | None = None


@dataclass(frozen=True)
class Rule:
    """``free`` attempts at once; from then on each attempt pauses the key for
    ``first_pause``, doubling up to ``longest_pause``. A key quiet for ``window`` starts again."""

    free: int
    window: timedelta
    first_pause: timedelta
    longest_pause: timedelta

    def pause(self, count: int) -> timedelta:
        if count < self.free:
            return timedelta(0)
        doublings = min(count - self.free, 30)
        return min(self.longest_pause, self.first_pause * (1 << doublings))


@dataclass(frozen=True)
class Verdict:
    admitted: bool
    count: int  # attempts counted in this tally, this one included
    retry_after: timedelta = timedelta(0)


def attempt(
    rule: Rule, now: datetime, *, count: bool = True
) -> Callable[[Tally], tuple[Verdict, Tally]]:
    """One attempt: refused while paused; else counted (unless ``count`` is false: a check
    only) and the key paused for what the rule says."""

    def change(tally: Tally) -> tuple[Verdict, Tally]:
        if tally.paused_until is not None and now < tally.paused_until:
            return Verdict(False, tally.count, tally.paused_until - now), tally
        if tally.last_at is None or now - tally.last_at >= rule.window:
            tally = Tally()
        if not count:
            return Verdict(True, tally.count), tally
        counted = tally.count + 1
        pause = rule.pause(counted)
        return Verdict(True, counted), Tally(counted, now, now + pause if pause else None)

    return change


def take_back(rule: Rule) -> Callable[[Tally], tuple[None, Tally]]:
    """A sign-in that succeeded: its attempt no longer counts (nor its pause, when the rest
    would not have earned one)."""

    def change(tally: Tally) -> tuple[None, Tally]:
        counted = max(0, tally.count - 1)
        keep_pause = rule.pause(counted) > timedelta(0)
        return None, replace(
            tally, count=counted, paused_until=tally.paused_until if keep_pause else None
        )

    return change
