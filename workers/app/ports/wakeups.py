"""The wake-up port: a commit that wrote outbox rows or follow-up rows says so, and the
worker's relay and follow-up loops, which would otherwise have to poll the database, wait for
that word instead (and poll only now and then, for what no commit announces: a follow-up
whose backoff ran out, a word lost while the listener was away).

Real adapter: :mod:`workers.adapters.postgres.wakeups` (``LISTEN``/``NOTIFY``); unit tests
use the fake database's. A wake-up carries nothing but its channel: the loops look for the
work themselves."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol

Channel = Literal["outbox", "followups"]
CHANNELS: tuple[Channel, ...] = ("outbox", "followups")


class Wakeups(Protocol):
    def subscribe(self, channel: Channel, wake: Callable[[], None]) -> None:
        """Call ``wake`` - from any thread, so it must only hand the news on - after every
        commit that wrote rows for ``channel`` (never after a rollback; several commits may
        share one call), and once each time listening starts or starts again (first the
        moment it listens for this subscriber: words sent while nobody listened are lost).
        Never raises for a database that is away: it listens again once it is back."""
        ...

    def close(self) -> None:
        """Stop listening; returns at once, whatever the database is doing."""
        ...
