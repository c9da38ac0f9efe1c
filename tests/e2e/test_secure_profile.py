"""The secure profile end to end on the native stack: a `callvault worker` process connects to
Kafka over SASL_SSL as the principal `callvault` (only what the ACL plan grants it), to
PostgreSQL with sslmode=verify-full and to S3 over https with the stack's CA; the telephony
system publishes a call as `telephony`, the DSR portal (SASL PLAIN) asks for an export in
CloudEvents binary content mode and reads the answer, and fetches the export from the address
the link was signed for. A principal trying what the plan does not grant is refused."""

from __future__ import annotations

import io
import json
import ssl
import subprocess
import time
import urllib.request
import uuid
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from testbed.probes import wait_for
from testbed.stack import Instance
from tests.e2e.harness import CALLVAULT, Callvault, make_wav, stamp
from tests.secure import acl_plan, kafka_env, kafka_options

PLAINTEXT = "127.0.0.1:19092"  # the local listener: every topic, no super user


@pytest.fixture
def secure(stack: dict[str, str], instance: Instance, tmp_path: Path) -> Iterator[Callvault]:
    ca = stack["CALLVAULT_STACK_TLS_CA"]
    endpoint = stack["CALLVAULT_STACK_S3_TLS_ENDPOINT"]
    instance.env.update(
        {
            "CALLVAULT_DATABASE_CA_FILE": ca,
            "CALLVAULT_S3_ENDPOINT": endpoint,
            "CALLVAULT_S3_CA_BUNDLE": ca,
            "CALLVAULT_S3_PUBLIC_ENDPOINT": endpoint.replace("127.0.0.1", "localhost"),
        }
    )
    plaintext = {k: v for k, v in instance.env.items() if k.startswith("CALLVAULT_KAFKA_")}
    instance.env.update(kafka_env(stack, "callvault"))
    with acl_plan(instance):
        cv = Callvault(instance, tmp_path)
        cv.migrate()  # creates the topics as `callvault`, over SASL_SSL
        try:
            yield cv
        finally:
            cv.stop_all()
            for name in kafka_env(stack, "callvault"):  # the instance is dropped as admin
                instance.env.pop(name, None)
            instance.env.update(plaintext)


def read(topic: str, until: Callable[[list[Any]], bool], timeout: float = 60) -> list[Any]:
    """Every record of ``topic`` (with its headers), read as an administrator."""
    consumer = KafkaConsumer(bootstrap_servers=PLAINTEXT, consumer_timeout_ms=500)
    deadline = time.monotonic() + timeout
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(2)])
        consumer.seek_to_beginning()
        seen: list[Any] = []
        while time.monotonic() < deadline:
            seen.extend(consumer)
            if until(seen):
                return seen
        raise AssertionError(f"timed out on {topic}: {len(seen)} record(s)")
    finally:
        consumer.close()


def as_telephony(
    cv: Callvault, stack: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    env = {**cv.env, **kafka_env(stack, "telephony")}
    return subprocess.run(
        [CALLVAULT, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_worker_runs_through_sasl_ssl_with_acls_and_tls_everywhere(
    secure: Callvault, stack: dict[str, str], tmp_path: Path
) -> None:
    cv = secure
    cv.start_worker()
    wait_for(lambda: cv.metric("callvault_worker_ready") == 1, 60, "the worker's partitions")

    audio = make_wav(1.5)
    (tmp_path / "call.wav").write_bytes(audio)
    published = as_telephony(
        cv,
        stack,
        "publish",
        "--audio",
        str(tmp_path / "call.wav"),
        "--caller",
        "8 612 34567",
        "--call-id",
        "secure-1",
    )
    assert published.returncode == 0, published.stderr
    stored = read(cv.instance.topic("recordings_stored"), lambda seen: len(seen) == 1)
    (record,) = stored
    assert ("content-type", b"application/cloudevents+json; charset=UTF-8") in record.headers
    recording_id = json.loads(record.value)["data"]["recording_id"]

    # The DSR portal asks in binary content mode (SASL PLAIN) and reads the answer.
    request_id = f"secure-{uuid.uuid4().hex[:8]}"
    data = {
        "request_id": request_id,
        "type": "access",
        "received_at": stamp(datetime.now(UTC)),
        "identity_verified": True,
        "subject": {
            "phone_numbers": ["+370 612 34567"],
            "emails": [],
            "customer_ids": [],
            "order_ids": [],
        },
    }
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", str(uuid.uuid4()).encode()),
        ("ce_source", b"urn:test:dsr-portal"),
        ("ce_type", b"callvault.dsr.requested.v1"),
        ("ce_time", stamp(datetime.now(UTC)).encode()),
        ("content-type", b"application/json"),
    ]
    portal = KafkaProducer(acks="all", **kafka_options(stack, "dsr-portal"))
    portal.send(
        cv.instance.topic("dsr_requests"),
        json.dumps(data).encode(),
        key=request_id.encode(),
        headers=headers,
    ).get(timeout=30)
    portal.close()
    answer = portal_answer(stack, cv.instance.topic("dsr_results"), request_id)
    assert answer["status"] == "completed"
    assert [r["recording_id"] for r in answer["recordings"]] == [recording_id]
    url = answer["export"]["url"]
    assert url.startswith("https://localhost:17072/")  # signed for the address the portal uses
    context = ssl.create_default_context(cafile=stack["CALLVAULT_STACK_TLS_CA"])
    with urllib.request.urlopen(url, context=context, timeout=30) as response:
        archive = zipfile.ZipFile(io.BytesIO(response.read()))
    assert archive.read(f"recordings/{recording_id}.wav") == audio

    # The telephony system may not ask for anyone's erasure.
    refused = as_telephony(cv, stack, "dsr", "submit", "erasure", "--phone", "8 612 34567")
    assert refused.returncode == 7, refused.stderr
    assert "Kafka refused this principal" in refused.stderr
    assert "AuthorizationFailed" not in cv.logs()


def portal_answer(stack: dict[str, str], topic: str, request_id: str) -> dict[str, Any]:
    consumer = KafkaConsumer(
        topic,
        group_id=f"dsr-portal-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        consumer_timeout_ms=1000,
        **kafka_options(stack, "dsr-portal"),
    )
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:
            for message in consumer:
                event = json.loads(message.value)
                if event["data"]["request_id"] == request_id:
                    return dict(event["data"])
        raise AssertionError("no answer on dsr.results")
    finally:
        consumer.close()
