"""Ingest through the pipeline, as the telephony team sees it: a call.ended event in, one
encrypted recording in the vault and one recording.stored event out - or a dead letter that
says why, while the next good event still goes through."""

from __future__ import annotations

import base64
import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import (
    FLAC,
    HTML,
    LANDING,
    MP3_ID3,
    OGG,
    PDF,
    VAULT,
    WAV,
    World,
    call_data,
    cloudevent,
    encode,
    make_wav,
    personal_data_in,
    sha256,
)

from tests.fakes.memory import MemoryBus, MemoryUnitOfWork
from workers.adapters import crypto
from workers.app.handlers.reconcile import reconcile
from workers.domain.errors import TransientError
from workers.domain.model import RecordingStatus

ULAW = bytes(range(128, 256)) * 8  # headerless G.711: only a declared type says what it is

STORED_FIELDS = {
    "recording_id",
    "call_id",
    "tenant",
    "collected_at",
    "stored_at",
    "retention_due_at",
    "size_bytes",
    "sha256",
    "content_type",
}
ENVELOPE_FIELDS = {
    *("specversion", "id", "source", "type", "time", "datacontenttype", "data"),
    *("subject", "dataschema"),  # what the event is about; the JSON Schema of its data
}


def vault_plaintext(world: World, call_id: str) -> bytes:
    recording = world.recording(call_id)
    assert recording is not None
    assert recording.wrapped_key is not None
    blob = b"".join(world.objects.get_stream(VAULT, recording.object_key))
    dek = world.ctx.keys.unwrap(
        recording.wrapped_key, recording.master_key_id, recording.recording_id
    )
    return b"".join(crypto.decrypt_stream(dek, recording.recording_id, [blob]))


def assert_no_personal_data_published(world: World) -> None:
    for topic, _, value in world.bus.records:
        if topic != "callvault.deadletter":
            assert personal_data_in(value.decode()) == [], (topic, value)


# --- the happy path -------------------------------------------------------------------------


def test_stored_event_carries_exactly_the_contract_fields(world: World) -> None:
    assert world.send_call(world.call_event("pbx1-0001@pbx.example")) == "stored"

    (event,) = world.published("recordings.stored")
    assert set(event) == ENVELOPE_FIELDS
    assert event["specversion"] == "1.0"
    assert event["type"] == "callvault.recording.stored.v1"
    assert event["datacontenttype"] == "application/json"
    assert event["source"] == "urn:callvault"
    assert event["subject"] == world.recording_id("pbx1-0001@pbx.example")
    assert event["dataschema"] == (
        "https://callvault.dev/schemas/callvault.recording.stored.v1.schema.json"
    )
    data = event["data"]
    assert set(data) == STORED_FIELDS | {"duration_seconds", "channels"}
    assert data["recording_id"] == world.recording_id("pbx1-0001@pbx.example")
    assert data["call_id"] == "pbx1-0001@pbx.example"
    assert data["tenant"] == "shop-lt"
    assert data["collected_at"] == "2025-03-14T10:21:02Z"  # ended_at 12:21:02+02:00 in UTC
    assert data["retention_due_at"] == "2026-03-14T10:21:02Z"  # P1Y from collection
    assert data["stored_at"] == "2025-03-14T10:30:00Z"
    assert data["size_bytes"] == len(WAV)
    assert data["sha256"] == sha256(WAV)
    assert data["content_type"] == "audio/wav"
    assert data["duration_seconds"] == pytest.approx(0.25)  # telephony: read from the header
    assert data["channels"] == 1
    ((key, _),) = world.records("recordings.stored")
    assert key == data["recording_id"]
    assert world.sample("callvault_recordings_stored_total") == 1


def test_nothing_personal_is_published(world: World) -> None:
    world.store_call("c-inbound")
    world.store_call(
        "c-outbound", direction="outbound", caller="+370 521 44500", callee="8 612 34567"
    )
    world.send_call(world.call_event("c-no-notice", notice_played=False))
    assert len(world.bus.records) == 3
    assert_no_personal_data_published(world)


