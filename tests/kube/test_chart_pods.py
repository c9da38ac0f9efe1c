"""The chart's worker and console pods, exactly as `helm template` renders them (image, args,
environment, secrets as files, security contexts, read-only root, writable mounts), run by
`podman kube play` on the host's network against the native stack, and become ready: the
worker's /readyz sees Kafka, PostgreSQL, the vault bucket and its partitions; the console's
sees PostgreSQL and the vault. Only `callvault migrate` is given the owner's URL (here on the
host, as the hook Job would). Two translations for podman 4.3: it mounts no Secret volumes, so
the projected Secret volume is handed to it as a ConfigMap with the same files; and on the host's
network a container's ports are the host's, so their declarations (port mappings to podman) go."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed.helm import render
from testbed.probes import wait_for
from testbed.stack import ROOT, Instance, free_port
from tests.containers.test_image import IMAGE, http_status, podman
from tests.e2e.harness import Callvault

SECRET_SETTINGS = {  # the chart's secret references -> callvault's setting
    "databaseUrl": "database_url",
    "s3AccessKey": "s3_access_key",
    "s3SecretKey": "s3_secret_key",
    "masterKey": "master_key",
    "hashKey": "hash_key",
    "signingKey": "signing_key",
}
SET_BY_THE_CHART = {
    "kafka_bootstrap",
    "kafka_security_protocol",
    "s3_endpoint",
    "s3_region",
    "metrics_port",
    "metrics_addr",
    "migrate_on_start",
    "database_admin_url",
    "fetch_root",  # a directory of the host
}


@pytest.fixture(scope="module")
def image() -> str:
    """The image `make image` builds (its layers cached: seconds when nothing changed)."""
    subprocess.run(["bash", str(ROOT / "deploy" / "image.sh")], check=True, timeout=1800)
    return IMAGE


def chart_values(instance: Instance, metrics_port: int, console_port: int) -> dict[str, Any]:
    settings = instance.settings_kwargs()
    repository, tag = IMAGE.rsplit(":", 1)
    return {
        "image": {"repository": f"localhost/{repository}", "tag": tag, "pullPolicy": "Never"},
        "kafka": {"bootstrap": settings["kafka_bootstrap"], "securityProtocol": "PLAINTEXT"},
        "s3": {"endpoint": settings["s3_endpoint"], "region": settings["s3_region"]},
        "config": {
            f"CALLVAULT_{name.upper()}": value
            for name, value in settings.items()
            if name not in SET_BY_THE_CHART and name not in SECRET_SETTINGS.values()
        },
        "secrets": {ref: {"name": "callvault-test", "key": ref} for ref in SECRET_SETTINGS}
        | {"databaseAdminUrl": {"name": "callvault-owner", "key": "url"}},
        "workers": [{"name": "all", "roles": [], "replicas": 1}],
        "worker": {"metricsPort": metrics_port},
        "console": {
            "port": console_port,
            "replicas": 1,
            "env": {"CALLVAULT_COOKIE_SECURE": "false"},
        },
    }


def for_podman(deployment: dict[str, Any], files: dict[str, str]) -> list[dict[str, Any]]:
    """The Deployment as rendered, its projected Secret volume served by a ConfigMap, its
    ports not declared (the host's network)."""
    name = f"{deployment['metadata']['name']}-secrets"
    spec = deployment["spec"]["template"]["spec"]
    for container in spec["containers"]:
        container.pop("ports")
    (volume,) = [v for v in spec["volumes"] if "projected" in v]
    items = [
        {"key": item["path"], "path": item["path"]}
        for source in volume.pop("projected")["sources"]
        for item in source["secret"]["items"]
    ]
    volume["configMap"] = {"name": name, "items": items, "defaultMode": 0o440}
    data = {item["key"]: files[item["key"]] for item in items}
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}
    return [config_map, deployment]


@pytest.fixture
def played(tmp_path: Path) -> Iterator[list[Path]]:
    files: list[Path] = []
    try:
        yield files
    finally:
        for path in files:
            podman("kube", "down", str(path), check=False)


def test_the_charts_pods_run_read_only_and_become_ready(
    image: str, instance: Instance, tmp_path: Path, played: list[Path]
) -> None:
    Callvault(instance, tmp_path).migrate()  # the hook Job's part, with the owner's URL
    metrics_port, console_port = free_port(), free_port()
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(chart_values(instance, metrics_port, console_port)))
    settings = instance.settings_kwargs()
    files = {ref: settings[name] for ref, name in SECRET_SETTINGS.items()}
    deployments = {
        d["metadata"]["name"]: d
        for d in render(values, release=f"t{uuid.uuid4().hex[:6]}")
        if d["kind"] == "Deployment"
    }
    assert len(deployments) == 2  # one worker Deployment, the console
    for deployment in deployments.values():
        path = tmp_path / f"{deployment['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump_all(for_podman(deployment, files)))
        podman("kube", "play", "--network", "host", str(path), timeout=300)
        played.append(path)

    for port in (metrics_port, console_port):
        wait_for(
            lambda p=port: http_status(f"http://127.0.0.1:{p}/readyz") == 200,
            180,
            f"/readyz on {port}",
        )
    for name in deployments:
        (container,) = [
            c
            for c in json.loads(podman("ps", "--format", "json").stdout)
            if c["Names"][0].startswith(f"{name}-pod-") and not c["Names"][0].endswith("-infra")
        ]
        inspected = json.loads(podman("inspect", container["Id"]).stdout)[0]
        assert inspected["HostConfig"]["ReadonlyRootfs"] is True, name
        assert inspected["Config"]["User"].startswith("10001"), name
        env = dict(e.split("=", 1) for e in inspected["Config"]["Env"])
        assert env["CALLVAULT_DATABASE_URL_FILE"] == "/etc/callvault/secrets/databaseUrl"
        assert "CALLVAULT_DATABASE_URL" not in env
        assert "CALLVAULT_DATABASE_ADMIN_URL_FILE" not in env  # the owner's is migrate's alone
        assert not any(files["hashKey"] in value for value in env.values())
