"""``/healthz`` and ``/readyz``: what a supervisor sees while dependencies come and go, a check
hangs, or the event loop stops - on the worker's metrics port and on the console's."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import timedelta

from fastapi.testclient import TestClient

from testbed.stack import free_port
from tests.unit.conftest import World
from tests.unit.console_world import build_console
from workers.adapters.http.app import create_app
from workers.adapters.http.security import HttpConfig
from workers.adapters.metrics import Metrics
from workers.adapters.probes import HEARTBEAT_TIMEOUT, STALE_AFTER, Readiness, serve


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Dependency:
    """A check that answers, fails, or (as far as the monitor can tell) hangs."""

    def __init__(self) -> None:
        self.error: Exception | None = None

    def __call__(self) -> object:
        if self.error is not None:
            raise self.error
        return True


def monitor(
    clock: Clock, conditions: dict[str, Callable[[], bool]] | None = None
) -> tuple[Readiness, dict[str, Dependency]]:
    deps = {"kafka": Dependency(), "postgresql": Dependency(), "s3": Dependency()}
    return Readiness(deps, conditions, clock=clock), deps


def check_all(readiness: Readiness, names: list[str]) -> None:
    for name in names:
        readiness.check_once(name)


def test_not_ready_before_the_first_check_then_ready_when_every_dependency_answers() -> None:
    clock = Clock()
    readiness, deps = monitor(clock)
    ready, details = readiness.report()
    assert not ready
    assert details["kafka"] == "not checked yet"
    check_all(readiness, list(deps))
    assert readiness.report() == (True, {"kafka": "ok", "postgresql": "ok", "s3": "ok"})


def test_a_dependency_that_fails_makes_it_not_ready_naming_it_and_the_error_type() -> None:
    clock = Clock()
    readiness, deps = monitor(clock)
    deps["s3"].error = ConnectionRefusedError("secret-host:9000 user:password")
    check_all(readiness, list(deps))
    ready, details = readiness.report()
    assert not ready
    assert details == {
        "kafka": "ok",
        "postgresql": "ok",
        "s3": "unreachable (ConnectionRefusedError)",
    }
    assert "secret" not in json.dumps(details)  # no address, user or password in the answer
    deps["s3"].error = None
    readiness.check_once("s3")
    assert readiness.report()[0]


def test_a_check_that_hangs_makes_its_dependency_stale() -> None:
    clock = Clock()
    readiness, deps = monitor(clock)
    check_all(readiness, list(deps))
    clock.now += STALE_AFTER / 2
    check_all(readiness, ["kafka", "s3"])  # postgresql's check never comes back
    assert readiness.report()[0]
    clock.now += STALE_AFTER
    check_all(readiness, ["kafka", "s3"])
    ready, details = readiness.report()
    assert not ready
    assert details["postgresql"] == f"no answer for {STALE_AFTER * 1.5:.0f}s"


def test_conditions_such_as_assigned_partitions_must_hold() -> None:
    clock = Clock()
    assigned = {"now": False}
    readiness, deps = monitor(clock, {"partitions": lambda: assigned["now"]})
    check_all(readiness, list(deps))
    assert readiness.report() == (
        False,
        {"kafka": "ok", "postgresql": "ok", "s3": "ok", "partitions": "not yet"},
    )
    assigned["now"] = True
    assert readiness.report()[0]


def test_alive_until_a_heartbeat_that_was_seen_stops() -> None:
    clock = Clock()
    readiness, _ = monitor(clock)
    assert readiness.alive()  # starting up: no heartbeat yet
    readiness.beat()
    clock.now += HEARTBEAT_TIMEOUT
    assert readiness.alive()
    clock.now += 1
    assert not readiness.alive()
    readiness.beat()
    assert readiness.alive()


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_the_metrics_port_serves_probes_beside_the_metrics() -> None:
    clock = Clock()
    readiness, deps = monitor(clock)
    deps["kafka"].error = TimeoutError()
    check_all(readiness, list(deps))
    port = free_port()
    serve("127.0.0.1", port, Metrics().registry, readiness)
    status, body = get(port, "/readyz")
    assert status == 503
    assert json.loads(body) == {
        "status": "not ready",
        "kafka": "unreachable (TimeoutError)",
        "postgresql": "ok",
        "s3": "ok",
    }
    assert get(port, "/healthz") == (200, '{"status": "ok"}')
    status, body = get(port, "/metrics")
    assert status == 200
    assert "callvault_worker_ready" in body
    deps["kafka"].error = None
    readiness.check_once("kafka")
    assert get(port, "/readyz")[0] == 200


def test_the_console_answers_readyz_from_its_checks(world: World) -> None:
    clock = Clock()
    db, store = Dependency(), Dependency()
    readiness = Readiness({"postgresql": db, "s3": store}, clock=clock)
    db.error = OSError("connection refused")
    readiness.check_once("postgresql")
    readiness.check_once("s3")
    console = build_console(world)
    app = create_app(
        console.console,
        HttpConfig(b"s" * 32, timedelta(hours=1)),
        console.world.settings,
        readiness=readiness,
    )
    client = TestClient(app)
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json() == {
        "status": "not ready",
        "postgresql": "unreachable (OSError)",
        "s3": "ok",
    }
    assert client.get("/healthz").status_code == 200
    db.error = None
    readiness.check_once("postgresql")
    assert client.get("/readyz").json() == {"status": "ready", "postgresql": "ok", "s3": "ok"}
