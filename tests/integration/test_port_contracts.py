"""One contract suite per port, run against the fake and the real adapter alike, so that unit
tests on fakes say something true about production."""

from __future__ import annotations

import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kafka import KafkaConsumer

from testbed.stack import Instance, database
from tests.contracts import covers
from tests.fakes.letters import FakeTypesetter
from tests.fakes.memory import MemoryBus, MemoryDatabase, MemoryObjectStore
from workers.adapters.kafka.bus import KafkaBus
from workers.adapters.postgres import PostgresDatabase
from workers.adapters.postgres.migrate import migrate_schema
from workers.app.ports.audio import AudioSource
from workers.app.ports.bus import EventBus
from workers.app.ports.console import RequestPublisher
from workers.app.ports.letters import Typesetter
from workers.app.ports.objects import Buckets, LegalHolds, ObjectMissing, ObjectStore, VersionRef
from workers.app.ports.unit_of_work import (
    Database,
    DeadLetterLedger,
    Discard,
    DiscardRepository,
    ErasedSubject,
    ExportRecord,
    ExportRepository,
    FollowUpQueue,
    HoldRepository,
    KeyCheckRepository,
    Outbox,
    Partitions,
    PolicyRepository,
    RecordingCounts,
    RecordingRepository,
    RecordingScans,
    RequestRepository,
    UnitOfWork,
)
from workers.bootstrap import object_store
from workers.domain.audit import verify_chain
from workers.domain.calendar import LocalCalendar
from workers.domain.errors import FetchFailed, TransientError
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
    migrate_schema(instance.migration_settings())
    db = database(load_settings(**instance.settings_kwargs()).dsn, clock=lambda: NOW)
    db.open()
    return db


