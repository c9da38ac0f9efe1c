"""Retention as the DPO and ops check it: every recording is announced once when due, then
purged - every object version, the key and the personal metadata - with a provable trail, and
the overdue gauges return to zero."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from conftest import VAULT, World, make_settings

from workers.app.handlers.retention import apply_policy
from workers.domain.audit import verify_chain
from workers.domain.messages import PurgeRecordings
from workers.domain.model import PurgeReason, RecordingStatus

DUE = "2026-03-14T10:21:02Z"  # the default call ends 2025-03-14T10:21:02Z; P1Y later
DUE_FIELDS = {"recording_id", "call_id", "tenant", "due_at", "policy"}
PURGED_FIELDS = {
    "recording_id",
    "call_id",
    "reason",
    "due_at",
    "purged_at",
    "lag_seconds",
    "versions_deleted",
    "sha256",
}


def past_due(world: World, seconds: float = 90) -> None:
    recording = world.recordings()[0]
    world.clock.set(recording.retention_due_at + timedelta(seconds=seconds))


def test_nothing_is_announced_before_it_is_due(world: World) -> None:
    recording = world.store_call("c1")
    world.clock.set(recording.retention_due_at - timedelta(seconds=1))
    assert world.tick() == 0
    assert world.published("retention.due") == []
    assert world.recording("c1").status is RecordingStatus.STORED  # type: ignore[union-attr]


def test_due_recording_is_announced_exactly_once(world: World) -> None:
    recording = world.store_call("c1")
    past_due(world)
    assert world.announce() == 1
    assert world.announce() == 0
    world.clock.advance(seconds=5)
    assert world.announce() == 0
    world.relay_all()
    (event,) = world.published("retention.due")
    assert event["type"] == "callvault.retention.due.v1"
    assert set(event["data"]) == DUE_FIELDS
    assert event["data"] == {
        "recording_id": recording.recording_id,
        "call_id": "c1",
        "tenant": "shop-lt",
        "due_at": DUE,
        "policy": "P1Y",
    }
    ((key, _),) = world.records("retention.due")
    assert key == recording.recording_id


def test_a_scheduled_purge_names_the_months_its_recordings_were_collected_in(
    world: World,
) -> None:
    """So that the purge searches only those months' partitions for its rows."""
    first = world.store_call("c1")
    april = {"started_at": "2025-04-02T08:00:00Z", "ended_at": "2025-04-02T08:05:00Z"}
    second = world.store_call("c2", **april)
    assert first.collected_at != second.collected_at
    world.clock.set(max(first.retention_due_at, second.retention_due_at) + timedelta(seconds=1))
    assert world.announce() == 2
    with world.db.claim() as follow_up:
        assert follow_up is not None
        command = follow_up.command
    assert isinstance(command, PurgeRecordings)
    assert command.collected == tuple(sorted((first.collected_at, second.collected_at)))


def test_purge_deletes_every_version_and_leaves_a_tombstone(world: World) -> None:
    recording = world.store_call("c1")
    key = recording.object_key
    # a second version and a delete marker, as an operator's mistake or a replica may leave
    world.objects.put_stream(VAULT, key, [b"stray copy"], content_type="x")
    world.objects.delete_object(VAULT, key)
    assert len(world.objects.list_versions(VAULT, key)) == 3
    past_due(world, 90)

    assert world.tick() == 1

    assert world.objects.list_versions(VAULT, key) == []  # strays swept right after
    assert world.vault_versions() == {}
    assert world.sample("callvault_purge_strays_total") == 2
    tombstone = world.recording("c1")
    assert tombstone is not None
    assert tombstone.status is RecordingStatus.PURGED
    assert tombstone.wrapped_key is None
    assert tombstone.customer_sealed is None
    assert tombstone.agent_id is None
    assert world.subject_keys_of(tombstone.recording_id) == frozenset()
    assert tombstone.sha256 == recording.sha256  # the proof of what was deleted stays

    (event,) = world.published("recordings.purged")
    assert event["type"] == "callvault.recording.purged.v1"
    data = event["data"]
    assert set(data) == PURGED_FIELDS
    assert data["recording_id"] == recording.recording_id
    assert data["call_id"] == "c1"
    assert data["reason"] == "retention"
    assert data["due_at"] == DUE
    assert data["purged_at"] == "2026-03-14T10:22:32Z"
    assert data["lag_seconds"] == 90
    assert data["versions_deleted"] == 1  # the version callvault wrote; strays are counted apart
    assert data["sha256"] == recording.sha256


def test_purge_is_recorded_in_an_intact_audit_chain(world: World) -> None:
    recording = world.store_call("c1")
    past_due(world)
    world.tick()
    entries = world.audit()
    assert [e.action for e in entries] == ["store", "purge"]
    assert entries[1].entity_id == recording.recording_id
    assert entries[1].details["reason"] == "retention"
    assert verify_chain(world.audit(everything=True)) == (3, None)


