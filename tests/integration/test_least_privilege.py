"""Least privilege is the default: only `callvault migrate` holds the schema owner's URL; the
worker, the console and every other command connect as callvault's role, check at start-up
that the schema is there, current and granted to them, and say which when it is not."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import structlog
from psycopg.conninfo import conninfo_to_dict
from structlog.testing import capture_logs

from testbed.stack import Instance
from tests.e2e.harness import CALLVAULT, Callvault
from workers.adapters.logs import configure
from workers.adapters.postgres.migrate import migrate_schema
from workers.bootstrap import bootstrap
from workers.settings import Settings, load_settings

EXIT_NOT_MIGRATED, EXIT_REFUSED = 5, 7
ADMIN = "CALLVAULT_DATABASE_ADMIN_URL"


def app_env(instance: Instance) -> dict[str, str]:
    """What an operator gives a worker or the console: callvault's role, no owner."""
    env = {k: v for k, v in os.environ.items() if k != ADMIN}
    return {**env, **instance.env, "CALLVAULT_CONNECT_TIMEOUT": "PT5S"}


def start(service: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A service that refuses to start: its exit code and its one line."""
    return subprocess.run(
        [CALLVAULT, service], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def last_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    return done.stderr.strip().splitlines()[-1]


def checked(settings: Settings) -> None:
    """callvault built for these settings, its database opened (and so checked), closed."""
    app = bootstrap(settings)
    try:
        assert app.database is not None
    finally:
        app.close()


def as_owner(instance: Instance, statement: str) -> None:
    with psycopg.connect(instance.owner_url, autocommit=True) as conn:
        conn.execute(statement)


def test_test_processes_connect_as_callvaults_role_and_only_migrations_as_the_owner(
    instance: Instance,
) -> None:
    assert ADMIN not in instance.env
    role = conninfo_to_dict(instance.env["CALLVAULT_DATABASE_URL"])["user"]
    owner = conninfo_to_dict(instance.migration_env[ADMIN])["user"]
    assert role == "callvault_app"
    assert owner != role


def test_after_migrate_a_worker_with_callvaults_role_alone_starts(
    instance: Instance, tmp_path: Path
) -> None:
    cv = Callvault(instance, tmp_path)
    cv.migrate()  # the only step with the owner's URL
    cv.env = app_env(instance)
    try:
        cv.start_worker()  # ready: its partitions assigned, /metrics answering
    finally:
        cv.stop_all()
    assert "database_role_too_powerful" not in cv.logs()


@pytest.mark.parametrize("service", ["worker", "serve"])
def test_a_service_on_a_database_never_migrated_says_exactly_that(
    instance: Instance, service: str
) -> None:
    done = start(service, app_env(instance))
    assert done.returncode == EXIT_NOT_MIGRATED, done.stderr[-2000:]
    assert last_line(done).endswith("the database has no callvault schema: run `callvault migrate`")


@pytest.mark.parametrize("service", ["worker", "serve"])
def test_a_service_whose_role_lacks_a_grant_says_which(instance: Instance, service: str) -> None:
    migrate_schema(instance.migration_settings())
    as_owner(instance, "REVOKE UPDATE ON recordings FROM callvault_app")
    as_owner(instance, "REVOKE INSERT ON audit_log FROM callvault_app")
    done = start(service, app_env(instance))
    assert done.returncode == EXIT_REFUSED, done.stderr[-2000:]
    line = last_line(done)
    assert "callvault_app lacks" in line
    assert "INSERT on audit_log" in line
    assert "UPDATE on recordings" in line
    assert "CALLVAULT_DATABASE_ADMIN_URL" in line  # names the fix

    migrate_schema(instance.migration_settings())  # the owner grants them again
    checked(instance.settings())  # checked again: nothing lacking


def test_a_worker_on_a_schema_behind_its_code_names_the_migrations_missing(
    instance: Instance,
) -> None:
    migrate_schema(instance.migration_settings())
    as_owner(instance, "DELETE FROM _yoyo_migration WHERE migration_id = '0005_keys'")
    done = start("worker", app_env(instance))
    assert done.returncode == EXIT_NOT_MIGRATED, done.stderr[-2000:]
    assert "0005_keys" in last_line(done)
    assert "run `callvault migrate`" in last_line(done)


@pytest.fixture
def service_logs() -> Iterator[None]:
    """Logs at a service's level (an in-process command test leaves them at ERROR)."""
    before = structlog.get_config()
    configure("json", "INFO")
    yield
    structlog.configure(**before)


@pytest.mark.usefixtures("service_logs")
def test_a_process_connected_as_the_schema_owner_is_warned(instance: Instance) -> None:
    migrate_schema(instance.migration_settings())
    owner = load_settings(**{**instance.settings_kwargs(), "database_url": instance.owner_url})
    with capture_logs() as logs:
        checked(owner)
    (warning,) = [e for e in logs if e["event"] == "database_role_too_powerful"]
    assert warning["owns_schema"] is True
