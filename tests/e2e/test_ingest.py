"""Ingest end to end: call-ended events in, encrypted recordings in the vault, metadata in
PostgreSQL, recording.stored out; bad input dead-lettered while good input flows."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from testbed.probes import wait_for
from tests.e2e.harness import Callvault, cloudevent, make_wav
from workers.adapters import crypto

FLAC = b"fLaC\x00\x00\x00\x22" + bytes(34) + b"audio-frames" * 100
MP3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x64" + bytes(2000)
OGG = b"OggS\x00\x02" + bytes(22) + b"\x13OpusHead" + bytes(2000)


def stored_by_call(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        found.setdefault(event["data"]["call_id"], []).append(event)
    return found


# The customer's identifiers in the forms they could take in an output. Values whose format
# cannot carry them (ids, hashes, timestamps: random digits that could match by chance) are
# not searched.
PERSONAL = ("612 34567", "61234567", "jonas@example.lt", "A-1")
_OPAQUE = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{64}"
    r"|\d{4}-\d{2}-\d{2}T[\d:.]+(?:Z|[+-]\d{2}:\d{2})"
)


def personal_data_in(event: dict[str, Any]) -> list[str]:
    """Personal data found in an output event's values."""
    values = [v for v in _strings(event) if not _OPAQUE.fullmatch(v)]
    return [p for v in values for p in PERSONAL if p.casefold() in v.casefold()]


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [str(value)]


def test_the_personal_data_probe_finds_what_it_looks_for() -> None:
    assert personal_data_in({"a": "call from 8 612 34567", "b": ["Jonas@Example.lt"]})
    assert personal_data_in({"c": "+37061234567"})
    opaque = {"sha256": "6123456" + "7" * 57, "at": "2026-06-12T06:12:34.561234Z"}
    assert personal_data_in(opaque | {"id": "61234567-0000-4000-8000-000000000000"}) == []


def row(cv: Callvault, call_id: str) -> dict[str, Any]:
    with psycopg.connect(cv.settings.database_url.get_secret_value()) as conn:
        cur = conn.execute("SELECT * FROM recordings WHERE call_id = %s", (call_id,))
        names = [c.name for c in cur.description or []]
        found = cur.fetchone()
        assert found is not None, f"no recording row for {call_id}"
        return dict(zip(names, found, strict=True))


