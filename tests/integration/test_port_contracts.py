"""One contract suite per port, run against the fake and the real adapter alike, so that unit
tests on fakes say something true about production."""

from __future__ import annotations

import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kafka import KafkaConsumer

from tests.stack import Instance
from workers.adapters.kafka import KafkaBus
from workers.adapters.memory import MemoryBus, MemoryObjectStore, MemoryStore
from workers.adapters.postgres import PostgresStore
from workers.bootstrap import object_store
from workers.domain.audit import verify_chain
from workers.domain.events import OutboundEvent
from workers.domain.model import (
    Hold,
    HoldScopeKind,
    Recording,
    RecordingStatus,
    object_key_for,
    recording_id_for,
)
from workers.domain.retention import IsoDuration
from workers.migrate import migrate_database
from workers.ports import DsrRecord, ObjectMissing
from workers.settings import load_settings

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["memory", "postgres"])
def store(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryStore()
        return
    instance: Instance = request.getfixturevalue("instance")
    settings = load_settings(**instance.settings_kwargs())
    migrate_database(settings.database_url.get_secret_value())
    real = PostgresStore(settings.database_url.get_secret_value())
    real.open()
    yield real
    real.close()


def recording(
    call_id: str,
    *,
    due: datetime = NOW,
    status: RecordingStatus = RecordingStatus.STORED,
    collected: datetime | None = None,
) -> Recording:
    rid = recording_id_for(call_id)
    return Recording(
        recording_id=rid,
        call_id=call_id,
        tenant="default",
        direction="inbound",
        agent_id="a-1",
        started_at=NOW - timedelta(days=400),
        collected_at=collected or NOW - timedelta(days=365),
        retention_due_at=due,
        policy="P1Y",
        status=status,
        object_key=object_key_for(rid),
        stored_at=NOW - timedelta(days=365),
        size_bytes=10,
        sha256="ab" * 32,
        content_type="audio/wav",
        wrapped_key=b"k" * 61,
        customer_sealed=b"c" * 40,
    )


def test_recordings_round_trip_and_one_per_call(store: Any) -> None:
    rec = recording("rt-1")
    with store.transaction() as tx:
        assert tx.insert_recording(rec)
        assert not tx.insert_recording(replace(rec))  # same call: no second recording
    with store.transaction() as tx:
        again = tx.recording_by_call("rt-1")
        assert again == rec
        assert tx.held_count() == 0
        tx.save_recording(replace(again, held=True, restricted=True))
    with store.transaction() as tx:
        assert tx.held_count() == 1
        loaded = tx.recording(rec.recording_id)
        assert loaded is not None
        assert loaded.held
        assert loaded.restricted
        tx.delete_recording(rec.recording_id)
    with store.transaction() as tx:
        assert tx.recording(rec.recording_id) is None


def test_a_failed_transaction_leaves_nothing(store: Any) -> None:
    def crash_mid_transaction() -> None:
        with store.transaction() as tx:
            tx.insert_recording(recording("rb-1"))
            raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        crash_mid_transaction()
    with store.transaction() as tx:
        assert tx.recording_by_call("rb-1") is None


def test_claim_due_takes_due_unheld_unannounced_only(store: Any) -> None:
    with store.transaction() as tx:
        tx.insert_recording(recording("due-1", due=NOW - timedelta(seconds=5)))
        tx.insert_recording(recording("due-2", due=NOW - timedelta(seconds=1)))
        tx.insert_recording(recording("later", due=NOW + timedelta(seconds=1)))
        tx.insert_recording(replace(recording("held", due=NOW - timedelta(days=1)), held=True))
        tx.insert_recording(
            replace(recording("told", due=NOW - timedelta(days=1)), due_announced_at=NOW)
        )
        tx.insert_recording(
            recording("gone", due=NOW - timedelta(days=2), status=RecordingStatus.PURGED)
        )
    with store.transaction() as tx:
        assert [r.call_id for r in tx.claim_due(NOW, 10)] == ["due-1", "due-2"]
        assert [r.call_id for r in tx.claim_due(NOW, 1)] == ["due-1"]
        count, oldest = tx.overdue_summary(NOW)
        assert count == 3  # due-1, due-2 and the announced one; not held, not purged
        assert oldest == NOW - timedelta(days=1)


def test_policy_rescheduling_agrees_with_the_domain_calendar(store: Any) -> None:
    leap = datetime(2024, 2, 29, 23, 30, tzinfo=UTC)
    with store.transaction() as tx:
        tx.insert_recording(recording("leap", collected=leap, due=leap))
        tx.insert_recording(replace(recording("other", collected=leap, due=leap), tenant="acme"))
    one_year, six_months = IsoDuration.parse("P2Y"), IsoDuration.parse("P6M")
    with store.transaction() as tx:
        assert tx.reschedule("acme", six_months, []) == 1
        assert tx.reschedule(None, one_year, ["acme"]) == 1
        assert tx.reschedule(None, one_year, ["acme"]) == 0  # already on that policy
    with store.transaction() as tx:
        leap_rec, other = tx.recording_by_call("leap"), tx.recording_by_call("other")
    assert (
        leap_rec.retention_due_at
        == one_year.after(leap)
        == datetime(2026, 2, 28, 23, 30, tzinfo=UTC)
    )
    assert other.retention_due_at == six_months.after(leap)
    assert (leap_rec.policy, other.policy) == ("P2Y", "P6M")


def test_subject_keys_find_stored_recordings_only(store: Any) -> None:
    digest, other = b"\x01" * 32, b"\x02" * 32
    with store.transaction() as tx:
        tx.insert_recording(recording("sk-1"))
        tx.insert_recording(recording("sk-2", status=RecordingStatus.PURGED))
        tx.set_subject_keys(recording_id_for("sk-1"), frozenset({digest}))
        tx.set_subject_keys(recording_id_for("sk-2"), frozenset({digest}))
    with store.transaction() as tx:
        assert [r.call_id for r in tx.recordings_matching(frozenset({digest}))] == ["sk-1"]
        assert tx.recordings_matching(frozenset({other})) == []
        assert tx.subject_keys_of(recording_id_for("sk-1")) == frozenset({digest})


def test_holds_cover_by_recording_call_and_subject(store: Any) -> None:
    digest = b"\x07" * 32
    rec = recording("h-1")
    holds = [
        Hold("by-rec", "r", None, HoldScopeKind.RECORDINGS, (rec.recording_id,), placed_at=NOW),
        Hold("by-call", "r", "CASE-9", HoldScopeKind.CALLS, ("h-1",), placed_at=NOW),
        Hold(
            "by-subject",
            "r",
            None,
            HoldScopeKind.SUBJECT,
            subject_digests=frozenset({digest}),
            placed_at=NOW,
        ),
        Hold("released", "r", None, HoldScopeKind.CALLS, ("h-1",), placed_at=NOW, released_at=NOW),
    ]
    with store.transaction() as tx:
        tx.insert_recording(rec)
        for hold in holds:
            tx.save_hold(hold)
    with store.transaction() as tx:
        covering = {h.hold_id for h in tx.holds_covering(rec, frozenset({digest}))}
        assert covering == {"by-rec", "by-call", "by-subject"}
        assert {h.hold_id for h in tx.active_holds()} == covering
        assert tx.hold("by-subject").subject_digests == frozenset({digest})
        assert [r.call_id for r in tx.recordings_in_scope(tx.hold("by-call"))] == ["h-1"]


def test_outbox_audit_dsr_exports(store: Any) -> None:
    event = OutboundEvent("recordings_stored", "k1", {"id": "e1", "data": {"n": 1}})
    with store.transaction() as tx:
        tx.enqueue(event)
        tx.enqueue(OutboundEvent("recordings_stored", "k2", {"id": "e2"}))
        first = tx.append_audit("store", "r1", {"sha256": "ab"}, NOW)
        tx.append_audit("purge", "r1", {"versions_deleted": 2}, NOW + timedelta(seconds=1))
        tx.save_dsr_request(DsrRecord("req-1", "erasure", "partial", NOW, NOW, NOW, ["r9"]))
        tx.add_export("exports/x.zip", "req-2", NOW)
    with store.transaction() as tx:
        pending = tx.unpublished(10)
        assert [e.key for _, e in pending] == ["k1", "k2"]
        assert pending[0][1].cloudevent == event.cloudevent
        tx.mark_published([pending[0][0]])
    with store.transaction() as tx:
        assert [e.key for _, e in tx.unpublished(10)] == ["k2"]
        entries = tx.audit_entries(0, 10)
        assert entries[0].hash == first.hash
        assert verify_chain(entries) == (2, None)
        assert [r.request_id for r in tx.open_dsr_requests()] == ["req-1"]
        assert tx.expired_exports(NOW) == ["exports/x.zip"]
        tx.remove_export("exports/x.zip")
        assert tx.expired_exports(NOW) == []


@pytest.fixture(params=["memory", "s3"])
def objects(request: pytest.FixtureRequest) -> Iterator[tuple[Any, str]]:
    bucket = f"ct-{uuid.uuid4().hex[:10]}"
    if request.param == "memory":
        fake = MemoryObjectStore()
        fake.ensure_bucket(bucket, versioned=True, object_lock=True)
        yield fake, bucket
        return
    instance: Instance = request.getfixturevalue("instance")
    real = object_store(load_settings(**instance.settings_kwargs()))
    real.ensure_bucket(bucket, versioned=True, object_lock=True)
    yield real, bucket
    real.delete_versions(bucket, "a/b.bin", real.list_versions(bucket, "a/b.bin"))
    real.client.remove_bucket(bucket)


def test_object_versions_are_all_deleted(objects: tuple[Any, str]) -> None:
    store, bucket = objects
    store.put_stream(bucket, "a/b.bin", [b"one", b"-part"], content_type="audio/wav")
    store.put_stream(
        bucket,
        "a/b.bin",
        [b"two"],
        content_type="audio/wav",
        retain_until=datetime.now(UTC) + timedelta(days=1),
    )
    assert b"".join(store.get_stream(bucket, "a/b.bin")) == b"two"
    assert list(store.list_keys(bucket, "a/")) == ["a/b.bin"]
    versions = store.list_versions(bucket, "a/b.bin")
    assert len(versions) == 2
    assert store.delete_versions(bucket, "a/b.bin", versions) == 2  # governance bypassed
    assert store.list_versions(bucket, "a/b.bin") == []
    with pytest.raises(ObjectMissing):
        store.get_stream(bucket, "a/b.bin")
    store.delete_object(bucket, "never/there")  # absent is not an error


def test_presigned_get_serves_without_credentials(objects: tuple[Any, str]) -> None:
    store, bucket = objects
    store.put_stream(bucket, "a/b.bin", [b"export"], content_type="application/zip")
    url = store.presigned_get(bucket, "a/b.bin", timedelta(minutes=5))
    if url.startswith("https://memory.invalid/"):  # the fake serves nothing over HTTP
        assert "a/b.bin" in url
        return
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"export"


@pytest.fixture(params=["memory", "kafka"])
def bus(request: pytest.FixtureRequest) -> Iterator[tuple[Any, Any]]:
    """(bus, read(topic) -> list of (key, value))."""
    if request.param == "memory":
        fake = MemoryBus()
        yield fake, lambda topic: [(k, v) for t, k, v in fake.records if t == topic]
        return
    stack: dict[str, str] = request.getfixturevalue("stack")
    real = KafkaBus(stack["CALLVAULT_KAFKA_BOOTSTRAP"], "contract-test")

    def read(topic: str) -> list[tuple[str | None, bytes]]:
        consumer = KafkaConsumer(
            topic,
            bootstrap_servers=stack["CALLVAULT_KAFKA_BOOTSTRAP"],
            auto_offset_reset="earliest",
            consumer_timeout_ms=3000,
        )
        found = [(m.key.decode() if m.key else None, m.value) for m in consumer]
        consumer.close()
        return found

    yield real, read
    real.close()


def test_published_records_are_readable_in_order(bus: tuple[Any, Any]) -> None:
    publisher, read = bus
    topic = f"ct-{uuid.uuid4().hex[:10]}"
    publisher.publish([(topic, "k", b"1"), (topic, "k", b"2"), (topic, None, b"3")])
    records = read(topic)
    assert [v for k, v in records if k == "k"] == [b"1", b"2"]  # per key, in order
    assert sorted(v for _, v in records) == [b"1", b"2", b"3"]


def test_delete_markers_are_listed_and_deleted_too(objects: tuple[Any, str]) -> None:
    store, bucket = objects
    store.put_stream(bucket, "a/b.bin", [b"audio"], content_type="audio/wav")
    store.delete_object(bucket, "a/b.bin")  # on a versioned bucket: a delete marker
    versions = store.list_versions(bucket, "a/b.bin")
    assert sorted(v.is_delete_marker for v in versions) == [False, True]
    assert store.delete_versions(bucket, "a/b.bin", versions) == 2
    assert store.list_versions(bucket, "a/b.bin") == []
