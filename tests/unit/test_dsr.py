"""Data-subject requests as the DSR portal and the DPO see them: the right recordings are
found whatever notation the person uses, each request type is carried out on audio and
metadata, held recordings are kept with the Art. 17(3)(e) reason and erased on release, and
every answer is a ``dsr.completed`` event without personal data."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from conftest import (
    CUSTOMER_EMAIL,
    CUSTOMER_ID,
    CUSTOMER_NOTATIONS,
    ORDER_ID,
    OTHER_EMAIL,
    OTHER_PHONE,
    SHOP_PHONE,
    VAULT,
    WAV,
    World,
    make_wav,
    personal_data_in,
    subject,
)

from workers.adapters.kafka.codec import Codec
from workers.adapters.postgres.migrate import expiry_rules
from workers.adapters.signatures import check_certificate
from workers.app.handlers import requests as requests_handlers
from workers.app.handlers.purge import purge
from workers.app.ports.objects import ObjectMissing, VersionRef
from workers.domain.messages import ForgetErasedSubjects, RemoveExpiredExports, SweepCopies
from workers.domain.model import PurgeReason, RecordingStatus

CUSTOMER = subject(phone_numbers=["8 612 34567"])
MANIFEST_ENTRY_FIELDS = {
    "recording_id",
    "call_id",
    "started_at",
    "ended_at",
    "direction",
    "tenant",
    "sha256",
    "retention_due_at",
}
ART15 = {"purposes", "legal_basis", "recipients", "retention_period", "source", "rights"}
OUTBOUND = {  # the shop calls the customer back; only the number is known
    "direction": "outbound",
    "caller": SHOP_PHONE,
    "callee": "+37061234567",
    "customer": None,
}
OTHER_CUSTOMER = {
    "caller": OTHER_PHONE,
    "customer": {"name": "Jonas Jonaitis", "email": OTHER_EMAIL, "customer_id": "C-2"},
}


@pytest.fixture
def shop(world: World) -> World:
    """Three calls: the customer's inbound call, the shop calling the customer back, and
    another customer's call."""
    world.store_call("c-in")
    world.store_call("c-out", make_wav(tone=660), **OUTBOUND)
    world.store_call("c-other", make_wav(tone=880), **OTHER_CUSTOMER)
    return world


def result(world: World, request_id: str) -> dict[str, Any]:
    answers = [d for d in world.data("dsr.results") if d["request_id"] == request_id]
    assert len(answers) == 1, answers
    return answers[0]


def outcomes(answer: dict[str, Any]) -> dict[str, str]:
    return {r["call_id"]: r["outcome"] for r in answer["recordings"]}


def certificate_verifies(world: World, certificate: dict[str, Any]) -> bool:
    return check_certificate(certificate, [world.container.keys.public_key()])[0]


# --- matching -------------------------------------------------------------------------------


@pytest.mark.parametrize("notation", CUSTOMER_NOTATIONS)
def test_every_notation_of_the_number_finds_the_same_recordings(shop: World, notation: str) -> None:
    shop.send_dsr("R1", "access", subject(phone_numbers=[notation]))
    assert outcomes(result(shop, "R1")) == {"c-in": "exported", "c-out": "exported"}


@pytest.mark.parametrize(
    "who",
    [
        subject(emails=["  Ona.Petraitiene@EXAMPLE.com "]),
        subject(customer_ids=[CUSTOMER_ID]),
        subject(order_ids=[ORDER_ID]),
        subject(phone_numbers=["0037061234567", "+370 600 00000"], emails=["nobody@example.org"]),
    ],
    ids=["email", "customer-id", "order-id", "mixed"],
)
def test_other_identifiers_find_the_inbound_call(shop: World, who: dict[str, list[str]]) -> None:
    shop.send_dsr("R1", "access", who)
    assert "c-in" in outcomes(result(shop, "R1"))
    assert "c-other" not in outcomes(result(shop, "R1"))


def test_ids_compare_exactly(shop: World) -> None:
    shop.send_dsr("R1", "access", subject(customer_ids=[CUSTOMER_ID.lower()]))
    assert result(shop, "R1")["recordings"] == []


def test_the_shop_number_matches_no_customer(shop: World) -> None:
    # Outbound: the shop is the caller, the customer the callee; inbound: the shop is the callee.
    shop.send_dsr("R1", "access", subject(phone_numbers=[SHOP_PHONE, "8 5 214 4500"]))
    answer = result(shop, "R1")
    assert answer["status"] == "completed"
    assert answer["recordings"] == []


def test_subject_without_recordings_gets_an_empty_completed_answer(shop: World) -> None:
    shop.send_dsr("R1", "erasure", subject(phone_numbers=["+370 699 99999"]))
    answer = result(shop, "R1")
    assert answer["status"] == "completed"
    assert answer["recordings"] == []
    assert "reason" not in answer
    assert shop.published("recordings.purged") == []


