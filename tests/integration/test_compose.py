"""docker-compose.yml without a Docker engine: everything short of starting containers.

- the file loads as `docker compose config` loads it: deploy/compose/check.sh runs compose-go
  (the library docker compose is built on: interpolation, the Compose Specification schema,
  env_file resolution, normalisation, consistency checks), for the default and the minio
  profile; it also checks every image reference (and the Dockerfile's base) with docker's
  reference grammar: name:tag@sha256:digest for registry images, a version tag for the built
  one. The vendored JSON schema (deploy/compose-spec.schema.json) is checked in Python too;
- no secret is committed and each container mounts only the secrets it needs; the 'setup'
  script really generates them (once), the image's entrypoint really exports them, and the
  result passes callvault's settings;
- the S3 service runs as defined (its entrypoint and command, with the versitygw binary the
  native stack built from the same release), with object lock and versioning;
- names, ports, credentials and hostnames agree between services, configs and the native stack;
- the worker image: runtime lock only, pinned build backend, writable Faust data directory as
  a non-root user, a healthcheck.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from workers.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SCHEMA = ROOT / "deploy" / "compose-spec.schema.json"
CHECK = ROOT / "deploy" / "compose" / "check.sh"
INIT_SECRETS = ROOT / "deploy" / "compose" / "init-secrets.sh"
ENTRYPOINT = ROOT / "deploy" / "compose" / "callvault-entrypoint.sh"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
SECRET_VOLUMES = {  # service -> the secrets volumes it may mount
    "setup": {
        "secrets-setup",
        "secrets-migrate",
        "secrets-worker",
        "secrets-console",
        "secrets-postgres",
        "secrets-s3",
        "secrets-s3-users",
        "secrets-handout",
        "secrets-kafka",
        "secrets-kafka-init",
        "secrets-grafana",
    },
    "migrate": {"secrets-migrate"},
    "s3-policies": {"secrets-migrate"},  # migrate's S3 keys, after migrate
    "s3-users": {"secrets-s3-users"},
    "worker": {"secrets-worker"},
    "console": {"secrets-console"},
    "kafka": {"secrets-kafka"},
    "kafka-init": {"secrets-kafka-init"},
    "postgres": {"secrets-postgres"},
    "versitygw": {"secrets-s3"},
    "minio": {"secrets-s3"},
    "minio-init": {"secrets-s3"},
    "grafana": {"secrets-grafana"},
}
CALLVAULT_SECRETS = {
    "CALLVAULT_DATABASE_URL",
    "CALLVAULT_S3_ACCESS_KEY",
    "CALLVAULT_S3_SECRET_KEY",
    "CALLVAULT_MASTER_KEY",
    "CALLVAULT_HASH_KEY",
    "CALLVAULT_SIGNING_KEY",
    "CALLVAULT_KAFKA_SASL_PASSWORD",
}
# what each of callvault's containers holds, beside the broker's CA (kafka-ca.pem)
HELD = {
    "migrate": CALLVAULT_SECRETS | {"CALLVAULT_DATABASE_ADMIN_URL"},
    "worker": CALLVAULT_SECRETS,
    "console": CALLVAULT_SECRETS - {"CALLVAULT_SIGNING_KEY"} | {"CALLVAULT_SIGNING_PUBLIC_KEY"},
}
BUCKETS = {
    "CALLVAULT_VAULT_BUCKET": "callvault-vault",
    "CALLVAULT_EXPORT_BUCKET": "callvault-exports",
    "CALLVAULT_LANDING_BUCKET": "callvault-landing",
}


# ------------------------------------------------------------------ helpers
def clean_env() -> dict[str, str]:
    """The caller's environment without CALLVAULT_*/COMPOSE_* (a shell connected to the native
    stack exports CALLVAULT_S3_ENDPOINT, which compose would interpolate)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("CALLVAULT_", "COMPOSE_"))}


def compose_check(*args: str, file: Path = COMPOSE) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(CHECK), *args, str(file)],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=300,
        check=False,
    )


