"""Every command against a stopped service and against a database never migrated: one clear
line on stderr that names the fix, the exit code ``callvault --help`` documents, never a
traceback - and within seconds, not a service's minutes."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from testbed.stack import Instance
from tests.e2e.harness import CALLVAULT
from workers.entrypoints.cli import cli

EXIT_CONFIG, EXIT_UNREACHABLE, EXIT_NOT_MIGRATED = 3, 4, 5

# Arguments that make each command do its real work (the files are made by ``files``).
ARGS: dict[str, list[str]] = {
    "audit checkpoint": [],
    "audit verify": [],
    "deadletter discard": ["--offset", "0:0", "--yes"],
    "deadletter list": [],
    "deadletter replay": ["--offset", "0:0"],
    "demo": ["--count", "1"],
    "dsr list": [],
    "dsr status": ["R-1"],
    "dsr submit": ["access", "--phone", "8 612 34567"],
    "followups list": [],
    "followups retry": ["--all", "--yes"],
    "hold list": [],
    "hold place": ["H-1", "--reason", "dispute", "--call-id", "c-1"],
    "hold release": ["H-1"],
    "hold show": ["H-1"],
    "keys check": [],
    "keys generate": [],
    "keys import-to-hsm": [],
    "keys rehash": [],
    "keys rotate": [],
    "migrate": [],
    "partitions archive": ["--dry-run"],
    "partitions list": [],
    "public-key": [],
    "publish": ["--audio", "{audio}", "--caller", "8 612 34567"],
    "reconcile": [],
    "status": [],
    "token create": ["someone"],
    "token revoke": ["t-1"],
    "user add": ["someone", "--role", "qa", "--tenant", "*"],
    "user disable": ["someone"],
    "user enable": ["someone"],
    "user list": [],
    "user tenants": ["someone", "--tenant", "shop-lt"],
    "verify-certificate": ["{certificate}"],
}
# Long-running services: started as processes, expected to stop by themselves.
SERVICES = {"worker": [], "serve": []}
# The telephony connectors: they need Kafka and the landing bucket only, and keep calls in a
# backlog while either is away (docs/telephony.md); checked in tests/unit/test_connectors.py.
CONNECTORS = "connect "
# Commands that need no service at all.
OFFLINE = {"verify-certificate"}
# Commands for keys in a PKCS#11 token: with the keys in the settings, they say so first.
TOKEN_ONLY = {"keys generate", "keys import-to-hsm"}
# Commands that use Kafka or the object store only, never the database.
NO_DATABASE = {"demo", "dsr submit", "hold place", "hold release", "publish", "deadletter list"}


def leaves(group: click.Group, prefix: str = "") -> Iterator[str]:
    for name, command in sorted(group.commands.items()):
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            yield from leaves(command, path + " ")
        else:
            yield path


def test_every_command_is_covered_here() -> None:
    known = set(ARGS) | set(SERVICES)
    missing = [c for c in leaves(cli) if c not in known and not c.startswith(CONNECTORS)]
    assert missing == [], "add them to ARGS or SERVICES"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    audio = tmp_path / "call.wav"
    audio.write_bytes(b"RIFF" + bytes(64))
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"keys": []}))
    certificate = tmp_path / "certificate.json"
    certificate.write_text(json.dumps({"request_id": "R-1", "key_id": "k", "signature": ""}))
    return {"audio": str(audio), "certificate": str(certificate)}


def invoke(command: str, files: dict[str, str], env: dict[str, str]) -> Any:
    args = [a.format(**files) for a in ARGS[command]]
    started = time.monotonic()
    result = CliRunner().invoke(cli, [*command.split(), *args], env=env, input="password1\n")
    return result, time.monotonic() - started


def one_line(result: Any, command: str) -> str:
    assert "Traceback" not in result.stderr, command
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        command,
        repr(result.exception),
    )
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, (command, result.stderr)
    return lines[0]


def stopped_env(instance: Instance) -> dict[str, str]:
    dead = closed_port()
    return {
        **instance.env,
        "CALLVAULT_KAFKA_BOOTSTRAP": f"127.0.0.1:{dead}",
        "CALLVAULT_DATABASE_URL": f"postgresql://callvault:x@127.0.0.1:{dead}/callvault",
        "CALLVAULT_DATABASE_ADMIN_URL": f"postgresql://callvault:x@127.0.0.1:{dead}/callvault",
        "CALLVAULT_S3_ENDPOINT": f"http://127.0.0.1:{dead}",
        "CALLVAULT_CONNECT_TIMEOUT": "PT1S",
        "CALLVAULT_RETRY_BUDGET": "PT1S",
    }


def test_every_command_against_stopped_services_says_so_in_one_line(
    instance: Instance, files: dict[str, str]
) -> None:
    env = stopped_env(instance)
    for command in ARGS:
        result, took = invoke(command, files, env)
        if command in OFFLINE or command == "public-key":  # the keys are settings
            assert result.exit_code in (0, 1), (command, result.stderr)
            continue
        line = one_line(result, command)
        if command in TOKEN_ONLY:
            assert result.exit_code == EXIT_CONFIG, (command, result.exit_code, line)
            assert "CALLVAULT_KEYS_BACKEND=pkcs11" in line, (command, line)
            continue
        assert result.exit_code == EXIT_UNREACHABLE, (command, result.exit_code, line)
        assert "make up" in line, (command, line)  # names the fix
        assert took < 30, (command, took)


def test_every_command_against_a_database_never_migrated_says_run_migrate(
    instance: Instance, files: dict[str, str]
) -> None:
    env = {**instance.env, "CALLVAULT_MIGRATE_ON_START": "false"}
    for command in ARGS:
        if command in OFFLINE | NO_DATABASE | TOKEN_ONLY | {"migrate", "public-key"}:
            continue
        result, _ = invoke(command, files, env)
        line = one_line(result, command)
        assert result.exit_code == EXIT_NOT_MIGRATED, (command, result.exit_code, line)
        assert "callvault migrate" in line, (command, line)


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_services_stop_in_one_line_when_the_database_is_away_or_not_migrated(
    instance: Instance, service: str
) -> None:
    for env, code, hint in (
        (stopped_env(instance), EXIT_UNREACHABLE, "make up"),
        ({**instance.env, "CALLVAULT_MIGRATE_ON_START": "false"}, EXIT_NOT_MIGRATED, "migrate"),
    ):
        done = subprocess.run(
            [CALLVAULT, service, *SERVICES[service]],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == code, done.stderr[-2000:]
        lines = done.stderr.strip().splitlines()
        assert "Traceback" not in done.stderr
        assert hint in lines[-1], lines[-1]