def test_vault_holds_ciphertext_that_decrypts_to_the_original(world: World) -> None:
    recording = world.store_call("c1")
    versions = world.vault_versions()
    assert list(versions) == [recording.object_key]
    (version,) = versions[recording.object_key]
    blob = version.data
    assert blob is not None
    assert blob != WAV
    assert WAV[44:108] not in blob  # no PCM sample run survives in the clear
    assert b"RIFF" not in blob
    assert "c1" not in recording.object_key  # the vault key is ours, never the caller's
    assert vault_plaintext(world, "c1") == WAV
    assert recording.status is RecordingStatus.STORED
    assert recording.customer_sealed is not None
    assert b"example.com" not in recording.customer_sealed


@pytest.mark.parametrize(
    ("audio", "media_type"),
    [(WAV, "audio/wav"), (MP3_ID3, "audio/mpeg"), (OGG, "audio/ogg"), (FLAC, "audio/flac")],
)
def test_every_supported_format_is_stored_with_its_sniffed_type(
    world: World, audio: bytes, media_type: str
) -> None:
    world.store_call("c1", audio, content_type=None)
    (data,) = world.data("recordings.stored")
    assert data["content_type"] == media_type
    assert vault_plaintext(world, "c1") == audio


@pytest.mark.parametrize(
    "withheld", ["Anonymous", "", "unknown", "0000000000", "+266696687", "sip:anonymous@x.invalid"]
)
def test_withheld_caller_is_stored_as_withheld_with_no_phone_identifier(
    world: World, withheld: str
) -> None:
    recording = world.store_call("c1", caller=withheld, customer=None)
    assert recording.customer_sealed is not None
    assert recording.wrapped_key is not None
    dek = world.ctx.keys.unwrap(
        recording.wrapped_key, recording.master_key_id, recording.recording_id
    )
    personal = crypto.open_json(dek, recording.recording_id, recording.customer_sealed)
    assert personal == {"phone": "withheld"}
    assert world.subject_keys_of(recording.recording_id) == frozenset()


def test_recording_without_readable_metadata_is_stored_without_it(world: World) -> None:
    world.store_call("c1", OGG, content_type=None)  # an Ogg head with no pages after it
    (data,) = world.data("recordings.stored")
    assert "duration_seconds" not in data


def test_landing_copy_is_deleted_after_store(world: World) -> None:
    world.store_call("c1")
    assert world.landing_keys() == []


def test_file_uri_under_the_root_is_stored(world: World) -> None:
    (world.fetch_root / "rec 001.wav").write_bytes(WAV)
    uri = f"file://{world.fetch_root}/rec%20001.wav"
    event = cloudevent("callvault.call.ended.v1", call_data("c-file", uri))
    assert world.send_call(event) == "stored"
    assert vault_plaintext(world, "c-file") == WAV


# --- idempotency ----------------------------------------------------------------------------


def test_redelivered_event_creates_nothing_twice(world: World) -> None:
    event = world.call_event("c1")
    assert world.send_call(event) == "stored"
    assert world.send_call(event) == "duplicate"
    assert len(world.recordings()) == 1
    assert len(world.published("recordings.stored")) == 1
    (versions,) = world.vault_versions().values()
    assert len(versions) == 1
    assert world.sample("callvault_recordings_stored_total") == 1


def test_second_event_for_the_same_call_creates_nothing_twice(world: World) -> None:
    world.store_call("c1")
    again = world.call_event("c1")  # a new event id and a new landing copy of the same audio
    assert world.send_call(again) == "duplicate"
    assert len(world.recordings()) == 1
    assert len(world.published("recordings.stored")) == 1
    assert world.landing_keys() == []  # the extra landing copy does not linger


