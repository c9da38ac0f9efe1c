"""callvault's image, built by `make image` (podman, a base made from Debian's packages), run as
a shop runs it: as a non-root user on a read-only root file system, the worker and the console
against the native stack as callvault's database role, their healthchecks answering."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.probes import wait_for
from testbed.stack import ROOT, Instance, free_port
from tests.e2e.harness import Callvault, make_wav

IMAGE = "callvault:0.1.0"
PODMAN_CONF = Path(os.environ.get("CALLVAULT_STACK_ROOT", ROOT / ".local")) / "podman"


def podman(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONTAINERS_CONF": str(PODMAN_CONF / "containers.conf")}
    return subprocess.run(
        ["podman", *args], env=env, capture_output=True, text=True, timeout=timeout, check=check
    )


@pytest.fixture(scope="module")
def image() -> str:
    """The image as `make image` builds it (layers cached: seconds when nothing changed)."""
    subprocess.run(["bash", str(ROOT / "deploy" / "image.sh")], check=True, timeout=1800)
    return IMAGE


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


class Container:
    """One detached container on the host's network, removed afterwards."""

    def __init__(self, image: str, env: dict[str, str], *command: str) -> None:
        self.name = f"callvault-test-{uuid.uuid4().hex[:8]}"
        env_file = Path(f"/tmp/{self.name}.env")
        env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
        env_file.chmod(0o600)
        try:
            podman(
                "run", "--detach", "--name", self.name, "--network", "host", "--read-only",
                "--tmpfs", "/tmp", "--tmpfs", "/var/lib/callvault:rw,mode=1777",
                "--env-file", str(env_file), image, *command,
            )  # fmt: skip
        finally:
            env_file.unlink()

    def healthcheck(self) -> subprocess.CompletedProcess[str]:
        return podman("healthcheck", "run", self.name, check=False)

    def inspect(self) -> dict[str, object]:
        found: list[dict[str, object]] = json.loads(podman("inspect", self.name).stdout)
        return found[0]

    def logs(self) -> str:
        return podman("logs", self.name, check=False).stdout

    def running(self) -> bool:
        state = self.inspect()["State"]
        assert isinstance(state, dict)
        return bool(state["Running"])

    def remove(self) -> None:
        podman("rm", "--force", "--time", "10", self.name, check=False)


@pytest.fixture
def containers() -> Iterator[list[Container]]:
    started: list[Container] = []
    try:
        yield started
    finally:
        for container in started:
            container.remove()


def app_env(instance: Instance) -> dict[str, str]:
    """What the container gets: callvault's role, never the owner's URL."""
    return {**instance.env, "CALLVAULT_METRICS_ADDR": "127.0.0.1"}


def test_the_image_runs_as_a_non_root_user_on_a_read_only_root(image: str) -> None:
    version = podman("run", "--rm", "--read-only", image, "--version")
    assert version.stdout.strip() == "callvault, version 0.1.0"
    who = podman("run", "--rm", "--read-only", "--entrypoint", "id", image)
    assert who.stdout.startswith("uid=10001(callvault)")
    inspected = json.loads(podman("image", "inspect", image).stdout)[0]
    assert inspected["Config"]["User"] == "callvault"
    assert "/healthz" in " ".join(inspected["Healthcheck"]["Test"])
    written = podman(
        "run", "--rm", "--read-only", "--entrypoint", "touch", image, "/usr/local/x", check=False
    )
    assert written.returncode != 0
    assert "Read-only file system" in written.stderr


def test_a_worker_in_the_image_stores_a_call_and_answers_its_healthcheck(
    image: str, instance: Instance, tmp_path: Path, containers: list[Container]
) -> None:
    cv = Callvault(instance, tmp_path)
    cv.migrate()  # on the host, with the owner's URL: the container never gets it
    port = free_port()
    worker = Container(image, {**app_env(instance), "CALLVAULT_METRICS_PORT": str(port)}, "worker")
    containers.append(worker)
    readyz = f"http://127.0.0.1:{port}/readyz"

    def ready() -> bool:
        assert worker.running(), worker.logs()[-3000:]
        return http_status(readyz) == 200

    wait_for(ready, 120, "the containerised worker's /readyz")
    assert worker.healthcheck().returncode == 0  # the image's HEALTHCHECK: /healthz
    call_id = f"image-{uuid.uuid4().hex[:8]}"
    cv.call(call_id, make_wav(0.5))
    stored = cv.read("recordings_stored", lambda seen: len(seen) >= 1, timeout=120)
    assert stored[0]["data"]["call_id"] == call_id
    assert "database_role_too_powerful" not in worker.logs()


def test_the_console_in_the_image_answers_its_probes(
    image: str, instance: Instance, tmp_path: Path, containers: list[Container]
) -> None:
    Callvault(instance, tmp_path).migrate()
    port = free_port()
    console = Container(image, app_env(instance), "serve", "--port", str(port))
    containers.append(console)

    def ready() -> bool:
        assert console.running(), console.logs()[-3000:]
        return http_status(f"http://127.0.0.1:{port}/readyz") == 200

    wait_for(ready, 90, "the containerised console's /readyz")
    assert http_status(f"http://127.0.0.1:{port}/healthz") == 200
    started = time.monotonic()
    assert http_status(f"http://127.0.0.1:{port}/") in (200, 303, 307)  # the sign-in page
    assert time.monotonic() - started < 5