# --- answers ----------------------------------------------------------------------------------


def test_answer_carries_dates_and_validates_against_the_schema(shop: World) -> None:
    shop.send_dsr("R1", "erasure", CUSTOMER)
    (event,) = shop.published("dsr.results")
    assert event["type"] == "callvault.dsr.completed.v1"
    ((key, _),) = shop.records("dsr.results")
    assert key == "R1"
    data = event["data"]
    assert data["request_id"] == "R1"
    assert data["type"] == "erasure"
    assert data["received_at"] == "2025-03-14T10:30:00Z"
    # one calendar month (Art. 12(3)) in Vilnius: 12:30 EET on 14 March, 12:30 EEST on 14 April
    assert data["due_at"] == "2025-04-14T09:30:00Z"
    assert data["completed_at"] == "2025-03-14T10:30:00Z"
    codec = Codec()
    codec.check("cloudevent", event)
    codec.check("callvault.dsr.completed.v1", data)


@pytest.mark.parametrize(("asked", "kept"), [({"language": "en"}, "en"), ({}, None)])
def test_the_request_keeps_the_language_it_asks_to_be_answered_in(
    shop: World, asked: dict[str, str], kept: str | None
) -> None:
    assert shop.send_dsr("R1", "access", CUSTOMER, **asked) == "completed"
    with shop.container.database.unit_of_work() as uow:
        record = uow.requests.get("R1")
    assert record is not None
    assert record.language == kept


def test_a_language_callvault_does_not_write_is_still_a_valid_request(shop: World) -> None:
    assert shop.send_dsr("R1", "access", CUSTOMER, language="de") == "completed"
    assert shop.send_dsr("R2", "access", CUSTOMER, language="Lietuvių") == "deadletter"


def test_unverified_request_is_rejected(shop: World) -> None:
    assert shop.send_dsr("R1", "erasure", CUSTOMER, verified=False) == "rejected"
    answer = result(shop, "R1")
    assert answer["status"] == "rejected"
    assert answer["reason"] == "identity_not_verified"
    assert answer["recordings"] == []
    assert shop.published("recordings.purged") == []
    assert shop.recording("c-in").status is RecordingStatus.STORED  # type: ignore[union-attr]
    assert (
        shop.sample("callvault_dsr_requests_total", {"type": "erasure", "status": "rejected"}) == 1
    )


def test_request_without_a_usable_identifier_is_rejected(shop: World) -> None:
    assert shop.send_dsr("R1", "erasure", subject(phone_numbers=["12"])) == "rejected"
    answer = result(shop, "R1")
    assert answer["status"] == "rejected"
    assert answer["reason"]
    assert shop.published("recordings.purged") == []


def test_malformed_request_is_dead_lettered(shop: World) -> None:
    assert shop.send_dsr("R1", "erasure", subject()) == "deadletter"  # no identifier at all
    (letter,) = shop.data("callvault.deadletter")
    assert letter["error_code"] == "schema_violation"
    assert letter["source_topic"] == "dsr.requests"
    assert shop.published("recordings.purged") == []


@pytest.mark.parametrize("received_at", ["9999-12-15T10:00:00Z", "0001-01-01T00:00:00+01:00"])
def test_a_request_received_at_no_countable_time_is_rejected(shop: World, received_at: str) -> None:
    assert shop.send_dsr("R1", "erasure", CUSTOMER, received_at=received_at) == "deadletter"
    (letter,) = shop.data("callvault.deadletter")
    assert letter["error_code"] == "schema_violation"
    assert "received_at" in letter["error"]
    answer = result(shop, "R1")
    assert (answer["status"], answer["reason"]) == (
        "rejected",
        "malformed_request: schema_violation",
    )
    assert shop.published("recordings.purged") == []


def test_repeated_request_id_has_no_second_effect(shop: World) -> None:
    assert shop.send_dsr("R1", "restriction", CUSTOMER) == "completed"
    assert shop.send_dsr("R1", "restriction", CUSTOMER) == "duplicate"
    assert shop.send_dsr("R1", "restriction", CUSTOMER, restriction="lift") == "duplicate"
    assert len(shop.published("dsr.results")) == 1
    assert shop.recording("c-in").restricted  # type: ignore[union-attr]


def test_repeated_rejected_request_is_answered_once(shop: World) -> None:
    shop.send_dsr("R1", "access", CUSTOMER, verified=False)
    assert shop.send_dsr("R1", "access", CUSTOMER, verified=False) == "duplicate"
    assert len(shop.published("dsr.results")) == 1


# --- erasure and objection --------------------------------------------------------------------


