"""The local stack's services are the real ones: Kafka with consumer groups, an S3 server with
versioning and object lock, PostgreSQL through the pool."""

from __future__ import annotations

import io
import subprocess
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType
from minio import Minio
from minio.commonconfig import ENABLED, GOVERNANCE
from minio.deleteobjects import DeleteObject
from minio.error import S3Error
from minio.retention import Retention
from minio.versioningconfig import VersioningConfig

from testbed.stack import Instance, database
from workers.bootstrap import bootstrap, object_store
from workers.domain.messages import PolicyApplied
from workers.settings import load_settings


def test_kafka_round_trip_through_a_consumer_group(stack: dict[str, str]) -> None:
    bootstrap = stack["CALLVAULT_KAFKA_BOOTSTRAP"]
    topic, group = f"it-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics(
        {topic: {"num_partitions": 2, "replication_factor": 1}}, wait_for_metadata=True
    )
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for i in range(10):
        producer.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode())
    producer.flush()
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=15000,
    )
    seen = set()
    for message in consumer:
        seen.add(message.value)
        if len(seen) == 10:
            break
    consumer.commit()
    consumer.close()
    committed = admin.list_group_offsets({group: None})[group]
    admin.delete_topics([topic])
    admin.close()
    assert seen == {f"v{i}".encode() for i in range(10)}
    assert sum(o.offset for o in committed.values()) == 10


def _client(stack: dict[str, str]) -> Minio:
    endpoint = stack["CALLVAULT_S3_ENDPOINT"].removeprefix("http://")
    return Minio(
        endpoint,
        access_key=stack["CALLVAULT_S3_ACCESS_KEY"],
        secret_key=stack["CALLVAULT_S3_SECRET_KEY"],
        secure=False,
        region=stack["CALLVAULT_S3_REGION"],
    )


def test_object_lock_refuses_deletion_without_governance_bypass(stack: dict[str, str]) -> None:
    client = _client(stack)
    bucket = f"it-lock-{uuid.uuid4().hex[:8]}"
    client.make_bucket(bucket, object_lock=True)
    client.set_bucket_versioning(bucket, VersioningConfig(ENABLED))
    first = client.put_object(bucket, "a.bin", io.BytesIO(b"one"), 3)
    second = client.put_object(bucket, "a.bin", io.BytesIO(b"two"), 3)
    assert first.version_id != second.version_id
    versions = list(client.list_objects(bucket, prefix="a.bin", include_version=True))
    assert len(versions) == 2

    client.enable_object_legal_hold(bucket, "a.bin", version_id=first.version_id)
    assert client.is_object_legal_hold_enabled(bucket, "a.bin", version_id=first.version_id)
    with pytest.raises(S3Error):
        client.remove_object(bucket, "a.bin", version_id=first.version_id)
    client.disable_object_legal_hold(bucket, "a.bin", version_id=first.version_id)

    until = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    client.set_object_retention(
        bucket, "a.bin", Retention(GOVERNANCE, until), version_id=second.version_id
    )
    with pytest.raises(S3Error):
        client.remove_object(bucket, "a.bin", version_id=second.version_id)
    errors = list(
        client.remove_objects(
            bucket,
            iter(
                [DeleteObject("a.bin", first.version_id), DeleteObject("a.bin", second.version_id)]
            ),
            bypass_governance_mode=True,
        )
    )
    assert errors == []
    assert list(client.list_objects(bucket, include_version=True)) == []
    client.remove_bucket(bucket)


def test_postgres_round_trip_through_the_pool(instance: Instance) -> None:
    from workers.adapters.postgres.migrate import migrate_schema

    settings = instance.migration_settings()
    applied, role = migrate_schema(settings)
    assert applied == [
        "0001_initial",
        "0002_held_index",
        "0003_unit_of_work",
        "0100_console",
        "0004_late_calls",
        "0005_keys",
        "0006_language",
        "0101_console_sign_in",
        "0102_console_scopes",
        "0200_partitions",
    ]
    assert migrate_schema(settings)[0] == []  # idempotent
    assert "audit trail" in role
    db = database(settings.dsn)
    db.open()
    with db.unit_of_work() as uow:
        uow.record(PolicyApplied("*", None, "P1Y", 0, datetime.now(UTC)))
        uow.commit()
    with db.unit_of_work() as uow:
        assert [e.action for e in uow.audit_entries(0, 10)] == ["policy"]
    db.close()


