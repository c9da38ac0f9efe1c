"""Static checks of docker-compose.yml (needs no Docker engine and no services).

- the file validates against the Compose Specification JSON schema, vendored in
  deploy/compose-spec.schema.json (schema/compose-spec.json of the Go module
  github.com/compose-spec/compose-go/v2, Apache-2.0); `docker compose config -q`
  is run as well where a docker client with the compose plugin exists;
- the worker (and migrate) environment, env files included, has every CALLVAULT_*
  variable the settings require, and the values pass workers.settings.Settings;
- bucket names, ports, credentials and hostnames agree between the services, the
  Prometheus/Grafana configs, and the native stack's fixed host ports.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML (a dev dependency) is needed to read compose")
jsonschema = pytest.importorskip(
    "jsonschema", reason="jsonschema (a project dependency) is needed to validate compose"
)

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SCHEMA = ROOT / "deploy" / "compose-spec.schema.json"

# Names the settings class requires (fallback when workers.settings is not importable).
REQUIRED_FALLBACK = (
    "KAFKA_BOOTSTRAP",
    "DATABASE_URL",
    "S3_ENDPOINT",
    "S3_ACCESS_KEY",
    "S3_SECRET_KEY",
    "VAULT_BUCKET",
    "EXPORT_BUCKET",
    "LANDING_BUCKET",
    "APP_ID",
    "MASTER_KEY",
    "HASH_KEY",
    "SIGNING_KEY",
)
# Everything the native stack writes to .local/stack.env; compose sets the same.
STACK_ENV_NAMES = (
    *REQUIRED_FALLBACK,
    "S3_REGION",
    "METRICS_PORT",
    "PROMETHEUS_URL",
    "FETCH_ROOT",
    "FETCH_ALLOWED_HOSTS",
)
BUCKETS = {
    "CALLVAULT_VAULT_BUCKET": "callvault-vault",
    "CALLVAULT_EXPORT_BUCKET": "callvault-exports",
    "CALLVAULT_LANDING_BUCKET": "callvault-landing",
}


# ------------------------------------------------------------------ helpers
@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def read_env_file(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=value: {raw!r}"
        assert re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), f"{path.name}: bad name {key!r}"
        env[key] = value
    return env


def env_files(service: dict[str, Any]) -> list[tuple[Path, bool]]:
    spec = service.get("env_file", [])
    items = [spec] if isinstance(spec, str | dict) else list(spec)
    out = []
    for item in items:
        if isinstance(item, str):
            out.append((ROOT / item, True))
        else:
            out.append((ROOT / item["path"], item.get("required", True)))
    return out


def service_env(compose: dict[str, Any], name: str) -> dict[str, str]:
    """Environment of a service as compose builds it: env files in order, then `environment`."""
    service = compose["services"][name]
    env: dict[str, str] = {}
    for path, required in env_files(service):
        if path.exists():
            env.update(read_env_file(path))
        else:
            assert not required, f"{name}: required env_file {path} is missing"
    spec = service.get("environment", {})
    if isinstance(spec, list):
        spec = dict(item.split("=", 1) for item in spec)
    env.update({k: "" if v is None else str(v) for k, v in spec.items()})
    return env


def published(service: dict[str, Any]) -> dict[int, tuple[str, int]]:
    """container port -> (host ip, host port) of the short-syntax port mappings."""
    out = {}
    for spec in service.get("ports", []):
        host_ip, host_port, container = (
            str(spec).rsplit(":", 2)
            if str(spec).count(":") == 2
            else ("*", *str(spec).split(":"))  # "*": every interface
        )
        out[int(container.split("/")[0])] = (host_ip, int(host_port))
    return out


def required_names() -> tuple[str, ...]:
    try:
        from workers.settings import Settings
    except ImportError:
        return REQUIRED_FALLBACK
    return tuple(n.upper() for n, f in Settings.model_fields.items() if f.is_required())


def native_ports() -> dict[str, int]:
    text = (ROOT / "deploy" / "lib" / "common.sh").read_text(encoding="utf-8")
    return {m[1]: int(m[2]) for m in re.finditer(r"^([A-Z0-9_]+_PORT)=(\d+)$", text, re.M)}


# ------------------------------------------------------------------ schema
def test_compose_file_matches_compose_spec_schema(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls.check_schema(schema)
    errors = sorted(validator_cls(schema).iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.path)) or '<root>'}: {e.message}" for e in errors[:20]
    )


def test_schema_rejects_a_broken_compose_file(compose: dict[str, Any]) -> None:
    """Guards against a schema that accepts anything."""
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.validators.validator_for(schema)(schema)
    broken = json.loads(json.dumps(compose))
    broken["services"]["worker"]["depends_on"]["migrate"]["condition"] = "whenever"
    broken["services"]["worker"]["restart_policy"] = "always"
    assert len(list(validator.iter_errors(broken))) >= 2


def test_docker_compose_config_accepts_the_file() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client; the JSON schema test covers the file")
    probe = subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        pytest.skip("docker client has no compose plugin; the JSON schema test covers the file")
    result = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr


# ------------------------------------------------------------------ worker settings
@pytest.mark.parametrize("service", ["worker", "migrate"])
def test_callvault_services_get_every_required_setting(
    compose: dict[str, Any], service: str
) -> None:
    env = service_env(compose, service)
    missing = [n for n in {*required_names(), *STACK_ENV_NAMES} if not env.get(f"CALLVAULT_{n}")]
    assert not missing, f"{service} lacks CALLVAULT_{', CALLVAULT_'.join(sorted(missing))}"


def test_worker_and_migrate_share_image_and_settings(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert service_env(compose, "worker") == service_env(compose, "migrate")
    assert services["worker"]["image"] == services["migrate"]["image"]
    assert services["worker"]["build"] == services["migrate"]["build"]
    assert services["migrate"]["command"] == ["migrate"]
    assert services["worker"]["command"] == ["worker"]
    assert services["worker"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )
    build = services["worker"]["build"]
    assert (ROOT / build["context"] / build["dockerfile"]).is_file()
    dockerfile = (ROOT / build["context"] / build["dockerfile"]).read_text(encoding="utf-8")
    assert "--require-hashes -r requirements.lock" in dockerfile
    assert 'ENTRYPOINT ["callvault"]' in dockerfile


def test_secret_keys_are_32_bytes_base64(compose: dict[str, Any]) -> None:
    env = service_env(compose, "worker")
    for name in ("CALLVAULT_MASTER_KEY", "CALLVAULT_HASH_KEY", "CALLVAULT_SIGNING_KEY"):
        assert len(base64.b64decode(env[name], validate=True)) == 32, name


def test_worker_env_passes_the_settings_class(compose: dict[str, Any]) -> None:
    try:
        from workers.settings import Settings
    except ImportError as exc:
        pytest.skip(f"workers.settings not importable: {exc}")
    env = service_env(compose, "worker")
    kwargs = {
        k.removeprefix("CALLVAULT_").lower(): v
        for k, v in env.items()
        if k.startswith("CALLVAULT_")
    }
    known = set(Settings.model_fields)
    unknown = sorted(k for k in kwargs if k not in known)
    settings = Settings(**{k: v for k, v in kwargs.items() if k in known})
    assert settings.vault_bucket == "callvault-vault"
    # variables compose sets that Settings does not read (allowed, reported on failure)
    assert set(unknown) <= {"prometheus_url"}, unknown


# ------------------------------------------------------------------ cross-service agreement
def test_bucket_names_agree(compose: dict[str, Any]) -> None:
    worker = service_env(compose, "worker")
    init = service_env(compose, "minio-init")
    for var, bucket in BUCKETS.items():
        assert worker[var] == bucket
        assert init[var.removeprefix("CALLVAULT_")] == bucket
    script = (ROOT / "deploy" / "minio" / "init-buckets.sh").read_text(encoding="utf-8")
    assert re.search(r'mb --ignore-existing --with-lock .*"local/\$VAULT_BUCKET"', script)
    assert 'mc version enable "local/$VAULT_BUCKET"' in script
    for var in ("VAULT_BUCKET", "EXPORT_BUCKET", "LANDING_BUCKET"):
        assert f":={BUCKETS['CALLVAULT_' + var]}}}" in script, var
    stack = (ROOT / "deploy" / "stack.sh").read_text(encoding="utf-8")
    for var, bucket in BUCKETS.items():
        assert f"export {var}={bucket}" in stack


def test_vault_lifecycle_is_a_395_day_backstop(compose: dict[str, Any]) -> None:
    mounts = compose["services"]["minio-init"]["volumes"]
    src = next(m.split(":")[0] for m in mounts if "vault-lifecycle.json" in m)
    rules = json.loads((ROOT / src).read_text(encoding="utf-8"))["Rules"]
    assert [r["Expiration"]["Days"] for r in rules if r["Status"] == "Enabled"] == [365 + 30]


def test_s3_endpoint_region_and_credentials_agree(compose: dict[str, Any]) -> None:
    worker = service_env(compose, "worker")
    minio = service_env(compose, "minio")
    init = service_env(compose, "minio-init")
    url = urlsplit(worker["CALLVAULT_S3_ENDPOINT"])
    assert url.hostname == "minio"
    assert url.hostname in compose["services"]
    assert url.port == 9000
    assert 9000 in published(compose["services"]["minio"])
    assert init["S3_URL"] == worker["CALLVAULT_S3_ENDPOINT"]
    assert worker["CALLVAULT_S3_ACCESS_KEY"] == minio["MINIO_ROOT_USER"] == init["MINIO_ROOT_USER"]
    assert worker["CALLVAULT_S3_SECRET_KEY"] == minio["MINIO_ROOT_PASSWORD"]
    assert len(minio["MINIO_ROOT_PASSWORD"]) >= 8  # MinIO refuses shorter secrets
    assert worker["CALLVAULT_S3_REGION"] == minio["MINIO_SITE_REGION"] == init["S3_REGION"]


def test_database_url_matches_postgres_service(compose: dict[str, Any]) -> None:
    worker = service_env(compose, "worker")
    pg = service_env(compose, "postgres")
    url = urlsplit(worker["CALLVAULT_DATABASE_URL"])
    assert url.scheme in {"postgresql", "postgres"}
    assert (url.hostname, url.port) == ("postgres", 5432)
    assert 5432 in published(compose["services"]["postgres"])
    assert url.username == pg["POSTGRES_USER"]
    assert url.password == pg["POSTGRES_PASSWORD"]
    assert url.path.lstrip("/") == pg["POSTGRES_DB"]


def test_kafka_bootstrap_matches_a_kafka_listener(compose: dict[str, Any]) -> None:
    worker = service_env(compose, "worker")
    kafka = service_env(compose, "kafka")
    host, port = worker["CALLVAULT_KAFKA_BOOTSTRAP"].rsplit(":", 1)
    assert host == "kafka"
    assert host in compose["services"]
    advertised = kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert f"PLAINTEXT://{host}:{port}" in advertised
    assert f"PLAINTEXT://:{port}" in kafka["KAFKA_LISTENERS"].split(",")
    assert kafka["KAFKA_CONTROLLER_QUORUM_VOTERS"].endswith("@kafka:9093")
    cluster_id = kafka["CLUSTER_ID"]
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16, "CLUSTER_ID: base64 UUID"
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
    ):
        assert kafka[key] == "1"


def test_metrics_port_agrees_with_prometheus_scrape(compose: dict[str, Any]) -> None:
    worker = service_env(compose, "worker")
    port = int(worker["CALLVAULT_METRICS_PORT"])
    assert port in published(compose["services"]["worker"])
    prom = compose["services"]["prometheus"]
    src = next(v.split(":")[0] for v in prom["volumes"] if v.endswith("/prometheus.yml:ro"))
    config = yaml.safe_load((ROOT / src).read_text(encoding="utf-8"))
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "callvault")
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    assert f"worker:{port}" in targets
    assert urlsplit(worker["CALLVAULT_PROMETHEUS_URL"]).hostname == "prometheus"
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    assert any(v.split(":")[1] == "/etc/prometheus/rules" for v in prom["volumes"])


def test_grafana_datasource_points_at_prometheus(compose: dict[str, Any]) -> None:
    path = ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml"
    ds = yaml.safe_load(path.read_text(encoding="utf-8"))["datasources"][0]
    url = urlsplit(ds["url"])
    assert url.hostname == "prometheus"
    assert url.hostname in compose["services"]
    assert url.port == 9090
    assert 9090 in published(compose["services"]["prometheus"])
    assert (ROOT / "deploy/grafana/dashboards").is_dir()


def test_bind_mounts_exist_and_ports_are_loopback(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            src = str(volume).split(":")[0]
            if src.startswith("."):
                assert (ROOT / src).exists(), f"{name}: bind mount {src} does not exist"
            else:
                assert src in compose.get("volumes", {}), f"{name}: undeclared volume {src}"
        for host_ip, _ in published(service).values():
            assert host_ip == "127.0.0.1", f"{name} publishes on {host_ip}"


def test_published_ports_match_the_native_stack(compose: dict[str, Any]) -> None:
    """Host tools use the same addresses with either stack (run one at a time)."""
    ports = native_ports()
    services = compose["services"]
    assert published(services["kafka"])[ports["KAFKA_PORT"]][1] == ports["KAFKA_PORT"]
    assert published(services["postgres"])[5432][1] == ports["PG_PORT"]
    assert published(services["minio"])[9000][1] == ports["S3_PORT"]
    assert published(services["prometheus"])[9090][1] == ports["PROM_PORT"]
    assert published(services["worker"])[9400][1] == ports["METRICS_PORT"]
    kafka = service_env(compose, "kafka")
    assert f"HOST://127.0.0.1:{ports['KAFKA_PORT']}" in kafka["KAFKA_ADVERTISED_LISTENERS"]


def test_prometheus_rules_are_valid(compose: dict[str, Any]) -> None:
    for path in sorted((ROOT / "deploy/prometheus/rules").glob("*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert isinstance(doc.get("groups"), list), path.name
        promtool = shutil.which("promtool")
        if promtool:
            result = subprocess.run(
                [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
            )
            assert result.returncode == 0, result.stdout + result.stderr
