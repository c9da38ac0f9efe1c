"""Races on the real PostgreSQL: the locks, the column-owned updates and the holds lock that
the in-memory fake (which serialises every unit of work) cannot show. Each test forces an
interleaving that broke callvault before: one side is paused at the dangerous moment, the
other runs, and the outcome is checked."""

from __future__ import annotations

import math
import struct
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from testbed.stack import Instance
from tests.fakes.letters import FakeTypesetter
from tests.fakes.memory import MemoryObjectStore
from workers.adapters.keys import software_key_ring
from workers.adapters.postgres import PostgresDatabase
from workers.adapters.postgres.migrate import migrate_schema
from workers.app.context import Context
from workers.app.handlers import holds, ingest, purge, requests
from workers.app.retry import RetryPolicy
from workers.bootstrap import bootstrap
from workers.domain.audio import pcm_wav
from workers.domain.identifiers import Subject, subject_keys
from workers.domain.keyed import HmacKey
from workers.domain.messages import (
    CarryOutRequest,
    PlaceHold,
    ReleaseHold,
    ResumeErasures,
    StoreCall,
)
from workers.domain.model import (
    CallEnded,
    DsrRequest,
    DsrType,
    Hold,
    HoldScopeKind,
    PurgeReason,
    call_digest,
    recording_id_for,
)
from workers.domain.uris import AudioLocation
from workers.settings import Settings, load_settings

KEY = bytes(range(32))
HASHER = HmacKey(KEY)
RING: dict[str, Any] = {
    "master_keys": {"m1": KEY},
    "current_master": "m1",
    "hash_key": KEY,
    "signing_seed": KEY,
    "signing_key_id": "k",
}
CUSTOMER = "+370 612 34567"


def _wav() -> bytes:
    frames = b"".join(struct.pack("<h", int(3000 * math.sin(i / 5))) for i in range(4000))
    return pcm_wav(frames)


WAV = _wav()


