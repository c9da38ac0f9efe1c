"""``/healthz`` and ``/readyz`` of a real worker and a real console: a supervisor sees a worker
turn unready when its object store goes away and ready again when it is back (the store is
reached through a forwarder the test closes - the shared services are never stopped), and a
console started against a closed port names the store it cannot reach."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import urllib.error
import urllib.request
from contextlib import closing, suppress
from typing import Any
from urllib.parse import urlsplit

import pytest

from testbed.probes import wait_for
from testbed.stack import free_port
from tests.e2e.harness import CALLVAULT, Callvault


class Forwarder:
    """TCP from a local port to ``target``, until ``close()`` drops the port and every
    connection through it (the dependency "goes away"); ``open()`` brings it back."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def open(self) -> Forwarder:
        listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self._keep(listener)
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def close(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _keep(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                return  # closed
            for sock in (client, upstream):
                sock.settimeout(None)
                self._keep(sock)
            threading.Thread(target=_pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with suppress(OSError):
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    with suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def probe(port: int, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def readyz_becomes(port: int, status: int, timeout: float = 60) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def check() -> bool:
        code, seen["body"] = probe(port, "/readyz")
        return code == status

    wait_for(check, timeout, f"/readyz answering {status} (last: {seen.get('body')})")
    body: dict[str, Any] = seen["body"]
    return body


def through(url: str, forwarder: Forwarder) -> str:
    """``url`` with its host and port replaced by the forwarder's."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@" if credentials else ""
    return parts._replace(netloc=f"{netloc}127.0.0.1:{forwarder.port}").geturl()


@pytest.mark.parametrize(
    ("dependency", "setting"),
    [("s3", "CALLVAULT_S3_ENDPOINT"), ("postgresql", "CALLVAULT_DATABASE_URL")],
)
def test_a_worker_turns_unready_while_a_dependency_is_away_and_ready_when_it_is_back(
    callvault: Callvault, dependency: str, setting: str
) -> None:
    target = urlsplit(callvault.env[setting])
    forwarder = Forwarder((target.hostname or "127.0.0.1", target.port or 80)).open()
    try:
        callvault.start_worker(
            extra_env={
                setting: through(callvault.env[setting], forwarder),
                "CALLVAULT_MIGRATE_ON_START": "false",
            }
        )
        port = int(callvault.env["CALLVAULT_METRICS_PORT"])
        assert readyz_becomes(port, 200) == {
            "status": "ready",
            "postgresql": "ok",
            "s3": "ok",
            "kafka": "ok",
            "partitions": "ok",
        }
        forwarder.close()
        away = readyz_becomes(port, 503)
        assert away.pop(dependency).startswith(("unreachable (", "no answer for ")), away
        assert set(away.values()) == {"not ready", "ok"}, away  # only that one is away
        assert probe(port, "/healthz") == (200, {"status": "ok"})  # alive: no restart wanted
        forwarder.open()
        readyz_becomes(port, 200, timeout=120)
    finally:
        forwarder.close()


def test_a_console_whose_object_store_is_unreachable_is_alive_but_not_ready(
    callvault: Callvault,
) -> None:
    with closing(socket.socket()) as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
        port = free_port()
        log = (callvault.log_dir / "serve.log").open("wb")
        process = subprocess.Popen(
            [CALLVAULT, "serve"],
            env={
                **callvault.env,
                "CALLVAULT_HTTP_PORT": str(port),
                "CALLVAULT_S3_ENDPOINT": f"http://127.0.0.1:{closed}",
                "CALLVAULT_MIGRATE_ON_START": "false",
            },
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        callvault.workers.append(process)

        def answering() -> bool:
            assert process.poll() is None, "callvault serve exited:\n" + callvault.logs()
            try:
                return probe(port, "/healthz") == (200, {"status": "ok"})
            except OSError:
                return False

        wait_for(answering, 60, "callvault serve on its port")
        body = readyz_becomes(port, 503)
        assert body["postgresql"] == "ok"
        assert body["s3"].startswith("unreachable ("), body
        assert "kafka" not in body  # reading and listening do not need Kafka