def test_calls_become_encrypted_recordings(callvault: Callvault) -> None:
    cv = callvault
    cv.start_worker()
    clips = {
        "c-wav": (make_wav(2.0), ".wav"),
        "c-flac": (FLAC, ".flac"),
        "c-mp3": (MP3, ".mp3"),
        "c-ogg": (OGG, ".ogg"),
    }
    sent = {
        cid: cv.call(cid, audio, customer={"email": "Jonas@Example.lt", "order_ids": ["A-1"]})
        for cid, (audio, _) in clips.items()
    }
    events = cv.read("recordings_stored", lambda seen: len(seen) >= len(clips))
    by_call = stored_by_call(events)
    assert set(by_call) == set(clips)
    for call_id, (audio, _) in clips.items():
        data = by_call[call_id][0]["data"]
        required = {
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
        assert required <= set(data) <= required | {"duration_seconds", "channels"}
        assert data["sha256"] == hashlib.sha256(audio).hexdigest()
        assert data["size_bytes"] == len(audio)
        # one year from collection, on the UTC calendar
        ended = datetime.fromisoformat(sent[call_id]["ended_at"].replace("Z", "+00:00"))
        due = datetime.fromisoformat(data["retention_due_at"].replace("Z", "+00:00"))
        assert due.date() == ended.replace(year=ended.year + 1).date()

        record = row(cv, call_id)
        ciphertext = b"".join(cv.objects.get_stream(cv.settings.vault_bucket, record["object_key"]))
        assert audio not in ciphertext
        assert ciphertext[:4] == b"CVA1"
        assert record["master_key_id"] == "m1"
        master = AESGCM(cv.settings.key("master_key"))
        dek = crypto.unwrap_key(master, bytes(record["wrapped_key"]), data["recording_id"])
        assert b"".join(crypto.decrypt_stream(dek, data["recording_id"], [ciphertext])) == audio
        assert "Jonas" not in json.dumps(record, default=str)
        # the landing copy is gone
        landing_key = sent[call_id]["recording"]["uri"].split("/", 3)[3]
        assert cv.objects.list_versions(cv.settings.landing_bucket, landing_key) == []
    wait_for(
        lambda: cv.metric("callvault_recordings_stored_total") >= len(clips), 15, "stored counter"
    )
    for event in events:  # no personal data leaves callvault
        assert personal_data_in(event) == []


def test_bad_input_is_dead_lettered_and_good_input_still_flows(callvault: Callvault) -> None:
    cv = callvault
    cv.start_worker()
    wav = make_wav(0.5)
    cv.call("good-before", wav)
    cv.send("calls_ended", "junk", b"{not json")
    cv.send("calls_ended", "schema", cloudevent("callvault.call.ended.v1", {"call_id": "x y"}))
    cv.call("bad-scheme", uri="ftp://example.com/a.wav")
    cv.call("bad-host", uri="https://evil.example/a.wav")
    cv.call("bad-bucket", uri="s3://someone-elses-bucket/a.wav")
    cv.call("missing", uri=f"s3://{cv.settings.landing_bucket}/nothing-here.wav")
    corrupted = cv.land(wav)
    cv.call("bad-sum", uri=corrupted)  # declared checksum below is wrong
    data = {
        "call_id": "bad-sum2",
        "direction": "inbound",
        "caller": "+37061234567",
        "callee": "+37052144500",
        "started_at": "2026-01-01T10:00:00Z",
        "ended_at": "2026-01-01T10:03:00Z",
        "notice_played": True,
        "recording": {"uri": cv.land(wav), "sha256": "0" * 64},
    }
    cv.send("calls_ended", "bad-sum2", cloudevent("callvault.call.ended.v1", data))
    cv.call("not-audio", b"%PDF-1.7 this is a contract, not a call" * 50, declare=False)
    cv.call("good-after", make_wav(0.6))

    dead = cv.read("deadletter", lambda seen: len(seen) >= 8)
    codes = {e["data"]["key"]: e["data"]["error_code"] for e in dead}
    assert codes == {
        "junk": "invalid_json",
        "schema": "schema_violation",
        "bad-scheme": "unsupported_uri",
        "bad-host": "uri_not_allowed",
        "bad-bucket": "uri_not_allowed",
        "missing": "fetch_failed",
        "bad-sum2": "checksum_mismatch",
        "not-audio": "not_audio",
    }
    junk = next(e for e in dead if e["data"]["key"] == "junk")
    assert base64.b64decode(junk["data"]["value_b64"]) == b"{not json"
    stored = cv.read(
        "recordings_stored",
        lambda seen: (
            {"good-before", "good-after", "bad-sum"} <= {e["data"]["call_id"] for e in seen}
        ),
    )
    assert "not-audio" not in {e["data"]["call_id"] for e in stored}
    wait_for(lambda: cv.metric("callvault_deadletter_total") >= 8, 15, "dead-letter counter")
    # a rejected file leaves nothing in the vault
    assert all(
        not k.endswith(".cva") or "not-audio" not in k
        for k in cv.objects.list_keys(cv.settings.vault_bucket, "recordings/")
    )


def test_redelivery_and_duplicates_create_one_recording(callvault: Callvault) -> None:
    cv = callvault
    wav = make_wav(0.4)
    event_id = str(uuid.uuid4())
    first = cv.call("dup-1", wav, event_id=event_id)
    raw = cloudevent("callvault.call.ended.v1", first, event_id)
    cv.send("calls_ended", "dup-1", raw)  # the same event redelivered
    cv.send("calls_ended", "dup-1", cloudevent("callvault.call.ended.v1", first))  # new id
    cv.start_worker()
    cv.start_worker(metrics_port=_port())  # a second worker in the same consumer group
    cv.call("dup-2", make_wav(0.3))
    stored = cv.read(
        "recordings_stored", lambda seen: {"dup-1", "dup-2"} <= {e["data"]["call_id"] for e in seen}
    )
    time.sleep(3)
    stored = cv.read("recordings_stored", lambda seen: True, timeout=10)
    assert [e["data"]["call_id"] for e in stored].count("dup-1") == 1
    with psycopg.connect(cv.settings.database_url.get_secret_value()) as conn:
        count = conn.execute("SELECT count(*) FROM recordings WHERE call_id = 'dup-1'").fetchone()
    assert count == (1,)
    record = row(cv, "dup-1")
    assert len(cv.objects.list_versions(cv.settings.vault_bucket, record["object_key"])) == 1


def test_notice_not_played_discards_the_audio(callvault: Callvault) -> None:
    cv = callvault
    cv.start_worker()
    data = cv.call("no-notice", make_wav(0.3), notice=False)
    purged = cv.read("recordings_purged", lambda seen: len(seen) >= 1)
    assert purged[0]["type"] == "callvault.recording.discarded.v1"
    assert purged[0]["data"]["reason"] == "notice_not_played"
    assert purged[0]["data"]["call_id"] == "no-notice"
    key = data["recording"]["uri"].split("/", 3)[3]
    assert cv.objects.list_versions(cv.settings.landing_bucket, key) == []
    assert list(cv.objects.list_keys(cv.settings.vault_bucket, "recordings/")) == []


def test_kill_9_mid_ingest_then_restart_leaves_one_clean_recording(callvault: Callvault) -> None:
    cv = callvault
    big = make_wav(1.0) + bytes(60 * 1024 * 1024)  # a long call: ~60 MiB
    big = big[:4] + len(big).to_bytes(4, "little") + big[8:]
    uri = cv.land(big)
    worker = cv.start_worker()
    cv.call("killed", uri=uri)
    # wait until the upload to the vault is under way, then kill -9
    wait_for(lambda: _uploads_in_progress(cv) > 0, 60, "the upload to start")
    cv.kill(worker)
    cv.start_worker()
    stored = cv.read(
        "recordings_stored",
        lambda seen: any(e["data"]["call_id"] == "killed" for e in seen),
        timeout=180,
    )
    assert [e["data"]["call_id"] for e in stored].count("killed") == 1
    record = row(cv, "killed")
    assert record["status"] == "stored"
    versions = cv.objects.list_versions(cv.settings.vault_bucket, record["object_key"])
    assert len(versions) == 1
    assert sorted(cv.objects.list_keys(cv.settings.vault_bucket, "recordings/")) == [
        record["object_key"]
    ]


def _uploads_in_progress(cv: Callvault) -> int:
    """Multipart uploads open in the vault bucket (a long recording streaming in)."""
    listing = cv.objects.client._list_multipart_uploads(cv.settings.vault_bucket)
    return len(listing.uploads)


def _port() -> int:
    from testbed.stack import free_port

    return free_port()


__all__ = ["UTC", "timedelta"]
