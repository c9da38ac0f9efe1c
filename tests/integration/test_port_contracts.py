"""One contract suite per port, run against the fake and the real adapter alike, so that unit
tests on fakes say something true about production."""

from __future__ import annotations

import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from kafka import KafkaConsumer

from testbed.stack import Instance
from tests.fakes.memory import MemoryBus, MemoryDatabase, MemoryObjectStore
from workers.adapters.crypto import TextSealer
from workers.adapters.kafka.bus import KafkaBus
from workers.adapters.postgres import PostgresDatabase
from workers.adapters.postgres.migrate import migrate_schema
from workers.app.ports.objects import ObjectMissing, VersionRef
from workers.app.ports.unit_of_work import Discard, ExportRecord
from workers.bootstrap import object_store
from workers.domain.audit import verify_chain
from workers.domain.calendar import LocalCalendar
from workers.domain.identifiers import Subject
from workers.domain.keyed import HmacKey
from workers.domain.messages import PolicyApplied, PurgeRecordings
from workers.domain.model import (
    DsrRequest,
    DsrStatus,
    DsrType,
    Hold,
    HoldScopeKind,
    PurgeReason,
    Recording,
    RecordingStatus,
    RequestRecord,
    object_key_for,
    recording_id_for,
)
from workers.domain.retention import IsoDuration
from workers.settings import load_settings

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
KEY = bytes(32)
D1, D2 = b"\x01" * 32, b"\x02" * 32


def postgres(instance: Instance) -> PostgresDatabase:
    settings = load_settings(**instance.settings_kwargs())
    migrate_schema(instance.migration_settings())
    db = PostgresDatabase(
        settings.dsn, sealer=TextSealer(AESGCM(KEY)), source="urn:test", clock=lambda: NOW
    )
    db.open()
    return db


