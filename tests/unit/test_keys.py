"""Keys: check values stop a process started with another key; master-key rotation re-wraps
every data key (resumable, audited) after which the old key can go; hash-key rotation re-keys
every digest that can be re-computed and keeps recognising what cannot; retired signing keys
stay published so old certificates verify."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import replace
from typing import Any

import pytest

from tests.unit.conftest import (
    CUSTOMER_EMAIL,
    CUSTOMER_PHONE,
    HASH_KEY,
    MASTER_KEY,
    OTHER_PHONE,
    WAV,
    World,
    _no_sleep,
    make_settings,
    make_wav,
    subject,
)
from workers.adapters.fetch import AudioFetcher
from workers.adapters.metrics import Metrics
from workers.adapters.signatures import check_certificate
from workers.app.handlers.keys import begin_hash_rotation, verify_keys
from workers.app.retry import RetryPolicy
from workers.bootstrap import bootstrap
from workers.domain import messages as m
from workers.domain.errors import ConfigError, TransientError
from workers.domain.model import RecordingStatus
from workers.entrypoints.worker import _check_keys

NEW_MASTER = base64.b64encode(bytes(range(100, 132))).decode()
NEW_HASH = base64.b64encode(bytes(range(132, 164))).decode()
NEW_SIGNING = base64.b64encode(bytes(range(164, 196))).decode()


def restarted(world: World, **settings: Any) -> World:
    """The same database, store and broker, with a process started with other settings."""
    chosen = make_settings(fetch_root=str(world.fetch_root), **settings)
    metrics = Metrics()
    container = bootstrap(
        chosen,
        metrics=metrics,
        clock=world.clock,
        uow=world.db,
        objects=world.objects,
        bus=world.bus,
        retry=RetryPolicy(budget_seconds=60, initial_seconds=0, max_seconds=0, sleep=_no_sleep),
        fetcher=AudioFetcher(world.objects, fetch_root=world.fetch_root, timeout_seconds=5),
        hold_commands=world.hold_commands,
    )
    return replace(world, settings=chosen, metrics=metrics, container=container)


def registered(world: World) -> World:
    verify_keys(world.ctx, register=True)  # what `callvault migrate` does
    return world


ROTATED_MASTER = {
    "master_key": None,
    "master_keys": f"m1={MASTER_KEY},m2={NEW_MASTER}",
    "master_key_id": "m2",
}
ONLY_NEW_MASTER = {"master_key": None, "master_keys": f"m2={NEW_MASTER}", "master_key_id": "m2"}


def rotate_master(world: World, batch: int = 500) -> str:
    after = ""
    while True:
        _, _, last = world.container.messagebus.handle(m.RewrapDataKeys(after, batch)).split(":")
        if not last:
            return world.container.messagebus.handle(m.RetireMasterKeys())
        after = last


# --- check values -----------------------------------------------------------------------------


def test_migrate_registers_the_keys_and_a_worker_with_the_same_keys_starts(world: World) -> None:
    with pytest.raises(ConfigError, match="run `callvault migrate`"):
        verify_keys(world.ctx, register=False)
    found = {(c.kind, c.key_id) for c in verify_keys(world.ctx, register=True)}
    assert found == {("master", "m1"), ("hash", "current"), ("signing", "callvault-1")}
    assert verify_keys(world.ctx, register=False) == []


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"hash_key": NEW_HASH}, "CALLVAULT_HASH_KEY is not the key"),
        ({"master_key": NEW_MASTER}, "CALLVAULT_MASTER_KEY(S): master key 'm1' is not the key"),
        ({"signing_key": NEW_SIGNING}, "CALLVAULT_SIGNING_KEY: key id 'callvault-1'"),
        ({"signing_key": NEW_SIGNING, "signing_key_id": "k2"}, "SIGNING_PUBLIC_KEYS_RETIRED"),
        (ONLY_NEW_MASTER, "wrapped under master key 'm1', which is not configured"),
    ],
)
def test_a_process_with_another_key_refuses_to_start(
    world: World, settings: dict[str, Any], named: str
) -> None:
    registered(world).store_call("c-1")
    other = restarted(world, **settings)
    with pytest.raises(ConfigError, match=re.escape(named)):
        verify_keys(other.ctx, register=False)
    with pytest.raises(ConfigError, match=re.escape(named)):
        verify_keys(other.ctx, register=True)  # migrate refuses too: nothing is overwritten


def test_the_first_registration_proves_the_keys_on_stored_data(world: World) -> None:
    world.store_call("c-1")  # stored by a version that kept no check values
    with pytest.raises(ConfigError, match="does not reproduce the digests"):
        verify_keys(restarted(world, hash_key=NEW_HASH).ctx, register=True)
    with pytest.raises(ConfigError, match="does not unwrap the data keys"):
        verify_keys(restarted(world, master_key=NEW_MASTER).ctx, register=True)
    assert verify_keys(world.ctx, register=True)


# --- master-key rotation --------------------------------------------------------------------


def test_master_key_rotation_rewraps_everything_and_the_old_key_can_go(world: World) -> None:
    registered(world)
    before = world.store_call("c-before", customer=None)
    world.store_call("c-other", make_wav(tone=660), caller=OTHER_PHONE)
    rotating = registered(restarted(world, **ROTATED_MASTER))  # step 1: m2 current, m1 kept
    after = rotating.store_call("c-after", make_wav(tone=880))
    assert after.master_key_id == "m2"
    assert {r.master_key_id for r in rotating.recordings()} == {"m1", "m2"}

    assert rotate_master(rotating, batch=1) == "retired:1:m1"
    assert {r.master_key_id for r in rotating.recordings()} == {"m2"}
    audit = [e for e in rotating.audit() if e.action in ("keys_rewrapped", "master_keys_retired")]
    rewrapped = [
        i for e in audit if e.action == "keys_rewrapped" for i in e.details["recording_ids"]
    ]
    assert sorted(rewrapped) == sorted([before.recording_id, rotating.recording_id("c-other")])
    assert audit[-1].action == "master_keys_retired"
    assert audit[-1].details == {"retired": ["m1"]}
    assert all(e.details["from"] == ["m1"] and e.details["to"] == "m2" for e in audit[:-1])

    # step 3: m1 removed; exports and erasures work on recordings from before and after
    final = restarted(world, **ONLY_NEW_MASTER)
    assert verify_keys(final.ctx, register=False) == []
    final.send_dsr("r-access", "access", subject(phone_numbers=[CUSTOMER_PHONE]))
    (answer,) = final.data("dsr.results")
    archive = final.export_zip(answer["export"]["url"])
    assert archive.read(f"recordings/{before.recording_id}.wav") == WAV
    assert archive.read(f"recordings/{after.recording_id}.wav") == make_wav(tone=880)
    final.send_dsr("r-erase", "erasure", subject(phone_numbers=[CUSTOMER_PHONE]))
    erased = [r for r in final.recordings() if r.status is RecordingStatus.PURGED]
    assert sorted(r.recording_id for r in erased) == sorted(
        [before.recording_id, after.recording_id]
    )


def test_an_interrupted_rotation_resumes(world: World) -> None:
    registered(world)
    for n in range(3):
        world.store_call(f"c-{n}", make_wav(tone=400 + 100 * n))
    rotating = registered(restarted(world, **ROTATED_MASTER))
    first = rotating.container.messagebus.handle(m.RewrapDataKeys("", 1))
    assert first.startswith("rewrapped:1:")
    assert rotating.container.messagebus.handle(m.RetireMasterKeys()) == "pending:2"
    with pytest.raises(ConfigError, match="'m1', which is not configured"):
        verify_keys(restarted(world, **ONLY_NEW_MASTER).ctx, register=False)
    assert rotate_master(rotating) == "retired:1:m1"  # run again from the start
    assert {r.master_key_id for r in rotating.recordings()} == {"m2"}


def test_recordings_of_early_versions_without_a_key_id_are_rewrapped(world: World) -> None:
    registered(world)
    stored = world.store_call("c-legacy")
    world.db.state.recordings[stored.recording_id].master_key_id = None
    rotating = registered(restarted(world, **ROTATED_MASTER))
    assert rotate_master(rotating) == "retired:1:m1"
    assert rotating.db.state.recordings[stored.recording_id].master_key_id == "m2"


# --- hash-key rotation ----------------------------------------------------------------------


def rehash(world: World) -> str:
    previous = begin_hash_rotation(world.ctx)
    assert previous is not None
    after = ""
    while True:
        _, _, last = world.container.messagebus.handle(m.RekeyDigests(after, 2)).split(":")
        if not last:
            return world.container.messagebus.handle(m.FinishHashRotation(previous))
        after = last


def test_hash_key_rotation_rekeys_digests_and_keeps_ids(world: World) -> None:
    registered(world)
    kept = world.store_call("c-kept")
    other = world.store_call("c-other", make_wav(tone=660), caller=OTHER_PHONE, customer=None)
    purged = world.store_call(
        "c-purged", make_wav(tone=880), caller="+370 699 11111", customer=None
    )
    world.send_dsr("r-0", "erasure", subject(phone_numbers=["+370 699 11111"]))
    assert world.db.state.recordings[purged.recording_id].status is RecordingStatus.PURGED
    event = world.call_event("c-discarded", make_wav(tone=990), notice_played=False)
    assert world.send_call(event) == "discarded"
    # a subject hold on someone with no recording yet: it must cover their future calls
    world.place_hold("h-future", {"subject": {"phone_numbers": ["+370 655 55555"]}})
    world.place_hold("h-email", {"subject": {"emails": [CUSTOMER_EMAIL]}})
    # call holds: one on a call not stored yet, one placed before call ids were kept sealed
    world.place_hold("h-later", {"call_ids": ["c-later"]})
    world.place_hold("h-legacy", {"call_ids": ["c-other"]})
    world.db.state.holds["h-legacy"].identifiers = frozenset()

    new = restarted(world, hash_key=NEW_HASH, hash_keys_retired=HASH_KEY)
    with pytest.raises(ConfigError, match="re-key the digests first"):
        verify_keys(new.ctx, register=False)
    assert rehash(new) == "finished:4:0"
    assert verify_keys(new.ctx, register=False) == []
    with pytest.raises(ConfigError, match="CALLVAULT_HASH_KEY is not the key"):
        verify_keys(world.ctx, register=False)  # the old key no longer fits
    ids = {r.call_id: r.recording_id for r in new.recordings() if r.call_id}
    assert ids == {"c-kept": kept.recording_id, "c-other": other.recording_id}

    # look-ups by every identifier find the same recordings under the new key
    new.send_dsr("r-1", "access", subject(emails=[CUSTOMER_EMAIL.upper()]))
    (answer,) = [a for a in new.data("dsr.results") if a["request_id"] == "r-1"]
    assert [r["recording_id"] for r in answer["recordings"]] == [kept.recording_id]
    # the future-subject hold covers a call stored after the rotation
    held = new.store_call("c-new", make_wav(tone=500), caller="+370 655 55555", customer=None)
    assert held.held
    # both call holds still cover their calls under the new key
    assert new.store_call("c-later", make_wav(tone=520), customer=None).held
    new.send_dsr("r-2", "erasure", subject(phone_numbers=[OTHER_PHONE]))
    assert new.db.state.recordings[other.recording_id].status is RecordingStatus.STORED
    # redeliveries of a purged and a discarded call are still recognised
    assert (
        new.send_call(
            world.call_event("c-purged", make_wav(tone=880), caller="+370 699 11111", customer=None)
        )
        == "duplicate"
    )
    assert (
        new.send_call(world.call_event("c-discarded", make_wav(tone=990), notice_played=False))
        == "duplicate"
    )
    actions = [e.action for e in new.audit()]
    assert "digests_rekeyed" in actions
    assert actions.count("hash_key_rotated") == 1


def test_a_worker_refuses_to_start_while_a_rehash_is_under_way(world: World) -> None:
    registered(world).store_call("c-1")
    new = restarted(world, hash_key=NEW_HASH, hash_keys_retired=HASH_KEY)
    assert begin_hash_rotation(new.ctx) is not None
    with pytest.raises(ConfigError, match="hash-key rotation is under way"):
        verify_keys(new.ctx, register=False)
    assert rehash(new) == "finished:0:0"  # resumed: the rotation was begun already
    assert begin_hash_rotation(new.ctx) is None  # nothing left to do


# --- signing keys -----------------------------------------------------------------------------


def test_certificates_signed_before_a_signing_key_rotation_still_verify(world: World) -> None:
    registered(world).store_call("c-1")
    world.send_dsr("r-1", "erasure", subject(phone_numbers=[CUSTOMER_PHONE]))
    (answer,) = world.data("dsr.results")
    certificate = answer["certificate"]
    old_public = world.container.keys.public_key()["public_key"]

    new = restarted(
        world,
        signing_key=NEW_SIGNING,
        signing_key_id="callvault-2",
        signing_public_keys_retired=f"callvault-1={old_public}",
    )
    assert {c.key_id for c in verify_keys(new.ctx, register=True)} == {"callvault-2"}
    key_set = json.loads(json.dumps({"keys": new.container.keys.public_keys()}))["keys"]
    assert [k["key_id"] for k in key_set] == ["callvault-2", "callvault-1"]
    assert check_certificate(certificate, key_set) == (True, "ok")
    forged = dict(certificate, recordings=[])
    assert check_certificate(forged, key_set)[0] is False


def test_a_retired_signing_key_must_be_the_published_one(world: World) -> None:
    registered(world)
    other = base64.b64encode(bytes(32)).decode()
    new = restarted(
        world,
        signing_key=NEW_SIGNING,
        signing_key_id="callvault-2",
        signing_public_keys_retired=f"callvault-1={other}",
    )
    with pytest.raises(ConfigError, match="CALLVAULT_SIGNING_PUBLIC_KEYS_RETIRED: key id"):
        verify_keys(new.ctx, register=True)


class _TokenAway:
    """Keys in a token that does not answer (a network HSM away)."""

    def __init__(self) -> None:
        self.asked = 0

    def checks(self) -> list[Any]:
        self.asked += 1
        raise TransientError("the PKCS#11 token 'callvault' did not answer (DeviceError())")


def test_a_worker_whose_token_does_not_answer_retries_then_exits_75(world: World) -> None:
    away = _TokenAway()
    container = bootstrap(
        world.settings,
        clock=world.clock,
        uow=world.db,
        objects=world.objects,
        bus=world.bus,
        hold_commands=world.hold_commands,
        keys=away,
        retry=RetryPolicy(
            budget_seconds=60, initial_seconds=0, max_seconds=0, max_attempts=3, sleep=_no_sleep
        ),
    )
    with pytest.raises(SystemExit) as stopped:
        _check_keys(container)
    assert stopped.value.code == 75  # the supervisor starts it again
    assert away.asked == 3