def test_reused_call_id_never_deletes_another_calls_audio(world: World) -> None:
    world.store_call("c1")
    other_audio = make_wav(tone=880)
    other = world.call_event("c1", audio=other_audio)  # another call, the same call id
    other["data"]["recording"].pop("sha256")
    other["data"]["recording"].pop("size_bytes")
    other["data"]["tenant"] = "another-shop"
    assert world.send_call(other) == "deadletter"
    (letter,) = world.data("callvault.deadletter")
    assert letter["error_code"] == "duplicate_call_id"
    assert world.landing_keys() == ["2025/03/14/c1.wav"]  # kept for the operator
    assert vault_plaintext(world, "c1") == WAV  # the first recording stays
    assert len(world.published("recordings.stored")) == 1


def test_declared_checksum_of_other_audio_is_a_duplicate_call_id(world: World) -> None:
    world.store_call("c1")
    other = world.call_event("c1", audio=make_wav(tone=880))
    world.objects.delete_object(LANDING, "2025/03/14/c1.wav")  # the copy is gone already
    assert world.send_call(other) == "deadletter"
    assert world.data("callvault.deadletter")[0]["error_code"] == "duplicate_call_id"


# --- the recording notice -------------------------------------------------------------------


def test_call_without_notice_is_discarded(world: World) -> None:
    event = world.call_event("c-quiet", notice_played=False)
    assert world.send_call(event) == "discarded"
    (discarded,) = world.published("recordings.purged")
    assert discarded["type"] == "callvault.recording.discarded.v1"
    assert discarded["data"]["call_id"] == "c-quiet"
    assert discarded["data"]["reason"] == "notice_not_played"
    ((key, _),) = world.records("recordings.purged")
    assert key == "c-quiet"
    assert world.landing_keys() == []
    assert world.vault_versions() == {}
    assert world.recordings() == []
    assert world.published("recordings.stored") == []
    # redelivery: no second discard event
    world.land("again.wav", WAV)
    world.send_call(event)
    assert len(world.published("recordings.purged")) == 1


def test_a_discarded_call_sent_again_as_if_the_notice_had_played_is_not_stored(
    world: World,
) -> None:
    """The call id names the discarded call: the same audio is a repeat (its landing copy
    goes), other audio is refused and kept for a person to look at."""
    assert world.send_call(world.call_event("c-quiet", notice_played=False)) == "discarded"
    assert world.send_call(world.call_event("c-quiet")) == "duplicate"
    assert world.landing_keys() == []
    other = world.call_event("c-quiet", make_wav(tone=990))
    assert world.send_call(other) == "deadletter"
    assert world.data("callvault.deadletter")[0]["error_code"] == "duplicate_call_id"
    assert world.landing_keys() == ["2025/03/14/c-quiet.wav"]
    assert world.recordings() == []
    assert world.published("recordings.stored") == []
    assert world.vault_versions() == {}  # what each upload left went again


def test_notice_not_required_keeps_the_recording(make_world: Any) -> None:
    world = make_world(require_notice="false")
    assert world.send_call(world.call_event("c-quiet", notice_played=False)) == "stored"


# --- bad inputs -----------------------------------------------------------------------------


def _event(world: World, **changes: Any) -> dict[str, Any]:
    event = world.call_event("c-bad")
    for path, value in changes.items():
        node = event["data"]
        *parents, last = path.split("__")
        for part in parents:
            node = node[part]
        node[last] = value
    return event