@pytest.fixture(params=["memory", "postgres"])
def db(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryDatabase(source="urn:test", clock=lambda: NOW)
        return
    real = postgres(request.getfixturevalue("instance"))
    yield real
    real.close()


def recording(
    call_id: str,
    *,
    due: datetime = NOW,
    status: RecordingStatus = RecordingStatus.STORED,
    collected: datetime | None = None,
    tenant: str = "default",
) -> Recording:
    rid = recording_id_for(HmacKey(KEY), call_id)
    return Recording(
        recording_id=rid,
        call_id=call_id,
        call_digest=f"digest-{call_id}",
        tenant=tenant,
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
        object_version="v-1",
        wrapped_key=b"k" * 61,
        master_key_id="m1",
        customer_sealed=b"c" * 40,
    )


def add(db: Any, *recordings: Recording, digests: frozenset[bytes] = frozenset()) -> None:
    with db.unit_of_work() as uow:
        for r in recordings:
            assert uow.recordings.add(r, digests)
        uow.commit()


# --- recordings ------------------------------------------------------------------------------


def test_recordings_round_trip_and_one_per_call(db: Any) -> None:
    first = recording("c1")
    add(db, first, digests=frozenset({D1}))
    with db.unit_of_work() as uow:
        assert not uow.recordings.add(recording("c1"), frozenset())  # the same call again
        found = uow.recordings.get(first.recording_id)
        by_call = uow.recordings.by_call("digest-c1")
        assert uow.recordings.digests_of(first.recording_id) == frozenset({D1})
    assert found == first
    assert by_call == first
    assert found is not None
    assert found.wrapped_key == b"k" * 61


def test_updates_write_only_the_columns_a_method_changed(db: Any) -> None:
    add(db, recording("c1"))
    rid = recording_id_for(HmacKey(KEY), "c1")
    with db.unit_of_work() as uow:
        stale = uow.recordings.get(rid)
    with db.unit_of_work() as uow:
        fresh = uow.recordings.get(rid, lock=True)
        assert fresh is not None
        fresh.shred(PurgeReason.ERASURE, 1)
        uow.recordings.update(fresh)
        uow.commit()
    assert stale is not None
    with db.unit_of_work() as uow:
        stale.restrict(True)  # a change computed from a row read before the shred
        uow.recordings.update(stale)
        uow.commit()
        after = uow.recordings.get(rid)
    assert after is not None
    assert after.status is RecordingStatus.PURGING  # not reverted by the stale row
    assert after.wrapped_key is None
    assert after.restricted


def test_a_unit_of_work_that_is_not_committed_leaves_nothing(db: Any) -> None:
    with db.unit_of_work() as uow:
        uow.recordings.add(recording("c1"), frozenset({D1}))
        uow.record(PolicyApplied("*", None, "P1Y", 0, NOW))
    with db.unit_of_work() as uow:
        assert uow.recordings.by_call("digest-c1") is None
        assert uow.audit_entries(0, 10) == []

    def fails_half_way() -> None:
        with db.unit_of_work() as uow:
            uow.recordings.add(recording("c2"), frozenset())
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        fails_half_way()
    with db.unit_of_work() as uow:
        assert uow.recordings.by_call("digest-c2") is None


def test_claim_due_takes_due_unheld_unannounced_only(db: Any) -> None:
    due = recording("due", due=NOW - timedelta(seconds=1))
    later = recording("later", due=NOW + timedelta(seconds=1))
    held = recording("held", due=NOW - timedelta(days=1))
    held.held = True
    announced = recording("announced", due=NOW - timedelta(days=1))
    announced.due_announced_at = NOW
    add(db, due, later, held, announced)
    with db.unit_of_work() as uow:
        claimed = uow.recordings.claim_due(NOW, 10)
    assert [r.call_id for r in claimed] == ["due"]


def test_policy_rescheduling_agrees_with_the_domain_calendar(db: Any) -> None:
    leap = recording("leap", collected=datetime(2024, 2, 29, 23, 30, tzinfo=UTC))
    other = recording("other", tenant="shop-lv")
    add(db, leap, other)
    policy = IsoDuration.parse("P1Y2M3DT4H")
    with db.unit_of_work() as uow:
        assert uow.recordings.reschedule(None, policy, ["shop-lv"]) == 1
        uow.commit()
        found = uow.recordings.get(leap.recording_id)
        untouched = uow.recordings.get(other.recording_id)
    assert found is not None
    assert found.retention_due_at == policy.after(leap.collected_at)
    assert found.due_announced_at is None
    assert untouched is not None
    assert untouched.policy == "P1Y"


def test_subject_digests_find_recordings_not_yet_purged(db: Any) -> None:
    live, purged, elsewhere = recording("live"), recording("gone"), recording("lv", tenant="lv")
    purged.status = RecordingStatus.PURGED
    add(db, live, purged, elsewhere, digests=frozenset({D1}))
    with db.unit_of_work() as uow:
        assert [r.call_id for r in uow.recordings.matching(frozenset({D1}))] == ["live", "lv"]
        assert [r.call_id for r in uow.recordings.matching(frozenset({D1}), "lv")] == ["lv"]
        assert uow.recordings.matching(frozenset({D2})) == []


# --- holds -----------------------------------------------------------------------------------


def test_holds_cover_by_recording_call_and_subject(db: Any) -> None:
    a, b, c = recording("a"), recording("b"), recording("c")
    add(db, a, b)
    add(db, c, digests=frozenset({D1}))
    holds = [
        Hold("H-rec", "dispute", "K-1", HoldScopeKind.RECORDINGS, (a.recording_id,)),
        Hold("H-call", "dispute", None, HoldScopeKind.CALLS, ("digest-b",)),
        Hold("H-subj", "dispute", None, HoldScopeKind.SUBJECT, subject_digests=frozenset({D1})),
    ]
    with db.unit_of_work() as uow:
        for hold in holds:
            hold.place(NOW, ())
            assert uow.holds.add(hold)
        assert not uow.holds.add(Hold("H-rec", "again", None, HoldScopeKind.CALLS))
        uow.commit()
    with db.unit_of_work() as uow:
        assert uow.holds.covered([a, b, c]) == {a.recording_id, b.recording_id, c.recording_id}
        assert [h.hold_id for h in uow.holds.covering(a.recording_id, "digest-a", frozenset())] == [
            "H-rec"
        ]
        found = uow.holds.get("H-rec")
        scoped = {h.hold_id: [r.call_id for r in uow.recordings.in_scope(h)] for h in holds}
    assert found is not None
    assert (found.reason, found.case_ref) == ("dispute", "K-1")  # sealed at rest, read back
    assert scoped == {"H-rec": ["a"], "H-call": ["b"], "H-subj": ["c"]}
    with db.unit_of_work() as uow:
        hold = uow.holds.get("H-subj", lock=True)
        assert hold is not None
        hold.release(NOW)
        uow.holds.update(hold)
        uow.commit()
        assert uow.holds.covered([c]) == set()
        assert [h.hold_id for h in uow.holds.active()] == ["H-call", "H-rec"]


# --- requests, exports, discards, policies, audit ------------------------------------------


def test_requests_exports_discards_policies(db: Any) -> None:
    request = DsrRequest(
        "e", "R1", DsrType.ERASURE, NOW, True, Subject(emails=("x@y.z",)), language="en"
    )
    with db.unit_of_work() as uow:
        record = RequestRecord.begin(request, {"rid-1": "c1"}, LocalCalendar())
        assert uow.requests.add(record)
        assert not uow.requests.add(RequestRecord.begin(request, {}, LocalCalendar()))
        uow.exports.add(ExportRecord("exports/a.zip", "R0", NOW, ("rid-1",)))
        assert uow.discards.add(Discard("d-1", "default", NOW, "ab" * 32))
        assert not uow.discards.add(Discard("d-1", "default", NOW, None))
        uow.policies.set("*", "P1Y", NOW)
        uow.commit()
    with db.unit_of_work() as uow:
        record = uow.requests.get("R1", lock=True)
        assert record is not None
        assert [r.request_id for r in uow.requests.open()] == ["R1"]
        record.answer(
            DsrStatus.PARTIAL,
            {
                "recordings": [{"recording_id": "rid-1", "call_id": "c1", "outcome": "held"}],
                "letter": {"url": "https://s3.example/letters/l.pdf?sig", "format": "pdf"},
            },
            NOW,
            pending=("rid-1",),
        )
        uow.requests.update(record)
        uow.commit()
        assert uow.requests.waiting_for(["rid-1"]) == ["R1"]
        assert [e.object_key for e in uow.exports.containing(["rid-1"])] == ["exports/a.zip"]
        assert [e.object_key for e in uow.exports.expired(NOW)] == ["exports/a.zip"]
        assert uow.discards.get("d-1") == Discard("d-1", "default", NOW, "ab" * 32)
        assert uow.policies.current() == {"*": "P1Y"}
    with db.unit_of_work() as uow:
        stored = uow.requests.get("R1")
        assert stored is not None
        assert stored.call_ids == {"rid-1": "c1"}  # kept while the request waits
        assert stored.language == "en"  # the answer's letters are written in it
        uow.requests.scrub_answer_urls("R1")  # the letter expired: its link is forgotten
        uow.commit()
    with db.unit_of_work() as uow:
        scrubbed = uow.requests.get("R1")
        assert scrubbed is not None
        assert scrubbed.result["letter"] == {"format": "pdf"}


def test_commit_writes_audit_outbox_and_follow_ups_in_order(db: Any) -> None:
    with db.unit_of_work() as uow:
        uow.record(PolicyApplied("*", None, "P1Y", 0, NOW))
        r = recording("c1")
        r.announce_due(NOW)  # an aggregate's own events
        uow.recordings.add(r, frozenset())
        uow.commit()
    with db.unit_of_work() as uow:
        entries = uow.audit_entries(0, 10)
    assert [e.action for e in entries] == ["policy"]
    assert verify_chain(entries) == (1, None)
    with db.pending(10) as rows:
        assert [row.topic for row in rows] == ["retention_due"]
    with db.pending(10) as rows:
        assert rows == []  # published rows are forgotten
    with db.claim() as follow_up:
        assert follow_up is None  # announcing alone schedules nothing; the scheduler does


def test_follow_ups_are_claimed_once_and_parked_when_they_fail(db: Any) -> None:
    from workers.domain.messages import PurgesScheduled

    with db.unit_of_work() as uow:
        uow.record(PurgesScheduled(("r1", "r2"), PurgeReason.RETENTION))
        uow.commit()
    assert db.follow_up_backlog() == 1
    with db.claim() as first:
        assert first is not None
        assert first.command == PurgeRecordings(("r1", "r2"), PurgeReason.RETENTION)
        with db.claim() as second:
            assert second is None  # claimed by the first, skipped by others
    assert db.follow_up_backlog() == 0  # done when the block ends normally
    with db.unit_of_work() as uow:
        uow.record(PurgesScheduled(("r3",), PurgeReason.ERASURE))
        uow.commit()
    claimed: list[int] = []

    def handler_bug() -> None:
        with db.claim() as follow_up:
            claimed.append(follow_up.id)
            raise RuntimeError("a bug")

    with pytest.raises(RuntimeError):
        handler_bug()
    db.give_up(claimed[0], "internal_error: a bug")
    assert db.follow_up_backlog() == 0
    with db.claim() as nothing:
        assert nothing is None


def test_parked_follow_ups_are_listed_and_made_due_again_on_request(db: Any) -> None:
    from workers.domain.errors import StoreRejected
    from workers.domain.messages import PurgesScheduled

    for ids in (("r1",), ("r2",), ("r3",)):
        with db.unit_of_work() as uow:
            uow.record(PurgesScheduled(ids, PurgeReason.RETENTION))
            uow.commit()
    parked: list[int] = []

    def refused() -> None:
        with db.claim() as follow_up:
            parked.append(follow_up.id)
            raise StoreRejected("AccessDenied")

    for _ in range(3):
        with pytest.raises(StoreRejected):
            refused()
        db.give_up(parked[-1], "store_rejected: AccessDenied")
    assert db.parked_count() == 3
    listed = db.parked_follow_ups(limit=2)
    assert [p.id for p in listed] == parked[:2]  # oldest failure first
    assert {(p.kind, p.attempts, p.error) for p in listed} == {
        ("purge", 1, "store_rejected: AccessDenied")
    }
    assert db.retry_parked([parked[1]]) == 1
    assert db.parked_count() == 2
    with db.claim() as again:
        assert again.id == parked[1]
        assert again.command == PurgeRecordings(("r2",), PurgeReason.RETENTION)
    assert db.retry_parked(None) == 2
    assert db.parked_count() == 0
    assert db.follow_up_backlog() == 2


# --- object stores ---------------------------------------------------------------------------


@pytest.fixture(params=["memory", "s3"])
def objects(request: pytest.FixtureRequest) -> Iterator[tuple[Any, str]]:
    bucket = f"contract-{uuid.uuid4().hex[:10]}"
    if request.param == "memory":
        store: Any = MemoryObjectStore()
    else:
        instance: Instance = request.getfixturevalue("instance")
        store = object_store(load_settings(**instance.settings_kwargs()))
    store.ensure_bucket(bucket, versioned=True, object_lock=True)
    yield store, bucket
    for version in store.all_versions(bucket):
        if not version.is_delete_marker:
            store.set_legal_hold(bucket, version, False)
    store.delete_versions(bucket, list(store.all_versions(bucket)))
    if request.param == "s3":
        store.client.remove_bucket(bucket)


def test_versions_are_deleted_by_id_in_batches(objects: tuple[Any, str]) -> None:
    store, bucket = objects
    written = [store.put_stream(bucket, f"k/{i}", [b"x"], content_type="x") for i in range(3)]
    again = store.put_stream(bucket, "k/0", [b"y"], content_type="x")
    assert None not in written
    refs = [VersionRef(f"k/{i}", v) for i, v in enumerate(written)]
    assert store.delete_versions(bucket, refs) == []
    assert [v.version_id for v in store.list_versions(bucket, "k/0")] == [again]
    assert store.delete_versions(bucket, refs) == []  # absent versions count as deleted
    assert b"".join(store.get_stream(bucket, "k/0", version_id=again)) == b"y"


def test_a_legal_hold_keeps_a_version_until_cleared(objects: tuple[Any, str]) -> None:
    store, bucket = objects
    version = store.put_stream(bucket, "held", [b"audio"], content_type="x")
    ref = VersionRef("held", version)
    store.set_legal_hold(bucket, ref, True)
    assert store.legal_hold(bucket, ref)
    assert store.delete_versions(bucket, [ref]) == [ref]  # refused, returned
    assert store.list_versions(bucket, "held")
    store.set_legal_hold(bucket, ref, False)
    assert store.delete_versions(bucket, [ref]) == []
    assert store.list_versions(bucket, "held") == []


def test_missing_objects_are_a_fact_not_a_failure(objects: tuple[Any, str]) -> None:
    store, bucket = objects
    with pytest.raises(ObjectMissing):
        list(store.get_stream(bucket, "nothing-here"))
    with pytest.raises(ObjectMissing):
        store.set_legal_hold(bucket, VersionRef("nothing-here", "v-none"), True)
    store.delete_object(bucket, "nothing-here")  # absent is not an error


def test_ranges_and_large_streams(objects: tuple[Any, str]) -> None:
    store, bucket = objects
    data = bytes(range(256)) * 50_000  # 12.8 MB: more than one 8 MiB part
    version = store.put_stream(
        bucket,
        "big",
        iter([data[i : i + 65536] for i in range(0, len(data), 65536)]),
        content_type="x",
    )
    assert b"".join(store.get_stream(bucket, "big", version_id=version)) == data
    assert b"".join(store.get_range(bucket, "big", 9_000_000, 10)) == data[9_000_000:9_000_010]


def test_delete_markers_are_listed_and_deleted_too(objects: tuple[Any, str]) -> None:
    store, bucket = objects
    store.put_stream(bucket, "k", [b"1"], content_type="x")
    store.delete_object(bucket, "k")  # a versioned delete leaves a marker
    listed = store.list_versions(bucket, "k")
    assert sorted(v.is_delete_marker for v in listed) == [False, True]
    every = list(store.all_versions(bucket))
    assert store.delete_versions(bucket, every) == []
    assert store.list_versions(bucket, "k") == []


def test_presigned_get_serves_without_credentials(objects: tuple[Any, str]) -> None:
    store, bucket = objects
    store.put_stream(bucket, "export.zip", [b"PK\x03\x04zip"], content_type="application/zip")
    url = store.presigned_get(bucket, "export.zip", timedelta(minutes=5))
    if isinstance(store, MemoryObjectStore):
        assert url.startswith("https://memory.invalid/")
        return
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"PK\x03\x04zip"


# --- the event bus -----------------------------------------------------------------------------


@pytest.fixture(params=["memory", "kafka"])
def bus(request: pytest.FixtureRequest) -> Iterator[tuple[Any, Any]]:
    if request.param == "memory":
        fake = MemoryBus()
        yield fake, lambda topic: [(k, v) for t, k, v in fake.records if t == topic]
        return
    instance: Instance = request.getfixturevalue("instance")
    settings = load_settings(**instance.settings_kwargs())
    real = KafkaBus(settings.kafka, "contract-test")

    def read(topic: str) -> list[tuple[str | None, bytes]]:
        consumer = KafkaConsumer(
            topic,
            bootstrap_servers=settings.kafka,
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
    topic = f"contract-{uuid.uuid4().hex[:8]}"
    publisher.publish([(topic, "k1", b"one"), (topic, "k1", b"two"), (topic, None, b"three")])
    records = read(topic)
    assert [v for k, v in records if k == "k1"] == [b"one", b"two"]
    assert (None, b"three") in records


# --- keys ---------------------------------------------------------------------------------------


def test_key_checks_round_trip_retire_and_replace(db: Any) -> None:
    from workers.app.ports.keys import KeyCheck

    with db.unit_of_work() as uow:
        uow.key_checks.put(KeyCheck("master", "m1", "aa"), NOW)
        uow.key_checks.put(KeyCheck("hash", "current", "bb"), NOW)
        uow.commit()
    with db.unit_of_work() as uow:
        uow.key_checks.retire("master", "m1", NOW)
        uow.key_checks.put(KeyCheck("hash", "current", "cc"), NOW)
        uow.key_checks.remove("hash", "next")  # absent: nothing happens
        uow.commit()
    with db.unit_of_work() as uow:
        stored = {(s.check.kind, s.check.key_id): s for s in uow.key_checks.all()}
    assert stored[("master", "m1")].retired_at == NOW
    assert stored[("hash", "current")].check.value == "cc"
    assert stored[("hash", "current")].retired_at is None


def test_recordings_wrapped_under_another_master_key_are_found_in_id_order(db: Any) -> None:
    rows = [recording(f"w{n}") for n in range(4)]
    rows[1].master_key_id = "m2"
    rows[2].master_key_id = None  # an early version's row: not named, so not m2
    rows[3].wrapped_key = None  # purged: nothing to re-wrap
    add(db, *rows)
    expected = sorted(r.recording_id for r in (rows[0], rows[2]))
    with db.unit_of_work() as uow:
        assert uow.recordings.count_wrapped_elsewhere("m2") == 2
        assert uow.recordings.wrapped_elsewhere("m2", "", 10) == expected
        assert uow.recordings.wrapped_elsewhere("m2", expected[0], 10) == expected[1:]
        (locked,) = uow.recordings.lock([expected[0]])
        locked.rewrap(b"n" * 61, "m2")
        uow.recordings.update(locked)
        uow.commit()
    with db.unit_of_work() as uow:
        assert uow.recordings.wrapped_elsewhere("m2", "", 10) == expected[1:]
        assert uow.recordings.get(expected[0]).wrapped_key == b"n" * 61


def test_a_subject_holds_identifiers_are_kept_sealed_until_its_release(db: Any) -> None:
    pairs = frozenset({("phone", "+37061234567"), ("email", "a@example.com")})
    hold = Hold("h-s", "dispute", "C-1", HoldScopeKind.SUBJECT, subject_digests=frozenset({D1}))
    hold.identifiers = pairs
    hold.place(NOW, ())
    with db.unit_of_work() as uow:
        uow.holds.add(hold)
        uow.commit()
    if isinstance(db, PostgresDatabase):
        with db.connection() as conn:
            (sealed,) = conn.execute("SELECT subject_sealed FROM holds").fetchone().values()
        assert sealed is not None
        assert b"+37061234567" not in bytes(sealed)
    with db.unit_of_work() as uow:
        assert uow.holds.get("h-s").identifiers == pairs
        uow.holds.replace_subject_digests("h-s", frozenset({D2}))
        assert uow.holds.reseal() == 1
        uow.commit()
    with db.unit_of_work() as uow:
        found = uow.holds.get("h-s", lock=True)
        assert (found.subject_digests, found.reason, found.case_ref) == (
            frozenset({D2}),
            "dispute",
            "C-1",
        )
        found.release(NOW)
        uow.holds.update(found)
        uow.commit()
    with db.unit_of_work() as uow:
        assert uow.holds.get("h-s").identifiers == frozenset()
