"""Liveness and readiness, as a supervisor (Kubernetes, compose, systemd) asks for them.

``/healthz``: the process is alive - its event loop still turns (a heartbeat), or it has none.
``/readyz``: every dependency answered a cheap request lately (Kafka: cluster metadata;
PostgreSQL: ``SELECT 1``; the object store: the vault bucket's HEAD) and every condition holds
(a worker: its partitions are assigned). Each dependency is checked by a thread of its own
every few seconds, so a request that hangs makes its dependency *stale* (not ready) instead of
making the probe hang. Answers name dependencies and error types only, never an address, a
user or a password."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import structlog
from kafka import KafkaAdminClient
from prometheus_client import CollectorRegistry, make_wsgi_app

from .kafka.security import KafkaSecurity

log = structlog.get_logger("callvault.probes")

Check = Callable[[], object]  # raises when the dependency does not answer
CHECK_INTERVAL = 5.0
STALE_AFTER = 20.0  # a dependency whose last answer is older is not ready
HEARTBEAT_TIMEOUT = 60.0  # an event loop that has not ticked for this long is not alive
PROBE_TIMEOUT_MS = 5_000


@dataclass
class _Outcome:
    ok: bool = False
    detail: str = "not checked yet"
    answered_at: float = float("-inf")  # monotonic time of the last success


class Readiness:
    """Checks dependencies in the background; ``report()`` tells whether all answered lately
    and every condition holds. ``beat()`` is the owner's heartbeat for ``alive()``."""

    def __init__(
        self,
        checks: Mapping[str, Check],
        conditions: Mapping[str, Callable[[], bool]] | None = None,
        *,
        interval: float = CHECK_INTERVAL,
        stale_after: float = STALE_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._checks = dict(checks)
        self._conditions = dict(conditions or {})
        self._interval = interval
        self._stale_after = stale_after
        self._clock = clock
        self._outcomes = {name: _Outcome() for name in self._checks}
        self._lock = threading.Lock()
        self._last_beat: float | None = None

    def start(self) -> Readiness:
        for name in self._checks:
            threading.Thread(
                target=self._watch, args=(name,), name=f"readiness-{name}", daemon=True
            ).start()
        return self

    def check_once(self, name: str) -> None:
        """Run one check now and record its outcome."""
        try:
            self._checks[name]()
        except Exception as error:  # noqa: BLE001 - any failure is "not ready"; its type says which
            self._record(name, False, f"unreachable ({type(error).__name__})")
        else:
            self._record(name, True, "ok")

    def _watch(self, name: str) -> None:
        """For as long as the process lives (a daemon thread)."""
        while True:
            self.check_once(name)
            time.sleep(self._interval)

    def _record(self, name: str, ok: bool, detail: str) -> None:
        with self._lock:
            outcome = self._outcomes[name]
            if ok != outcome.ok:
                log.info("dependency_ready" if ok else "dependency_not_ready", dependency=name)
            outcome.ok, outcome.detail = ok, detail
            if ok:
                outcome.answered_at = self._clock()

    def report(self) -> tuple[bool, dict[str, str]]:
        now = self._clock()
        details: dict[str, str] = {}
        with self._lock:
            for name, outcome in self._outcomes.items():
                age = now - outcome.answered_at
                stale = outcome.ok and age > self._stale_after  # its check hangs
                details[name] = f"no answer for {age:.0f}s" if stale else outcome.detail
        for name, holds in self._conditions.items():
            details[name] = "ok" if holds() else "not yet"
        return all(d == "ok" for d in details.values()), details

    def beat(self) -> None:
        self._last_beat = self._clock()

    def alive(self) -> bool:
        """False only when a heartbeat was seen and then stopped (a wedged event loop)."""
        last = self._last_beat
        return last is None or self._clock() - last <= HEARTBEAT_TIMEOUT


# --- checks -----------------------------------------------------------------------------------
class KafkaCheck:
    """Cluster metadata from any broker, over the worker's own security settings; a failed
    client is dropped and the next check connects afresh."""

    def __init__(self, bootstrap: str, security: KafkaSecurity) -> None:
        self._bootstrap = bootstrap.split(",")
        self._security = replace(security, bootstrap_timeout_ms=PROBE_TIMEOUT_MS)
        self._admin: Any = None

    def __call__(self) -> object:
        try:
            if self._admin is None:
                self._admin = KafkaAdminClient(
                    bootstrap_servers=self._bootstrap,
                    client_id="callvault-readiness",
                    request_timeout_ms=PROBE_TIMEOUT_MS,
                    **self._security.options(),
                )
            return self._admin.describe_cluster()
        except Exception:
            admin, self._admin = self._admin, None
            if admin is not None:
                _close_quietly(admin)
            raise


def _close_quietly(client: Any) -> None:
    try:
        client.close()
    except Exception as error:  # noqa: BLE001 - closing a broken client may fail in any way
        log.debug("readiness_client_close_failed", error_type=type(error).__name__)


def database_check(db: Any) -> Check:
    """``SELECT 1`` on a pooled connection (waiting at most the pool's timeout)."""

    def check() -> object:
        with db.connection() as conn:
            return conn.execute("SELECT 1").fetchone()

    return check


def bucket_check(store: Any, bucket: str) -> Check:
    """A HEAD of the bucket: the store answers, and with these credentials."""

    def check() -> object:
        if not store.client.bucket_exists(bucket):
            raise LookupError("bucket missing")
        return True

    return check


# --- HTTP -------------------------------------------------------------------------------------
def probe_answer(path: str, readiness: Readiness) -> tuple[int, dict[str, Any]] | None:
    """The status and JSON body of ``/healthz`` or ``/readyz``; ``None`` for other paths."""
    if path == "/healthz":
        alive = readiness.alive()
        return (200 if alive else 503), {"status": "ok" if alive else "event loop stalled"}
    if path == "/readyz":
        ready, checks = readiness.report()
        return (200 if ready else 503), {"status": "ready" if ready else "not ready", **checks}
    return None


def wsgi_app(registry: CollectorRegistry, readiness: Readiness) -> Callable[..., Iterable[bytes]]:
    """``/healthz`` and ``/readyz``, and the Prometheus exposition on every other path."""
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        answer = probe_answer(environ.get("PATH_INFO", ""), readiness)
        if answer is None:
            result: Iterable[bytes] = metrics(environ, start_response)
            return result
        status, body = answer
        payload = json.dumps(body).encode()
        start_response(
            f"{status} {'OK' if status == 200 else 'Service Unavailable'}",
            [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))],
        )
        return [payload]

    return app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _IPv6Server(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds would flood the log."""


def serve(addr: str, port: int, registry: CollectorRegistry, readiness: Readiness) -> None:
    """Serve metrics and probes from a daemon thread (raises ``OSError`` if the port is taken)."""
    server_class = _IPv6Server if ":" in addr else _Server
    server = make_server(
        addr, port, wsgi_app(registry, readiness), server_class, handler_class=_QuietHandler
    )
    threading.Thread(target=server.serve_forever, name="probes", daemon=True).start()