def _bad_cases() -> list[tuple[str, str, Any]]:
    """(name, expected error_code, builder(world) -> bytes)."""

    def ev(**changes: Any) -> Any:
        return lambda w: encode(_event(w, **changes))

    def landed(audio: bytes, **changes: Any) -> Any:
        def build(w: World) -> bytes:
            uri = w.land("bad.bin", audio)
            data = call_data("c-bad", uri, audio, content_type=None)
            for key, value in changes.items():
                data["recording"][key] = value
            return encode(cloudevent("callvault.call.ended.v1", data))

        return build

    def wrong_type(w: World) -> bytes:
        event = _event(w)
        event["type"] = "callvault.dsr.requested.v1"
        return encode(event)

    def no_data(w: World) -> bytes:
        event = _event(w)
        del event["data"]
        return encode(event)

    return [
        ("truncated-json", "invalid_json", lambda w: encode(_event(w))[:-20]),
        ("not-utf8", "invalid_json", lambda w: b"\xff\xfe{\x00"),
        ("empty-value", "invalid_json", lambda w: b""),
        ("json-array", "schema_violation", lambda w: b"[1, 2]"),
        ("envelope-without-data", "schema_violation", no_data),
        ("other-event-type", "schema_violation", wrong_type),
        ("ended-before-started", "schema_violation", ev(ended_at="2025-03-14T09:00:00Z")),
        ("notice-not-boolean", "schema_violation", ev(notice_played="yes")),
        ("size-not-integer", "schema_violation", ev(recording__size_bytes="12")),
        ("no-offset", "schema_violation", ev(ended_at="2025-03-14T12:21:02")),
        ("bad-call-id", "schema_violation", ev(call_id="a/b")),
        ("bad-direction", "schema_violation", ev(direction="sideways")),
        ("ftp-uri", "unsupported_uri", ev(recording__uri="ftp://pbx.example/a.wav")),
        ("no-scheme", "schema_violation", ev(recording__uri="/var/spool/a.wav")),
        ("nul-in-uri", "unsupported_uri", ev(recording__uri="s3://landing/a\x00.wav")),
        ("other-bucket", "uri_not_allowed", ev(recording__uri="s3://vault/recordings/x.cva")),
        ("dotdot-escape", "uri_not_allowed", ev(recording__uri="s3://landing/../vault/x")),
        ("host-not-allowed", "uri_not_allowed", ev(recording__uri="https://evil.example/a.wav")),
        (
            "credentials-in-url",
            "uri_not_allowed",
            ev(recording__uri="https://u:p@recordings.pbx.example/a.wav"),
        ),
        ("file-outside-root", "uri_not_allowed", ev(recording__uri="file:///etc/passwd")),
        ("missing-landing-object", "fetch_failed", ev(recording__uri="s3://landing/nope.wav")),
        ("size-mismatch", "checksum_mismatch", ev(recording__size_bytes=len(WAV) + 1)),
        ("sha-mismatch", "checksum_mismatch", ev(recording__sha256=sha256(b"other"))),
        ("pdf", "not_audio", landed(PDF)),
        ("html", "not_audio", landed(HTML)),
        ("empty-file", "not_audio", landed(b"")),
        ("declared-type-lies", "not_audio", ev(recording__content_type="audio/mpeg")),
        *[
            (f"raw-{declared}", "unsupported_audio", landed(ULAW, content_type=declared))
            for declared in (
                "audio/pcmu;rate=0",
                "audio/pcmu;rate=-8000",
                "audio/pcmu;rate=abc",
                "audio/pcma;rate=99999999",
                "audio/pcmu;channels=0",
                "audio/gsm;channels=1000",
            )
        ],
    ]


BAD_CASES = _bad_cases()


@pytest.mark.parametrize(
    ("code", "build"), [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES]
)
def test_bad_input_is_dead_lettered_and_the_pipeline_goes_on(
    world: World, code: str, build: Any
) -> None:
    raw = build(world)
    assert world.deliver("calls.ended", raw, "c-bad") == "deadletter"

    (letter,) = world.published("callvault.deadletter")
    assert letter["type"] == "callvault.deadletter.v1"
    data = letter["data"]
    assert data["error_code"] == code
    assert base64.b64decode(data["value_b64"]) == raw
    assert data["source_topic"] == "calls.ended"
    assert (data["partition"], data["offset"], data["key"]) == (0, 0, "c-bad")
    assert data["error"]
    assert world.sample("callvault_deadletter_total", {"error_code": code}) == 1
    # no half-stored remains
    assert world.recordings() == []
    assert world.vault_versions() == {}
    assert world.published("recordings.stored") == []

    assert world.send_call(world.call_event("c-good")) == "stored"
    (stored,) = world.data("recordings.stored")
    assert stored["call_id"] == "c-good"


