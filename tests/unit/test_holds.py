"""Legal holds as compliance places them: by recording, by call or by person - the last also
catching recordings stored later - idempotent, and safe against out-of-order commands."""

from __future__ import annotations

from datetime import timedelta

from conftest import (
    CUSTOMER_EMAIL,
    CUSTOMER_ID,
    OTHER_EMAIL,
    OTHER_PHONE,
    World,
    personal_data_in,
    subject,
)

from workers.domain.audit import verify_chain
from workers.domain.model import RecordingStatus


def held(world: World, call_id: str) -> bool:
    recording = world.recording(call_id)
    assert recording is not None
    return recording.held


def far_future(world: World) -> None:
    world.clock.advance(days=800)


def test_recording_scope_holds_only_that_recording(world: World) -> None:
    target = world.store_call("c1")
    world.store_call("c2")
    assert world.place_hold("H1", {"recording_ids": [target.recording_id]}) == "placed"
    assert held(world, "c1")
    assert not held(world, "c2")
    far_future(world)
    world.tick()
    assert world.recording("c1").status is RecordingStatus.STORED  # type: ignore[union-attr]
    assert world.recording("c2").status is RecordingStatus.PURGED  # type: ignore[union-attr]


def test_call_scope_holds_only_those_calls(world: World) -> None:
    for call_id in ("c1", "c2", "c3"):
        world.store_call(call_id)
    world.place_hold("H1", {"call_ids": ["c1", "c3", "c-unknown"]})
    assert [held(world, c) for c in ("c1", "c2", "c3")] == [True, False, True]


def test_call_scope_catches_a_call_stored_after_the_hold(world: World) -> None:
    world.place_hold("H1", {"call_ids": ["c-later"]})
    world.store_call("c-later")
    assert held(world, "c-later")


def test_subject_scope_matches_any_notation_of_the_person(world: World) -> None:
    world.store_call("c-mine")  # caller "+370 612 34567"
    world.store_call(
        "c-other",
        caller=OTHER_PHONE,
        customer={"name": "Jonas", "email": OTHER_EMAIL, "customer_id": "C-2"},
    )
    hold = {"subject": subject(phone_numbers=["tel:8-612-34567"])}
    assert world.place_hold("H1", hold) == "placed"
    assert held(world, "c-mine")
    assert not held(world, "c-other")


def test_subject_hold_catches_recordings_stored_after_it(world: World) -> None:
    world.place_hold(
        "H1", {"subject": subject(emails=[f"  {CUSTOMER_EMAIL.upper()}"], customer_ids=[])}
    )
    world.store_call("c-later")
    assert held(world, "c-later")
    far_future(world)
    assert world.tick() == 0
    world.release_hold("H1")
    assert world.tick() == 1
    assert world.recording("c-later").status is RecordingStatus.PURGED  # type: ignore[union-attr]


def test_subject_hold_by_customer_id_does_not_catch_anonymous_strangers(world: World) -> None:
    world.place_hold("H1", {"subject": subject(customer_ids=[CUSTOMER_ID])})
    world.store_call("c-anon", caller="anonymous", customer=None)
    world.store_call("c-known", caller="anonymous")
    assert not held(world, "c-anon")
    assert held(world, "c-known")


def test_repeated_placed_command_is_a_no_op(world: World) -> None:
    world.store_call("c1")
    assert world.place_hold("H1", {"call_ids": ["c1"]}) == "placed"
    assert world.place_hold("H1", {"call_ids": ["c1"]}) == "duplicate"
    actions = [e.action for e in world.audit()]
    assert actions.count("hold_placed") == 1
    world.refresh_gauges()
    assert world.sample("callvault_holds_active") == 1


def test_hold_ids_are_final_once_released(world: World) -> None:
    world.store_call("c1")
    world.place_hold("H1", {"call_ids": ["c1"]})
    world.release_hold("H1")
    assert world.place_hold("H1", {"call_ids": ["c1"]}) == "duplicate"  # a late redelivery
    assert not held(world, "c1")
    assert world.release_hold("H1") == "duplicate"


def test_release_before_place_wins(world: World) -> None:
    world.store_call("c1")
    assert world.release_hold("H1") == "released_before_placed"  # nothing to release yet
    assert world.place_hold("H1", {"call_ids": ["c1"]}) == "duplicate"
    assert not held(world, "c1")
    far_future(world)
    assert world.tick() == 1
    assert world.recording("c1").status is RecordingStatus.PURGED  # type: ignore[union-attr]
    world.refresh_gauges()
    assert world.sample("callvault_holds_active") == 0


def test_releasing_an_unrelated_hold_keeps_the_recording_held(world: World) -> None:
    world.store_call("c1")
    world.place_hold("H1", {"subject": subject(phone_numbers=["8 612 34567"])})
    world.place_hold("H2", {"call_ids": ["c1"]})
    world.release_hold("H2")
    assert held(world, "c1")
    world.clock.advance(days=400)
    assert world.tick() == 0


def test_hold_of_a_purged_recording_changes_nothing(world: World) -> None:
    world.store_call("c1")
    far_future(world)
    world.tick()
    assert world.place_hold("H1", {"call_ids": ["c1"]}) == "placed"
    recording = world.recording("c1")
    assert recording is not None
    assert recording.status is RecordingStatus.PURGED
    assert not recording.held


def test_hold_trail_names_no_one_and_verifies(world: World) -> None:
    world.store_call("c1")
    world.place_hold("H1", {"subject": subject(phone_numbers=["8 612 34567"])})
    world.clock.advance(seconds=10)
    world.release_hold("H1")
    entries = world.audit()
    assert [e.action for e in entries] == ["store", "hold_placed", "hold_released"]
    assert verify_chain(world.audit(everything=True)) == (4, None)
    assert personal_data_in(repr([e.details for e in entries])) == []
    stored_hold = world.db.state.holds["H1"]
    assert stored_hold.released_at == stored_hold.placed_at + timedelta(seconds=10)  # type: ignore[operator]
    assert personal_data_in(repr(stored_hold)) == []
