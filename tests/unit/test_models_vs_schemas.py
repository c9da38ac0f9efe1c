"""The models in workers/ and the JSON Schemas in schemas/ describe the same events: every
event callvault builds validates against its schema, and every field an input schema defines
is read by its model."""

from __future__ import annotations

import ast
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from workers.codec import Codec, schema_dir
from workers.domain import events
from workers.domain.model import (
    Outcome,
    PurgeReason,
    Recording,
    RecordingOutcome,
    RecordingStatus,
    object_key_for,
    recording_id_for,
)

NOW = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
CODEC = Codec()
MODEL_SOURCE = Path(__file__).resolve().parents[2] / "workers" / "domain" / "model.py"


def stored_recording() -> Recording:
    rid = recording_id_for("call-1")
    return Recording(
        recording_id=rid,
        call_id="call-1",
        tenant="default",
        direction="inbound",
        agent_id=None,
        started_at=NOW - timedelta(minutes=5),
        collected_at=NOW,
        retention_due_at=NOW + timedelta(days=365),
        policy="P1Y",
        status=RecordingStatus.STORED,
        object_key=object_key_for(rid),
        stored_at=NOW,
        size_bytes=1234,
        sha256="a" * 64,
        content_type="audio/wav",
    )


def built_events() -> dict[str, dict[str, object]]:
    rec = stored_recording()
    purged = rec.tombstone(PurgeReason.RETENTION, 2, NOW + timedelta(days=365, seconds=3))
    erased = rec.tombstone(PurgeReason.ERASURE, 1, NOW + timedelta(days=3))
    outcome = RecordingOutcome(rec.recording_id, rec.call_id, Outcome.ERASED)
    return {
        events.STORED: events.stored_data(rec),
        events.DUE: events.due_data(rec),
        events.PURGED: events.purged_data(purged),
        events.PURGED + "#erasure": events.purged_data(erased),
        events.DISCARDED: events.discarded_data("call-2", "default"),
        events.DSR_COMPLETED: events.dsr_completed_data(
            request_id="r-1",
            dsr_type="erasure",
            status="completed",
            reason=None,
            received_at=NOW,
            due_at=NOW + timedelta(days=31),
            completed_at=NOW,
            outcomes=[outcome],
            extra={
                "certificate": {
                    "recordings": [events.receipt(erased)],
                    "issued_at": "2026-05-01T08:00:00Z",
                    "key_id": "k",
                    "algorithm": "Ed25519",
                    "signature": "c2lnbmF0dXJl",
                }
            },
        ),
        events.DSR_COMPLETED + "#rejected": events.dsr_completed_data(
            request_id="r-2",
            dsr_type=None,
            status="rejected",
            reason="malformed_request: schema_violation",
            received_at=None,
            due_at=None,
            completed_at=NOW,
            outcomes=[],
        ),
        events.DEADLETTER: events.deadletter_data(
            source_topic="calls.ended",
            partition=0,
            offset=7,
            key=b"call-9",
            error_code="not_audio",
            error="not audio",
            value=b"{}",
            failed_at=NOW,
            original_event_id="e-1",
        ),
    }


@pytest.mark.parametrize("name", sorted(built_events()))
def test_every_event_callvault_builds_matches_its_schema(name: str) -> None:
    event_type = name.split("#")[0]
    data = built_events()[name]
    CODEC.check(event_type, data)
    envelope = events.cloudevent(event_type, "urn:callvault", "x", NOW, dict(data))
    CODEC.check("cloudevent", envelope)


def _keys_read_by(function: str) -> set[str]:
    """String keys a model's ``from_data`` reads: data["x"], data.get("x"), nested blocks."""
    tree = ast.parse(MODEL_SOURCE.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and f"{node.name}.{item.name}" == function:
                    found |= {
                        n.value
                        for n in ast.walk(item)
                        if isinstance(n, ast.Constant) and isinstance(n.value, str)
                    }
    return found


@pytest.mark.parametrize(
    ("event_type", "model"),
    [
        ("callvault.call.ended.v1", "CallEnded.from_data"),
        ("callvault.dsr.requested.v1", "DsrRequest.from_data"),
    ],
)
def test_every_input_field_is_read_by_its_model(event_type: str, model: str) -> None:
    schema = json.loads((schema_dir() / f"{event_type}.schema.json").read_text())
    fields = set(schema["properties"])
    for block in ("recording", "customer", "rectification"):
        nested = schema["properties"].get(block, {}).get("properties", {})
        fields |= set(nested)
    read = _keys_read_by(model)
    assert fields <= read | {"subject"}, fields - read


def test_codec_knows_every_schema_file() -> None:
    files = {p.name.removesuffix(".schema.json") for p in schema_dir().glob("*.schema.json")}
    assert set(CODEC.names()) == files
    produced = {name.split("#")[0] for name in built_events()}
    assert (
        produced
        | {
            events.CALL_ENDED,
            events.DSR_REQUESTED,
            events.HOLD_PLACED,
            events.HOLD_RELEASED,
            "cloudevent",
            "common",
        }
        == files
    )
