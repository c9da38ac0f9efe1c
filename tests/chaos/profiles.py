"""How long a chaos run lasts, how busy it is and which faults it injects when.

``short`` runs inside ``make test`` (about three minutes, short outages); ``full`` is
``make chaos`` (longer traffic, the object store paused for 30 s). Both inject every kind of
fault once, in the same order, while traffic flows."""

from __future__ import annotations

import os
from dataclasses import dataclass

WORKER_SIGKILL = "worker_sigkill"
KAFKA_KILL = "kafka_kill"
S3_PAUSE = "s3_pause"
POSTGRES_KILL = "postgres_kill"
WORKER_SIGTERM = "worker_sigterm"


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after traffic started
    kind: str
    seconds: float = 0.0  # how long the service stays away (kill/pause to restart/resume)
    worker: int = 0  # which worker a worker fault hits


@dataclass(frozen=True)
class Profile:
    name: str
    traffic_seconds: float
    call_every: float  # one call-ended event this often
    control_every: float  # one hold or request action this often
    faults: tuple[Fault, ...]
    retention: str = "PT20S"
    # shorter than the outages, so that workers exit 75 and the supervisor restarts them (the
    # budget runs from the first failure, which waiting for a pooled connection delays)
    retry_budget: str = "PT4S"
    db_timeout: str = "PT2S"
    # every unheld recording is purged within this long of its due time once the stack is back
    purge_within_seconds: float = 90.0
    settle_seconds: float = 240.0  # how long the run may take to drain after traffic stopped


SHORT = Profile(
    name="short",
    traffic_seconds=100,
    call_every=1.6,
    control_every=3.0,
    faults=(
        Fault(12, WORKER_SIGKILL),
        Fault(25, KAFKA_KILL, 5),
        Fault(45, S3_PAUSE, 10),
        Fault(65, POSTGRES_KILL, 8),
        Fault(85, WORKER_SIGTERM, worker=1),
    ),
)

FULL = Profile(
    name="full",
    traffic_seconds=330,
    call_every=1.2,
    control_every=2.5,
    faults=(
        Fault(40, WORKER_SIGKILL),
        Fault(80, KAFKA_KILL, 12),
        Fault(145, S3_PAUSE, 30),
        # uploads and purges held up by the pause all resume at once: a crash among them
        Fault(176, WORKER_SIGKILL, worker=1),
        Fault(215, POSTGRES_KILL, 15),
        Fault(285, WORKER_SIGTERM, worker=1),
    ),
    retry_budget="PT6S",
)

# the same traffic with no fault: a baseline that shows the checks themselves are sound
CALM = Profile(name="calm", traffic_seconds=60, call_every=1.6, control_every=3.0, faults=())

PROFILES = {p.name: p for p in (SHORT, FULL, CALM)}


def chosen() -> Profile:
    """``CALLVAULT_CHAOS=full`` (what ``make chaos`` sets) selects the long run."""
    name = os.environ.get("CALLVAULT_CHAOS", "short")
    if name not in PROFILES:
        raise ValueError(f"CALLVAULT_CHAOS={name!r}: expected one of {sorted(PROFILES)}")
    return PROFILES[name]