def test_commits_are_durable_whatever_the_server_default(instance: Instance) -> None:
    """An output event or a deleted landing copy must never follow a commit that a crash of
    the database server takes back (the chaos run saw a ``recording.purged`` published twice,
    with two ``purged_at``, from a tombstone lost to ``pg_ctl stop -m immediate``)."""
    settings = load_settings(**instance.settings_kwargs())
    with psycopg.connect(instance.admin_url, autocommit=True) as admin:  # an operator's choice
        admin.execute(f'ALTER DATABASE "{instance.name}" SET synchronous_commit = off')
    db = database(settings.dsn)
    db.open()
    try:
        with db.connection() as conn:
            row = conn.execute("SHOW synchronous_commit").fetchone()
    finally:
        db.close()
    assert row == {"synchronous_commit": "on"}


def test_processes_run_from_the_local_stack(stack: dict[str, str]) -> None:
    """What ops would check with ps: every service is a real process started from .local/."""
    listing = subprocess.run(
        ["ps", "-ww", "-eo", "args"], capture_output=True, text=True, check=True
    ).stdout
    root = stack["CALLVAULT_STACK_ROOT"]
    assert any("kafka.Kafka" in line and root in line for line in listing.splitlines())
    assert any("versitygw" in line for line in listing.splitlines())
    assert any("postgres" in line and root in line for line in listing.splitlines())
    assert any("prometheus" in line and root in line for line in listing.splitlines())


def test_the_s3_store_keeps_connections_open_between_requests(instance: Instance) -> None:
    """Without keep-alive the gateway answers every request with "Connection: close", and
    each upload, download and delete of every call pays for a new TCP connection."""
    settings = instance.settings()
    objects = object_store(settings)
    client = objects.client
    client.make_bucket(settings.landing_bucket)
    opened_before = _connections_opened(client)
    for i in range(5):
        key = f"probe/keep-alive-{i}"
        objects.put_stream(settings.landing_bucket, key, [b"x" * 1024], content_type="audio/wav")
        assert b"".join(objects.get_stream(settings.landing_bucket, key)) == b"x" * 1024
        objects.delete_object(settings.landing_bucket, key)
    assert _connections_opened(client) - opened_before <= 1


def _connections_opened(client: Minio) -> int:
    pools = client._http.pools  # urllib3 counts the connections it opened
    return sum(pools[key].num_connections for key in list(pools.keys()))


def test_migrate_creates_buckets_topics_and_is_idempotent(instance: Instance) -> None:
    settings = instance.migration_settings()
    app = bootstrap(settings)
    try:
        first = app.migrate()
        second = app.migrate()
    finally:
        app.close()
    objects = object_store(settings)
    assert set(first.topics_created) == set(settings.topics().values())
    assert second.topics_created == []
    assert second.migrations_applied == []
    assert objects.has_object_lock(settings.vault_bucket)
    client = objects.client
    assert client.get_bucket_versioning(settings.vault_bucket).status == "Enabled"
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    described = admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, settings.topic_calls_ended)]
    )
    admin.close()
    # Input topics carry personal data: their retention is bounded (P7D by default).
    assert str(7 * 86400 * 1000) in str(described)


def test_the_workers_role_can_only_append_to_the_audit_trail(instance: Instance) -> None:
    from workers.adapters.postgres.migrate import migrate_schema

    settings = instance.migration_settings()
    migrate_schema(settings)
    with psycopg.connect(settings.dsn, autocommit=True) as conn:  # the workers' role
        conn.execute(
            "INSERT INTO audit_log (seq, at, action, entity_id, details, prev_hash, hash) "
            "VALUES (1, now(), 'test', 'x', '{}', '\\x00', '\\x00')"
        )
        for statement in (
            "UPDATE audit_log SET action = 'forged'",
            "DELETE FROM audit_log",
            "TRUNCATE audit_log CASCADE",
            "ALTER TABLE audit_log DISABLE TRIGGER USER",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        assert conn.execute("SELECT count(*) FROM audit_log").fetchone() == (1,)