def test_repeated_purge_does_not_purge_twice(world: World) -> None:
    recording = world.store_call("c1")
    past_due(world)
    world.tick()
    again = PurgeRecordings((recording.recording_id,), PurgeReason.RETENTION)
    assert world.handle(again) == "purged:0/1"  # a follow-up redone after a crash
    assert len(world.published("recordings.purged")) == 1
    assert world.sample("callvault_recordings_purged_total", {"reason": "retention"}) == 1


def test_purge_metrics_and_overdue_gauges(world: World) -> None:
    world.store_call("c1")
    world.store_call("c2", ended_at="2025-03-14T12:25:02+02:00")  # due 4 minutes later
    world.clock.set(world.recording("c2").retention_due_at + timedelta(seconds=30))  # type: ignore[union-attr]
    world.refresh_gauges()
    assert world.sample("callvault_retention_overdue_recordings") == 2
    assert world.sample("callvault_retention_oldest_overdue_seconds") == 240 + 30

    world.tick()

    world.refresh_gauges()
    assert world.sample("callvault_retention_overdue_recordings") == 0
    assert world.sample("callvault_retention_oldest_overdue_seconds") == 0
    assert world.sample("callvault_purge_lag_seconds_count") == 2
    assert world.sample("callvault_purge_lag_seconds_sum") == 270 + 30
    assert world.sample("callvault_recordings_purged_total", {"reason": "retention"}) == 2


def test_short_retention_purges_within_seconds(make_world: Any) -> None:
    world = make_world(retention="PT60S")
    recording = world.store_call("c1", ended_at="2025-03-14T12:29:30+02:00")
    assert recording.retention_due_at == world.clock.now + timedelta(seconds=30)
    assert world.tick() == 0
    world.clock.advance(seconds=31)
    assert world.tick() == 1
    (purged,) = world.data("recordings.purged")
    assert purged["lag_seconds"] == 1
    assert world.vault_versions() == {}


# --- holds and retention --------------------------------------------------------------------


def test_held_recording_is_neither_announced_nor_purged(world: World) -> None:
    recording = world.store_call("c1")
    assert world.place_hold("H1", {"call_ids": ["c1"]}) == "placed"
    past_due(world, 86400)
    assert world.tick() == 0
    assert world.published("retention.due") == []
    assert world.recording("c1").status is RecordingStatus.STORED  # type: ignore[union-attr]
    assert len(world.objects.list_versions(VAULT, recording.object_key)) == 1
    world.refresh_gauges()
    assert world.sample("callvault_retention_overdue_recordings") == 0  # held is not overdue
    assert world.sample("callvault_holds_active") == 1


def test_hold_placed_after_the_announcement_still_stops_the_purge(world: World) -> None:
    world.store_call("c1")
    past_due(world)
    assert world.announce() == 1  # the purge is scheduled, not yet carried out
    world.place_hold("H1", {"call_ids": ["c1"]})  # the worker settles: the purge sees the hold
    assert world.recording("c1").status is RecordingStatus.STORED  # type: ignore[union-attr]
    assert world.published("recordings.purged") == []


def test_no_purge_while_a_hold_command_is_still_unread(world: World) -> None:
    """A hold published while no worker read the holds topic (one was down) is not in the
    database yet: the purge waits for it rather than miss it."""
    world.store_call("c1")
    past_due(world)
    world.hold_commands.waiting = 1  # published, not yet applied
    assert world.tick() == 1  # announced; its purge waits
    assert world.recording("c1").status is RecordingStatus.STORED  # type: ignore[union-attr]
    assert world.published("recordings.purged") == []
    world.place_hold("H1", {"call_ids": ["c1"]})  # the holds consumer catches up
    world.hold_commands.waiting = 0
    world.clock.advance(minutes=10)  # past the purge's backoff
    world.settle()
    assert world.recording("c1").status is RecordingStatus.STORED  # type: ignore[union-attr]
    assert world.published("recordings.purged") == []
    assert world.release_hold("H1") == "released"
    world.settle()
    (purged,) = world.data("recordings.purged")
    assert purged["reason"] == "retention"


def test_release_after_the_announcement_purges_without_a_second_due_event(world: World) -> None:
    world.store_call("c1")
    past_due(world)
    assert world.announce() == 1
    world.place_hold("H1", {"call_ids": ["c1"]})
    assert world.recording("c1").status is RecordingStatus.STORED  # type: ignore[union-attr]
    assert world.release_hold("H1") == "released"  # purged by the release's follow-up
    assert world.tick() == 0
    world.relay_all()
    assert len(world.data("retention.due")) == 1  # once per recording
    (purged,) = world.data("recordings.purged")
    assert purged["reason"] == "retention"
    assert world.vault_versions() == {}


