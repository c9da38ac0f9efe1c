"""A small process supervisor, as systemd would be with ``Restart=always``: it keeps a fixed
number of ``callvault worker`` processes running, restarting one that exits (code 75 after its
retry budget, a SIGKILL, a SIGTERM) after a short delay, and remembers every exit."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from testbed.probes import metrics_text
from testbed.stack import free_port, stop_processes
from tests.e2e.harness import CALLVAULT

RESTART_DELAY = 1.0  # systemd's RestartSec
EX_TEMPFAIL = 75
EX_UNREACHABLE = 4  # started while a service was away
# what the worker logs when it met a bug (and dead-lettered, parked or skipped the work)
BUG_EVENTS = ("handler_failed", "follow_up_bug", "follow_up_failed", "background_step_bug")


@dataclass(frozen=True)
class Exit:
    slot: int
    code: int
    at: datetime
    signalled: str | None  # the signal the chaos run sent, or None when the worker chose to exit


@dataclass
class Slot:
    index: int
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    signalled: str | None = None
    restart_at: float | None = None


@dataclass
class Supervisor:
    env: dict[str, str]
    log_dir: Path
    count: int = 2
    exits: list[Exit] = field(default_factory=list)
    slots: list[Slot] = field(default_factory=list)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        for index in range(self.count):
            slot = Slot(index, free_port(), self.log_dir / f"worker-{index}.log")
            self.slots.append(slot)
            self._spawn(slot)
        self._thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)
        self._thread.start()

    def _spawn(self, slot: Slot) -> None:
        env = dict(self.env, CALLVAULT_METRICS_PORT=str(slot.port))
        with slot.log.open("ab") as log:
            log.write(f"\n--- start {slot.starts + 1} at {_now()} ---\n".encode())
            log.flush()
            slot.process = subprocess.Popen(
                [CALLVAULT, "worker"], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        slot.starts += 1
        slot.signalled = None
        slot.restart_at = None

    def _watch(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                for slot in self.slots:
                    self._tend(slot)
            self._stopping.wait(0.2)

    def _tend(self, slot: Slot) -> None:
        process = slot.process
        if process is not None and (code := process.poll()) is not None:
            self.exits.append(Exit(slot.index, code, _now(), slot.signalled))
            slot.process = None
            slot.restart_at = time.monotonic() + RESTART_DELAY
        due = slot.restart_at is not None and time.monotonic() >= slot.restart_at
        if slot.process is None and due:
            self._spawn(slot)

    def signal(self, index: int, sig: signal.Signals, timeout: float = 90) -> tuple[int, float]:
        """Send ``sig`` to a running worker and wait for it to exit: (exit code, seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                slot = self.slots[index]
                process = slot.process
                if process is not None and process.poll() is None:
                    slot.signalled = sig.name
                    began = time.monotonic()
                    process.send_signal(sig)
                    break
            if time.monotonic() > deadline:
                raise AssertionError(f"worker {index} never ran long enough to receive {sig.name}")
            time.sleep(0.2)
        code = process.wait(timeout=timeout)
        return code, time.monotonic() - began

    def ready(self) -> bool:
        """Every worker answers /metrics with ``callvault_worker_ready 1``."""
        return all(_ready(slot.port) for slot in self.slots)

    def wait_ready(self, timeout: float) -> float:
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            if self.ready():
                return time.monotonic() - began
            time.sleep(0.5)
        raise AssertionError(f"workers not ready within {timeout:.0f}s")

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            stop_processes([s.process for s in self.slots if s.process is not None], grace=45)

    def crashes(self) -> list[Exit]:
        """Exits no fault explains: a worker that stopped on its own other than after its
        retry budget (75), at a start with a service away (4) or cleanly (0: a stop asked for
        from outside, see :meth:`stopped_outside`), or a SIGTERM that did not end in a clean
        stop."""
        return [
            e
            for e in self.exits
            if (e.signalled is None and e.code not in (EX_TEMPFAIL, EX_UNREACHABLE, 0))
            or (e.signalled == "SIGTERM" and e.code != 0)
        ]

    def stopped_outside(self) -> list[Exit]:
        """Clean stops nobody here asked for: on a shared machine another session may stop
        every ``callvault worker`` it sees (the broker then logs every group's members
        leaving at the same instant). Reported, and restarted like any other exit."""
        return [e for e in self.exits if e.signalled is None and e.code == 0]

    def bugs_logged(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for slot in self.slots:
            for line in slot.log.read_text(errors="replace").splitlines():
                for event in BUG_EVENTS:
                    if f'"event": "{event}"' in line:
                        found[event] = found.get(event, 0) + 1
        return found


def _ready(port: int) -> bool:
    text = metrics_text(port) or ""
    return any(
        line.startswith("callvault_worker_ready ") and line.endswith(" 1.0")
        for line in text.splitlines()
    )


def _now() -> datetime:
    return datetime.now(UTC)
