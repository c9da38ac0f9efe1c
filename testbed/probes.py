"""Waiting for a running callvault: its Prometheus exposition, and a condition polled until it
holds (or a deadline passes)."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable


def metrics_text(port: int) -> str | None:
    """A worker's Prometheus exposition, or ``None`` while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text: str = r.read().decode()
            return text
    except OSError:
        return None


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")
