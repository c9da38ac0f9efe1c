"""Data-subject requests end to end, one per type, as a DSR portal would send them."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import urllib.request
import uuid
import zipfile
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.e2e.harness import CALLVAULT, Callvault, cloudevent, make_wav, stamp
from workers.adapters.signatures import check_certificate

PERSON = "+370 612 34567"  # as the telephony system wrote it
NOTATIONS = ["8 612 34567", "+37061234567", "(8 612) 34 567", "0037061234567"]


def key_set(cv: Callvault) -> list[dict[str, str]]:
    """The key set a regulator is given, as `callvault public-key` prints it."""
    done = subprocess.run(
        [CALLVAULT, "public-key"], env=cv.env, capture_output=True, check=True, timeout=60
    )
    keys: list[dict[str, str]] = json.loads(done.stdout)["keys"]
    return keys


@pytest.fixture
def running(callvault: Callvault) -> Callvault:
    callvault.start_worker()
    return callvault


def request(cv: Callvault, kind: str, subject: dict[str, list[str]], **extra: Any) -> str:
    request_id = f"dsr-{uuid.uuid4().hex[:10]}"
    data = {
        "request_id": request_id,
        "type": kind,
        "received_at": stamp(datetime.now(UTC)),
        "identity_verified": True,
        "subject": subject,
        **extra,
    }
    cv.send("dsr_requests", request_id, cloudevent("callvault.dsr.requested.v1", data))
    return request_id


def result(cv: Callvault, request_id: str, count: int = 1) -> list[dict[str, Any]]:
    answers = cv.read(
        "dsr_results",
        lambda seen: sum(e["data"]["request_id"] == request_id for e in seen) >= count,
        timeout=120,
    )
    return [e["data"] for e in answers if e["data"]["request_id"] == request_id]


def store(cv: Callvault, calls: dict[str, dict[str, Any]]) -> dict[str, bytes]:
    audio = {}
    for call_id, options in calls.items():
        audio[call_id] = make_wav(0.3 + len(audio) / 10)
        cv.call(call_id, audio[call_id], **options)
    cv.read("recordings_stored", lambda seen: set(calls) <= {e["data"]["call_id"] for e in seen})
    return audio


def test_access_export_downloads_without_credentials(running: Callvault) -> None:
    cv = running
    audio = store(
        cv,
        {
            "acc-in": {"caller": PERSON, "customer": {"email": "Ona@Example.lt"}},
            "acc-out": {
                "direction": "outbound",
                "caller": "+370 521 44500",
                "callee": "8 612 34567",
            },
            "acc-other": {"caller": "+370 699 99999"},
            "acc-shop": {"direction": "outbound", "caller": PERSON, "callee": "+370 699 11111"},
        },
    )
    request_id = request(cv, "access", {"phone_numbers": [NOTATIONS[0]]})
    answer = result(cv, request_id)[0]
    assert answer["status"] == "completed"
    assert sorted(r["call_id"] for r in answer["recordings"]) == ["acc-in", "acc-out"]
    assert {r["outcome"] for r in answer["recordings"]} == {"exported"}
    export = answer["export"]
    with urllib.request.urlopen(export["url"], timeout=30) as response:  # no credentials
        body = response.read()
    assert hashlib.sha256(body).hexdigest() == export["sha256"]
    assert len(body) == export["size_bytes"]
    archive = zipfile.ZipFile(io.BytesIO(body))
    manifest = json.loads(archive.read("manifest.json"))
    for entry in manifest["recordings"]:
        member = next(n for n in archive.namelist() if entry["recording_id"] in n)
        assert archive.read(member) == audio[entry["call_id"]]
        assert entry["sha256"] == hashlib.sha256(audio[entry["call_id"]]).hexdigest()
        for name in (
            "recording_id",
            "call_id",
            "started_at",
            "ended_at",
            "direction",
            "tenant",
            "retention_due_at",
            "restricted",
        ):
            assert name in entry
    notice = manifest["controller_notice"]
    for name in ("purposes", "legal_basis", "recipients", "retention_period", "source", "rights"):
        assert notice[name]
    assert "Art. 6(1)(f)" in notice["legal_basis"]
    # the caller's letter, typeset by the worker, in the default language (Lithuanian)
    assert archive.read("letter.pdf").startswith(b"%PDF-")
    letter = archive.read("letter.html").decode()
    assert '<html lang="lt">' in letter
    assert "Jūsų pokalbių įrašai: ką saugome ir kodėl" in letter
    assert "+370" not in json.dumps(answer)
    assert "Ona" not in json.dumps(answer)


def test_erasure_by_any_notation_with_a_held_recording(running: Callvault) -> None:
    cv = running
    store(
        cv,
        {
            "er-1": {"caller": PERSON},
            "er-2": {"caller": "+37061234567"},
            "er-held": {"caller": "(8 612) 34567"},
            "er-other": {"caller": "+37069999999"},
        },
    )
    cv.send(
        "holds_commands",
        "h-er",
        cloudevent(
            "callvault.hold.placed.v1",
            {"hold_id": "h-er", "reason": "chargeback dispute", "scope": {"call_ids": ["er-held"]}},
        ),
    )
    request_id = request(cv, "erasure", {"phone_numbers": NOTATIONS[1:2]})
    answer = result(cv, request_id)[0]
    outcomes = {r["call_id"]: r["outcome"] for r in answer["recordings"]}
    assert outcomes == {"er-1": "erased", "er-2": "erased", "er-held": "held"}
    assert answer["status"] == "partial"
    assert "17(3)(e)" in answer["reason"]
    certificate = answer["certificate"]
    assert certificate["request_id"] == request_id  # bound to this request
    assert check_certificate(certificate, key_set(cv)) == (True, "ok")
    replayed = certificate | {"request_id": "someone-else"}
    assert not check_certificate(replayed, key_set(cv))[0]
    assert {r["recording_id"] for r in certificate["recordings"]} == {
        r["recording_id"] for r in answer["recordings"] if r["outcome"] == "erased"
    }
    with urllib.request.urlopen(answer["letter"]["url"], timeout=30) as response:
        pdf = response.read()  # the person's confirmation, without credentials
    assert pdf.startswith(b"%PDF-")
    assert hashlib.sha256(pdf).hexdigest() == answer["letter"]["sha256"]
    purged = cv.read("recordings_purged", lambda seen: len(seen) >= 2)
    assert {e["data"]["reason"] for e in purged} == {"erasure"}
    assert all(e["data"]["lag_seconds"] is None and e["data"]["due_at"] is None for e in purged)
    # the held part is erased once the hold is released; the portal hears about it
    cv.send("holds_commands", "h-er", cloudevent("callvault.hold.released.v1", {"hold_id": "h-er"}))
    answers = result(cv, request_id, count=2)
    final = answers[-1]
    assert final["status"] == "completed"
    assert {r["call_id"]: r["outcome"] for r in final["recordings"]}["er-held"] == "erased"


def test_objection_repeated_request_and_no_match(running: Callvault) -> None:
    cv = running
    store(cv, {"ob-1": {"caller": PERSON, "customer": {"order_ids": ["ORD-77"]}}})
    request_id = f"dsr-{uuid.uuid4().hex[:8]}"
    data = {
        "request_id": request_id,
        "type": "objection",
        "received_at": "2026-01-31T09:00:00Z",
        "identity_verified": True,
        "subject": {"order_ids": ["ORD-77"]},
    }
    raw = cloudevent("callvault.dsr.requested.v1", data)
    cv.send("dsr_requests", request_id, raw)
    cv.send("dsr_requests", request_id, raw)  # the portal retried
    answer = result(cv, request_id)[0]
    assert answer["status"] == "completed"
    assert answer["due_at"] == "2026-02-28T09:00:00Z"  # one calendar month
    assert [r["outcome"] for r in answer["recordings"]] == ["erased"]
    nobody = request(cv, "erasure", {"emails": ["nobody@example.lt"]})
    assert result(cv, nobody)[0]["recordings"] == []
    unverified_id = f"dsr-{uuid.uuid4().hex[:8]}"
    cv.send(
        "dsr_requests",
        unverified_id,
        cloudevent(
            "callvault.dsr.requested.v1",
            {**data, "request_id": unverified_id, "identity_verified": False},
        ),
    )
    rejected = result(cv, unverified_id)[0]
    assert (rejected["status"], rejected["reason"]) == ("rejected", "identity_not_verified")
    everything = cv.read("dsr_results", lambda seen: len(seen) >= 3)
    assert sum(e["data"]["request_id"] == request_id for e in everything) == 1


def test_rectification_restriction_and_portability(running: Callvault) -> None:
    cv = running
    store(cv, {"rr-1": {"caller": PERSON, "customer": {"email": "old@example.lt", "name": "Ona"}}})
    rectify = request(
        cv,
        "rectification",
        {"emails": [" OLD@example.lt "]},
        rectification={"email": "new@example.lt", "name": "Ona P."},
    )
    assert [r["outcome"] for r in result(cv, rectify)[0]["recordings"]] == ["rectified"]
    old = request(cv, "access", {"emails": ["old@example.lt"]})
    assert result(cv, old)[0]["recordings"] == []
    restrict = request(cv, "restriction", {"emails": ["new@example.lt"]}, restriction="apply")
    assert [r["outcome"] for r in result(cv, restrict)[0]["recordings"]] == ["restricted"]
    carry = request(cv, "portability", {"emails": ["NEW@example.lt"]})
    answer = result(cv, carry)[0]
    with urllib.request.urlopen(answer["export"]["url"], timeout=30) as response:
        archive = zipfile.ZipFile(io.BytesIO(response.read()))
    entry = json.loads(archive.read("manifest.json"))["recordings"][0]
    assert entry["restricted"] is True
    assert entry["personal_data"]["email"] == "new@example.lt"
    lift = request(cv, "restriction", {"emails": ["new@example.lt"]}, restriction="lift")
    assert [r["outcome"] for r in result(cv, lift)[0]["recordings"]] == ["unrestricted"]
