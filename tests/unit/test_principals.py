"""Each component under its own Kafka principal, with only the secrets it uses: the ACL plan
gives the web console the DPO's registered requests only, and never lets the replay
escape hatch hand an input topic to the workers or the console; the webhooks that `callvault serve`
mounts publish as the telephony principal; the webhooks' secrets may come from files."""

from __future__ import annotations

import base64
import os
import shlex
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from workers.adapters.connectors.settings import WebhookSettings, load_connector_settings
from workers.adapters.keys import key_ring
from workers.domain.errors import ConfigError
from workers.entrypoints.connect import mounted_credentials, webhook_config
from workers.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
PLAN = ROOT / "deploy" / "kafka" / "acl-plan.sh"
INPUTS = ("calls.ended", "dsr.requests", "holds.commands")


def grants(**env: str) -> dict[str, set[tuple[str, str]]]:
    """Principal -> {(operation, topic)} as the plan prints them."""
    printed = subprocess.run(
        ["sh", str(PLAN)], env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True
    )
    assert printed.returncode == 0, printed.stderr
    found: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for line in printed.stdout.splitlines():
        words = shlex.split(line)
        principal = words[words.index("--allow-principal") + 1]
        operations = [words[i + 1] for i, w in enumerate(words) if w == "--operation"]
        if "--topic" in words:
            topic = words[words.index("--topic") + 1]
            found[principal].update((op, topic) for op in operations)
    return found


def writers(plan: dict[str, set[tuple[str, str]]], topic: str) -> set[str]:
    return {p for p, ops in plan.items() if ("Write", topic) in ops}


@pytest.mark.parametrize("replay", ["0", "1"])
def test_the_console_may_write_the_dpos_requests_and_nothing_else(replay: str) -> None:
    plan = grants(ALLOW_DEADLETTER_REPLAY=replay)
    assert plan["User:console"] == {  # its holds are applied in its own transaction
        ("Write", "dsr.requests"),  # registered by a signed-in DPO, audited
        ("Describe", "dsr.requests"),
    }


@pytest.mark.parametrize("replay", ["0", "1"])
def test_the_replay_escape_hatch_gives_the_inputs_to_the_replay_operator_only(
    replay: str,
) -> None:
    plan = grants(ALLOW_DEADLETTER_REPLAY=replay)
    expected = {"User:dsr-portal", "User:console"}
    expected |= {"User:callvault-replay"} if replay == "1" else set()
    assert writers(plan, "dsr.requests") == expected
    for topic in INPUTS:  # the workers never write an input
        assert "User:callvault" not in writers(plan, topic), topic
    assert writers(plan, "calls.ended") <= {"User:telephony", "User:callvault-replay"}


@pytest.mark.parametrize("shared", ["callvault", "console", "telephony", "dsr-portal"])
def test_the_replay_principal_must_be_one_of_its_own(shared: str) -> None:
    refused = subprocess.run(
        ["sh", str(PLAN)],
        env={"PATH": "/usr/bin:/bin", "ALLOW_DEADLETTER_REPLAY": "1", "REPLAY_PRINCIPAL": shared},
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 2
    assert "REPLAY_PRINCIPAL must be a principal of its own" in refused.stderr


def test_webhook_secrets_may_come_from_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "twilio").write_text("twilio-token\n")
    (tmp_path / "vonage").write_text("vonage-secret\n")
    monkeypatch.setenv("CALLVAULT_WEBHOOK_DELETE_PROVIDER_COPIES", "false")  # no API accounts
    monkeypatch.setenv("CALLVAULT_TWILIO_AUTH_TOKEN_FILE", str(tmp_path / "twilio"))
    monkeypatch.setenv("CALLVAULT_VONAGE_SIGNATURE_SECRET_FILE", str(tmp_path / "vonage"))
    config = webhook_config()
    assert config.twilio_auth_token == "twilio-token"
    assert config.vonage_signature_secret == "vonage-secret"
    monkeypatch.setenv("CALLVAULT_TWILIO_AUTH_TOKEN", "also-given")
    with pytest.raises(ConfigError, match="not both"):
        WebhookSettings()


