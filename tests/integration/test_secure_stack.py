"""The secure profile on the native stack: Kafka refuses every principal what the ACL plan
does not grant, over TLS that is verified; PostgreSQL answers sslmode=verify-full against the
stack's CA; S3 over https with a custom CA bundle, and export links signed for the address a
DSR portal reaches."""

from __future__ import annotations

import datetime as dt
import ssl
import urllib.request
import uuid
from pathlib import Path

import psycopg
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from testbed.stack import Instance, database
from tests.certs import write_ca
from tests.secure import acl_plan, kafka_env, kafka_options
from workers.adapters.kafka.admin import ensure_topics
from workers.adapters.kafka.security import kafka_security
from workers.adapters.postgres.migrate import migrate_schema
from workers.adapters.s3 import S3Store
from workers.bootstrap import object_store
from workers.domain.errors import AccessRefused, TransientError
from workers.settings import load_settings


def can_write(stack: dict[str, str], principal: str, topic: str) -> bool:
    producer = KafkaProducer(
        acks="all", max_block_ms=8000, request_timeout_ms=8000, **kafka_options(stack, principal)
    )
    try:
        producer.send(topic, b"{}").get(timeout=10)
        return True
    except KafkaError:
        return False
    finally:
        producer.close(timeout=2)


def settings_of(stack: dict[str, str], principal: str) -> dict[str, str]:
    """Settings keyword arguments that connect as ``principal`` over SASL_SSL."""
    values = {
        k.removeprefix("CALLVAULT_").lower(): v for k, v in kafka_env(stack, principal).items()
    }
    values["kafka_sasl_password"] = Path(values.pop("kafka_sasl_password_file")).read_text().strip()
    return values


def can_read(stack: dict[str, str], principal: str, topic: str, group: str | None = None) -> bool:
    consumer = KafkaConsumer(
        group_id=group,
        consumer_timeout_ms=5000,  # a group's first join takes a few seconds
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **kafka_options(stack, principal),
    )
    try:
        if group is None:
            consumer.assign([TopicPartition(topic, 0)])
            consumer.seek_to_beginning()
        else:
            consumer.subscribe([topic])
        return any(True for _ in consumer)  # the record seeded below reached it
    except KafkaError:
        return False
    finally:
        consumer.close()


def test_each_principal_may_do_what_the_acl_plan_grants_and_nothing_else(
    stack: dict[str, str], instance: Instance
) -> None:
    topic = instance.topic
    names = [topic(n) for n in ("calls_ended", "dsr_requests", "holds_commands", "dsr_results")]
    ensure_topics("127.0.0.1:19092", {n: {} for n in names}, 1, 1)
    seed = KafkaProducer(bootstrap_servers="127.0.0.1:19092")  # the broker's own listener
    for name in names:  # a record in each, so a reader either gets it or was refused
        seed.send(name, b"{}").get(timeout=10)
    seed.close()
    with acl_plan(instance):
        # the telephony system writes calls and reads nothing
        assert can_write(stack, "telephony", topic("calls_ended"))
        assert not can_write(stack, "telephony", topic("dsr_requests"))
        assert not can_read(stack, "telephony", topic("calls_ended"))
        # the DSR portal (SASL PLAIN) writes requests, reads answers in its own group
        assert can_write(stack, "dsr-portal", topic("dsr_requests"))
        assert can_read(
            stack, "dsr-portal", topic("dsr_results"), group=f"dsr-portal-{uuid.uuid4()}"
        )
        assert not can_read(stack, "dsr-portal", topic("dsr_requests"))
        assert not can_write(stack, "dsr-portal", topic("calls_ended"))
        # compliance writes holds only: it cannot erase anyone through dsr.requests
        assert can_write(stack, "compliance", topic("holds_commands"))
        assert not can_write(stack, "compliance", topic("dsr_requests"))
        # callvault reads its inputs and writes its outputs
        assert can_read(stack, "callvault", topic("calls_ended"))
        assert can_write(stack, "callvault", topic("dsr_results"))
        # the web console publishes a DPO's requests, no more (its holds go to the database)
        assert can_write(stack, "console", topic("dsr_requests"))
        assert not can_write(stack, "console", topic("holds_commands"))
        assert not can_write(stack, "console", topic("calls_ended"))
        assert not can_read(stack, "console", topic("holds_commands"))
        # a principal the plan does not let create topics is refused for good, not retried
        security = kafka_security(load_settings(**settings_of(stack, "telephony")))
        with pytest.raises(AccessRefused, match="acl-plan"):
            ensure_topics(
                stack["CALLVAULT_STACK_KAFKA_SECURE"], {topic("deadletter"): {}}, 1, 1, security
            )
    assert not can_write(stack, "telephony", topic("calls_ended"))  # the plan taken back