def test_released_hold_makes_an_overdue_recording_go(world: World) -> None:
    recording = world.store_call("c1")
    world.place_hold("H1", {"recording_ids": [recording.recording_id]})
    past_due(world, 3600)
    assert world.tick() == 0
    assert world.release_hold("H1") == "released"
    assert world.tick() == 1
    (purged,) = world.data("recordings.purged")
    assert purged["reason"] == "retention"
    assert purged["lag_seconds"] == 3600
    assert world.vault_versions() == {}


def test_recording_stays_while_any_of_its_holds_is_active(world: World) -> None:
    recording = world.store_call("c1")
    world.place_hold("H1", {"call_ids": ["c1"]})
    world.place_hold("H2", {"recording_ids": [recording.recording_id]})
    past_due(world)
    world.release_hold("H1")
    assert world.tick() == 0
    assert world.recording("c1").held  # type: ignore[union-attr]
    world.release_hold("H2")
    assert world.tick() == 1
    assert world.recording("c1").status is RecordingStatus.PURGED  # type: ignore[union-attr]


# --- policy changes ---------------------------------------------------------------------------


def test_shortened_policy_applies_to_stored_recordings(world: World) -> None:
    world.store_call("c1")
    world.ctx.settings = make_settings(retention="PT60S", fetch_root=str(world.fetch_root))
    assert apply_policy(world.ctx) == 1
    assert apply_policy(world.ctx) == 0  # idempotent
    recording = world.recording("c1")
    assert recording is not None
    assert recording.retention_due_at == recording.collected_at + timedelta(seconds=60)
    assert recording.policy == "PT60S"
    assert world.tick() == 1  # 10:30 is past 10:22:02
    (due,) = world.data("retention.due")
    assert due["policy"] == "PT60S"
    assert due["due_at"] == "2025-03-14T10:22:02Z"
    assert world.recording("c1").status is RecordingStatus.PURGED  # type: ignore[union-attr]


def test_lengthened_policy_stops_a_purge_already_announced(make_world: Any) -> None:
    world = make_world(retention="PT60S")
    world.store_call("c1", ended_at="2025-03-14T12:29:30+02:00")
    world.clock.advance(seconds=45)
    assert world.announce() == 1
    world.ctx.settings = make_settings(retention="P1Y", fetch_root=str(world.fetch_root))
    assert apply_policy(world.ctx) == 1
    world.settle()  # the scheduled purge finds the recording no longer due
    recording = world.recording("c1")
    assert recording is not None
    assert recording.status is RecordingStatus.STORED
    assert recording.retention_due_at == recording.collected_at.replace(year=2026)
    assert world.published("recordings.purged") == []
    assert world.tick() == 0
    world.clock.set(recording.retention_due_at)
    assert world.tick() == 1
    assert world.recording("c1").status is RecordingStatus.PURGED  # type: ignore[union-attr]


def test_per_tenant_policy_overrides_the_default(make_world: Any) -> None:
    world = make_world(retention="P1Y", retention_tenants="shop-lv=P6M")
    lt = world.store_call("c-lt")
    lv = world.store_call("c-lv", tenant="shop-lv")
    assert lt.retention_due_at == lt.collected_at.replace(year=2026)
    assert lv.retention_due_at == lv.collected_at.replace(month=9)
    assert lv.policy == "P6M"


@pytest.mark.parametrize("batch", [1, 3])
def test_every_due_recording_is_announced_in_batches(make_world: Any, batch: int) -> None:
    world = make_world(retention="PT60S", purge_batch=batch)
    for i in range(5):
        world.store_call(f"c{i}")
    world.clock.advance(days=1)
    announced = 0
    while count := world.tick():
        announced += count
    assert announced == 5
    assert len(world.published("recordings.purged")) == 5
    assert {d["call_id"] for d in world.data("retention.due")} == {f"c{i}" for i in range(5)}


class _Strays:
    """Partitions upkeep that made one month and found rows in a DEFAULT partition."""

    def ensure_partitions(self) -> list[str]:
        return ["recordings_y2031m01"]

    def stray_rows(self) -> dict[str, int]:
        return {"recordings": 3, "audit_log": 0}


def test_rows_in_a_default_partition_are_counted_for_the_alert(world: World) -> None:
    from workers.app.background import maintain_partitions

    assert maintain_partitions(world.ctx, _Strays()) == ["recordings_y2031m01"]
    sample = world.metrics.registry.get_sample_value
    assert sample("callvault_partition_default_rows", {"table": "recordings"}) == 3
    assert sample("callvault_partition_default_rows", {"table": "audit_log"}) == 0
