"""docker-compose.yml brought up for real (`make compose-up`: podman, Docker Compose, an image
built here for every service) and driven through the contract from outside, as the shop's other
systems would: the telephony system stores a call and compliance places a hold, each as its own
SCRAM principal over TLS; the DSR portal asks for an erasure and verifies the certificate; the
console answers on its published port; Prometheus scrapes the worker; a dead letter's alert
reaches Alertmanager. Secure by default: an anonymous or wrong client is refused, the console's
container holds no signing key and its principal cannot write calls."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError

from testbed.stack import ROOT
from tests.e2e.harness import CALLVAULT, make_wav, wait_for

PORTS = {"kafka": 29092, "s3": 27070, "prometheus": 29090, "alertmanager": 29094}
CONSOLE = "http://127.0.0.1:18080"
PODMAN_CONF = Path(os.environ.get("CALLVAULT_STACK_ROOT", ROOT / ".local")) / "podman"
SCRAM = "SCRAM-SHA-512"


def podman(*args: str, stdin: str | None = None) -> str:
    env = {**os.environ, "CONTAINERS_CONF": str(PODMAN_CONF / "containers.conf")}
    done = subprocess.run(
        ["podman", *args], input=stdin, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def project() -> Path:
    """The compose project up and healthy; the directory of the secrets an operator hands to
    the systems outside (the telephony system, the DSR portal, compliance)."""
    subprocess.run(["bash", str(ROOT / "deploy" / "compose.sh"), "up"], check=True, timeout=1800)
    return volume("callvault_secrets-handout")


def volume(name: str) -> Path:
    """Where a volume's files are on this machine (podman runs as root here)."""
    return Path(podman("volume", "inspect", "--format", "{{.Mountpoint}}", name).strip())


def kafka_env(secrets: Path, principal: str) -> dict[str, str]:
    return {
        "CALLVAULT_KAFKA_BOOTSTRAP": f"127.0.0.1:{PORTS['kafka']}",
        "CALLVAULT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "CALLVAULT_KAFKA_SASL_MECHANISM": SCRAM,
        "CALLVAULT_KAFKA_SASL_USERNAME": principal,
        "CALLVAULT_KAFKA_SASL_PASSWORD_FILE": str(secrets / f"kafka-{principal}"),
        "CALLVAULT_KAFKA_CA_FILE": str(secrets / "kafka-ca.pem"),
    }


def kafka_options(secrets: Path, principal: str, password: Path | None = None) -> dict[str, Any]:
    return {
        "bootstrap_servers": f"127.0.0.1:{PORTS['kafka']}",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": SCRAM,
        "sasl_plain_username": principal,
        "sasl_plain_password": (password or secrets / f"kafka-{principal}").read_text(),
        "ssl_context": ssl.create_default_context(cafile=str(secrets / "kafka-ca.pem")),
    }


def s3_env(secrets: Path) -> dict[str, str]:
    """The telephony system's S3 user: it may put into the landing bucket, nothing else."""
    return {
        "CALLVAULT_S3_ENDPOINT": f"http://127.0.0.1:{PORTS['s3']}",
        "CALLVAULT_S3_ACCESS_KEY": "telephony",
        "CALLVAULT_S3_SECRET_KEY": (secrets / "s3-telephony").read_text(),
        "CALLVAULT_LANDING_BUCKET": "callvault-landing",
    }


