"""The ``callvault`` entry point (the commands live in :mod:`workers.entrypoints.cli`).

It is kept light so that a stop request is honoured from the first instant: a SIGTERM that
arrives while a command is still importing or starting (a supervisor stopping a worker that it
restarted a second ago) ends it cleanly with 0 - nothing has been handled yet, so nothing is
lost. A worker replaces this handler with its own graceful stop once it runs."""

from __future__ import annotations

import signal
from types import FrameType


def _stop_before_start(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main() -> None:
    signal.signal(signal.SIGTERM, _stop_before_start)
    from .entrypoints.cli import main as run

    run()