def dockerfile_bases() -> list[str]:
    text = DOCKERFILE.read_text(encoding="utf-8")
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.MULTILINE))
    bases = []
    for ref in re.findall(r"^FROM (\S+)", text, re.MULTILINE):
        ref = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], ref)
        bases.append(ref)
    return bases


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    """The normalised project, default profile (`docker compose config --format json`)."""
    done = compose_check(*[arg for base in dockerfile_bases() for arg in ("--image", base)])
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


@pytest.fixture(scope="module")
def config_minio() -> dict[str, Any]:
    done = compose_check("--profile", "minio")
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def service(config: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = config["services"][name]
    return found


def env(config: dict[str, Any], name: str) -> dict[str, str]:
    return {k: v or "" for k, v in (service(config, name).get("environment") or {}).items()}


def published(config: dict[str, Any], name: str) -> dict[int, tuple[str, int]]:
    """container port -> (host ip, host port)."""
    return {
        int(p["target"]): (p.get("host_ip", ""), int(p["published"]))
        for p in service(config, name).get("ports") or []
    }


def mounts(config: dict[str, Any], name: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = service(config, name).get("volumes") or []
    return found


def native_ports() -> dict[str, int]:
    text = (ROOT / "deploy" / "lib" / "common.sh").read_text(encoding="utf-8")
    return {m[1]: int(m[2]) for m in re.finditer(r"^([A-Z0-9_]+_PORT)=(\d+)", text, re.M)}


def run_setup(root: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    """deploy/compose/init-secrets.sh as the 'setup' service runs it, into ``root``."""
    return subprocess.run(
        ["sh", str(INIT_SECRETS)],
        env={
            "PATH": os.environ["PATH"],
            "SECRETS_ROOT": str(root / "secrets"),
            "ALERTMANAGER_TEMPLATE": str(ROOT / "deploy" / "prometheus" / "alertmanager.yml"),
            "ALERTMANAGER_DIR": str(root / "alertmanager"),
            "PYTHON": sys.executable,  # with `cryptography`, as in callvault's image
            **extra,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------ the file loads
def test_compose_loads_like_docker_compose_config(
    config: dict[str, Any], config_minio: dict[str, Any]
) -> None:
    default = set(config["services"])
    assert default == {
        "setup",
        "kafka",
        "kafka-init",
        "s3-users",
        "s3-policies",
        "postgres",
        "versitygw",
        "migrate",
        "worker",
        "console",
        "prometheus-rules",
        "prometheus",
        "alertmanager",
        "grafana",
    }
    assert set(config_minio["services"]) == default | {"minio", "minio-init"}


def test_compose_check_refuses_what_docker_would_refuse(tmp_path: Path) -> None:
    """Guards against a checker that accepts anything."""
    cases = {
        "unpinned": ("image: minio/minio", "name a release tag"),
        "latest": ("image: alpine:latest@sha256:" + "0" * 64, "name a release tag"),
        "no digest": ("image: alpine:3.22.2", "pin the tag's digest"),
        "malformed": ("image: Alpine:3.22.2@sha256:" + "0" * 64, "not a valid reference"),
        "bad key": ("image: alpine:3.22.2\n    restart_policy: always", "restart_policy"),
    }
    for label, (line, message) in cases.items():
        broken = tmp_path / f"{label.replace(' ', '-')}.yml"
        broken.write_text(f"services:\n  s:\n    {line}\n", encoding="utf-8")
        done = compose_check(file=broken)
        assert done.returncode == 1, label
        assert message in done.stderr, f"{label}: {done.stderr}"
    missing = tmp_path / "missing-env-file.yml"
    missing.write_text(
        "services:\n  s:\n    image: alpine:3.22.2@sha256:" + "0" * 64 + "\n"
        "    env_file: [does-not-exist.env]\n",
        encoding="utf-8",
    )
    assert compose_check(file=missing).returncode == 1


def test_compose_file_matches_the_vendored_compose_spec_schema() -> None:
    import jsonschema

    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)
    broken = json.loads(json.dumps(data))
    broken["services"]["worker"]["depends_on"]["migrate"]["condition"] = "whenever"
    assert list(validator.iter_errors(broken))


def test_docker_compose_config_accepts_the_file_where_docker_exists() -> None:
    docker = shutil.which("docker")
    if (
        docker is None
        or subprocess.run(
            [docker, "compose", "version"], capture_output=True, check=False
        ).returncode
    ):
        pytest.skip("no docker compose here; compose-go (its loader) checked the file")
    done = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "--profile", "minio", "config", "-q"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=clean_env(),
        check=False,
    )
    assert done.returncode == 0, done.stderr


# ------------------------------------------------------------------ secrets
def test_no_secret_value_is_in_the_compose_file_or_the_env_example(
    config_minio: dict[str, Any],
) -> None:
    secretish = re.compile(r"KEY|PASSWORD|SECRET|TOKEN|DATABASE_URL")
    for name, svc in config_minio["services"].items():
        for var, value in (svc.get("environment") or {}).items():
            # a *_FILE or Kafka's keystore *_LOCATION names a file of a secrets volume, its
            # *_TYPE the format: not values
            harmless = ("_FILE", "__FILE", "_LOCATION", "_KEYSTORE_TYPE")
            if secretish.search(var) and not var.endswith(harmless):
                pytest.fail(f"{name}: {var} is set in the compose file ({value!r})")
            if var.endswith(("_FILE", "__FILE")):
                assert value, f"{name}: {var} must name a file"
                assert "=" not in value, f"{name}: {var} must name a file"
    example = (ROOT / "deploy" / "compose.env.example").read_text(encoding="utf-8")
    assigned = re.findall(r"^([A-Z0-9_]+)=", example, re.MULTILINE)
    assert not [n for n in assigned if secretish.search(n)], assigned
    for name in ("worker", "migrate", "console"):
        assert not CALLVAULT_SECRETS & set(env(config_minio, name))


def test_each_container_mounts_only_the_secrets_it_needs(config_minio: dict[str, Any]) -> None:
    declared = {v for v in config_minio["volumes"] if v.startswith("secrets-")}
    assert declared == set().union(*SECRET_VOLUMES.values())
    for name in config_minio["services"]:
        used = {m["source"] for m in mounts(config_minio, name) if m["source"] in declared}
        assert used == SECRET_VOLUMES.get(name, set()), name
        for mount in mounts(config_minio, name):
            if mount["source"] in declared and name != "setup":
                assert mount.get("read_only"), f"{name} mounts {mount['source']} writable"
        if used and name != "setup":
            condition = (service(config_minio, name).get("depends_on") or {}).get("setup")
            after_migrate = "migrate" in (service(config_minio, name).get("depends_on") or {})
            after_minio = name == "minio-init"
            assert (
                after_migrate
                or after_minio
                or condition
                == {
                    "condition": "service_completed_successfully",
                    "required": True,
                }
            ), f"{name} may start before its secrets exist"


def test_setup_generates_every_secret_once_for_its_consumer(tmp_path: Path) -> None:
    first = run_setup(tmp_path, CALLVAULT_ALERT_WEBHOOK_URL="https://hooks.example/a?b=1&c=2")
    assert first.returncode == 0, first.stderr
    secrets = tmp_path / "secrets"
    files = {p.relative_to(secrets).as_posix(): p for p in secrets.rglob("*") if p.is_file()}
    consumers = {rel.split("/")[0] for rel in files}
    assert consumers == {v.removeprefix("secrets-") for v in SECRET_VOLUMES["setup"]}
    for name, held in HELD.items():
        assert {r.split("/")[1] for r in files if r.startswith(f"{name}/")} == held | {
            "kafka-ca.pem"
        }, name
    assert {
        r for r in files if r.split("/")[0] in ("postgres", "s3", "s3-users", "kafka", "grafana")
    } == {
        "postgres/postgres_password",
        "postgres/owner_password",
        "postgres/app_password",
        "s3/s3_access_key",
        "s3/s3_secret_key",
        "s3-users/s3_access_key",
        "s3-users/s3_secret_key",
        "s3-users/callvault-worker",
        "s3-users/callvault-console",
        "s3-users/telephony",
        "kafka/admin_password",
        "kafka/server.pem",
        "kafka/ca.pem",
        "grafana/grafana_admin_password",
    }
    assert {r.split("/")[1] for r in files if r.startswith("kafka-init/")} == {
        "admin", "callvault", "console", "telephony", "compliance", "dsr-portal", "ca.pem"
    }  # fmt: skip
    owners = {"migrate": 10001, "worker": 10001, "console": 10001, "kafka-init": 10001}
    owners |= {"postgres": 999, "s3": 0, "s3-users": 0, "setup": 0, "handout": 0}
    owners |= {"kafka": 1000, "grafana": 472}
    for rel, path in files.items():
        assert path.stat().st_uid == owners[rel.split("/")[0]], rel
        assert path.stat().st_mode & 0o777 == 0o400, rel
    values = {rel: path.read_text() for rel, path in files.items()}
    app = values["postgres/app_password"]
    owner = values["postgres/owner_password"]
    assert len({app, owner, values["postgres/postgres_password"]}) == 3
    for name in HELD:
        assert values[f"{name}/CALLVAULT_DATABASE_URL"] == (
            f"postgresql://callvault_app:{app}@postgres:5432/callvault"
        )
    assert values["migrate/CALLVAULT_DATABASE_ADMIN_URL"] == (
        f"postgresql://callvault:{owner}@postgres:5432/callvault"
    )
    # an S3 user each (bucket policies: deploy/compose/s3_policies.py); the root keys: migrate
    assert values["migrate/CALLVAULT_S3_ACCESS_KEY"] == values["s3/s3_access_key"]
    for name in ("worker", "console"):
        assert values[f"{name}/CALLVAULT_S3_ACCESS_KEY"] == f"callvault-{name}"
        assert values[f"{name}/CALLVAULT_S3_SECRET_KEY"] == values[f"s3-users/callvault-{name}"]
    assert {r.split("/")[1] for r in files if r.startswith("handout/")} == {
        "kafka-telephony", "kafka-compliance", "kafka-dsr-portal", "s3-telephony", "kafka-ca.pem"
    }  # fmt: skip
    assert values["worker/CALLVAULT_KAFKA_SASL_PASSWORD"] == values["kafka-init/callvault"]
    assert values["console/CALLVAULT_KAFKA_SASL_PASSWORD"] == values["kafka-init/console"]
    assert values["kafka/admin_password"] == values["kafka-init/admin"]
    keys = [values[f"worker/CALLVAULT_{k}_KEY"] for k in ("MASTER", "HASH", "SIGNING")]
    assert len(set(keys)) == 3
    rendered = (tmp_path / "alertmanager" / "alertmanager.yml").read_text()
    assert yaml.safe_load(rendered)["receivers"][0]["webhook_configs"][0]["url"] == (
        "https://hooks.example/a?b=1&c=2"
    )
    amtool = shutil.which("amtool")
    if amtool:
        checked = subprocess.run(
            [amtool, "check-config", str(tmp_path / "alertmanager" / "alertmanager.yml")],
            capture_output=True,
            text=True,
            check=False,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr

    second = run_setup(tmp_path)
    assert second.returncode == 0, second.stderr
    assert "generated" not in second.stdout  # kept, never regenerated
    assert {rel: path.read_text() for rel, path in files.items()} == values
    refused = run_setup(tmp_path, CALLVAULT_ALERT_WEBHOOK_URL="ftp://nowhere")
    assert refused.returncode == 1


def test_the_worker_gets_valid_settings_from_compose_and_its_secrets(
    config: dict[str, Any], tmp_path: Path
) -> None:
    assert run_setup(tmp_path).returncode == 0
    program = "import json, os; print(json.dumps(dict(os.environ)))"
    done = subprocess.run(
        ["sh", str(ENTRYPOINT), "python3", "-c", program],
        env={
            "PATH": os.environ["PATH"],
            "CALLVAULT_SECRETS_DIR": str(tmp_path / "secrets" / "worker"),
            "CALLVAULT_MASTER_KEY": "overridden-by-the-file",
            **env(config, "worker"),
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    for name in CALLVAULT_SECRETS:
        assert seen[name] == (tmp_path / "secrets" / "worker" / name).read_text(), name
    settings = Settings(
        **{
            k.removeprefix("CALLVAULT_").lower(): v
            for k, v in seen.items()
            if k.startswith("CALLVAULT_")
            and k.removeprefix("CALLVAULT_").lower() in Settings.model_fields
        }
    )
    assert settings.s3_endpoint == "http://versitygw:7070"
    assert settings.metrics_addr == "0.0.0.0"  # noqa: S104 - the container listens for Prometheus
    assert len(settings.key("master_key")) == 32
    required = {n for n, f in Settings.model_fields.items() if f.is_required()}
    assert {f"CALLVAULT_{n.upper()}" for n in required} <= set(seen)


def test_the_s3_service_runs_as_defined(config: dict[str, Any], tmp_path: Path) -> None:
    """versitygw's entrypoint and command from the compose file, run with the binary the native
    stack built from the same release (the image's /app/versitygw), paths moved to tmp."""
    binary = Path(
        os.environ.get("CALLVAULT_STACK_ROOT", ROOT / ".local"), "bin", "versitygw"
    ).resolve()
    if not binary.is_file():
        pytest.fail(f"no versitygw binary at {binary}: run `make up` (deploy/stack.sh) first")
    image_tag = service(config, "versitygw")["image"].split(":")[1].split("@")[0]
    assert binary.name.endswith(image_tag), f"{binary.name} is not versitygw {image_tag}"
    assert run_setup(tmp_path).returncode == 0
    s3_secrets, data = tmp_path / "secrets" / "s3", tmp_path / "data"
    port = free_port()
    entrypoint = [
        part.replace("/run/secrets", str(s3_secrets))
        .replace("/data", str(data))
        .replace("/app/versitygw", str(binary))
        for part in service(config, "versitygw")["entrypoint"]
    ]
    command = [
        arg.replace("/data", str(data)).replace(":7070", f"127.0.0.1:{port}")
        for arg in service(config, "versitygw")["command"]
    ]
    process = subprocess.Popen([*entrypoint, *command], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, "versitygw did not become healthy"
                time.sleep(0.2)
        from minio import Minio
        from minio.commonconfig import ENABLED
        from minio.error import S3Error

        client = Minio(
            f"127.0.0.1:{port}",
            access_key=(s3_secrets / "s3_access_key").read_text(),
            secret_key=(s3_secrets / "s3_secret_key").read_text(),
            region="eu-central-1",
            secure=False,
        )
        bucket = f"vault-{uuid.uuid4().hex[:8]}"
        client.make_bucket(bucket, object_lock=True)
        assert client.get_bucket_versioning(bucket).status == ENABLED
        client.put_object(bucket, "held", io.BytesIO(b"audio"), 5)
        client.enable_object_legal_hold(bucket, "held")
        assert client.is_object_legal_hold_enabled(bucket, "held")
        client.disable_object_legal_hold(bucket, "held")
        wrong = Minio(f"127.0.0.1:{port}", "callvault", "callvault-secret-key", secure=False)
        with pytest.raises(S3Error):  # the old committed example keys open nothing
            wrong.list_buckets()
    finally:
        process.terminate()
        process.wait(timeout=20)


# ------------------------------------------------------------------ agreement
def test_worker_and_migrate_share_image_and_settings(config: dict[str, Any]) -> None:
    worker, migrate = service(config, "worker"), service(config, "migrate")
    assert env(config, "worker") == env(config, "migrate")
    assert worker["image"] == migrate["image"]
    assert worker["build"] == migrate["build"]
    assert (migrate["command"], worker["command"]) == (["migrate"], ["worker"])
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for name in ("postgres", "versitygw"):
        assert migrate["depends_on"][name]["condition"] == "service_healthy", name
    # topics are created as `callvault` once its SCRAM user and the ACL plan exist
    assert migrate["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"
    version = re.search(r'^version = "(.+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert version is not None
    assert worker["image"] == f"callvault:{version.group(1)}"
    for var, bucket in BUCKETS.items():
        assert env(config, "worker")[var] == bucket
    stack = (ROOT / "deploy" / "stack.sh").read_text(encoding="utf-8")
    for var, bucket in BUCKETS.items():
        assert f"export {var}={bucket}" in stack


def test_database_url_matches_the_postgres_service(config: dict[str, Any], tmp_path: Path) -> None:
    assert run_setup(tmp_path).returncode == 0
    pg = env(config, "postgres")
    for name, role in (
        ("CALLVAULT_DATABASE_URL", "callvault_app"),
        ("CALLVAULT_DATABASE_ADMIN_URL", "callvault"),
    ):
        url = urlsplit((tmp_path / "secrets/migrate" / name).read_text())
        assert (url.hostname, url.port, url.username) == ("postgres", 5432, role)
        assert url.path.lstrip("/") == pg["POSTGRES_DB"]
    assert pg["POSTGRES_USER"] == "postgres"  # the superuser: nobody outside gets it
    assert pg["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    (roles,) = [m for m in mounts(config, "postgres") if "initdb" in m["target"]]
    script = Path(roles["source"]).read_text(encoding="utf-8")
    assert "CREATE ROLE callvault LOGIN NOSUPERUSER" in script
    assert "CREATE ROLE callvault_app LOGIN NOSUPERUSER" in script


def test_s3_endpoint_region_and_keys_agree(
    config: dict[str, Any], config_minio: dict[str, Any]
) -> None:
    url = urlsplit(env(config, "worker")["CALLVAULT_S3_ENDPOINT"])
    assert (url.hostname, url.port) == ("versitygw", 7070)
    assert 7070 in published(config, "versitygw")
    command = service(config, "versitygw")["command"]
    assert command[command.index("--port") + 1] == ":7070"
    assert command[command.index("--region") + 1] == env(config, "worker")["CALLVAULT_S3_REGION"]
    assert "--versioning-dir" in command  # object lock needs versioning on the POSIX backend
    assert "--keep-alive" in command  # else every S3 request opens a new connection
    minio = env(config_minio, "minio")
    assert (minio["MINIO_ROOT_USER_FILE"], minio["MINIO_ROOT_PASSWORD_FILE"]) == (
        "s3_access_key",
        "s3_secret_key",
    )
    assert minio["MINIO_SITE_REGION"] == env(config, "worker")["CALLVAULT_S3_REGION"]
    init = env(config_minio, "minio-init")
    for var, bucket in BUCKETS.items():
        assert init[var.removeprefix("CALLVAULT_")] == bucket
    script = (ROOT / "deploy" / "minio" / "init-buckets.sh").read_text(encoding="utf-8")
    assert re.search(r'mb --ignore-existing --with-lock .*"local/\$VAULT_BUCKET"', script)
    assert '"$S3_SECRETS/s3_access_key"' in script


def test_vault_lifecycle_of_the_minio_profile_is_a_395_day_backstop(
    config_minio: dict[str, Any],
) -> None:
    (source,) = [
        m["source"] for m in mounts(config_minio, "minio-init") if "lifecycle" in m["target"]
    ]
    rules = json.loads(Path(source).read_text(encoding="utf-8"))["Rules"]
    assert [r["Expiration"]["Days"] for r in rules if r["Status"] == "Enabled"] == [365 + 30]


def test_kafka_bootstrap_matches_a_kafka_listener(config: dict[str, Any]) -> None:
    host, port = env(config, "worker")["CALLVAULT_KAFKA_BOOTSTRAP"].rsplit(":", 1)
    kafka = env(config, "kafka")
    assert f"CLIENT://{host}:{port}" in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert f"CLIENT://:{port}" in kafka["KAFKA_LISTENERS"].split(",")


def test_kafka_is_secure_by_default(config: dict[str, Any]) -> None:
    """SASL_SSL for every client, the standard authorizer, the broker's own administrator the
    only super user, nothing anonymous; each of callvault's containers its own principal."""
    kafka = env(config, "kafka")
    protocols = dict(p.split(":") for p in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert protocols == {
        "CLIENT": "SASL_SSL", "HOST": "SASL_SSL", "BROKER": "SASL_PLAINTEXT",
        "CONTROLLER": "SASL_PLAINTEXT",
    }  # fmt: skip
    inside = {"BROKER", "CONTROLLER"}  # SASL without TLS: bound to the container's loopback
    for listener in kafka["KAFKA_LISTENERS"].split(","):
        name, _, address = listener.partition("://")
        assert (name in inside) == address.startswith("localhost:"), listener
    assert kafka["KAFKA_SUPER_USERS"] == "User:admin"
    assert kafka["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    assert kafka["KAFKA_AUTHORIZER_CLASS_NAME"].endswith("StandardAuthorizer")
    assert "PLAINTEXT://" not in kafka["KAFKA_LISTENERS"].replace("SASL_PLAINTEXT", "")
    assert env(config, "worker")["CALLVAULT_KAFKA_SASL_USERNAME"] == "callvault"
    assert env(config, "migrate")["CALLVAULT_KAFKA_SASL_USERNAME"] == "callvault"
    assert env(config, "console")["CALLVAULT_KAFKA_SASL_USERNAME"] == "console"
    for name in ("worker", "migrate", "console"):
        assert env(config, name)["CALLVAULT_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    init = service(config, "kafka-init")
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_prometheus_scrapes_the_worker_and_alerts_alertmanager(config: dict[str, Any]) -> None:
    port = int(env(config, "worker")["CALLVAULT_METRICS_PORT"])
    assert port in published(config, "worker")
    (source,) = [
        m["source"]
        for m in mounts(config, "prometheus")
        if m["target"] == "/etc/prometheus/prometheus.yml"
    ]
    prom = yaml.safe_load(Path(source).read_text(encoding="utf-8"))
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "callvault")
    assert f"worker:{port}" in [t for sc in job["static_configs"] for t in sc["targets"]]
    assert prom["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    rules = {m["source"]: m["target"] for m in mounts(config, "prometheus")}
    assert rules["prometheus-rules"] == "/etc/prometheus/rules"
    (target,) = prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    host, am_port = target.split(":")
    assert host in config["services"]
    assert int(am_port) in published(config, host)
    am_command = service(config, "alertmanager")["command"]
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in am_command
    am_mounts = {m["source"]: m["target"] for m in mounts(config, "alertmanager")}
    assert am_mounts["alertmanager-config"] == "/etc/alertmanager"
    setup_mounts = {m["source"]: m["target"] for m in mounts(config, "setup")}
    assert setup_mounts["alertmanager-config"] == "/config/alertmanager"


def test_the_rules_prometheus_loads_are_rendered_for_its_job(
    config: dict[str, Any], tmp_path: Path
) -> None:
    """The one-shot 'prometheus-rules' renders the rule templates (as it runs: its entrypoint,
    environment and mounts, with local paths) for the job Prometheus scrapes the worker as."""
    rendering = service(config, "prometheus-rules")
    settings = env(config, "prometheus-rules")
    prom = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.compose.yml").read_text())
    assert settings["CALLVAULT_PROMETHEUS_JOB"] in [j["job_name"] for j in prom["scrape_configs"]]
    assert settings["CALLVAULT_RUNBOOK_URL"].endswith("/docs/runbooks.md")
    by_target = {m["target"]: m["source"] for m in mounts(config, "prometheus-rules")}
    assert by_target["/rendered"] == "prometheus-rules"
    local = {**by_target, "/rendered": str(tmp_path)}
    argv = [local.get(arg, arg) for arg in rendering["entrypoint"]]
    assert argv[0] == "/bin/sh"
    subprocess.run(argv, env={**os.environ, **settings}, check=True, timeout=30)
    text = (tmp_path / "callvault.rules.yml").read_text(encoding="utf-8")
    assert "@" not in text.replace("@example", "")
    assert f'up{{job="{settings["CALLVAULT_PROMETHEUS_JOB"]}"}}' in text
    assert f'runbook_url: "{settings["CALLVAULT_RUNBOOK_URL"]}#callvaultnoworkers"' in text


def test_grafana_datasource_points_at_prometheus(config: dict[str, Any]) -> None:
    path = ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml"
    ds = yaml.safe_load(path.read_text(encoding="utf-8"))["datasources"][0]
    url = urlsplit(ds["url"])
    assert url.hostname in config["services"]
    assert url.port in published(config, url.hostname)
    assert env(config, "grafana")["GF_SECURITY_ADMIN_PASSWORD__FILE"] == (
        "/run/secrets/grafana_admin_password"
    )


def test_bind_mounts_exist_and_ports_are_loopback(config_minio: dict[str, Any]) -> None:
    for name in config_minio["services"]:
        for mount in mounts(config_minio, name):
            if mount["type"] == "bind":
                assert Path(mount["source"]).exists(), f"{name}: {mount['source']} is missing"
        for host_ip, _ in published(config_minio, name).values():
            assert host_ip == "127.0.0.1", f"{name} publishes on {host_ip or 'every address'}"


def test_published_ports_match_the_native_stack(config: dict[str, Any]) -> None:
    """Host tools use the same addresses with either stack (run one at a time)."""
    ports = native_ports()
    assert published(config, "kafka")[ports["KAFKA_PORT"]][1] == ports["KAFKA_PORT"]
    assert published(config, "postgres")[5432][1] == ports["PG_PORT"]
    assert published(config, "versitygw")[7070][1] == ports["S3_PORT"]
    assert published(config, "prometheus")[9090][1] == ports["PROM_PORT"]
    assert published(config, "alertmanager")[9093][1] == ports["AM_PORT"]
    assert published(config, "worker")[9400][1] == ports["METRICS_PORT"]
    assert published(config, "console")[8080][1] == 8080  # `callvault serve`'s default port


# ------------------------------------------------------------------ the worker image
def dockerfile_stages() -> list[str]:
    return re.split(r"^(?=FROM )", DOCKERFILE.read_text(encoding="utf-8"), flags=re.M)[1:]


def test_image_installs_runtime_dependencies_only_with_a_pinned_backend() -> None:
    build, runtime = dockerfile_stages()
    assert "pip install --require-hashes -r requirements-build.lock" in build
    assert "pip wheel --no-deps --no-build-isolation" in build
    assert "pip install --require-hashes -r /tmp/requirements.lock" in runtime
    assert "COPY requirements.lock " in runtime
    assert "requirements-dev.lock" not in DOCKERFILE.read_text(encoding="utf-8")
    assert "pip install --no-deps /tmp/wheels/" in runtime
    assert "requirements-build.lock" not in runtime  # no build backend at run time


def test_image_runs_as_a_user_that_owns_faust_data_dir_and_has_a_healthcheck() -> None:
    _, runtime = dockerfile_stages()
    assert re.search(r"^USER callvault$", runtime, re.M)
    datadir = re.search(r"APP_DATADIR=(\S+)", runtime)
    assert datadir is not None
    assert f"mkdir -p {datadir.group(1)}" in runtime
    assert "chown -R callvault:callvault /var/lib/callvault" in runtime
    assert datadir.group(1).startswith("/var/lib/callvault/")
    assert re.search(r"^WORKDIR /var/lib/callvault$", runtime, re.M)
    assert re.search(r"^HEALTHCHECK .*\n.*/healthz", runtime, re.M)
    assert 'ENTRYPOINT ["callvault-entrypoint", "callvault"]' in runtime


def test_build_context_filter_lets_every_copied_file_through() -> None:
    ignore = (ROOT / "deploy" / "Dockerfile.dockerignore").read_text(encoding="utf-8")
    allowed = set(re.findall(r"^!(\S+)$", ignore, re.M))
    sources = [
        source
        for line in re.findall(r"^COPY (?!--from)(.+)$", DOCKERFILE.read_text(), re.M)
        for source in [w for w in line.split() if not w.startswith("--")][:-1]
    ]
    assert sources
    for source in sources:
        assert source in allowed or f"{source}/**" in allowed, source
        assert (ROOT / source).exists(), source


def test_the_local_override_builds_every_public_image_here() -> None:
    """deploy/compose.local.yml (make compose-up) replaces every image of the file with one
    built on this machine, or leaves the service out; nothing is pulled."""
    services = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]
    local = yaml.safe_load((ROOT / "deploy" / "compose.local.yml").read_text(encoding="utf-8"))
    for name, svc in services.items():
        if "minio" in svc.get("profiles", []):
            continue
        override = local["services"].get(name, {})
        if "grafana" in override.get("profiles", []):
            continue  # no Debian package to build it from: left out
        assert override.get("image", "").startswith("localhost/"), name
        assert override.get("pull_policy") == "never", name
