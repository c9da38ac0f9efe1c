"""The models in workers/ and the JSON Schemas in schemas/ describe the same events: every
event callvault builds validates against its schema, and every field an input schema defines
is read by its model."""

from __future__ import annotations

import ast
import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from workers.adapters.kafka import codec
from workers.adapters.kafka.codec import Codec, schema_dir
from workers.adapters.keys import software_key_ring
from workers.app.effects import effects_of
from workers.domain import events
from workers.domain.audit import CHECKPOINT_TYPE
from workers.domain.keyed import HmacKey
from workers.domain.messages import (
    AuditCheckpointed,
    CallDiscarded,
    Event,
    RecordingDue,
    RecordingStored,
)
from workers.domain.model import (
    DsrStatus,
    PurgeReason,
    Recording,
    RecordingStatus,
    RequestRecord,
    object_key_for,
    recording_id_for,
)

NOW = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
CODEC = Codec()
MODEL_SOURCE = Path(__file__).resolve().parents[2] / "workers" / "domain" / "model.py"
KEY = bytes(32)


def stored_recording() -> Recording:
    rid = recording_id_for(HmacKey(KEY), "call-1")
    return Recording(
        recording_id=rid,
        call_id="call-1",
        call_digest="ab" * 32,
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


def _purged(reason: PurgeReason, at: datetime) -> list[Event]:
    recording = stored_recording()
    recording.shred(reason, 2)
    recording.tombstone(at)
    return recording.collect()[1]


def _answer(status: DsrStatus, data: dict[str, object]) -> list[Event]:
    record = RequestRecord("r-1", "erasure", "processing", NOW, NOW + timedelta(days=31))
    record.answer(status, data, NOW)
    return record.collect()[1]


def _outbound(found: list[Event]) -> dict[str, object]:
    (event,) = effects_of(found, NOW).outbound
    return codec.outbound(event, "urn:callvault")


def built_events() -> dict[str, dict[str, object]]:
    """Every kind of output event, built the way the unit of work builds them."""
    rec = stored_recording()
    keys = software_key_ring(
        master_keys={"m1": KEY},
        current_master="m1",
        hash_key=KEY,
        signing_seed=KEY,
        signing_key_id="k",
    )
    erased = _outbound(_purged(PurgeReason.ERASURE, NOW + timedelta(days=3)))["data"]
    receipt = {k: erased[k] for k in ("recording_id", "sha256", "versions_deleted", "purged_at")}
    certificate = keys.sign(
        {
            "request_id": "r-1",
            "type": "erasure",
            "received_at": "2026-05-01T08:00:00Z",
            "issued_at": "2026-05-01T08:00:00Z",
            "recordings": [receipt],
        }
    )
    completed = {
        "request_id": "r-1",
        "type": "erasure",
        "status": "completed",
        "received_at": "2026-05-01T08:00:00Z",
        "due_at": "2026-06-01T08:00:00Z",
        "completed_at": "2026-05-01T08:00:00Z",
        "recordings": [
            {"recording_id": rec.recording_id, "call_id": "call-1", "outcome": "erased"}
        ],
        "certificate": certificate,
        "letter": {
            "url": "https://s3.example/exports/letters/l.pdf?X-Amz-Signature=0",
            "expires_at": "2026-05-08T08:00:00Z",
            "sha256": "ab" * 32,
            "size_bytes": 1000,
            "format": "pdf",
        },
        "exports_deleted": ["r-0"],
    }
    checkpoint = {
        "type": CHECKPOINT_TYPE,
        "seq": 7,
        "hash": "ab" * 32,
        "at": "2026-05-01T08:00:00Z",
        "source": "urn:x",
    }
    rejected = {
        "request_id": "r-2",
        "type": None,
        "status": "rejected",
        "reason": "malformed_request: schema_violation",
        "received_at": None,
        "due_at": None,
        "completed_at": "2026-05-01T08:00:00Z",
        "recordings": [],
    }
    return {
        events.STORED: _outbound([RecordingStored(rec)])["data"],
        events.DUE: _outbound([RecordingDue(rec, NOW)])["data"],
        events.PURGED: _outbound(
            _purged(PurgeReason.RETENTION, NOW + timedelta(days=365, seconds=3))
        )["data"],
        events.PURGED + "#erasure": erased,
        events.DISCARDED: _outbound([CallDiscarded("call-2", "cd" * 32, "default", NOW)])["data"],
        events.DSR_COMPLETED: _outbound(_answer(DsrStatus.COMPLETED, completed))["data"],
        events.DSR_COMPLETED + "#rejected": _outbound(_answer(DsrStatus.REJECTED, rejected))[
            "data"
        ],
        events.AUDIT_CHECKPOINT: _outbound([AuditCheckpointed(keys.sign(checkpoint))])["data"],
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
    envelope = codec.envelope(event_type, dict(data), source="urn:callvault", time=NOW)
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


def _variants(value: Any) -> Iterator[Any]:
    """The value, then each member (at any depth) dropped or replaced by a wrong value."""
    yield value
    if isinstance(value, dict):
        for key, member in value.items():
            yield {k: v for k, v in value.items() if k != key}
            for wrong in (12345, "x" * 300, None, [], {"unexpected": True}):
                yield {**value, key: wrong}
            for inner in itertools.islice(_variants(member), 1, None):
                yield {**value, key: inner}
    elif isinstance(value, list) and value:
        for inner in itertools.islice(_variants(value[0]), 1, None):
            yield [inner, *value[1:]]


@pytest.mark.parametrize("path", sorted((schema_dir() / "examples").glob("*.json")), ids=str)
def test_inlined_references_judge_as_the_schemas_do(path: Path) -> None:
    """The codec validates against schemas with their $refs inlined; for the example and
    hundreds of broken variants of it, the first error is the one that the schemas, looked
    up through a registry, give."""
    event = json.loads(path.read_text())
    name = event["type"]
    registry = CODEC._registry  # the schemas as written, $refs and all
    for schema_name, value in (("cloudevent", event), (name, event["data"])):
        written = json.loads((schema_dir() / f"{schema_name}.schema.json").read_text())
        reference = Draft202012Validator(written, registry=registry)
        for variant in _variants(value):
            expected = _first_error(reference, variant)
            assert _first_error(CODEC._validators[schema_name], variant) == expected


def _first_error(validator: Draft202012Validator, value: Any) -> tuple[str, ...] | None:
    errors = sorted(validator.iter_errors(value), key=codec._depth)
    if not errors:
        return None
    error = errors[0]
    return (str(error.validator), *map(str, error.absolute_path))
