"""Wake-ups from PostgreSQL (:mod:`workers.app.ports.wakeups`): one dedicated autocommit
connection per process ``LISTEN``s on callvault's channels (:mod:`.channels`), read by one
daemon thread. ``LISTEN`` needs no grant: the least-privileged application role listens.

When the connection drops (the server restarted, the backend was terminated) the thread
connects again with backoff and, once listening again, wakes every subscriber once: what was
committed while it was away was announced to nobody. A subscriber's callback must only hand
the news on (``loop.call_soon_threadsafe``); an error in it is logged, never raised."""

from __future__ import annotations

import threading
from collections.abc import Callable

import psycopg
import structlog

from ...app.ports.wakeups import CHANNELS, Channel
from .channels import CHANNELS as NAMES
from .database import translate

log = structlog.get_logger("callvault.wakeups")
APPLICATION_NAME = "callvault-wakeups"  # how operators find the listener in pg_stat_activity
READ_SECONDS = 1.0  # how long one read waits before the thread checks whether it was closed
FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0
# A server that vanished without closing the connection (a dead network) is noticed in ~1 min.
KEEPALIVE_IDLE_SECONDS = 30
KEEPALIVE_INTERVAL_SECONDS = 10
_BY_NAME: dict[str, Channel] = {name: channel for channel, name in NAMES.items()}


class PostgresWakeups:
    def __init__(self, dsn: str, *, connect_timeout: float = 10.0) -> None:
        self._dsn = dsn
        self._connect_timeout = connect_timeout
        self._subscribers: dict[Channel, list[Callable[[], None]]] = {c: [] for c in CHANNELS}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._listening = False
        self._thread: threading.Thread | None = None

    def subscribe(self, channel: Channel, wake: Callable[[], None]) -> None:
        with self._lock:
            if self._closed.is_set():
                return
            self._subscribers[channel].append(wake)
            listening = self._listening
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=APPLICATION_NAME)
                self._thread.daemon = True  # never holds the process up at exit
                self._thread.start()
        if listening:
            _call(wake)

    def close(self) -> None:
        """No subscriber is called once this returns (but one being called); the thread ends
        within one read, and nothing waits for it."""
        with self._lock:
            self._closed.set()
            self._subscribers = {c: [] for c in CHANNELS}

    def _run(self) -> None:
        failures = 0
        while not self._closed.is_set():
            try:
                with self._connect() as conn:
                    failures = 0
                    self._listen(conn)
            except psycopg.Error as error:
                log.warning("wakeups_not_listening", error=str(translate(error)))
            except Exception as error:  # a bug: the loops still poll; listen again
                log.exception("wakeups_bug", error_type=type(error).__name__)
            finally:
                with self._lock:
                    self._listening = False
            backoff = min(MAX_BACKOFF_SECONDS, FIRST_BACKOFF_SECONDS * 2**failures)
            failures += 1
            self._closed.wait(backoff)

    def _connect(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            self._dsn,
            autocommit=True,
            application_name=APPLICATION_NAME,
            connect_timeout=max(1, round(self._connect_timeout)),
            keepalives=1,
            keepalives_idle=KEEPALIVE_IDLE_SECONDS,
            keepalives_interval=KEEPALIVE_INTERVAL_SECONDS,
        )

    def _listen(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        for name in NAMES.values():
            conn.execute(f"LISTEN {name}")
        with self._lock:
            self._listening = True
            everyone = [wake for wakes in self._subscribers.values() for wake in wakes]
        for wake in everyone:  # listening (again): what came meanwhile was told to nobody
            _call(wake)
        while not self._closed.is_set():
            for notice in conn.notifies(timeout=READ_SECONDS):
                self._wake(_BY_NAME.get(notice.channel))

    def _wake(self, channel: Channel | None) -> None:
        if channel is None:
            return
        with self._lock:
            wakes = list(self._subscribers[channel])
        for wake in wakes:
            _call(wake)


def _call(wake: Callable[[], None]) -> None:
    try:
        wake()
    except Exception as error:  # noqa: BLE001 - a subscriber's bug, a closed loop: stop no one
        log.warning("wakeup_not_delivered", error_type=type(error).__name__)