@pytest.mark.parametrize("dsr_type", ["erasure", "objection"])
def test_erasure_and_objection_purge_the_subjects_recordings(shop: World, dsr_type: str) -> None:
    before = {c: shop.recording(c) for c in ("c-in", "c-out")}
    shop.send_dsr("R1", dsr_type, CUSTOMER)
    answer = result(shop, "R1")
    assert answer["status"] == "completed"
    assert outcomes(answer) == {"c-in": "erased", "c-out": "erased"}
    for call_id, recording in before.items():
        assert recording is not None
        assert shop.objects.list_versions(VAULT, recording.object_key) == []
        after = shop.recording(call_id)
        assert after is not None
        assert after.status is RecordingStatus.PURGED
        assert after.wrapped_key is None
        assert after.customer_sealed is None
    assert shop.recording("c-other").status is RecordingStatus.STORED  # type: ignore[union-attr]
    purged = {d["call_id"]: d for d in shop.data("recordings.purged")}
    assert set(purged) == {"c-in", "c-out"}
    for data in purged.values():
        assert data["reason"] == dsr_type
        assert data["due_at"] is None
        assert data["lag_seconds"] is None
        assert data["versions_deleted"] == 1
    assert shop.sample("callvault_recordings_purged_total", {"reason": dsr_type}) == 2
    # the erased person is no longer findable
    shop.send_dsr("R2", "access", CUSTOMER)
    assert result(shop, "R2")["recordings"] == []


def test_erasure_certificate_is_signed_and_names_no_one(shop: World) -> None:
    shop.send_dsr("R1", "erasure", CUSTOMER)
    answer = result(shop, "R1")
    certificate = answer["certificate"]
    assert certificate_verifies(shop, certificate)
    assert certificate["algorithm"] == "Ed25519"
    receipts = {r["recording_id"]: r for r in certificate["recordings"]}
    assert set(receipts) == {shop.recording_id("c-in"), shop.recording_id("c-out")}
    assert receipts[shop.recording_id("c-in")]["sha256"] == hashlib.sha256(WAV).hexdigest()
    for receipt in receipts.values():
        assert set(receipt) == {"recording_id", "sha256", "versions_deleted", "purged_at"}
    assert personal_data_in(json.dumps(certificate)) == []
    forged = json.loads(json.dumps(certificate))
    forged["recordings"][0]["versions_deleted"] = 0
    assert not certificate_verifies(shop, forged)


def letter_objects(world: World) -> list[str]:
    return sorted(k for k in world.objects.list_keys("exports") if k.startswith("letters/"))


def test_an_erasure_answer_links_the_persons_letter_which_lives_as_an_export(shop: World) -> None:
    shop.send_dsr("R1", "erasure", CUSTOMER, language="en")
    answer = result(shop, "R1")
    letter = answer["letter"]
    assert letter["format"] == "pdf"
    assert letter["expires_at"] == "2025-03-21T10:30:00Z"  # CALLVAULT_EXPORT_TTL, as exports
    pdf = shop.fetch_export(letter["url"])
    assert (len(pdf), hashlib.sha256(pdf).hexdigest()) == (letter["size_bytes"], letter["sha256"])
    assert b"Confirmation of the erasure of your call recordings" in pdf  # the fake typesetter
    attached = shop.container.typesetter.attachments[-1]
    assert json.loads(attached["certificate.json"]) == answer["certificate"]
    assert personal_data_in(json.dumps(answer)) == []

    shop.clock.advance(days=7, seconds=1)
    assert shop.handle(RemoveExpiredExports()) == "expired:1"
    assert letter_objects(shop) == []
    assert "url" not in shop.db.state.requests["R1"].result["letter"]


def test_a_later_answer_deletes_the_earlier_letter_it_replaces(shop: World) -> None:
    """A letter names the person's calls: the erasure that resumes when a hold is released
    deletes the first (partial) letter, and is not an export the portal is told of."""
    shop.send_dsr("A1", "access", CUSTOMER)
    shop.place_hold("H1", {"call_ids": ["c-out"]})
    shop.send_dsr("R1", "erasure", CUSTOMER)
    first = result(shop, "R1")
    assert first["exports_deleted"] == ["A1"]
    assert letter_objects(shop) == [first["letter"]["url"].split("/exports/")[1].split("?")[0]]
    assert shop.release_hold("H1") == "released"
    second = shop.data("dsr.results")[-1]
    assert second["status"] == "completed"
    assert second["exports_deleted"] == []  # the first letter is no export of the person's
    assert second["letter"]["url"] != first["letter"]["url"]
    assert letter_objects(shop) == [second["letter"]["url"].split("/exports/")[1].split("?")[0]]


