"""Faults injected into the shared native stack, the way they happen in production: a broker
or database process killed (and brought back by ``deploy/stack.sh up``, which restarts what is
missing), the object store frozen (SIGSTOP/SIGCONT on versitygw), a worker killed or stopped.

Every fault leaves the stack as it found it: :meth:`Stack.restore` resumes the object store and
starts what is missing, and runs again when the chaos test ends, whatever happened."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tests.chaos.profiles import (
    KAFKA_KILL,
    POSTGRES_KILL,
    S3_PAUSE,
    WORKER_SIGKILL,
    WORKER_SIGTERM,
    Fault,
)
from tests.chaos.supervisor import Supervisor
from tests.stack import ROOT

STACK_SH = ROOT / "deploy" / "stack.sh"
# The stack's own way of stopping PostgreSQL, with the immediate (crash) mode.
PG_IMMEDIATE_STOP = """
set -euo pipefail
DEPLOY_DIR="$1"
. "$DEPLOY_DIR/lib/common.sh"
. "$DEPLOY_DIR/lib/postgres.sh"
pg_resolve_dirs
pg_find_bin
as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate -w -t 30 stop
"""


@dataclass
class Injected:
    """One fault as it happened: when it began, when the service answered again (``back``),
    and what the workers did."""

    kind: str
    began: datetime
    back: datetime | None = None
    detail: dict[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "began": self.began.isoformat(),
            "back": self.back.isoformat() if self.back else None,
            "outage_seconds": round((self.back - self.began).total_seconds(), 1)
            if self.back
            else None,
            **self.detail,
        }


class Stack:
    """The shared stack's service processes, found by the pid files under ``.local/run``."""

    def __init__(self, local_dir: Path) -> None:
        self.local_dir = local_dir
        self._paused: int | None = None

    def pid(self, name: str) -> int:
        return int((self.local_dir / "run" / f"{name}.pid").read_text().split()[0])

    def kill(self, name: str) -> None:
        pid = self.pid(name)
        os.kill(pid, signal.SIGKILL)
        _wait_gone(pid)

    def stop_postgres_immediately(self) -> None:
        subprocess.run(
            ["bash", "-c", PG_IMMEDIATE_STOP, "pg-stop", str(STACK_SH.parent)],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def pause_s3(self) -> None:
        self._paused = self.pid("versitygw")
        os.kill(self._paused, signal.SIGSTOP)

    def resume_s3(self) -> None:
        if self._paused is not None:
            os.kill(self._paused, signal.SIGCONT)
            self._paused = None

    def up(self) -> None:
        """``deploy/stack.sh up``: starts whatever service is missing and waits for it."""
        env = dict(os.environ, CALLVAULT_LOCAL_DIR=str(self.local_dir), CALLVAULT_STACK_NO_VENV="1")
        subprocess.run(
            ["bash", str(STACK_SH), "up"], env=env, check=True, capture_output=True, timeout=600
        )

    def restore(self) -> None:
        self.resume_s3()
        self.up()


def _wait_gone(pid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        # a killed child of another process stays a zombie until reaped: count it gone
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split()[2]
        except OSError:
            return
        if state == "Z":
            return
        time.sleep(0.1)
    raise AssertionError(f"process {pid} did not die")


@dataclass
class Injector:
    stack: Stack
    supervisor: Supervisor
    done: list[Injected] = field(default_factory=list)

    def inject(self, fault: Fault) -> Injected:
        happened = Injected(fault.kind, _now())
        self.done.append(happened)
        if fault.kind == WORKER_SIGKILL:
            code, seconds = self.supervisor.signal(fault.worker, signal.SIGKILL)
            happened.detail.update(worker=fault.worker, exit_code=code)
        elif fault.kind == WORKER_SIGTERM:
            code, seconds = self.supervisor.signal(fault.worker, signal.SIGTERM)
            happened.detail.update(
                worker=fault.worker, exit_code=code, stop_seconds=round(seconds, 1)
            )
        elif fault.kind == KAFKA_KILL:
            self.stack.kill("kafka")
            time.sleep(fault.seconds)
            self.stack.up()
        elif fault.kind == POSTGRES_KILL:
            self.stack.stop_postgres_immediately()
            time.sleep(fault.seconds)
            self.stack.up()
        elif fault.kind == S3_PAUSE:
            self.stack.pause_s3()
            try:
                time.sleep(fault.seconds)
            finally:
                self.stack.resume_s3()
        else:
            raise ValueError(f"unknown fault {fault.kind}")
        happened.back = _now()
        return happened


def _now() -> datetime:
    return datetime.now(UTC)