@pytest.fixture(params=["memory", "postgres"])
def db(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "memory":
        fake = MemoryDatabase(source="urn:test", clock=lambda: NOW)
        yield fake
        fake.close()
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


@covers(
    Database.unit_of_work,
    Database.close,
    UnitOfWork.commit,
    RecordingRepository.add,
    RecordingRepository.get,
    RecordingRepository.by_call,
    RecordingRepository.digests_of,
)
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


@covers(RecordingRepository.add, DiscardRepository.add)
def test_a_discarded_call_is_never_stored(db: Any) -> None:
    with db.unit_of_work() as uow:
        assert uow.discards.add(Discard("digest-c1", "default", NOW, None))
        uow.commit()
    with db.unit_of_work() as uow:
        assert not uow.recordings.add(recording("c1"), frozenset({D1}))
        uow.commit()
    with db.unit_of_work() as uow:
        assert uow.recordings.by_call("digest-c1") is None
        assert uow.recordings.matching(frozenset({D1})) == []


@covers(RecordingRepository.update)
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


@covers(UnitOfWork.record, UnitOfWork.audit_entries)
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


@covers(RecordingRepository.claim_due)
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


@covers(RecordingRepository.reschedule)
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


@covers(RecordingRepository.matching)
def test_subject_digests_find_recordings_not_yet_purged(db: Any) -> None:
    live, purged, elsewhere = recording("live"), recording("gone"), recording("lv", tenant="lv")
    purged.status = RecordingStatus.PURGED
    add(db, live, purged, elsewhere, digests=frozenset({D1}))
    with db.unit_of_work() as uow:
        assert [r.call_id for r in uow.recordings.matching(frozenset({D1}))] == ["live", "lv"]
        assert [r.call_id for r in uow.recordings.matching(frozenset({D1}), "lv")] == ["lv"]
        assert uow.recordings.matching(frozenset({D2})) == []


# --- holds -----------------------------------------------------------------------------------


@covers(
    HoldRepository.add,
    HoldRepository.get,
    HoldRepository.update,
    HoldRepository.active,
    HoldRepository.covered,
    HoldRepository.covering,
    RecordingRepository.in_scope,
)
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


@covers(
    RequestRepository.add,
    RequestRepository.get,
    RequestRepository.update,
    RequestRepository.open,
    RequestRepository.waiting_for,
    RequestRepository.scrub_answer_urls,
    ExportRepository.add,
    ExportRepository.containing,
    ExportRepository.expired,
    ExportRepository.remove,
    DiscardRepository.add,
    DiscardRepository.get,
    PolicyRepository.set,
    PolicyRepository.current,
    PolicyRepository.remove_others,
)
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
        uow.exports.remove("exports/a.zip")
        uow.policies.set("shop-lv", "P6M", NOW)
        uow.policies.set("shop-ee", "P2Y", NOW)
        uow.policies.remove_others(["*", "shop-lv"])  # the settings no longer name shop-ee
        uow.commit()
    with db.unit_of_work() as uow:
        scrubbed = uow.requests.get("R1")
        assert scrubbed is not None
        assert scrubbed.result["letter"] == {"format": "pdf"}
        assert uow.exports.containing(["rid-1"]) == []
        assert uow.policies.current() == {"*": "P1Y", "shop-lv": "P6M"}


@covers(Outbox.pending, Outbox.outbox_backlog, FollowUpQueue.claim)
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
    backlog, oldest = db.outbox_backlog()
    assert backlog == 1
    assert oldest is not None
    with db.pending(10) as rows:
        assert [row.topic for row in rows] == ["retention_due"]
    with db.pending(10) as rows:
        assert rows == []  # published rows are forgotten
    assert db.outbox_backlog() == (0, None)
    with db.claim() as follow_up:
        assert follow_up is None  # announcing alone schedules nothing; the scheduler does


@covers(FollowUpQueue.claim, FollowUpQueue.give_up, FollowUpQueue.follow_up_backlog)
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


@covers(FollowUpQueue.parked_follow_ups, FollowUpQueue.parked_count, FollowUpQueue.retry_parked)
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


@covers(
    RecordingRepository.get_many,
    RecordingRepository.update_many,
    RecordingRepository.replace_digests,
    RecordingRepository.forget_digests,
)
def test_a_batch_is_written_at_once_and_look_up_digests_replaced_or_forgotten(db: Any) -> None:
    a, b, c = recording("a"), recording("b"), recording("c")
    add(db, a, b, c, digests=frozenset({D1}))
    ids = sorted((a.recording_id, b.recording_id))
    with db.unit_of_work() as uow:
        batch = uow.recordings.lock(ids)
        for found in batch:
            found.shred(PurgeReason.RETENTION, 1)
        uow.recordings.update_many(batch)
        uow.recordings.forget_digests(ids)
        uow.recordings.replace_digests(c.recording_id, frozenset({D2}))
        uow.commit()
    with db.unit_of_work() as uow:
        found = uow.recordings.get_many([c.recording_id, *ids, "not-an-id"])
        assert [r.recording_id for r in found] == sorted((*ids, c.recording_id))
        assert [r.status for r in found if r.recording_id in ids] == [RecordingStatus.PURGING] * 2
        assert uow.recordings.digests_of(a.recording_id) == frozenset()
        assert uow.recordings.digests_of(c.recording_id) == frozenset({D2})
        assert [r.call_id for r in uow.recordings.matching(frozenset({D1, D2}))] == ["c"]


@covers(RecordingScans.page, RecordingScans.stalled, RecordingScans.held_flags_in_doubt)
def test_scans_find_what_the_background_duties_must_look_at(db: Any) -> None:
    purging = recording("purging", status=RecordingStatus.PURGING)
    announced = recording("announced", due=NOW - timedelta(days=2))
    announced.due_announced_at = NOW - timedelta(hours=2)
    fresh = recording("fresh", due=NOW - timedelta(days=2))
    fresh.due_announced_at = NOW - timedelta(minutes=1)
    flagged = recording("flagged")  # held, but no hold in force says so
    flagged.held = True
    add(db, purging, announced, fresh, flagged)
    everyone = sorted(r.recording_id for r in (purging, announced, fresh, flagged))
    with db.unit_of_work() as uow:
        first = uow.scans.page("", 3)
        rest = uow.scans.page(first[-1].recording_id, 3)
        stalled = uow.scans.stalled(NOW - timedelta(hours=1), 10)
        in_doubt = uow.scans.held_flags_in_doubt()
    assert [r.recording_id for r in first + rest] == everyone
    assert sorted(stalled) == sorted((purging.recording_id, announced.recording_id))
    assert flagged.recording_id in in_doubt


@covers(
    RecordingCounts.overdue_summary, RecordingCounts.held_count, RecordingCounts.count_by_status
)
def test_counts_for_the_gauges_and_the_operators(db: Any) -> None:
    overdue = recording("overdue", due=NOW - timedelta(days=3))
    held = recording("held", due=NOW - timedelta(days=5))
    held.held = True
    later = recording("later", due=NOW + timedelta(days=1))
    gone = recording("gone", status=RecordingStatus.PURGED)
    add(db, overdue, held, later, gone)
    with db.unit_of_work() as uow:
        assert uow.counts.overdue_summary(NOW) == (1, NOW - timedelta(days=3))
        assert uow.counts.held_count() == 1
        assert uow.counts.count_by_status() == {"stored": 3, "purged": 1, "held": 1}


@covers(HoldRepository.replace_call_digests)
def test_a_call_holds_digests_follow_a_hash_key_rotation(db: Any) -> None:
    a = recording("a")
    add(db, a)
    hold = Hold("h-c", "dispute", None, HoldScopeKind.CALLS, ("digest-old",))
    hold.place(NOW, ())
    with db.unit_of_work() as uow:
        uow.holds.add(hold)
        uow.holds.replace_call_digests("h-c", ("digest-a",))
        uow.commit()
    with db.unit_of_work() as uow:
        found = uow.holds.get("h-c")
        assert found is not None
        assert found.targets == ("digest-a",)
        assert [r.call_id for r in uow.recordings.in_scope(found, lock=False)] == ["a"]


@covers(
    RequestRepository.remember_erased,
    RequestRepository.erasures_covering,
    RequestRepository.forget_erased,
)
def test_an_erased_subjects_late_calls_are_caught_until_it_is_forgotten(db: Any) -> None:
    later = NOW + timedelta(days=30)
    erasure = ErasedSubject("R-e", frozenset({D1}), NOW, False, later)
    objection = ErasedSubject("R-o", frozenset({D2}), NOW, True, later)
    with db.unit_of_work() as uow:
        for request_id in ("R-e", "R-o"):
            uow.requests.add(RequestRecord(request_id, "erasure", "completed", NOW, later))
        uow.requests.remember_erased(erasure)
        uow.requests.remember_erased(objection)
        uow.commit()
    before, after = NOW - timedelta(hours=1), NOW + timedelta(hours=1)
    with db.unit_of_work() as uow:
        # a call collected before the request is erased; one after only under an objection
        assert uow.requests.erasures_covering(frozenset({D1}), before, NOW) == ["R-e"]
        assert uow.requests.erasures_covering(frozenset({D1}), after, NOW) == []
        assert uow.requests.erasures_covering(frozenset({D2}), after, NOW) == ["R-o"]
        assert uow.requests.erasures_covering(frozenset({b"\x09" * 32}), before, NOW) == []
        assert uow.requests.forget_erased(NOW) == 0
        assert uow.requests.forget_erased(later) == 2
        uow.commit()
    with db.unit_of_work() as uow:
        assert uow.requests.erasures_covering(frozenset({D1, D2}), before, NOW) == []


@covers(
    UnitOfWork.lock_holds,
    UnitOfWork.audit_head,
    UnitOfWork.audit_ranges,
    UnitOfWork.mark_verified,
    UnitOfWork.audit_marks,
)
def test_the_audit_trail_is_checkpointed_per_range(db: Any) -> None:
    with db.unit_of_work() as uow:
        uow.lock_holds(exclusive=True)
        uow.record(
            PolicyApplied("*", None, "P1Y", 0, NOW), PolicyApplied("*", "P1Y", "P2Y", 0, NOW)
        )
        uow.commit()
    with db.unit_of_work() as uow:
        uow.lock_holds(exclusive=False)
        head = uow.audit_head()
        entries = uow.audit_entries(0, 10)
        ranges = uow.audit_ranges()
    assert head is not None
    assert head == entries[-1]
    assert all(
        any((lo is None or lo <= e.seq) and (hi is None or e.seq < hi) for _, lo, hi in ranges)
        for e in entries
    )
    name = next(
        n
        for n, lo, hi in ranges
        if (lo is None or lo <= head.seq) and (hi is None or head.seq < hi)
    )
    signed = {"partition": name, "last_seq": head.seq, "signature": "s"}
    with db.unit_of_work() as uow:
        assert uow.audit_marks() == []
        uow.mark_verified(name, head, signed)
        uow.mark_verified(name, head, signed | {"signature": "t"})  # replaced, not added
        uow.commit()
    with db.unit_of_work() as uow:
        assert uow.audit_marks() == [signed | {"signature": "t"}]


@covers(FollowUpQueue.postpone)
def test_a_postponed_follow_up_waits_its_turn(db: Any) -> None:
    from workers.domain.messages import PurgesScheduled

    with db.unit_of_work() as uow:
        uow.record(PurgesScheduled(("r1",), PurgeReason.RETENTION))
        uow.commit()
    with db.claim() as follow_up:
        assert follow_up is not None
        first = follow_up.id
    # (claimed and done: nothing left) - postponing is for a claim that failed for now
    with db.unit_of_work() as uow:
        uow.record(PurgesScheduled(("r2",), PurgeReason.RETENTION))
        uow.commit()

    def busy_store() -> None:
        with db.claim() as follow_up:
            raise TransientError(f"busy {follow_up.id}")

    with pytest.raises(TransientError) as busy:
        busy_store()
    postponed = int(str(busy.value).split()[-1])
    assert postponed != first
    db.postpone(postponed, 3600, "transient: busy")
    with db.claim() as follow_up:
        assert follow_up is None  # not due for an hour
    assert db.follow_up_backlog() == 1


@covers(Partitions.ensure_partitions, Partitions.stray_rows)
def test_partitions_are_made_ahead_and_nothing_strays(db: Any) -> None:
    db.ensure_partitions()
    assert db.ensure_partitions() == []  # made already
    assert all(count == 0 for count in db.stray_rows().values())


@covers(DeadLetterLedger.discard_dead_letter, DeadLetterLedger.discarded_dead_letters)
def test_discarded_dead_letters_are_remembered_per_topic(db: Any) -> None:
    db.discard_dead_letter("callvault.deadletter", 0, 5, NOW)
    db.discard_dead_letter("callvault.deadletter", 0, 5, NOW)  # twice: one entry
    db.discard_dead_letter("callvault.deadletter", 1, 7, NOW)
    assert db.discarded_dead_letters("callvault.deadletter") == {(0, 5), (1, 7)}
    assert db.discarded_dead_letters("another.deadletter") == set()


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


@covers(
    Buckets.ensure_bucket,
    ObjectStore.put_stream,
    ObjectStore.delete_versions,
    ObjectStore.list_versions,
    ObjectStore.get_stream,
)
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


@covers(LegalHolds.set_legal_hold, LegalHolds.legal_hold)
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


@covers(ObjectStore.get_stream, ObjectStore.delete_object, LegalHolds.set_legal_hold)
def test_missing_objects_are_a_fact_not_a_failure(objects: tuple[Any, str]) -> None:
    store, bucket = objects
    with pytest.raises(ObjectMissing):
        list(store.get_stream(bucket, "nothing-here"))
    with pytest.raises(ObjectMissing):
        store.set_legal_hold(bucket, VersionRef("nothing-here", "v-none"), True)
    store.delete_object(bucket, "nothing-here")  # absent is not an error


@covers(ObjectStore.put_stream, ObjectStore.get_range)
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


@covers(ObjectStore.delete_object, ObjectStore.all_versions, ObjectStore.list_versions)
def test_delete_markers_are_listed_and_deleted_too(objects: tuple[Any, str]) -> None:
    store, bucket = objects
    store.put_stream(bucket, "k", [b"1"], content_type="x")
    store.delete_object(bucket, "k")  # a versioned delete leaves a marker
    listed = store.list_versions(bucket, "k")
    assert sorted(v.is_delete_marker for v in listed) == [False, True]
    every = list(store.all_versions(bucket))
    assert store.delete_versions(bucket, every) == []
    assert store.list_versions(bucket, "k") == []


@covers(ObjectStore.presigned_get)
def test_presigned_get_serves_without_credentials(objects: tuple[Any, str]) -> None:
    store, bucket = objects
    store.put_stream(bucket, "export.zip", [b"PK\x03\x04zip"], content_type="application/zip")
    url = store.presigned_get(bucket, "export.zip", timedelta(minutes=5))
    if isinstance(store, MemoryObjectStore):
        assert url.startswith("https://memory.invalid/")
        return
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"PK\x03\x04zip"


@covers(Buckets.ensure_bucket, Buckets.has_object_lock, ObjectStore.is_versioned)
def test_buckets_are_set_up_as_asked(objects: tuple[Any, str]) -> None:
    store, bucket = objects
    plain = f"{bucket}-plain"
    store.ensure_bucket(plain, versioned=False, object_lock=False)
    store.ensure_bucket(plain, versioned=False, object_lock=False)  # again: nothing changes
    try:
        assert (store.is_versioned(bucket), store.has_object_lock(bucket)) == (True, True)
        assert (store.is_versioned(plain), store.has_object_lock(plain)) == (False, False)
        assert store.put_stream(plain, "k", [b"x"], content_type="x") is None  # no versions
    finally:
        store.delete_object(plain, "k")
        if not isinstance(store, MemoryObjectStore):
            store.client.remove_bucket(plain)


@covers(ObjectStore.list_keys)
def test_keys_are_listed_by_prefix_without_deleted_ones(objects: tuple[Any, str]) -> None:
    store, bucket = objects
    for key in ("a/1", "a/2", "b/1"):
        store.put_stream(bucket, key, [b"x"], content_type="x")
    store.delete_object(bucket, "a/2")  # a delete marker: not a key any more
    assert list(store.list_keys(bucket, "a/")) == ["a/1"]
    assert sorted(store.list_keys(bucket)) == ["a/1", "b/1"]


class Crash(BaseException):
    """The process killed in the middle of an upload (not an error it could clean up after)."""


@covers(Buckets.abort_stale_uploads)
def test_an_upload_a_crash_left_open_is_aborted_later(objects: tuple[Any, str]) -> None:
    store, bucket = objects

    def cut_short() -> Iterator[bytes]:
        yield b"x" * (9 * 2**20)  # more than one part: a multipart upload is begun
        raise Crash

    with pytest.raises(Crash):
        store.put_stream(bucket, "crashed", cut_short(), content_type="x")
    now = datetime.now(UTC)
    assert store.abort_stale_uploads(bucket, now - timedelta(hours=1)) == 0  # not stale yet
    assert store.abort_stale_uploads(bucket, now + timedelta(minutes=5)) == 1
    assert store.abort_stale_uploads(bucket, now + timedelta(minutes=5)) == 0
    assert store.list_versions(bucket, "crashed") == []


@covers(AudioSource.open)
def test_audio_is_read_from_the_landing_bucket_and_the_spool(
    objects: tuple[Any, str], tmp_path: Any
) -> None:
    from workers.adapters.fetch import AudioFetcher
    from workers.domain.uris import AudioLocation

    store, bucket = objects
    store.put_stream(bucket, "landing/call.wav", [b"RIFF", b"audio"], content_type="audio/wav")
    (tmp_path / "call.wav").write_bytes(b"RIFFspooled")
    source = AudioFetcher(store, fetch_root=tmp_path, timeout_seconds=5)
    landed = AudioLocation("s3", bucket, "landing/call.wav")
    assert b"".join(source.open(landed)) == b"RIFFaudio"
    spooled = AudioLocation("file", "", str(tmp_path / "call.wav"))
    assert b"".join(source.open(spooled)) == b"RIFFspooled"
    with pytest.raises(FetchFailed):  # a missing recording is this event's failure, for good
        b"".join(source.open(AudioLocation("s3", bucket, "landing/none.wav")))


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


@covers(EventBus.publish)
def test_published_records_are_readable_in_order(bus: tuple[Any, Any]) -> None:
    publisher, read = bus
    topic = f"contract-{uuid.uuid4().hex[:8]}"
    publisher.publish([(topic, "k1", b"one"), (topic, "k1", b"two"), (topic, None, b"three")])
    records = read(topic)
    assert [v for k, v in records if k == "k1"] == [b"one", b"two"]
    assert (None, b"three") in records


@covers(RequestPublisher.submit)
def test_the_requests_the_dpo_registers_are_sent_as_the_portal_sends_them(
    bus: tuple[Any, Any],
) -> None:
    from workers.adapters.console_outbound import BusRequests
    from workers.adapters.kafka.codec import Codec

    publisher, read = bus
    topic = f"contract-{uuid.uuid4().hex[:8]}"
    data = {
        "request_id": "R-1",
        "type": "access",
        "received_at": "2026-03-01T12:00:00Z",
        "identity_verified": True,
        "subject": {"phone_numbers": ["+37061234567"]},
    }
    BusRequests(lambda: publisher, topic, "urn:test:console").submit("R-1", data)
    ((key, value),) = read(topic)
    envelope = Codec().decode(value, ("callvault.dsr.requested.v1",))
    assert (key, envelope.source, envelope.data) == ("R-1", "urn:test:console", data)


@pytest.mark.parametrize("engine", ["memory", "weasyprint"])
@covers(Typesetter.pdf)
def test_letters_are_typeset_as_pdf(engine: str) -> None:
    from workers.adapters.pdf import WeasyTypesetter

    typesetter: Typesetter = FakeTypesetter() if engine == "memory" else WeasyTypesetter()
    pdf = typesetter.pdf("<html><body><p>Laiškas</p></body></html>", {"a.json": b"{}"})
    assert pdf.startswith(b"%PDF-")


# --- keys ---------------------------------------------------------------------------------------


@covers(
    KeyCheckRepository.put,
    KeyCheckRepository.retire,
    KeyCheckRepository.remove,
    KeyCheckRepository.all,
)
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


@covers(
    RecordingCounts.count_wrapped_elsewhere,
    RecordingScans.wrapped_elsewhere,
    RecordingRepository.lock,
)
def test_recordings_wrapped_under_another_master_key_are_found_in_id_order(db: Any) -> None:
    rows = [recording(f"w{n}") for n in range(4)]
    rows[1].master_key_id = "m2"
    rows[2].master_key_id = None  # an early version's row: not named, so not m2
    rows[3].wrapped_key = None  # purged: nothing to re-wrap
    add(db, *rows)
    expected = sorted(r.recording_id for r in (rows[0], rows[2]))
    with db.unit_of_work() as uow:
        assert uow.counts.count_wrapped_elsewhere("m2") == 2
        assert uow.scans.wrapped_elsewhere("m2", "", 10) == expected
        assert uow.scans.wrapped_elsewhere("m2", expected[0], 10) == expected[1:]
        (locked,) = uow.recordings.lock([expected[0]])
        locked.rewrap(b"n" * 61, "m2")
        uow.recordings.update(locked)
        uow.commit()
    with db.unit_of_work() as uow:
        assert uow.scans.wrapped_elsewhere("m2", "", 10) == expected[1:]
        assert uow.recordings.get(expected[0]).wrapped_key == b"n" * 61


@covers(RecordingRepository.lock)
def test_locking_by_collection_time_finds_the_rows_even_where_the_times_are_wrong(
    db: Any,
) -> None:
    """A purge names the months its recordings were collected in, so that only those
    partitions are searched; a time that does not match (or an id never stored) must not
    make a recording escape its purge."""
    march, june = NOW - timedelta(days=400), NOW - timedelta(days=300)
    a, b = recording("m-a", collected=march), recording("m-b", collected=june)
    add(db, a, b)
    ids = sorted((a.recording_id, b.recording_id))
    for times in ((march, june), (march,), (NOW,)):
        with db.unit_of_work() as uow:
            assert [r.recording_id for r in uow.recordings.lock(ids, times)] == ids
    with db.unit_of_work() as uow:
        found = uow.recordings.lock([*ids, recording("never").recording_id], (march, june))
        assert [r.recording_id for r in found] == ids


@covers(HoldRepository.replace_subject_digests, HoldRepository.reseal)
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
