"""The test harness's view of the native local stack: connect to it (starting it when absent)
and give each test an isolated callvault instance - its own database, topics, buckets and
consumer group - so tests never see each other's data."""

from __future__ import annotations

import base64
import os
import shlex
import signal
import socket
import subprocess
import uuid
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import S3Error

from workers.adapters.keys import KeyRing, software_key_ring
from workers.adapters.postgres import PostgresDatabase
from workers.bootstrap import database as bootstrap_database
from workers.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
STACK_ENV = ROOT / ".local" / "stack.env"


def read_stack_env() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in STACK_ENV.read_text().splitlines():
        line = line.strip()
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            values[name] = shlex.split(value)[0] if value else ""
    return values


def _port_open(host: str, port: int) -> bool:
    with closing(socket.socket()) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def ensure_stack() -> dict[str, str]:
    """The stack's settings; runs ``deploy/stack.sh up`` when a service is not answering."""
    ports = (19092, 19096, 15432, 17070, 17072, 19090)
    current = STACK_ENV.exists() and "CALLVAULT_STACK_KAFKA_SECURE" in STACK_ENV.read_text()
    if not current or not all(_port_open("127.0.0.1", p) for p in ports):
        subprocess.run(["bash", str(ROOT / "deploy" / "stack.sh"), "up"], check=True)
    return read_stack_env()


def test_keys() -> KeyRing:
    """Fixed keys of no secrecy, for the tests' own rows."""
    return software_key_ring(
        master_keys={"test": bytes(32)},
        current_master="test",
        hash_key=bytes(32),
        signing_seed=bytes(32),
        signing_key_id="test",
    )


def database(dsn: str, clock: Callable[[], datetime] | None = None) -> PostgresDatabase:
    """callvault's PostgreSQL adapter for a test, built as bootstrap builds it, not yet opened
    (hold texts sealed under fixed test keys)."""
    return bootstrap_database(
        dsn, test_keys(), source="urn:test", clock=clock or (lambda: datetime.now(UTC))
    )


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Instance:
    """One isolated callvault: settings as environment variables, and how to clean it up.

    ``env`` connects to PostgreSQL as callvault's role (``callvault_app``), as every process but
    ``callvault migrate`` does; ``migration_env`` adds the schema owner's URL, for migrations
    only. ``owner_url`` is the owner's connection to this database, for a test that inspects
    or tampers with what callvault's role may not touch; ``admin_url`` creates and drops it."""

    name: str
    env: dict[str, str]
    admin_url: str
    owner_url: str
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def migration_env(self) -> dict[str, str]:
        return {**self.env, "CALLVAULT_DATABASE_ADMIN_URL": self.owner_url}

    def settings_kwargs(self) -> dict[str, str]:
        values = {
            k.removeprefix("CALLVAULT_").lower(): v
            for k, v in self.env.items()
            if k.startswith("CALLVAULT_")
        }
        return {k: v for k, v in values.items() if k in Settings.model_fields}

    def settings(self) -> Settings:
        return load_settings(**self.settings_kwargs())

    def migration_settings(self) -> Settings:
        """Settings of ``callvault migrate``: the schema owner's URL besides the role's."""
        return load_settings(**self.settings_kwargs(), database_admin_url=self.owner_url)

    def topic(self, logical: str) -> str:
        return self.env[f"CALLVAULT_TOPIC_{logical.upper()}"]

    @property
    def database_url(self) -> str:
        return self.env["CALLVAULT_DATABASE_URL"]


LOGICAL_TOPICS = (
    "calls_ended",
    "dsr_requests",
    "holds_commands",
    "recordings_stored",
    "retention_due",
    "recordings_purged",
    "dsr_results",
    "deadletter",
    "audit_checkpoints",
)


def new_instance(stack: dict[str, str], prefix: str = "t", **overrides: str) -> Instance:
    """A fresh database, buckets, topics and consumer group named ``<prefix><random>``."""
    name = f"{prefix}{uuid.uuid4().hex[:10]}"
    admin_url = stack["CALLVAULT_PG_ADMIN_URL"]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    # callvault's role, which may only append to the audit trail; migrations run as the owner
    app_base = stack["CALLVAULT_PG_APP_URL"].rsplit("/", 1)[0]
    owner_base = admin_url.rsplit("/", 1)[0]
    env = {
        k: v
        for k, v in stack.items()
        if k.startswith("CALLVAULT_") and k != "CALLVAULT_DATABASE_ADMIN_URL"
    }
    env.update(
        {
            "CALLVAULT_DATABASE_URL": f"{app_base}/{name}",
            "CALLVAULT_VAULT_BUCKET": f"{name}-vault",
            "CALLVAULT_EXPORT_BUCKET": f"{name}-exports",
            "CALLVAULT_LANDING_BUCKET": f"{name}-landing",
            "CALLVAULT_APP_ID": f"callvault-{name}",
            "CALLVAULT_METRICS_PORT": str(free_port()),
            "CALLVAULT_TOPIC_PARTITIONS": "2",
            "CALLVAULT_LOG_FORMAT": "json",
            "CALLVAULT_SOURCE_URI": f"urn:callvault:test:{name}",
            "CALLVAULT_SIGNING_KEY": base64.b64encode(os.urandom(32)).decode(),
        }
    )
    for logical in LOGICAL_TOPICS:
        env[f"CALLVAULT_TOPIC_{logical.upper()}"] = f"{name}.{logical}"
    env.update(overrides)
    return Instance(name, env, admin_url, f"{owner_base}/{name}")


def stop_processes(processes: list[subprocess.Popen[bytes]], grace: float = 30) -> None:
    """SIGTERM every worker still running, then wait ``grace`` seconds for each; SIGKILL
    whoever will not stop."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def drop_instance(instance: Instance) -> None:
    """Remove the instance's database, topics and buckets (every object version)."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    from workers.bootstrap import object_store

    settings = instance.settings()
    client = object_store(settings).client
    for bucket in (settings.vault_bucket, settings.export_bucket, settings.landing_bucket):
        _empty_and_remove(client, bucket)
    try:
        admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap.split(","))
        app_id = instance.env["CALLVAULT_APP_ID"]  # Faust's own topics start with it
        names = [t for t in admin.list_topics() if t.startswith((instance.name, app_id))]
        if names:
            admin.delete_topics(names)
        admin.close()
    except KafkaError:
        pass  # topics of a finished test are harmless; the next reset removes them
    with psycopg.connect(instance.admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{instance.name}" WITH (FORCE)')


def _empty_and_remove(client: Minio, bucket: str) -> None:
    try:
        if not client.bucket_exists(bucket):
            return
        doomed = [
            DeleteObject(o.object_name, o.version_id)
            for o in client.list_objects(bucket, recursive=True, include_version=True)
        ]
        for start in range(0, len(doomed), 1000):  # S3 deletes at most 1000 per request
            batch = doomed[start : start + 1000]
            list(client.remove_objects(bucket, batch, bypass_governance_mode=True))
        client.remove_bucket(bucket)
    except S3Error:
        pass  # a bucket left behind by a failed run does not affect other instances
