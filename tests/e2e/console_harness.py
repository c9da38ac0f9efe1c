"""``callvault serve`` as operators run it, next to a worker, on an isolated instance; staff
created with ``callvault user add`` and ``callvault token create``; an HTTP client that holds
nothing but a token (or a browser's cookie)."""

from __future__ import annotations

import hashlib
import io
import json
import ssl
import subprocess
import urllib.error
import urllib.request
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
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
    origin: str = ""  # where clients reach it, when not directly (a reverse proxy)
    ca_file: str | None = None  # the CA of the origin's certificate

    @property
    def base(self) -> str:
        return self.origin or f"http://127.0.0.1:{self.port}"

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
        tls = ssl.create_default_context(cafile=self.ca_file) if self.ca_file else None
        try:
            with urllib.request.urlopen(request, timeout=60, context=tls) as response:
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


def start_console(cv: Callvault) -> Console:
    for name, role in STAFF.items():
        cli(cv, "user", "add", name, "--role", role, "--tenant", "*", stdin=PASSWORD + "\n")
    console = serve(cv)
    for name in STAFF:
        console.tokens[name] = cli(cv, "token", "create", name).stdout.strip()
    return console


def serve(cv: Callvault, name: str = "serve", **env: str) -> Console:
    """``callvault serve`` on a free port, with these extra settings; once it answers."""
    port = free_port()
    log = (cv.log_dir / f"{name}.log").open("wb")
    process = subprocess.Popen(
        [CALLVAULT, "serve"],
        env={**cv.env, "CALLVAULT_HTTP_PORT": str(port), **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    cv.workers.append(process)  # stopped with the instance's workers
    console = Console(cv, port, process)
    wait_answering(console, "callvault serve on its port")
    return console


def wait_answering(console: Console, what: str) -> None:
    def answering() -> bool:
        assert console.process.poll() is None, f"{what}: exited\n" + console.cv.logs()
        try:
            return console.request("GET", "/healthz").status == 200
        except OSError:
            return False

    wait_for(answering, 60, what)


CADDYFILE = """{{
    admin off
    auto_https off
}}
https://127.0.0.1:{port} {{
    tls {cert} {key}
    reverse_proxy 127.0.0.1:{upstream} {{
        header_up Host {{upstream_hostport}}
    }}
}}
"""


def behind_tls_proxy(cv: Callvault, ca_file: str, workdir: Path) -> Console:
    """A second ``callvault serve`` as operators run it behind a TLS-terminating reverse proxy
    (Debian's Caddy, with the local stack's certificate): the browser's origin is the proxy's,
    and the proxy sends the console its own upstream address as Host, as nginx does."""
    port = free_port()
    upstream = serve(
        cv,
        "serve-proxied",
        CALLVAULT_PUBLIC_URL=f"https://127.0.0.1:{port}",
        CALLVAULT_FORWARDED_ALLOW_IPS="127.0.0.1",
    )
    tls = Path(ca_file).parent
    config = workdir / "Caddyfile"
    config.write_text(
        CADDYFILE.format(
            port=port,
            upstream=upstream.port,
            cert=tls / "server.pem",
            key=tls / "server.key",
        )
    )
    home = {"HOME": str(workdir), "XDG_DATA_HOME": str(workdir), "XDG_CONFIG_HOME": str(workdir)}
    process = subprocess.Popen(
        ["caddy", "run", "--adapter", "caddyfile", "--config", str(config)],
        env={"PATH": "/usr/bin:/bin", **home},
        stdout=(cv.log_dir / "caddy.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    cv.workers.append(process)
    proxied = Console(cv, port, process, origin=f"https://127.0.0.1:{port}", ca_file=ca_file)
    wait_answering(proxied, "Caddy in front of callvault serve")
    return proxied


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
