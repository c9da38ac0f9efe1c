"""The ``NOTIFY`` channels of callvault's commits (:mod:`workers.app.ports.wakeups`).

``callvault_outbox``: the commit wrote outbox rows; ``callvault_followups``: it wrote
follow-up rows. The payload is empty - a notification says only that there is work, never
whose. PostgreSQL scopes channels to one database, and callvault keeps one installation per
database (it has no setting for a schema of its own), so fixed names cannot cross
installations."""

from __future__ import annotations

from typing import Any

import psycopg

from ...app.ports.wakeups import Channel

CHANNELS: dict[Channel, str] = {"outbox": "callvault_outbox", "followups": "callvault_followups"}


def notify(conn: psycopg.Connection[Any], *, outbox: bool, followups: bool) -> None:
    """Inside the committing transaction (in its pipeline: no round trip of its own):
    PostgreSQL delivers the notification only at COMMIT, never after a rollback, and folds
    repeats within one transaction into one."""
    if outbox:
        conn.execute(f"NOTIFY {CHANNELS['outbox']}")
    if followups:
        conn.execute(f"NOTIFY {CHANNELS['followups']}")
