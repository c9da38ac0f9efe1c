"""Faults injected into the shared native stack, the way they happen in production: the broker
killed (SIGKILL), the database crashed (``pg_ctl stop -m immediate``), the object store frozen
(SIGSTOP/SIGCONT on versitygw), a worker killed or stopped.

A killed service is brought back as ``deploy/stack.sh up`` brings back a missing one - the same
program in the background, its pid in ``.local/run`` - but with the very command line, working
directory, user and environment it ran with, read from ``/proc`` before the kill: on a shared
stack another session may have added a listener or a setting since ``stack.sh`` last wrote the
configuration, and a restart must leave the service as it was. A service that someone else
started meanwhile is left alone. :meth:`Stack.restore` runs when the chaos test ends, whatever
happened: it resumes the object store and starts what is still missing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from testbed.stack import ROOT
from tests.chaos.profiles import (
    KAFKA_KILL,
    POSTGRES_KILL,
    S3_PAUSE,
    WORKER_SIGKILL,
    WORKER_SIGTERM,
    Fault,
)
from tests.chaos.supervisor import Supervisor

KAFKA_READY = ROOT / "deploy" / "lib" / "kafka_ready.py"
# start_bg of deploy/lib/common.sh: detached, appending to the service's log, pid printed
START_BG = 'log="$1"; shift; nohup setsid "$@" >>"$log" 2>&1 </dev/null & echo $!'


@dataclass(frozen=True)
class Launch:
    """How a running service process was started, as ``/proc`` tells it."""

    argv: tuple[str, ...]
    env: dict[str, str]
    cwd: str
    uid: int
    gid: int
    log: str

    @classmethod
    def of(cls, pid: int) -> Launch:
        proc = Path(f"/proc/{pid}")
        argv = tuple(proc.joinpath("cmdline").read_bytes().decode().rstrip("\0").split("\0"))
        env = dict(
            entry.split("=", 1)
            for entry in proc.joinpath("environ").read_bytes().decode().split("\0")
            if "=" in entry
        )
        ids = {
            line.split(":")[0]: int(line.split()[1])
            for line in proc.joinpath("status").read_text().splitlines()
            if line.startswith(("Uid:", "Gid:"))
        }
        log = os.readlink(proc / "fd" / "1")
        return cls(argv, env, os.readlink(proc / "cwd"), ids["Uid"], ids["Gid"], log)

    def start(self) -> int:
        user = []
        if self.uid != os.getuid():
            user = ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups"]
        done = subprocess.run(
            ["bash", "-c", START_BG, "start-bg", self.log, *user, *self.argv],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            check=True,
            timeout=30,
        )
        return int(done.stdout.decode().split()[-1])


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
    """The shared stack's services, found by the pid files under ``.local/run``."""

    def __init__(self, local_dir: Path, admin_url: str, kafka: str) -> None:
        self.local_dir = local_dir
        self.admin_url = admin_url
        self.kafka_host, _, port = kafka.split(",")[0].rpartition(":")
        self.kafka_port = int(port)
        self._paused: int | None = None
        self._missing: dict[str, Launch] = {}

    def pid(self, name: str) -> int:
        if name == "postgres":  # the postmaster's own record, as deploy/lib/postgres.sh reads it
            data = self._postmaster_data_dir()
            return int((data / "postmaster.pid").read_text().split()[0])
        return int((self.local_dir / "run" / f"{name}.pid").read_text().split()[0])

    def _postmaster_data_dir(self) -> Path:
        return (self.local_dir / "pg").resolve() / "data"

    # faults ---------------------------------------------------------------------------------
    def kill_kafka(self) -> None:
        pid = self.pid("kafka")
        self._missing["kafka"] = Launch.of(pid)
        os.kill(pid, signal.SIGKILL)
        _wait_gone(pid)

    def crash_postgres(self) -> None:
        """``pg_ctl stop -m immediate``: the server quits without a checkpoint, as in a crash."""
        pid = self.pid("postgres")
        launch = Launch.of(pid)
        self._missing["postgres"] = launch
        pg_ctl = str(Path(launch.argv[0]).with_name("pg_ctl"))
        data = launch.argv[launch.argv.index("-D") + 1]
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                pg_ctl,
                "-D",
                data,
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
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

    # recovery -------------------------------------------------------------------------------
    def bring_back(self, name: str, timeout: float = 240) -> None:
        """Start the killed service again and wait until it answers. Someone else may be
        starting it too (another session's harness runs ``stack.sh up`` when it finds a port
        closed): a live process in the pid file is waited for, never started twice - two Kafka
        brokers on one data directory take each other down."""
        launch = self._missing[name]
        mine: int | None = None
        deadline = time.monotonic() + timeout
        while not self._answers(name):
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} did not come back within {timeout:.0f}s")
            if self._live(name, mine) is None:
                mine = launch.start()
                (self.local_dir / "run" / f"{name}.pid").write_text(f"{mine}\n")
            time.sleep(1)
        del self._missing[name]

    def _live(self, name: str, mine: int | None) -> int | None:
        """A live process of the service - the one its pid file names, or the one started
        here - if there is one."""
        try:
            recorded: int | None = self.pid(name)
        except (OSError, ValueError, IndexError):
            recorded = None
        for pid in (recorded, mine):
            if pid is not None and _alive(pid, str(self.local_dir)):
                return pid
        return None

    def _answers(self, name: str) -> bool:
        if name == "kafka":
            ready = [sys.executable, str(KAFKA_READY), self.kafka_host, str(self.kafka_port)]
            return subprocess.run(ready, capture_output=True, check=False).returncode == 0
        try:
            with psycopg.connect(self.admin_url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False

    def restore(self) -> None:
        """Whatever happened: the object store resumed, every killed service back."""
        self.resume_s3()
        for name in list(self._missing):
            self.bring_back(name)


def _alive(pid: int, local_dir: str) -> bool:
    """Running (not a zombie) and one of the stack's processes (its command line names the
    stack's directory, as deploy/lib/common.sh's read_pid checks against recycled pids)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return state != "Z" and local_dir in cmdline


def _wait_gone(pid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split()[2]
        except OSError:
            return
        if state == "Z":  # dead, waiting for its parent to reap it
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
        if fault.kind in (WORKER_SIGKILL, WORKER_SIGTERM):
            sig = signal.SIGKILL if fault.kind == WORKER_SIGKILL else signal.SIGTERM
            code, seconds = self.supervisor.signal(fault.worker, sig)
            happened.detail.update(worker=fault.worker, exit_code=code)
            if sig is signal.SIGTERM:
                happened.detail.update(stop_seconds=round(seconds, 1))
        elif fault.kind == KAFKA_KILL:
            self.stack.kill_kafka()
            time.sleep(fault.seconds)
            self.stack.bring_back("kafka")
        elif fault.kind == POSTGRES_KILL:
            self.stack.crash_postgres()
            time.sleep(fault.seconds)
            self.stack.bring_back("postgres")
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