class PausableSource:
    """Audio that can stop half-way until the test lets it go on."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.go_on = threading.Event()
        self.go_on.set()

    def open(self, where: AudioLocation) -> Iterator[bytes]:
        yield WAV[:2048]
        self.reached.set()
        assert self.go_on.wait(30)
        yield WAV[2048:]


@pytest.fixture
def world(instance: Instance) -> Iterator[tuple[Context, PostgresDatabase, Settings]]:
    settings = load_settings(
        **(instance.settings_kwargs() | {"fetch_allowed_hosts": "pbx.example"})
    )
    migrate_schema(instance.migration_settings())
    objects = MemoryObjectStore()
    for bucket in (settings.vault_bucket, settings.export_bucket, settings.landing_bucket):
        objects.ensure_bucket(bucket, versioned=bucket == settings.vault_bucket, object_lock=False)
    built = bootstrap(
        settings.model_copy(update={"db_pool_size": 8}),
        objects=objects,
        keys=software_key_ring(**RING),
        retry=RetryPolicy(budget_seconds=20),
        typesetter=FakeTypesetter(),
    )
    try:
        yield built.ctx, built.database, settings
    finally:
        built.close()


def call(call_id: str, ended: datetime | None = None) -> CallEnded:
    ended = ended or datetime.now(UTC)
    return CallEnded.from_data(
        f"e-{call_id}",
        {
            "call_id": call_id,
            "direction": "inbound",
            "caller": CUSTOMER,
            "callee": "+370 521 44500",
            "started_at": (ended - timedelta(minutes=2)).isoformat(),
            "ended_at": ended.isoformat(),
            "notice_played": True,
            "recording": {"uri": "https://pbx.example/audio.wav"},
        },
    )


def store(ctx: Context, call_id: str, source: Any = None, ended: datetime | None = None) -> str:
    return ingest.store_call(StoreCall(call(call_id, ended)), ctx, source or PausableSource())


def subject_hold(hold_id: str, ctx: Context) -> Hold:
    digests = subject_keys(
        ctx.keys.hasher, Subject(phone_numbers=(CUSTOMER,)).normalized("LT")
    ).digests
    return Hold(hold_id, "dispute", "K-7", HoldScopeKind.SUBJECT, subject_digests=digests)


def calls_hold(hold_id: str, *call_ids: str) -> Hold:
    targets = tuple(call_digest(HASHER, c) for c in call_ids)
    return Hold(hold_id, "dispute", None, HoldScopeKind.CALLS, targets=targets)


def row(settings: Settings, call_id: str) -> dict[str, Any]:
    rid = recording_id_for(HASHER, call_id)
    with psycopg.connect(settings.dsn) as conn:
        cur = conn.execute("SELECT * FROM recordings WHERE recording_id = %s", (rid,))
        names = [c.name for c in cur.description or []]
        found = cur.fetchone()
    assert found is not None
    return dict(zip(names, found, strict=True))


def in_thread(action: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    result: list[object] = []

    def run() -> None:
        try:
            result.append(action())
        except BaseException as exc:  # noqa: BLE001 - handed to the test's assertions
            result.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def waiting_on_a_lock(settings: Settings, timeout: float = 20) -> None:
    """Until some backend of this database waits for a lock (the readiness signal that the
    other side is blocked where the test wants it)."""
    deadline = datetime.now(UTC) + timedelta(seconds=timeout)
    with psycopg.connect(settings.dsn, autocommit=True) as conn:
        while datetime.now(UTC) < deadline:
            found = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            ).fetchone()
            if found and found[0]:
                return
            conn.execute("SELECT pg_sleep(0.05)")
    raise AssertionError("nobody waited for the lock")


# --- holds against purges, ingest and requests ------------------------------------------------


def test_a_hold_placed_during_a_purge_never_resurrects_the_recording(
    world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, _, settings = world
    store(ctx, "c1", ended=datetime.now(UTC) - timedelta(days=400))
    rid = recording_id_for(HASHER, "c1")
    shredded, go_on = threading.Event(), threading.Event()
    original = purge._delete_versions

    def paused(recording: Any, context: Any) -> None:
        shredded.set()  # the data key is destroyed; the objects are still there
        assert go_on.wait(30)
        original(recording, context)

    monkeypatch.setattr(purge, "_delete_versions", paused)
    purging, _ = in_thread(lambda: purge.purge([rid], PurgeReason.RETENTION, ctx))
    assert shredded.wait(30)
    assert holds.place_hold(PlaceHold(calls_hold("H1", "c1")), ctx) == "placed"
    go_on.set()
    purging.join(30)
    after = row(settings, "c1")
    assert after["status"] == "purged"
    assert after["wrapped_key"] is None
    assert after["held"] is False


def test_a_hold_committed_before_an_ingest_commit_covers_the_call(world: Any) -> None:
    ctx, db, settings = world
    with db.unit_of_work() as uow:  # compliance is placing a subject hold right now
        uow.lock_holds(exclusive=True)
        hold = subject_hold("H1", ctx)
        hold.place(datetime.now(UTC), ())
        uow.holds.add(hold)
        storing, result = in_thread(lambda: store(ctx, "c1"))
        waiting_on_a_lock(settings)  # the ingest commit waits for the hold to be decided
        uow.commit()
    storing.join(30)
    assert result == ["stored"]
    assert row(settings, "c1")["held"] is True


def test_a_subject_hold_placed_mid_upload_covers_the_call(world: Any) -> None:
    ctx, _, settings = world
    source = PausableSource()
    source.go_on.clear()
    storing, result = in_thread(lambda: store(ctx, "c1", source))
    assert source.reached.wait(30)
    assert holds.place_hold(PlaceHold(subject_hold("H1", ctx)), ctx) == "placed"
    source.go_on.set()
    storing.join(30)
    assert result == ["stored"]
    assert row(settings, "c1")["held"] is True


def test_release_racing_an_ingest_never_leaves_a_recording_held_for_nothing(world: Any) -> None:
    ctx, _, settings = world
    assert holds.place_hold(PlaceHold(subject_hold("H1", ctx)), ctx) == "placed"
    source = PausableSource()
    source.go_on.clear()
    storing, _ = in_thread(lambda: store(ctx, "c1", source))
    assert source.reached.wait(30)
    assert holds.release_hold(ReleaseHold("H1"), ctx) == "released"
    source.go_on.set()
    storing.join(30)
    assert row(settings, "c1")["held"] is False


def test_release_old_and_place_renewed_hold_at_once_keeps_the_recordings_held(world: Any) -> None:
    ctx, _, settings = world
    for n in range(3):
        store(ctx, f"c{n}")
    assert holds.place_hold(PlaceHold(calls_hold("H1", "c0", "c1", "c2")), ctx) == "placed"
    barrier = threading.Barrier(2)

    def release() -> str:
        barrier.wait()
        return holds.release_hold(ReleaseHold("H1"), ctx)

    def renew() -> str:
        barrier.wait()
        return holds.place_hold(PlaceHold(calls_hold("H2", "c0", "c1", "c2")), ctx)

    threads = [in_thread(release), in_thread(renew)]
    for thread, _ in threads:
        thread.join(30)
    assert [r for _, r in threads] == [["released"], ["placed"]]
    assert all(row(settings, f"c{n}")["held"] for n in range(3))


def test_release_racing_a_restriction_loses_neither_change(world: Any) -> None:
    ctx, db, settings = world
    store(ctx, "c1")
    assert holds.place_hold(PlaceHold(calls_hold("H1", "c1")), ctx) == "placed"
    rid = recording_id_for(HASHER, "c1")
    with db.unit_of_work() as uow:  # the restriction has read and locked the row...
        (recording,) = uow.recordings.lock([rid])
        releasing, _ = in_thread(lambda: holds.release_hold(ReleaseHold("H1"), ctx))
        waiting_on_a_lock(settings)  # ...and the release waits for it
        recording.restrict(True)
        uow.recordings.update(recording)
        uow.commit()
    releasing.join(30)
    after = row(settings, "c1")
    assert after["restricted"] is True
    assert after["held"] is False


def _erasure(request_id: str) -> CarryOutRequest:
    subject = Subject(phone_numbers=(CUSTOMER,))
    return CarryOutRequest(
        DsrRequest("e", request_id, DsrType.ERASURE, datetime.now(UTC), True, subject)
    )


def _request_status(settings: Settings, request_id: str) -> tuple[str, list[str]]:
    with psycopg.connect(settings.dsn) as conn:
        found = conn.execute(
            "SELECT status, pending FROM dsr_requests WHERE request_id = %s", (request_id,)
        ).fetchone()
    assert found is not None
    return found[0], [str(p) for p in found[1] or ()]


def _resumes_due(settings: Settings, rid: str) -> int:
    with psycopg.connect(settings.dsn) as conn:
        found = conn.execute(
            "SELECT count(*) FROM followups WHERE kind = 'resume_erasures' "
            "AND payload -> 'recording_ids' ? %s",
            (rid,),
        ).fetchone()
    return int(found[0]) if found else 0


def _dispatched(settings: Settings) -> None:
    with psycopg.connect(settings.dsn) as conn:
        conn.execute("DELETE FROM followups WHERE kind = 'resume_erasures'")


@pytest.mark.parametrize("release_while", ["answer_not_begun", "answer_in_its_transaction"])
def test_a_release_during_an_erasure_never_leaves_it_waiting_for_ever(
    world: Any, monkeypatch: pytest.MonkeyPatch, release_while: str
) -> None:
    """The erasure skipped the held recording; the hold is released before its answer is
    committed. Either the answer sees the release, or the release sees the answer waiting:
    a resume is due either way, and it completes the request (chaos found it ``partial`` for
    ever)."""
    ctx, _, settings = world
    store(ctx, "c1")
    rid = recording_id_for(HASHER, "c1")
    assert holds.place_hold(PlaceHold(calls_hold("H1", "c1")), ctx) == "placed"
    paused, go_on = threading.Event(), threading.Event()
    where = "purge" if release_while == "answer_not_begun" else "_resume_if_released"
    original = getattr(requests, where)

    def pausing(*args: Any) -> Any:
        done = original(*args)
        paused.set()
        assert go_on.wait(30)
        return done

    monkeypatch.setattr(requests, where, pausing)
    erasing, answer = in_thread(lambda: requests.carry_out_request(_erasure("R1"), ctx))
    assert paused.wait(30)
    releasing, released = in_thread(lambda: holds.release_hold(ReleaseHold("H1"), ctx))
    if release_while == "answer_in_its_transaction":
        waiting_on_a_lock(settings)  # the release waits for the answer's holds lock
    else:  # the release and the follow-up it wrote are done before the erasure answers
        releasing.join(30)
        assert requests.resume_erasures(ResumeErasures((rid,)), ctx) == "answered:0"
        _dispatched(settings)
    go_on.set()
    erasing.join(30)
    releasing.join(30)
    assert answer == ["partial"]
    assert released == ["released"]
    assert _request_status(settings, "R1") == ("partial", [rid])
    assert _resumes_due(settings, rid) == 1
    assert requests.resume_erasures(ResumeErasures((rid,)), ctx) == "answered:1"
    assert _request_status(settings, "R1")[0] == "completed"
    assert row(settings, "c1")["status"] == "purged"


def test_a_restriction_computed_from_a_stale_row_does_not_undo_a_release(world: Any) -> None:
    ctx, db, settings = world
    store(ctx, "c1")
    holds.place_hold(PlaceHold(calls_hold("H1", "c1")), ctx)
    rid = recording_id_for(HASHER, "c1")
    request = DsrRequest(
        "e", "R1", DsrType.RESTRICTION, datetime.now(UTC), True, Subject(phone_numbers=(CUSTOMER,))
    )
    with db.unit_of_work() as uow:
        stale = uow.recordings.get(rid)
    holds.release_hold(ReleaseHold("H1"), ctx)
    assert requests.carry_out_request(CarryOutRequest(request), ctx) == "completed"
    assert stale is not None
    assert stale.held  # what a whole-row write would have put back
    after = row(settings, "c1")
    assert (after["held"], after["restricted"]) == (False, True)


# --- the scheduler, the outbox and the holds lock ------------------------------------------------


def test_two_schedulers_never_claim_the_same_recording(world: Any) -> None:
    ctx, db, _ = world
    for n in range(6):
        store(ctx, f"c{n}", ended=datetime.now(UTC) - timedelta(days=400))
    now = datetime.now(UTC)
    with db.unit_of_work() as first, db.unit_of_work() as second:
        a = first.recordings.claim_due(now, 4)
        b = second.recordings.claim_due(now, 4)
    assert len(a) == 4
    assert len(b) == 2
    assert not {r.recording_id for r in a} & {r.recording_id for r in b}


def test_an_exclusive_holds_lock_waits_for_shared_ones(world: Any) -> None:
    _, db, settings = world
    order: list[str] = []
    with db.unit_of_work() as reader:
        reader.lock_holds(exclusive=False)

        def hold_change() -> None:
            with db.unit_of_work() as uow:
                uow.lock_holds(exclusive=True)
                order.append("exclusive")

        changing, _ = in_thread(hold_change)
        waiting_on_a_lock(settings)  # the hold change waits for the ingest or purge in flight
        order.append("shared released")
    changing.join(30)
    assert order == ["shared released", "exclusive"]


def test_two_relays_publish_disjoint_rows_in_commit_order(world: Any) -> None:
    ctx, db, _ = world
    for n in range(4):
        store(ctx, f"c{n}")
    with db.pending(2) as first, db.pending(10) as second:
        ids = [r.id for r in first] + [r.id for r in second]
    assert len(ids) == 4
    assert len(set(ids)) == 4
    assert [r.id for r in first] == sorted(r.id for r in first)


def test_row_locks_are_taken_in_id_order(world: Any) -> None:
    ctx, db, _ = world
    for n in range(5):
        store(ctx, f"c{n}")
    ids = [recording_id_for(HASHER, f"c{n}") for n in range(5)]
    with db.unit_of_work() as uow:
        locked = uow.recordings.lock(list(reversed(ids)))
    assert [r.recording_id for r in locked] == sorted(ids)


def test_a_stored_recording_and_its_event_commit_together(world: Any) -> None:
    ctx, db, settings = world
    store(ctx, "c1")
    with db.pending(10) as rows:
        assert [(r.topic, r.key) for r in rows] == [
            ("recordings_stored", recording_id_for(HASHER, "c1"))
        ]
    assert row(settings, "c1")["status"] == "stored"


# --- group commit: concurrent stores share transactions ---------------------------------------


def _stored_proof(settings: Settings, call_ids: list[str]) -> tuple[int, int, int]:
    """Rows, look-up digests and outbox events of these calls' recordings."""
    ids = [recording_id_for(HASHER, c) for c in call_ids]
    with psycopg.connect(settings.dsn) as conn:
        found = conn.execute(
            "SELECT (SELECT count(*) FROM recordings WHERE recording_id = ANY(%(ids)s::uuid[])),"
            " (SELECT count(*) FROM subject_keys WHERE recording_id = ANY(%(ids)s::uuid[])),"
            " (SELECT count(*) FROM outbox WHERE topic = 'recordings_stored'"
            "  AND key = ANY(%(keys)s))",
            {"ids": ids, "keys": ids},
        ).fetchone()
    assert found is not None
    return found[0], found[1], found[2]


