"""The chart's worker and console pods, exactly as `helm template` renders them (image, args,
environment, secrets as files, security contexts, read-only root, writable mounts), run by
`podman kube play` on the host's network against the native stack, and become ready: the
worker's /readyz sees Kafka, PostgreSQL, the vault bucket and its partitions; the console's
sees PostgreSQL and the vault. Only `callvault migrate` is given the owner's URL (here on the
host, as the hook Job would); the console runs on the signing key's public half. Then again
with the keys in a PKCS#11 token (SoftHSM2): the library from the image, the token directory a
volume, the library's configuration a ConfigMap, the PIN a Secret - and no key anywhere.
Two translations for podman 4.3: it mounts no Secret volumes, so the projected Secret volume is
handed to it as a ConfigMap with the same files; and on the host's network a container's ports
are the host's, so their declarations (port mappings to podman) go."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from testbed.helm import render
from testbed.probes import wait_for
from testbed.softhsm import KEY_SETTINGS, MODULE
from testbed.stack import ROOT, Instance, free_port
from tests.containers.test_image import IMAGE, http_status, podman
from tests.e2e.harness import CALLVAULT, Callvault

HSM_IMAGE = IMAGE.replace(":", "-softhsm:")  # deploy/image.sh pkcs11
# the token directory in the container: not under Debian's /var/lib/softhsm (root:softhsm 0750)
TOKEN_DIR = "/var/lib/callvault-hsm/tokens"
KEY_REFS = ("masterKey", "hashKey", "signingKey")

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
    """The images `make image` builds, callvault's and the one with SoftHSM2's library (their
    layers cached: seconds when nothing changed)."""
    subprocess.run(["bash", str(ROOT / "deploy" / "image.sh"), "pkcs11"], check=True, timeout=1800)
    return IMAGE


def public_half(seed: str) -> str:
    key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(seed))
    return base64.b64encode(key.public_key().public_bytes_raw()).decode()


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
        "keys": {"signingPublicKey": public_half(settings["signing_key"])},
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


def play(
    values: dict[str, Any],
    files: dict[str, str],
    tmp_path: Path,
    played: list[Path],
    *extra: dict[str, Any],
) -> dict[str, dict[str, Any]]:
    """The chart's Deployments for ``values`` played by podman (with ``extra`` documents, e.g.
    ConfigMaps its volumes name) until their /readyz answers 200: each container inspected."""
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    deployments = {
        d["metadata"]["name"]: d
        for d in render(path, release=f"t{uuid.uuid4().hex[:6]}")
        if d["kind"] == "Deployment"
    }
    assert len(deployments) == 2  # one worker Deployment, the console
    for deployment in deployments.values():
        path = tmp_path / f"{deployment['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump_all([*extra, *for_podman(deployment, files)]))
        podman("kube", "play", "--network", "host", str(path), timeout=300)
        played.append(path)
    containers = {name: container_of(name) for name in deployments}
    for port in (values["worker"]["metricsPort"], values["console"]["port"]):
        readyz = f"http://127.0.0.1:{port}/readyz"
        try:
            wait_for(partial(answers_200, readyz), 180, readyz)
        except AssertionError as timeout:
            raise AssertionError(f"{timeout}\n{logs(containers)}") from None
    return {
        name: json.loads(podman("inspect", container).stdout)[0]
        for name, container in containers.items()
    }


def container_of(deployment: str) -> str:
    """The id of the container podman runs for ``deployment`` (its pod's infra aside)."""
    (container,) = [
        c["Id"]
        for c in json.loads(podman("ps", "--all", "--format", "json").stdout)
        if c["Names"][0].startswith(f"{deployment}-pod-") and not c["Names"][0].endswith("-infra")
    ]
    return str(container)


def logs(containers: dict[str, str]) -> str:
    """The last lines each container wrote, for a pod that did not become ready."""
    found = []
    for name, container in containers.items():
        done = podman("logs", "--tail", "20", container, check=False)
        found.append(f"--- {name}:\n{done.stdout}{done.stderr}")
    return "\n".join(found)


def answers_200(url: str) -> bool:
    return http_status(url) == 200


def environment(inspected: dict[str, Any]) -> dict[str, str]:
    return dict(e.split("=", 1) for e in inspected["Config"]["Env"])


def test_the_charts_pods_run_read_only_and_become_ready(
    image: str, instance: Instance, tmp_path: Path, played: list[Path]
) -> None:
    Callvault(instance, tmp_path).migrate()  # the hook Job's part, with the owner's URL
    values = chart_values(instance, free_port(), free_port())
    settings = instance.settings_kwargs()
    files = {ref: settings[name] for ref, name in SECRET_SETTINGS.items()}
    for name, inspected in play(values, files, tmp_path, played).items():
        assert inspected["HostConfig"]["ReadonlyRootfs"] is True, name
        assert inspected["Config"]["User"].startswith("10001"), name
        env = environment(inspected)
        assert env["CALLVAULT_DATABASE_URL_FILE"] == "/etc/callvault/secrets/databaseUrl"
        assert "CALLVAULT_DATABASE_URL" not in env
        assert "CALLVAULT_DATABASE_ADMIN_URL_FILE" not in env  # the owner's is migrate's alone
        assert not any(files["hashKey"] in value for value in env.values())
        if name.endswith("-console"):  # ready with the public half only: it never signs
            assert "CALLVAULT_SIGNING_KEY_FILE" not in env
            assert env["CALLVAULT_SIGNING_PUBLIC_KEY"] == public_half(files["signingKey"])


def softhsm_conf(tokendir: str) -> str:
    """SoftHSM2's configuration with its tokens in ``tokendir``."""
    return (
        f"directories.tokendir = {tokendir}\n"
        "objectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"
    )


def test_the_charts_pods_run_with_the_keys_in_a_pkcs11_token(
    image: str, instance: Instance, tmp_path: Path, played: list[Path]
) -> None:
    """The chart's PKCS#11 values on SoftHSM2: the keys generated in a token on this host, the
    token's directory handed to the pods as a volume, and the pods ready with no key at all."""
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(softhsm_conf(str(tokens)))
    label, pin = f"cv-{secrets.token_hex(4)}", secrets.token_hex(8)
    (tmp_path / "pin").write_text(pin)
    host = {k: v for k, v in {**os.environ, **instance.env}.items() if k not in KEY_SETTINGS}
    host |= {
        "SOFTHSM2_CONF": str(conf),
        "CALLVAULT_KEYS_BACKEND": "pkcs11",
        "CALLVAULT_PKCS11_MODULE": str(MODULE),
        "CALLVAULT_PKCS11_TOKEN_LABEL": label,
        "CALLVAULT_PKCS11_PIN_FILE": str(tmp_path / "pin"),
    }
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin,
         "--so-pin", pin + "so"],
        env=host, check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    for command in (["keys", "generate"], ["migrate", "--json"]):  # the operator, the hook Job
        owner = {"CALLVAULT_DATABASE_ADMIN_URL": instance.owner_url}
        subprocess.run(
            [CALLVAULT, *command], env=host | owner, check=True, capture_output=True, timeout=120
        )
    subprocess.run(["chown", "-R", "10001:10001", str(tokens)], check=True)  # the pods' user

    values = chart_values(instance, free_port(), free_port())
    repository, tag = HSM_IMAGE.rsplit(":", 1)
    values["image"] |= {"repository": f"localhost/{repository}", "tag": tag}
    values["secrets"] = {
        ref: spec for ref, spec in values["secrets"].items() if ref not in KEY_REFS
    } | {"pkcs11Pin": {"name": "callvault-test", "key": "pkcs11Pin"}}
    values["keys"] = {
        "backend": "pkcs11",
        "pkcs11": {
            "module": str(MODULE),  # Debian's softhsm2 in the image
            "tokenLabel": label,
            "env": {"SOFTHSM2_CONF": "/etc/callvault/hsm/softhsm2.conf"},
            "volumes": [
                {"name": "hsm-tokens", "hostPath": {"path": str(tokens), "type": "Directory"}},
                {"name": "hsm-config", "configMap": {"name": "softhsm-config"}},
            ],
            "volumeMounts": [
                {"name": "hsm-tokens", "mountPath": TOKEN_DIR},
                {"name": "hsm-config", "mountPath": "/etc/callvault/hsm", "readOnly": True},
            ],
        },
    }
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "softhsm-config"},
        "data": {"softhsm2.conf": softhsm_conf(TOKEN_DIR)},
    }
    settings = instance.settings_kwargs()
    files = {ref: settings[name] for ref, name in SECRET_SETTINGS.items()} | {"pkcs11Pin": pin}
    for name, inspected in play(values, files, tmp_path, played, config).items():
        env = environment(inspected)
        assert env["CALLVAULT_KEYS_BACKEND"] == "pkcs11", name
        assert env["CALLVAULT_PKCS11_PIN_FILE"] == "/etc/callvault/secrets/pkcs11Pin", name
        assert not {f"{k}_FILE" for k in KEY_SETTINGS} & set(env), name
        assert not any(pin in value for value in env.values()), name
        checked = podman("exec", inspected["Id"], "callvault", "keys", "check", check=False)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert checked.stdout.count(f"token '{label}'") >= 3, checked.stdout