def test_a_hold_released_while_its_erasure_runs_leaves_nothing_waiting(
    shop: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The release commits after the erasure skipped the held recording but before the
    erasure answered: no request was waiting yet when the release looked (chaos found the
    request ``partial`` for ever, its recording long purged)."""
    shop.place_hold("H1", {"call_ids": ["c-out"]})

    def purge_then_release(ids: list[str], reason: PurgeReason, ctx: Any) -> Any:
        monkeypatch.setattr(requests_handlers, "purge", purge)
        done = purge(ids, reason, ctx)
        assert shop.release_hold("H1") == "released"
        return done

    monkeypatch.setattr(requests_handlers, "purge", purge_then_release)
    shop.send_dsr("R1", "erasure", CUSTOMER)

    answers = [d for d in shop.data("dsr.results") if d["request_id"] == "R1"]
    assert [a["status"] for a in answers] == ["partial", "completed"]
    assert outcomes(answers[-1]) == {"c-in": "erased", "c-out": "erased"}
    assert shop.recording("c-out").status is RecordingStatus.PURGED  # type: ignore[union-attr]


def test_held_recording_survives_erasure_until_the_hold_is_released(shop: World) -> None:
    shop.place_hold("H1", {"call_ids": ["c-out"]})
    shop.send_dsr("R1", "erasure", CUSTOMER)

    first = result(shop, "R1")
    assert first["status"] == "partial"
    assert "Art. 17(3)(e)" in first["reason"]
    assert outcomes(first) == {"c-in": "erased", "c-out": "held"}
    assert certificate_verifies(shop, first["certificate"])
    assert [r["recording_id"] for r in first["certificate"]["recordings"]] == [
        shop.recording_id("c-in")
    ]
    assert personal_data_in(json.dumps(first)) == []
    assert shop.recording("c-out").status is RecordingStatus.STORED  # type: ignore[union-attr]
    shop.refresh_gauges()
    assert shop.sample("callvault_dsr_open_requests") == 1

    shop.clock.advance(days=3)
    assert shop.release_hold("H1") == "released"

    answers = shop.published("dsr.results")
    assert len(answers) == 2
    assert answers[0]["id"] != answers[1]["id"]
    second = answers[1]["data"]
    assert second["request_id"] == "R1"
    assert second["status"] == "completed"
    assert "reason" not in second
    assert outcomes(second) == {"c-in": "erased", "c-out": "erased"}
    assert certificate_verifies(shop, second["certificate"])
    assert {r["recording_id"] for r in second["certificate"]["recordings"]} == {
        shop.recording_id("c-in"),
        shop.recording_id("c-out"),
    }
    out = shop.recording("c-out")
    assert out is not None
    assert out.status is RecordingStatus.PURGED
    assert shop.objects.list_versions(VAULT, out.object_key) == []
    purged = {d["call_id"]: d["reason"] for d in shop.data("recordings.purged")}
    assert purged == {"c-in": "erasure", "c-out": "erasure"}
    shop.refresh_gauges()
    assert shop.sample("callvault_dsr_open_requests") == 0
    codec = Codec()
    for event in answers:
        codec.check("callvault.dsr.completed.v1", event["data"])


def test_subject_hold_keeps_everything_of_that_person(shop: World) -> None:
    shop.place_hold("H1", {"subject": subject(emails=[CUSTOMER_EMAIL])})
    shop.send_dsr("R1", "objection", CUSTOMER)
    answer = result(shop, "R1")
    assert answer["status"] == "partial"
    assert outcomes(answer) == {"c-in": "held", "c-out": "erased"}  # outbound has no e-mail


# --- access and portability -------------------------------------------------------------------


def test_export_survives_a_vault_object_deleted_behind_callvaults_back(shop: World) -> None:
    lost = shop.recording("c-in")
    assert lost is not None
    vault = shop.settings.vault_bucket
    versions = shop.objects.list_versions(vault, lost.object_key)
    shop.objects.delete_versions(
        vault, [VersionRef(lost.object_key, v.version_id) for v in versions]
    )
    shop.send_dsr("R1", "access", CUSTOMER)
    answer = result(shop, "R1")
    assert answer["status"] == "completed"
    archive = shop.export_zip(answer["export"]["url"])
    entries = {e["call_id"]: e for e in json.loads(archive.read("manifest.json"))["recordings"]}
    assert entries["c-in"]["audio_file"] is None  # its metadata still reaches the subject
    kept = entries["c-out"]["audio_file"]
    assert set(archive.namelist()) == {"manifest.json", "letter.html", "letter.pdf", kept}
    assert archive.read(kept) == make_wav(tone=660)


def test_export_racing_an_erasure_exports_what_is_left(
    shop: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An erasure handled at the same moment purges a recording mid-export: the access
    request still gets its answer, with what is left."""
    erased = shop.recording("c-in")
    assert erased is not None
    real_get = shop.objects.get_stream
    raced = []

    def get_stream(bucket: str, key: str, **kw: Any) -> Any:
        if key == erased.object_key and not raced:
            raced.append(key)
            purge([erased.recording_id], PurgeReason.ERASURE, shop.ctx)
            raise ObjectMissing(key)
        return real_get(bucket, key, **kw)

    monkeypatch.setattr(shop.objects, "get_stream", get_stream)
    shop.send_dsr("R1", "access", CUSTOMER)
    answer = result(shop, "R1")
    assert raced
    assert answer["status"] == "completed"
    assert outcomes(answer) == {"c-out": "exported"}


@pytest.mark.parametrize("dsr_type", ["access", "portability"])
def test_export_holds_the_original_audio_and_the_art15_information(
    shop: World, dsr_type: str
) -> None:
    shop.send_dsr("R1", dsr_type, CUSTOMER)
    answer = result(shop, "R1")
    assert answer["status"] == "completed"
    assert outcomes(answer) == {"c-in": "exported", "c-out": "exported"}
    export = answer["export"]
    assert export["format"] == "zip"
    assert export["expires_at"] == "2025-03-21T10:30:00Z"  # CALLVAULT_EXPORT_TTL, P7D default

    blob = shop.fetch_export(export["url"])
    assert len(blob) == export["size_bytes"]
    assert hashlib.sha256(blob).hexdigest() == export["sha256"]
    archive = shop.export_zip(export["url"])
    assert archive.testzip() is None
    names = set(archive.namelist())
    audio = {
        shop.recording_id("c-in"): WAV,
        shop.recording_id("c-out"): make_wav(tone=660),
    }
    assert names == {"manifest.json", "letter.html", "letter.pdf"} | {
        f"recordings/{rid}.wav" for rid in audio
    }
    for rid, original in audio.items():
        assert archive.read(f"recordings/{rid}.wav") == original

    manifest = json.loads(archive.read("manifest.json"))
    assert set(manifest["controller_notice"]) >= ART15
    assert "6(1)(f)" in manifest["controller_notice"]["legal_basis"]
    assert manifest["controller_notice"]["retention_period"] == "P1Y"
    assert "object" in manifest["controller_notice"]["rights"].lower()
    entries = {e["call_id"]: e for e in manifest["recordings"]}
    assert set(entries) == {"c-in", "c-out"}
    for entry in entries.values():
        assert set(entry) >= MANIFEST_ENTRY_FIELDS
        assert entry["restricted"] is False
    inbound = entries["c-in"]
    assert inbound["recording_id"] == shop.recording_id("c-in")
    assert inbound["direction"] == "inbound"
    assert inbound["tenant"] == "shop-lt"
    assert inbound["started_at"] == "2025-03-14T10:15:00Z"
    assert inbound["ended_at"] == "2025-03-14T10:21:02Z"
    assert inbound["retention_due_at"] == "2026-03-14T10:21:02Z"
    assert inbound["sha256"] == hashlib.sha256(WAV).hexdigest()
    assert entries["c-out"]["direction"] == "outbound"
    # the subject gets their own metadata; nobody else's is in their export
    assert CUSTOMER_EMAIL in json.dumps(manifest)
    assert OTHER_EMAIL not in json.dumps(manifest)
    assert personal_data_in(json.dumps(answer)) == []


def test_export_with_no_recordings_is_still_a_valid_zip(shop: World) -> None:
    shop.send_dsr("R1", "access", subject(emails=["stranger@example.org"]))
    answer = result(shop, "R1")
    assert answer["status"] == "completed"
    assert answer["recordings"] == []
    archive = shop.export_zip(answer["export"]["url"])  # the Art. 15 information still comes
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["recordings"] == []
    assert set(manifest["controller_notice"]) >= {"purposes", "legal_basis", "rights"}


def test_export_expires_and_is_removed(shop: World) -> None:
    shop.send_dsr("R1", "access", CUSTOMER)
    assert len(list(shop.objects.list_keys("exports"))) == 1
    assert shop.handle(RemoveExpiredExports()) == "expired:0"
    shop.clock.advance(days=7, seconds=1)
    assert shop.handle(RemoveExpiredExports()) == "expired:1"
    assert list(shop.objects.list_keys("exports")) == []
    kept = shop.db.state.requests["R1"].result
    assert "url" not in kept["export"]  # the expired link is not kept either


# --- rectification and restriction ------------------------------------------------------------


def test_rectified_email_finds_the_recording_and_the_old_one_does_not(shop: World) -> None:
    new_email = "ona.new@example.org"
    shop.send_dsr("R1", "rectification", CUSTOMER, rectification={"email": new_email})
    answer = result(shop, "R1")
    assert answer["status"] == "completed"
    assert outcomes(answer) == {"c-in": "rectified", "c-out": "rectified"}
    assert "ona.new" not in json.dumps(answer)

    shop.send_dsr("R2", "access", subject(emails=[new_email.upper()]))
    assert set(outcomes(result(shop, "R2"))) == {"c-in", "c-out"}
    shop.send_dsr("R3", "access", subject(emails=[CUSTOMER_EMAIL]))
    assert result(shop, "R3")["recordings"] == []
    shop.send_dsr("R4", "access", CUSTOMER)  # other identifiers still match
    assert set(outcomes(result(shop, "R4"))) == {"c-in", "c-out"}
    manifest = json.loads(
        shop.export_zip(result(shop, "R4")["export"]["url"]).read("manifest.json")
    )
    assert new_email in json.dumps(manifest)
    assert CUSTOMER_EMAIL not in json.dumps(manifest)


def test_rectified_name_replaces_the_old_one(shop: World) -> None:
    shop.send_dsr("R1", "rectification", CUSTOMER, rectification={"name": "Ona Naujoji"})
    shop.send_dsr("R2", "access", CUSTOMER)
    manifest = shop.export_zip(result(shop, "R2")["export"]["url"]).read("manifest.json")
    assert "Ona Naujoji" in manifest.decode()
    assert "Petraitien" not in manifest.decode()


def test_restriction_apply_and_lift_show_in_the_export(shop: World) -> None:
    shop.send_dsr("R1", "restriction", CUSTOMER)
    assert outcomes(result(shop, "R1")) == {"c-in": "restricted", "c-out": "restricted"}
    shop.send_dsr("R2", "access", CUSTOMER)
    manifest = json.loads(
        shop.export_zip(result(shop, "R2")["export"]["url"]).read("manifest.json")
    )
    assert {e["call_id"]: e["restricted"] for e in manifest["recordings"]} == {
        "c-in": True,
        "c-out": True,
    }
    assert shop.recording("c-other").restricted is False  # type: ignore[union-attr]

    shop.clock.advance(minutes=5)
    shop.send_dsr("R3", "restriction", CUSTOMER, restriction="lift")
    assert outcomes(result(shop, "R3")) == {"c-in": "unrestricted", "c-out": "unrestricted"}
    shop.send_dsr("R4", "access", CUSTOMER)
    manifest = json.loads(
        shop.export_zip(result(shop, "R4")["export"]["url"]).read("manifest.json")
    )
    assert {e["restricted"] for e in manifest["recordings"]} == {False}


def test_restricted_recording_is_still_purged_on_schedule(shop: World) -> None:
    shop.send_dsr("R1", "restriction", CUSTOMER)
    shop.clock.advance(days=400)
    assert shop.tick() == 3
    assert shop.recording("c-in").status is RecordingStatus.PURGED  # type: ignore[union-attr]


def test_dsr_metrics_count_by_type_and_status(shop: World) -> None:
    shop.send_dsr("R1", "access", CUSTOMER)
    shop.send_dsr("R2", "restriction", CUSTOMER)
    shop.send_dsr("R3", "erasure", CUSTOMER, verified=False)
    for dsr_type, status in (("access", "completed"), ("restriction", "completed")):
        labels = {"type": dsr_type, "status": status}
        assert shop.sample("callvault_dsr_requests_total", labels) == 1
    assert shop.sample("callvault_dsr_completion_seconds_count", {"type": "access"}) == 1


def test_request_after_a_deadline_day_still_counts_from_receipt(world: World) -> None:
    world.clock.set(world.clock.now.replace(month=1, day=31))
    world.send_dsr("R1", "access", CUSTOMER)
    answer = result(world, "R1")
    assert answer["due_at"] == "2025-02-28T10:30:00Z"
    assert answer["received_at"] == "2025-01-31T10:30:00Z"


# --- crashes and replays ----------------------------------------------------------------------


class Crash(BaseException):
    """The worker process dies mid-request."""


def test_erasure_interrupted_by_a_crash_finishes_on_redelivery(
    shop: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = shop.objects.delete_versions
    calls: list[str] = []

    def dies_half_way(bucket: str, targets: list[Any]) -> list[Any]:
        calls.append(bucket)
        if len(calls) == 1 and len(targets) == 2:
            original(bucket, targets[:1])  # the data keys are destroyed; one object is deleted
            raise Crash
        return original(bucket, targets)

    monkeypatch.setattr(shop.objects, "delete_versions", dies_half_way)
    with pytest.raises(Crash):
        shop.send_dsr("R1", "erasure", CUSTOMER, event_id="dsr-1")
    assert shop.published("dsr.results") == []

    shop.send_dsr("R1", "erasure", CUSTOMER, event_id="dsr-1")
    answer = result(shop, "R1")
    assert answer["status"] == "completed"
    assert outcomes(answer) == {"c-in": "erased", "c-out": "erased"}
    assert len(answer["certificate"]["recordings"]) == 2
    assert certificate_verifies(shop, answer["certificate"])
    for call_id in ("c-in", "c-out"):
        assert shop.recording(call_id).status is RecordingStatus.PURGED  # type: ignore[union-attr]
    assert len(shop.published("recordings.purged")) == 2


def test_replayed_call_event_does_not_resurrect_an_erased_recording(shop: World) -> None:
    shop.send_dsr("R1", "erasure", CUSTOMER)
    assert shop.send_call(shop.call_event("c-in")) == "duplicate"
    assert shop.recording("c-in").status is RecordingStatus.PURGED  # type: ignore[union-attr]
    assert len(shop.published("recordings.stored")) == 3
    assert shop.landing_keys() == []
    shop.send_dsr("R2", "access", CUSTOMER)
    assert result(shop, "R2")["recordings"] == []


def test_subject_hold_release_after_rectification_frees_the_recording(world: World) -> None:
    world.store_call("c1")
    world.place_hold("H1", {"subject": subject(emails=[CUSTOMER_EMAIL])})
    world.send_dsr("R1", "rectification", CUSTOMER, rectification={"email": "new@example.org"})
    world.release_hold("H1")
    assert not world.recording("c1").held  # type: ignore[union-attr]
    world.clock.advance(days=400)
    assert world.tick() == 1


def test_subject_hold_keeps_a_recording_whose_identifier_was_rectified(world: World) -> None:
    world.store_call("c1")
    world.place_hold("H1", {"subject": subject(emails=[CUSTOMER_EMAIL])})
    world.send_dsr("R1", "rectification", CUSTOMER, rectification={"email": "new@example.org"})
    world.clock.advance(days=400)
    assert world.tick() == 0
    assert world.recording("c1").held  # type: ignore[union-attr]


def test_hold_on_a_rectified_email_covers_the_recording(world: World) -> None:
    world.store_call("c1")
    world.place_hold("H1", {"subject": subject(emails=["new@example.org"])})
    assert not world.recording("c1").held  # type: ignore[union-attr]
    world.send_dsr("R1", "rectification", CUSTOMER, rectification={"email": "new@example.org"})
    assert world.recording("c1").held  # type: ignore[union-attr]
    world.release_hold("H1")
    assert not world.recording("c1").held  # type: ignore[union-attr]


# --- late and replayed calls ------------------------------------------------------------------


def late_call(world: World, call_id: str, **overrides: Any) -> str:
    """A call that ended at 12:21 local time (before the requests below) arriving now."""
    return world.send_call(world.call_event(call_id, make_wav(tone=770), **overrides))


def test_a_call_that_ended_before_an_erasure_but_arrives_after_it_is_erased(
    shop: World,
) -> None:
    shop.clock.advance(days=2)
    shop.send_dsr("R1", "erasure", CUSTOMER)
    assert result(shop, "R1")["status"] == "completed"
    assert late_call(shop, "c-backlog") == "stored"  # a telephony backlog delivers it now
    assert shop.recording("c-backlog").status is RecordingStatus.PURGED  # type: ignore[union-attr]
    answers = [d for d in shop.data("dsr.results") if d["request_id"] == "R1"]
    assert len(answers) == 2  # a follow-up answer to the same request
    # it names the late call; the calls answered before are in its certificate, by id
    assert outcomes(answers[-1]) == {"c-backlog": "erased"}
    assert all(r["call_id"] for r in answers[-1]["recordings"])
    certified = {r["recording_id"] for r in answers[-1]["certificate"]["recordings"]}
    assert certified == {shop.recording_id(c) for c in ("c-in", "c-out", "c-backlog")}
    ids = [e["id"] for e in shop.published("dsr.results") if e["data"]["request_id"] == "R1"]
    assert len(set(ids)) == 2  # a new answer, a new event id
    assert certificate_verifies(shop, answers[-1]["certificate"])


def test_a_late_call_erased_while_the_first_answer_is_written_is_in_that_answer(
    shop: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The late call joins the request while its answer is being written: the answer is
    written again with it, so that no answer leaves it out."""
    shop.clock.advance(days=2)
    letters = shop.container.ctx.letters
    write = letters.erasure

    def meanwhile(*args: Any) -> Any:
        if shop.recording("c-backlog") is None:
            assert late_call(shop, "c-backlog") == "stored"
            shop.settle()  # erased on arrival, attached to the request not yet answered
        return write(*args)

    monkeypatch.setattr(letters, "erasure", meanwhile)
    shop.send_dsr("R1", "erasure", CUSTOMER)
    shop.settle()
    (answer,) = [d for d in shop.data("dsr.results") if d["request_id"] == "R1"]
    assert outcomes(answer) == {"c-in": "erased", "c-out": "erased", "c-backlog": "erased"}
    assert shop.recording("c-backlog").status is RecordingStatus.PURGED  # type: ignore[union-attr]


def test_a_call_that_ended_after_an_erasure_is_kept(shop: World) -> None:
    shop.send_dsr("R1", "erasure", CUSTOMER)
    later = "2025-03-15T09:00:00Z"  # the day after the request
    shop.clock.advance(days=2)
    assert late_call(shop, "c-new", started_at=later, ended_at=later) == "stored"
    assert shop.recording("c-new").status is RecordingStatus.STORED  # type: ignore[union-attr]
    assert len([d for d in shop.data("dsr.results") if d["request_id"] == "R1"]) == 1


def test_an_objection_also_covers_the_persons_later_calls(shop: World) -> None:
    shop.send_dsr("R1", "objection", CUSTOMER)
    later = "2025-03-15T09:00:00Z"
    shop.clock.advance(days=2)
    assert late_call(shop, "c-new", started_at=later, ended_at=later) == "stored"
    assert shop.recording("c-new").status is RecordingStatus.PURGED  # type: ignore[union-attr]
    (purged,) = [d for d in shop.data("recordings.purged") if d["call_id"] == "c-new"]
    assert purged["reason"] == "objection"


def test_a_short_objection_memory_still_catches_calls_that_ended_before_it(
    make_world: Callable[..., World],
) -> None:
    world = make_world(objection_memory="P1D")
    world.clock.advance(days=2)
    world.send_dsr("R1", "objection", CUSTOMER)
    world.clock.advance(days=20)  # past the memory, within the late-call window
    assert world.handle(ForgetErasedSubjects()) == "forgotten:0"
    assert late_call(world, "c-backlog") == "stored"
    assert world.recording("c-backlog").status is RecordingStatus.PURGED  # type: ignore[union-attr]


def test_late_calls_are_caught_only_while_they_can_still_arrive(shop: World) -> None:
    shop.clock.advance(days=2)
    shop.send_dsr("R1", "erasure", CUSTOMER)
    shop.clock.advance(days=7 + 30 + 1)  # input topic and dead-letter topic retention
    assert shop.handle(ForgetErasedSubjects()) == "forgotten:1"
    assert late_call(shop, "c-ancient") == "stored"
    assert shop.recording("c-ancient").status is RecordingStatus.STORED  # type: ignore[union-attr]


def test_a_late_call_of_a_held_person_waits_for_the_hold(shop: World) -> None:
    shop.clock.advance(days=2)
    shop.place_hold("H1", {"call_ids": ["c-backlog"]})
    shop.send_dsr("R1", "erasure", CUSTOMER)
    assert late_call(shop, "c-backlog") == "stored"
    assert shop.recording("c-backlog").status is RecordingStatus.STORED  # type: ignore[union-attr]
    answers = [d for d in shop.data("dsr.results") if d["request_id"] == "R1"]
    assert answers[-1]["status"] == "partial"
    assert outcomes(answers[-1])["c-backlog"] == "held"
    shop.release_hold("H1")
    answers = [d for d in shop.data("dsr.results") if d["request_id"] == "R1"]
    assert answers[-1]["status"] == "completed"
    assert outcomes(answers[-1])["c-backlog"] == "erased"


def test_stale_landing_and_export_copies_are_swept(shop: World) -> None:
    shop.land("lost/dead-letter.wav", make_wav(0.1))  # the audio of a call dead-lettered now
    shop.send_dsr("R1", "access", CUSTOMER)
    assert shop.handle(SweepCopies()) == "swept:0/0"  # nothing is old yet
    shop.clock.advance(days=7, hours=2)  # the export's URL expired
    assert shop.handle(SweepCopies()) == "swept:0/1"
    assert list(shop.objects.list_keys("exports")) == []
    shop.land("fresh/call.wav", make_wav(0.1))
    shop.clock.advance(days=30)  # input and dead-letter retention: the event is gone
    assert shop.handle(SweepCopies()) == "swept:1/0"
    assert shop.landing_keys() == ["fresh/call.wav"]


def test_store_side_expiry_rules_follow_the_settings(make_world: Any) -> None:
    world = make_world(export_ttl="P2D", input_topic_retention="P3D", deadletter_retention="P10D")
    rules = expiry_rules(world.settings)
    assert rules["exports"] == ("", 3)
    assert rules["landing"] == ("", 14)
    assert rules["vault"] == ("recordings/", 12 * 31 + 1 + 30)  # P1Y, generously, plus a margin
