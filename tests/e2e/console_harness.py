"""``callvault serve`` as operators run it, next to a worker, on an isolated instance; staff
created with ``callvault user add`` and ``callvault token create``; an HTTP client that holds
nothing but a token (or a browser's cookie)."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import urllib.error
import urllib.request
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from testbed.probes import wait_for
from testbed.stack import free_port
from tests.e2e.harness import CALLVAULT, Callvault, cloudevent, stamp

PASSWORD = "correct horse battery"
STAFF = {"qa": "qa", "cx": "complaints", "dpo": "dpo", "admin": "admin"}


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Console:
    cv: Callvault
    port: int
    process: subprocess.Popen[bytes]
    tokens: dict[str, str] = field(default_factory=dict)
    recordings: dict[str, str] = field(default_factory=dict)  # call id -> recording id

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        data = json.dumps(body).encode() if body is not None else None
        sent = {"content-type": "application/json"} if data is not None else {}
        if token is not None:
            sent["authorization"] = f"Bearer {token}"
        sent.update(headers or {})
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=sent)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return Answer(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as error:
            return Answer(error.code, dict(error.headers), error.read())

    def as_role(self, who: str, method: str, path: str, body: Any = None, **kw: Any) -> Answer:
        return self.request(method, path, token=self.tokens[who], body=body, **kw)

    def stop(self) -> None:
        from testbed.stack import stop_processes

        stop_processes([self.process])


def cli(cv: Callvault, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CALLVAULT, *args],
        env=cv.env,
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )


def start_console(cv: Callvault, tokens: dict[str, str] | None = None) -> Console:
    """``callvault serve`` with the staff's accounts; ``tokens``: of a console started before
    (the accounts exist already)."""
    for name, role in STAFF.items() if tokens is None else ():
        cli(cv, "user", "add", name, "--role", role, stdin=PASSWORD + "\n")
    port = free_port()
    log = (cv.log_dir / "serve.log").open("wb")
    process = subprocess.Popen(
        [CALLVAULT, "serve"],
        env={**cv.env, "CALLVAULT_HTTP_PORT": str(port)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    cv.workers.append(process)  # stopped with the instance's workers
    console = Console(cv, port, process)

    def answering() -> bool:
        assert process.poll() is None, "callvault serve exited:\n" + cv.logs()
        try:
            return console.request("GET", "/healthz").status == 200
        except OSError:
            return False

    wait_for(answering, 60, "callvault serve on its port")
    for name in STAFF:
        console.tokens[name] = (
            cli(cv, "token", "create", name).stdout.strip() if tokens is None else tokens[name]
        )
    return console


def store_calls(cv: Callvault, calls: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Publish calls (call id -> call() arguments); call id -> recording id once stored."""
    for call_id, arguments in calls.items():
        cv.call(call_id, **arguments)
    seen = cv.read(
        "recordings_stored", lambda events: set(calls) <= {e["data"]["call_id"] for e in events}
    )
    return {e["data"]["call_id"]: e["data"]["recording_id"] for e in seen}


def dsr(cv: Callvault, kind: str, subject: dict[str, list[str]], **extra: Any) -> dict[str, Any]:
    """Send a request as the DSR portal does and wait for its answer."""
    request_id = f"e2e-{uuid.uuid4().hex[:8]}"
    data = {
        "request_id": request_id,
        "type": kind,
        "received_at": stamp(datetime.now(UTC)),
        "identity_verified": True,
        "subject": {"phone_numbers": [], "emails": [], "customer_ids": [], "order_ids": []}
        | subject,
        **extra,
    }
    cv.send("dsr_requests", request_id, cloudevent("callvault.dsr.requested.v1", data))
    answers = cv.read(
        "dsr_results", lambda seen: any(e["data"]["request_id"] == request_id for e in seen)
    )
    return next(e["data"] for e in answers if e["data"]["request_id"] == request_id)


def download_zip(url: str) -> zipfile.ZipFile:
    """Follow a presigned URL without any credentials."""
    with urllib.request.urlopen(url, timeout=60) as response:
        return zipfile.ZipFile(io.BytesIO(response.read()))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