def test_stores_committing_at_once_each_keep_their_row_digests_and_event(world: Any) -> None:
    ctx, _, settings = world
    call_ids = [f"g{n:02d}" for n in range(12)]
    started = [in_thread(lambda c=c: store(ctx, c)) for c in call_ids]
    for thread, _ in started:
        thread.join(60)
    assert [result for _, result in started] == [["stored"]] * len(call_ids)
    assert _stored_proof(settings, call_ids) == (12, 12, 12)


def test_two_workers_storing_the_same_calls_in_opposite_orders_store_each_once(
    world: Any, instance: Instance
) -> None:
    """Their groups lock the same rows; members run in recording-id order, so the groups
    never wait for each other in a cycle, and each call is stored by one of them."""
    ctx, _, settings = world
    other = bootstrap(
        settings.model_copy(update={"db_pool_size": 8}),
        objects=ctx.objects,
        keys=software_key_ring(**RING),
        retry=RetryPolicy(budget_seconds=20),
        typesetter=FakeTypesetter(),
    )
    call_ids = [f"o{n:02d}" for n in range(8)]
    try:
        runs = [in_thread(lambda c=c: store(ctx, c)) for c in call_ids]
        runs += [in_thread(lambda c=c: store(other.ctx, c)) for c in reversed(call_ids)]
        for thread, _ in runs:
            thread.join(60)
    finally:
        other.close()
    outcomes = [result[0] for _, result in runs]
    assert sorted(map(str, outcomes)) == ["duplicate"] * 8 + ["stored"] * 8
    assert _stored_proof(settings, call_ids) == (8, 8, 8)