def test_dead_letter_validates_against_its_schema(world: World) -> None:
    from workers.adapters.kafka.codec import Codec

    world.deliver("calls.ended", b"{not json", "k")
    (letter,) = world.published("callvault.deadletter")
    codec = Codec()
    codec.check("cloudevent", letter)
    codec.check("callvault.deadletter.v1", letter["data"])


def test_dead_lettered_event_can_be_replayed_after_a_fix(world: World) -> None:
    event = _event(world, recording__sha256=sha256(b"typo"))
    assert world.send_call(event) == "deadletter"
    (letter,) = world.data("callvault.deadletter")
    fixed = json.loads(base64.b64decode(letter["value_b64"]))
    fixed["data"]["recording"]["sha256"] = sha256(WAV)
    assert world.send_call(fixed) == "stored"
    assert vault_plaintext(world, "c-bad") == WAV


# --- failures on the way --------------------------------------------------------------------


class Crash(BaseException):
    """The worker process dies: nothing catches this, like SIGKILL."""


def test_crash_after_upload_before_commit_leaves_one_recording(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = MemoryUnitOfWork.commit
    crashes = []

    def crash_once(self: MemoryUnitOfWork) -> None:
        if not crashes:
            crashes.append(1)
            raise Crash
        original(self)

    monkeypatch.setattr(MemoryUnitOfWork, "commit", crash_once)
    event = world.call_event("c1")
    with pytest.raises(Crash):
        world.send_call(event)
    assert world.recording("c1") is None  # the commit never happened
    ((key, leftover),) = world.vault_versions().items()
    assert len(leftover) == 1  # an upload whose data key died with the process
    assert world.published("recordings.stored") == []

    assert world.send_call(event) == "stored"  # Kafka redelivers the uncommitted event
    assert len(world.recordings()) == 1
    recording = world.recording("c1")
    assert recording is not None
    assert key == recording.object_key
    assert vault_plaintext(world, "c1") == WAV
    assert len(world.published("recordings.stored")) == 1
    assert world.landing_keys() == []
    # the unreadable leftover is an orphan version; reconciliation removes it
    found = reconcile(world.ctx, repair=True, orphan_grace=timedelta(0))
    assert found.orphan_objects == [f"{key}@{leftover[0].version_id}"]
    assert [v.version_id for v in world.vault_versions()[key]] == [recording.object_version]
    assert reconcile(world.ctx, orphan_grace=timedelta(0)).counts()["orphan_object"] == 0


def test_transient_commit_failure_retries_the_commit_not_the_upload(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    uploads = []
    original = world.objects.put_stream

    def counting_put(bucket: str, key: str, chunks: Any, **kw: Any) -> Any:
        uploads.append(bucket)
        return original(bucket, key, chunks, **kw)

    event = world.call_event("c1")
    monkeypatch.setattr(world.objects, "put_stream", counting_put)
    world.db.fail_commits = 2  # the database restarts while the audio is being committed
    assert world.send_call(event) == "stored"
    assert uploads == [VAULT]  # the audio was uploaded once
    assert len(world.recordings()) == 1
    (versions,) = world.vault_versions().values()
    assert len(versions) == 1
    assert vault_plaintext(world, "c1") == WAV
    assert len(world.published("recordings.stored")) == 1


def test_transient_object_store_failure_is_retried(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = world.call_event("c1")
    original = world.objects.put_stream
    calls = []

    def flaky_put(bucket: str, key: str, chunks: Any, **kw: Any) -> Any:
        calls.append(bucket)
        if len(calls) == 1:
            list(chunks)
            raise TransientError("object store unreachable: connection reset by peer")
        return original(bucket, key, chunks, **kw)

    monkeypatch.setattr(world.objects, "put_stream", flaky_put)
    assert world.send_call(event) == "stored"
    assert len(calls) == 2
    assert vault_plaintext(world, "c1") == WAV


def test_persistent_transient_failure_stops_instead_of_skipping(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = world.objects.put_stream
    attempts = []

    def down(*args: Any, **kw: Any) -> Any:
        attempts.append(1)
        if len(attempts) <= 6:
            raise TransientError("object store down")
        return original(*args, **kw)

    event = world.call_event("c1")
    monkeypatch.setattr(world.objects, "put_stream", down)
    with pytest.raises(TransientError):
        world.send_call(event)
    assert len(attempts) == 6  # bounded retries, then the worker stops
    assert world.published("callvault.deadletter") == []  # not dropped: redelivered later
    assert world.send_call(event) == "stored"  # the store is back
    assert len(world.published("recordings.stored")) == 1


def test_dead_letter_publish_survives_a_broker_hiccup(world: World) -> None:
    world.bus.fail_next = 2
    assert world.deliver("calls.ended", b"garbage", "k1") == "deadletter"
    (letter,) = world.data("callvault.deadletter")
    assert letter["error_code"] == "invalid_json"


def test_outbox_keeps_events_while_the_broker_is_down(world: World) -> None:
    world.bus.fail_next = 1
    with pytest.raises(TransientError):
        world.send_call(world.call_event("c1"))  # the handler succeeded; the relay failed
    assert world.recording("c1").status is RecordingStatus.STORED  # type: ignore[union-attr]
    assert world.published("recordings.stored") == []
    assert world.relay_all() == 1
    assert world.relay_all() == 0
    assert len(world.published("recordings.stored")) == 1


def test_bus_fake_raises_transient_errors() -> None:
    bus = MemoryBus()
    bus.fail_next = 1
    with pytest.raises(TransientError):
        bus.publish([("t", None, b"x")])
    bus.publish([("t", None, b"x")])
    assert bus.records == [("t", None, b"x")]


def test_event_from_another_time_zone_is_collected_in_utc(world: World) -> None:
    event = world.call_event(
        "c-ny", started_at="2024-02-29T18:00:00-05:00", ended_at="2024-02-29T19:30:00-05:00"
    )
    world.send_call(event)
    (data,) = world.data("recordings.stored")
    assert data["collected_at"] == "2024-03-01T00:30:00Z"
    assert data["retention_due_at"] == "2025-03-01T00:30:00Z"
    recording = world.recording("c-ny")
    assert recording is not None
    assert recording.collected_at == datetime(2024, 3, 1, 0, 30, tzinfo=UTC)


def test_bad_inputs_do_not_disturb_each_other(world: World) -> None:
    good = world.call_event("c-good")
    bad = copy.deepcopy(good)
    bad["data"]["recording"]["uri"] = f"s3://{LANDING}/missing.wav"
    bad["data"]["call_id"] = "c-other"
    assert world.send_call(bad) == "deadletter"
    assert world.send_call(good) == "stored"
    assert [r.call_id for r in world.recordings()] == ["c-good"]


def test_audio_over_the_size_limit_is_refused(make_world: Any) -> None:
    world = make_world(max_audio_bytes=len(WAV) - 1)
    assert world.send_call(world.call_event("c-big")) == "deadletter"
    (letter,) = world.data("callvault.deadletter")
    assert letter["error_code"] == "fetch_failed"
    assert world.vault_versions() == {}
    assert world.recordings() == []


def test_declared_sha256_compares_case_insensitively(world: World) -> None:
    event = world.call_event("c1")
    event["data"]["recording"]["sha256"] = sha256(WAV).upper()
    assert world.send_call(event) == "stored"
    (data,) = world.data("recordings.stored")
    assert data["sha256"] == sha256(WAV)