def test_the_replay_escape_hatch_gives_inputs_to_the_replay_operator_only(
    stack: dict[str, str], instance: Instance
) -> None:
    """ALLOW_DEADLETTER_REPLAY=1 lets an operator's principal of its own put dead letters back;
    the workers still cannot forge an erasure, nor the internet-facing console a call."""
    topic = instance.topic
    names = [topic(n) for n in ("calls_ended", "dsr_requests", "holds_commands", "deadletter")]
    ensure_topics("127.0.0.1:19092", {n: {} for n in names}, 1, 1)
    seed = KafkaProducer(bootstrap_servers="127.0.0.1:19092")  # the broker's own listener
    for name in names:  # a record in each, so a reader either gets it or was refused
        seed.send(name, b"{}").get(timeout=10)
    seed.close()
    with acl_plan(instance, ALLOW_DEADLETTER_REPLAY="1"):
        assert not can_write(stack, "callvault", topic("dsr_requests"))
        for principal in ("callvault", "console"):
            assert not can_write(stack, principal, topic("calls_ended")), principal
        assert can_write(stack, "callvault-replay", topic("dsr_requests"))
        assert can_read(stack, "callvault-replay", topic("deadletter"))
    assert not can_write(stack, "callvault-replay", topic("dsr_requests"))  # taken back


def test_the_plaintext_listener_has_no_super_user(stack: dict[str, str], tmp_path: Path) -> None:
    """The local PLAINTEXT listener's anonymous principal uses topics, but may change no ACL and
    make no user: only the broker's administrator may, so the secure profile cannot be undone
    by any local process."""
    from kafka import KafkaAdminClient
    from kafka.admin import (
        ACL,
        ACLOperation,
        ACLPermissionType,
        ResourcePattern,
        ResourceType,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    anonymous = KafkaAdminClient(bootstrap_servers="127.0.0.1:19092")
    try:
        grant = ACL(
            "User:telephony", "*", ACLOperation.WRITE, ACLPermissionType.ALLOW,
            ResourcePattern(ResourceType.TOPIC, "dsr.requests"),
        )  # fmt: skip
        failed = anonymous.create_acls([grant])["failed"]
        assert len(failed) == 1
        assert "ClusterAuthorizationFailed" in str(failed[0])
        user = UserScramCredentialUpsertion("intruder", ScramMechanism.SCRAM_SHA_512, "x" * 16)
        answer = anonymous.alter_user_scram_credentials([user])
        assert "needs ALTER permission" in str(answer["intruder"])
    finally:
        anonymous.close()


def test_kafka_refuses_a_wrong_password_and_an_unverified_certificate(
    stack: dict[str, str], tmp_path: Path
) -> None:
    options = kafka_options(stack, "telephony") | {"bootstrap_timeout_ms": 3000}
    other_ca, _, _ = write_ca(tmp_path)  # a CA that did not sign the broker's certificate
    for wrong in (
        {"sasl_plain_password": "wrong"},
        {"ssl_context": ssl.create_default_context(cafile=str(other_ca))},
    ):
        with pytest.raises(KafkaError, match="Unable to bootstrap"):
            KafkaConsumer(**{**options, **wrong})
    KafkaConsumer(**options).close()  # the right ones connect


def test_postgres_over_tls_with_verify_full(
    stack: dict[str, str], instance: Instance, tmp_path: Path
) -> None:
    settings = load_settings(
        **instance.settings_kwargs(), database_ca_file=stack["CALLVAULT_STACK_TLS_CA"]
    )
    assert "sslmode=verify-full" in settings.dsn
    owner = load_settings(
        **instance.settings_kwargs(),
        database_ca_file=stack["CALLVAULT_STACK_TLS_CA"],
        database_admin_url=instance.owner_url,
    )
    migrate_schema(owner)  # yoyo connects the same way
    db = database(settings.dsn)
    db.open()
    try:
        with db.connection() as conn:
            row = conn.execute(
                "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            ).fetchone()
        assert row is not None
        assert row["ssl"] is True
        assert row["version"].startswith("TLSv1.")
    finally:
        db.close()
    other_ca, _, _ = write_ca(tmp_path)
    wrong = load_settings(**instance.settings_kwargs(), database_ca_file=str(other_ca))
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        psycopg.connect(wrong.dsn).close()
    with psycopg.connect(instance.database_url) as plain:  # plain connections still work
        assert plain.execute("SELECT 1").fetchone() == (1,)


def test_s3_over_https_with_a_ca_bundle_and_links_for_the_public_address(
    stack: dict[str, str], instance: Instance
) -> None:
    endpoint = stack["CALLVAULT_STACK_S3_TLS_ENDPOINT"]
    settings = load_settings(
        **{
            **instance.settings_kwargs(),
            "s3_endpoint": endpoint,
            "s3_ca_bundle": stack["CALLVAULT_STACK_TLS_CA"],
            "s3_public_endpoint": endpoint.replace("127.0.0.1", "localhost"),
        }
    )
    store = object_store(settings)
    bucket = settings.export_bucket
    store.ensure_bucket(bucket, versioned=False, object_lock=False)
    try:
        store.put_stream(bucket, "exports/x.zip", [b"zip-bytes"], content_type="application/zip")
        assert b"".join(store.get_stream(bucket, "exports/x.zip")) == b"zip-bytes"
        url = store.presigned_get(bucket, "exports/x.zip", dt.timedelta(minutes=5))
        assert url.startswith(f"{settings.s3_public_endpoint}/{bucket}/exports/x.zip?")
        context = ssl.create_default_context(cafile=stack["CALLVAULT_STACK_TLS_CA"])
        with urllib.request.urlopen(url, context=context, timeout=10) as response:
            assert response.read() == b"zip-bytes"
        untrusting = S3Store(endpoint, *settings.s3()[1:], settings.s3_region)  # system CAs only
        with pytest.raises(TransientError):
            list(untrusting.get_stream(bucket, "exports/x.zip"))
    finally:
        store.delete_object(bucket, "exports/x.zip")