def callvault(env: dict[str, str], *args: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CALLVAULT_")}
    done = subprocess.run(
        [CALLVAULT, *args], env={**clean, **env}, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def in_container(service: str, *args: str, stdin: str | None = None) -> str:
    return podman(
        "exec", "-i", f"callvault-{service}-1", "callvault-entrypoint", *args, stdin=stdin
    )


def get_json(url: str, token: str | None = None, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def search(token: str, *call_ids: str) -> dict[str, dict[str, Any]]:
    """The console's search, by call id: call id -> item."""
    found = get_json(f"{CONSOLE}/api/v1/recordings/search", token, {"call_ids": list(call_ids)})
    return {item["call_id"]: item for item in found["items"]}


def answer(secrets: Path, request_id: str) -> dict[str, Any]:
    """The DSR portal reads its answer on dsr.results, in its own consumer group."""
    consumer = KafkaConsumer(
        "dsr.results",
        group_id=f"dsr-portal-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        consumer_timeout_ms=1000,
        **kafka_options(secrets, "dsr-portal"),
    )
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            for message in consumer:
                event = json.loads(message.value)
                if event["data"]["request_id"] == request_id:
                    return dict(event)
        raise AssertionError(f"no answer to {request_id} on dsr.results")
    finally:
        consumer.close()


def eventually(check: Callable[[], bool], what: str, timeout: float = 120) -> None:
    wait_for(check, timeout, what)


def test_the_compose_project_keeps_the_contract_secure_by_default(
    project: Path, tmp_path: Path
) -> None:
    secrets = project
    run = uuid.uuid4().hex[:6]
    telephony = {**kafka_env(secrets, "telephony"), **s3_env(secrets)}
    audio = tmp_path / "call.wav"
    audio.write_bytes(make_wav(1.0))

    # The telephony system stores two calls (its principal, SCRAM over TLS).
    held_call, erased_call = f"held-{run}", f"erased-{run}"
    callvault(telephony, "publish", "--audio", str(audio), "--caller", "8 612 11111",
              "--call-id", held_call)  # fmt: skip
    callvault(telephony, "publish", "--audio", str(audio), "--caller", "8 612 22222",
              "--call-id", erased_call)  # fmt: skip

    # The console answers on its published port; a DPO's API token sees both calls stored.
    assert get_json(f"{CONSOLE}/healthz")["status"] == "ok"
    dpo = f"dpo-{run}"
    scope = (
        ["--tenant", "*"]
        if "--tenant" in in_container("console", "callvault", "user", "add", "--help")
        else []
    )
    in_container("console", "callvault", "user", "add", dpo, "--role", "dpo", *scope,
                 stdin="a long compose passphrase\n")  # fmt: skip
    token = in_container("console", "callvault", "token", "create", dpo).strip().split()[-1]

    eventually(
        lambda: len(search(token, held_call, erased_call)) == 2,
        "both calls stored, seen through the console's API",
    )

    # Compliance places a legal hold (its own principal); the console lists it.
    compliance = kafka_env(secrets, "compliance")
    callvault(compliance, "hold", "place", f"case-{run}", "--reason", "dispute",
              "--call-id", held_call)  # fmt: skip
    eventually(
        lambda: search(token, held_call)[held_call]["held"] is True,
        "the hold, seen through the console's API",
    )

    # The DSR portal asks for an erasure and verifies the signed certificate.
    portal = kafka_env(secrets, "dsr-portal")
    request_id = f"erase-{run}"
    callvault(portal, "dsr", "submit", "erasure", "--phone", "8 612 22222",
              "--request-id", request_id)  # fmt: skip
    event = answer(secrets, request_id)
    assert event["data"]["status"] == "completed"
    (tmp_path / "answer.json").write_text(json.dumps(event))
    keys = in_container("console", "callvault", "public-key")  # the public half is enough
    (tmp_path / "keys.json").write_text(keys)
    verified = callvault({}, "verify-certificate", str(tmp_path / "answer.json"),
                         "--keys", str(tmp_path / "keys.json"))  # fmt: skip
    assert "certificate valid" in verified
    assert list(search(token, held_call, erased_call)) == [held_call]  # the erased one is gone

    # Prometheus scrapes the worker; a dead letter's alert reaches Alertmanager.
    prometheus = f"http://127.0.0.1:{PORTS['prometheus']}"
    targets = get_json(f"{prometheus}/api/v1/targets")["data"]["activeTargets"]
    assert any(t["labels"]["job"] == "callvault" and t["health"] == "up" for t in targets)
    producer = KafkaProducer(acks="all", **kafka_options(secrets, "telephony"))
    producer.send("calls.ended", b"not an event").get(timeout=30)
    producer.close()
    alerts = f"http://127.0.0.1:{PORTS['alertmanager']}/api/v2/alerts"
    eventually(
        lambda: any(a["labels"]["alertname"] == "CallvaultDeadLetters" for a in get_json(alerts)),
        "CallvaultDeadLetters at Alertmanager",
        timeout=180,
    )


CONSOLE_DELETES = """
import os
from minio import Minio
from minio.error import S3Error
client = Minio("versitygw:7070", os.environ["CALLVAULT_S3_ACCESS_KEY"],
               os.environ["CALLVAULT_S3_SECRET_KEY"], secure=False, region="eu-central-1")
try:
    client.remove_object("callvault-vault", "recordings/anything")
    print("deleted")
except S3Error as exc:
    print(exc.code)
"""


def test_nothing_is_anonymous_and_each_container_holds_only_its_secrets(project: Path) -> None:
    secrets = project
    with pytest.raises(KafkaError):  # no PLAINTEXT, no anonymous principal
        KafkaProducer(
            bootstrap_servers=f"127.0.0.1:{PORTS['kafka']}", request_timeout_ms=3000,
            max_block_ms=3000,
        ).send("calls.ended", b"x").get(timeout=5)  # fmt: skip
    password = volume("callvault_secrets-kafka-init") / "console"  # the console's own
    options = kafka_options(secrets, "console", password)
    console = KafkaProducer(acks="all", max_block_ms=8000, **options)
    with pytest.raises(KafkaError):  # the console's principal may not write calls
        console.send("calls.ended", b"{}").get(timeout=10)
    console.close()
    # Each component its own S3 user: telephony may not read the vault, the console not delete.
    from minio import Minio
    from minio.error import S3Error

    store = f"127.0.0.1:{PORTS['s3']}"
    telephony = Minio(store, "telephony", (secrets / "s3-telephony").read_text(), secure=False,
                      region="eu-central-1")  # fmt: skip
    with pytest.raises(S3Error, match="AccessDenied"):
        list(telephony.list_objects("callvault-vault"))
    deleting = in_container("console", "python", "-c", CONSOLE_DELETES)
    assert deleting.strip() == "AccessDenied"
    held = set(in_container("console", "sh", "-c", "ls /run/secrets/callvault").split())
    assert "CALLVAULT_SIGNING_KEY" not in held
    assert "CALLVAULT_DATABASE_ADMIN_URL" not in held
    assert "CALLVAULT_SIGNING_PUBLIC_KEY" in held
    worker = set(in_container("worker", "sh", "-c", "ls /run/secrets/callvault").split())
    assert "CALLVAULT_DATABASE_ADMIN_URL" not in worker
    user = in_container("worker", "python", "-c",
                        "import psycopg, os; print(psycopg.connect(os.environ["
                        "'CALLVAULT_DATABASE_URL']).info.user)")  # fmt: skip
    assert user.strip() == "callvault_app"
