"""A real Kubernetes API server for the chart's checks: kube-apiserver over kine (etcd's API on
SQLite), both built from their Go modules by `deploy/kube.sh install`, on free loopback ports,
with a static admin token, the CRDs the chart's optional resources need, and a namespace.
`make helm-test` runs these tests; `make test` does not (marker ``kube``)."""

from __future__ import annotations

import json
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from testbed.helm import LOCAL_DIR, local_binary
from testbed.stack import free_port, stop_processes

CRDS = LOCAL_DIR / "kube" / "crds"
TOKEN = "callvault-helm-test"
NAMESPACE = "callvault"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/kube/" in str(item.path):
            item.add_marker(pytest.mark.kube)


@dataclass
class ApiServer:
    url: str
    context: ssl.SSLContext
    resources: dict[tuple[str, str], tuple[str, bool]] = field(default_factory=dict)

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=30) as answer:
                return answer.status, _parsed(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, _parsed(error.read())

    def collection(self, manifest: dict[str, Any], namespace: str) -> str:
        """The URL path that creates ``manifest``, found by API discovery."""
        api_version, kind = manifest["apiVersion"], manifest["kind"]
        if (api_version, kind) not in self.resources:
            self.discover(api_version)
        plural, namespaced = self.resources[(api_version, kind)]
        base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        return f"{base}/namespaces/{namespace}/{plural}" if namespaced else f"{base}/{plural}"

    def discover(self, api_version: str) -> None:
        path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        status, found = self.request("GET", path)
        assert status == 200, f"the API server does not serve {api_version}: {found}"
        for resource in found["resources"]:
            if "/" not in resource["name"]:
                key = (api_version, resource["kind"])
                self.resources[key] = (resource["name"], resource["namespaced"])

    def dry_run(self, manifest: dict[str, Any], namespace: str = NAMESPACE) -> tuple[int, Any]:
        """Create ``manifest`` with every admission step and strict field validation, storing
        nothing: the API server's own verdict on it."""
        path = self.collection(manifest, namespace)
        return self.request("POST", f"{path}?dryRun=All&fieldValidation=Strict", manifest)

    def apply(self, manifest: dict[str, Any]) -> None:
        status, answer = self.request("POST", self.collection(manifest, NAMESPACE), manifest)
        assert status in (200, 201, 409), answer


def _parsed(body: bytes) -> dict[str, Any]:
    """The API's JSON answer; a health endpoint's plain text as ``{"text": ...}``."""
    try:
        found: dict[str, Any] = json.loads(body or b"{}")
    except json.JSONDecodeError:
        return {"text": body.decode(errors="replace")}
    return found


def _binary(name: str) -> str:
    found = local_binary(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run `bash deploy/kube.sh install` (make helm-test)")
    return found


def _wait_ready(server: ApiServer, processes: list[subprocess.Popen[bytes]], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                pytest.fail(f"{process.args[0]} exited:\n{log.read_text()[-3000:]}")
        try:
            if server.request("GET", "/readyz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"kube-apiserver not ready in 120 s:\n{log.read_text()[-3000:]}")


def _install_crds(server: ApiServer) -> None:
    files = sorted(CRDS.glob("*.yaml"))
    assert len(files) == 3, f"the CRDs are missing in {CRDS}: run `bash deploy/kube.sh install`"
    for path in files:
        crd = yaml.safe_load(path.read_text(encoding="utf-8"))
        server.apply(crd)
        name = crd["metadata"]["name"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            _, found = server.request(
                "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
            )
            conditions = {
                c["type"]: c["status"] for c in (found.get("status") or {}).get("conditions") or []
            }
            if conditions.get("Established") == "True":
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"CRD {name} not established")


@pytest.fixture(scope="session")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    kine, apiserver = _binary("kine"), _binary("kube-apiserver")
    home = tmp_path_factory.mktemp("kube")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (home / "sa.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    (home / "tokens.csv").write_text(f'{TOKEN},admin,1,"system:masters"\n')
    etcd_port, api_port = free_port(), free_port()
    log = home / "kube.log"
    with log.open("wb") as out:
        processes = [
            subprocess.Popen(
                [
                    kine,
                    "--endpoint",
                    f"sqlite://{home}/state.db?_journal=WAL&cache=shared",
                    "--listen-address",
                    f"127.0.0.1:{etcd_port}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        ]
        processes.append(
            subprocess.Popen(
                [
                    apiserver,
                    f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={api_port}",
                    f"--cert-dir={home / 'certs'}",
                    "--service-account-issuer=https://kubernetes.default.svc",
                    f"--service-account-key-file={home / 'sa.key'}",
                    f"--service-account-signing-key-file={home / 'sa.key'}",
                    f"--token-auth-file={home / 'tokens.csv'}",
                    "--authorization-mode=RBAC",
                    "--service-cluster-ip-range=10.96.0.0/16",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        )
    try:
        certificate = home / "certs" / "apiserver.crt"
        deadline = time.monotonic() + 60
        while not certificate.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        server = ApiServer(
            f"https://127.0.0.1:{api_port}", ssl.create_default_context(cafile=certificate)
        )
        _wait_ready(server, processes, log)
        _install_crds(server)
        server.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        yield server
    finally:
        stop_processes(list(reversed(processes)), grace=10)