def sasl(user: str) -> dict[str, str]:
    return {
        "kafka_bootstrap": "kafka:9093",
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_username": user,
        "kafka_sasl_password": "console-password",
    }


def test_webhooks_mounted_by_serve_publish_as_the_telephony_principal(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    console = load_settings(**sasl("console"))
    monkeypatch.setenv("CALLVAULT_TWILIO_AUTH_TOKEN", "twilio-token")
    monkeypatch.setenv("CALLVAULT_TWILIO_ACCOUNT_SID", "AC1")
    with pytest.raises(ConfigError, match="CALLVAULT_WEBHOOK_KAFKA_SASL_USERNAME"):
        mounted_credentials(console)  # never under the console's own principal
    monkeypatch.setenv("CALLVAULT_WEBHOOK_KAFKA_SASL_USERNAME", "console")
    monkeypatch.setenv("CALLVAULT_WEBHOOK_KAFKA_SASL_PASSWORD", "console-password")
    with pytest.raises(ConfigError, match="console's own"):
        mounted_credentials(console)

    (tmp_path / "password").write_text("telephony-password\n")
    monkeypatch.setenv("CALLVAULT_WEBHOOK_KAFKA_SASL_USERNAME", "telephony")
    monkeypatch.delenv("CALLVAULT_WEBHOOK_KAFKA_SASL_PASSWORD")
    monkeypatch.setenv("CALLVAULT_WEBHOOK_KAFKA_SASL_PASSWORD_FILE", str(tmp_path / "password"))
    monkeypatch.setenv("CALLVAULT_WEBHOOK_S3_ACCESS_KEY", "telephony-s3")
    monkeypatch.setenv("CALLVAULT_WEBHOOK_S3_SECRET_KEY", "telephony-s3-secret")
    console_connector = {
        **sasl("console"),
        "s3_endpoint": "http://s3:7070",
        "s3_access_key": "console-s3",
        "s3_secret_key": "console-s3-secret",
        "landing_bucket": "landing",
    }
    connector = load_connector_settings(**(console_connector | mounted_credentials(console)))
    assert connector.kafka_sasl_username == "telephony"
    assert connector.kafka_sasl_password is not None
    assert connector.kafka_sasl_password.get_secret_value() == "telephony-password"
    assert connector.s3_access_key.get_secret_value() == "telephony-s3"


def test_without_sasl_nothing_needs_telling_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLVAULT_TWILIO_AUTH_TOKEN", "twilio-token")
    monkeypatch.setenv("CALLVAULT_TWILIO_ACCOUNT_SID", "AC1")
    assert mounted_credentials(load_settings(kafka_bootstrap="127.0.0.1:19092")) == {}


def test_the_console_can_run_with_the_signing_keys_public_half_alone() -> None:
    """The console never signs: given CALLVAULT_SIGNING_PUBLIC_KEY instead of the key, it still
    proves it belongs to the key on record (its check value) and refuses to sign."""
    seed = os.urandom(32)
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    keys = {"master_key": b64(os.urandom(32)), "hash_key": b64(os.urandom(32))}
    worker = key_ring(load_settings(**keys, signing_key=b64(seed)))
    console = key_ring(load_settings(**keys, signing_key=None, signing_public_key=b64(public)))
    assert console.checks() == worker.checks()  # the same check values as the key on record
    assert console.public_keys() == worker.public_keys()
    with pytest.raises(ConfigError, match="no signing key"):
        console.sign({"type": "erasure"})
    with pytest.raises(ConfigError, match="CALLVAULT_SIGNING_PUBLIC_KEY"):
        load_settings(**keys, signing_public_key=b64(b"short"))


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()
