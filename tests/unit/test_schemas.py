"""The JSON Schemas and the AsyncAPI document in ``schemas/`` implement the external contract.

Every ``$ref`` resolves offline through a :class:`referencing.Registry` built from the files in
``schemas/`` (keyed by their ``$id``); nothing is fetched.  ``format`` is checked with
jsonschema's FORMAT_CHECKER where the optional format libraries are installed, but the
rules the contract depends on (timestamp offsets, id characters, URI schemes) are carried by
``pattern`` so they hold with or without them.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
EXAMPLES = SCHEMAS / "examples"
ASYNCAPI = SCHEMAS / "asyncapi.yaml"
BASE = "https://callvault.dev/schemas/"
DIALECT = "https://json-schema.org/draft/2020-12/schema"

INPUT_TYPES = [
    "callvault.call.ended.v1",
    "callvault.dsr.requested.v1",
    "callvault.hold.placed.v1",
    "callvault.hold.released.v1",
]
OUTPUT_TYPES = [
    "callvault.recording.stored.v1",
    "callvault.retention.due.v1",
    "callvault.recording.purged.v1",
    "callvault.recording.discarded.v1",
    "callvault.dsr.completed.v1",
    "callvault.deadletter.v1",
    "callvault.audit.checkpoint.v1",
]
EVENT_TYPES = INPUT_TYPES + OUTPUT_TYPES

# topic -> (env var, types, does callvault receive it?, does callvault send it?)
TOPICS: dict[str, tuple[str, set[str], bool, bool]] = {
    "calls.ended": ("CALLVAULT_TOPIC_CALLS_ENDED", {"callvault.call.ended.v1"}, True, False),
    "dsr.requests": ("CALLVAULT_TOPIC_DSR_REQUESTS", {"callvault.dsr.requested.v1"}, True, False),
    "holds.commands": (
        "CALLVAULT_TOPIC_HOLDS_COMMANDS",
        {"callvault.hold.placed.v1", "callvault.hold.released.v1"},
        True,
        False,
    ),
    "recordings.stored": (
        "CALLVAULT_TOPIC_RECORDINGS_STORED",
        {"callvault.recording.stored.v1"},
        False,
        True,
    ),
    # an output for observers: callvault purges through its own follow-up queue
    "retention.due": ("CALLVAULT_TOPIC_RETENTION_DUE", {"callvault.retention.due.v1"}, False, True),
    "recordings.purged": (
        "CALLVAULT_TOPIC_RECORDINGS_PURGED",
        {"callvault.recording.purged.v1", "callvault.recording.discarded.v1"},
        False,
        True,
    ),
    "dsr.results": ("CALLVAULT_TOPIC_DSR_RESULTS", {"callvault.dsr.completed.v1"}, False, True),
    "callvault.deadletter": (
        "CALLVAULT_TOPIC_DEADLETTER",
        {"callvault.deadletter.v1"},
        False,
        True,
    ),
    "callvault.audit": (
        "CALLVAULT_TOPIC_AUDIT_CHECKPOINTS",
        {"callvault.audit.checkpoint.v1"},
        False,
        True,
    ),
}


# --------------------------------------------------------------------------------------------
# helpers


def _load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _schema_files() -> list[Path]:
    return sorted(SCHEMAS.glob("*.schema.json"))


def _build_registry() -> Registry:
    resources = []
    for path in _schema_files():
        contents = _load_json(path)
        resources.append((contents["$id"], Resource.from_contents(contents, DRAFT202012)))
    return Registry().with_resources(resources)


REGISTRY = _build_registry()


def _asyncapi() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(ASYNCAPI.read_text(encoding="utf-8"))
    return doc


def _validator(schema: dict[str, Any] | bool) -> Draft202012Validator:
    return Draft202012Validator(
        schema, registry=REGISTRY, format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def _ref(uri: str) -> Draft202012Validator:
    return _validator({"$schema": DIALECT, "$ref": uri})


def _data_validator(event_type: str) -> Draft202012Validator:
    return _ref(f"{BASE}{event_type}.schema.json")


def _envelope_validator() -> Draft202012Validator:
    return _ref(f"{BASE}cloudevent.schema.json")


def _messages_by_type() -> dict[str, dict[str, Any]]:
    messages = _asyncapi()["components"]["messages"]
    return {m["name"]: m for m in messages.values()}


def _event_validator(event_type: str) -> Draft202012Validator:
    """The message payload exactly as asyncapi.yaml composes it (envelope + typed data)."""
    payload = copy.deepcopy(_messages_by_type()[event_type]["payload"])
    # Relative refs in asyncapi.yaml ("./x.schema.json") are relative to schemas/, whose files'
    # $ids live under BASE: give the payload a base URI there so they resolve via the registry.
    return _validator({"$schema": DIALECT, "$id": f"{BASE}{event_type}.payload.json", **payload})


def _example(event_type: str) -> dict[str, Any]:
    example: dict[str, Any] = _load_json(EXAMPLES / f"{event_type}.json")
    return example


def _errors(validator: Draft202012Validator, instance: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(instance)
    ]


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    """Yield (json pointer, key, value) for every member of every object below node."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield f"{path}/{key}", key, value
            yield from _walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}/{i}")


# --------------------------------------------------------------------------------------------
# the schema files themselves


def test_one_schema_and_one_example_per_contract_type() -> None:
    names = {p.name for p in _schema_files()}
    expected = {f"{t}.schema.json" for t in EVENT_TYPES} | {
        "cloudevent.schema.json",
        "common.schema.json",
    }
    assert names == expected
    assert {p.stem for p in EXAMPLES.glob("*.json")} == set(EVENT_TYPES)


@pytest.mark.parametrize("path", _schema_files(), ids=lambda p: p.name)
def test_schema_file_is_a_valid_2020_12_schema(path: Path) -> None:
    schema = _load_json(path)
    assert schema["$schema"] == DIALECT
    assert schema["$id"] == BASE + path.name
    Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("path", _schema_files(), ids=lambda p: p.name)
def test_every_ref_resolves_offline(path: Path) -> None:
    schema = _load_json(path)
    resolver = REGISTRY.resolver(base_uri=schema["$id"])
    refs = [(ptr, value) for ptr, key, value in _walk(schema) if key == "$ref"]
    for ptr, ref in refs:
        resolver.lookup(ref)  # raises referencing.exceptions.Unresolvable
        assert not ref.startswith(("http:", "https:")) or ref.startswith(BASE), ptr


@pytest.mark.parametrize("path", _schema_files(), ids=lambda p: p.name)
def test_timestamps_carry_format_and_offset_pattern(path: Path) -> None:
    """Every date-time is the shared timestamp (format + pattern), never a bare format."""
    schema = _load_json(path)
    for ptr, key, value in _walk(schema):
        if key == "format" and value == "date-time":
            assert ptr == "/$defs/timestamp/format", f"{path.name}{ptr}: use common timestamp"
    common = _load_json(SCHEMAS / "common.schema.json")["$defs"]["timestamp"]
    assert common["format"] == "date-time"
    assert re.search(common["pattern"], "2025-03-14T10:21:03Z")
    assert not re.search(common["pattern"], "2025-03-14T10:21:03")


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_additional_properties_policy(event_type: str) -> None:
    """Inputs tolerate vendor fields; outputs never carry a field the contract does not name."""
    schema = _load_json(SCHEMAS / f"{event_type}.schema.json")
    assert schema["additionalProperties"] is (event_type in INPUT_TYPES)


# --------------------------------------------------------------------------------------------
# valid events


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_example_validates(event_type: str) -> None:
    event = _example(event_type)
    assert event["type"] == event_type
    assert _errors(_envelope_validator(), event) == []
    assert _errors(_data_validator(event_type), event["data"]) == []
    assert _errors(_event_validator(event_type), event) == []


def _keys(path: str) -> list[str | int]:
    return [int(k) if k.isdigit() else k for k in path.split(".")]


def _parent(obj: Any, keys: list[str | int]) -> Any:
    for k in keys[:-1]:
        obj = obj[k]
    return obj


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Set a dotted path (list indices as numbers) to a copy of value."""
    keys = _keys(path)

    def mutate(obj: dict[str, Any]) -> None:
        _parent(obj, keys)[keys[-1]] = copy.deepcopy(value)

    return mutate


def _del(path: str) -> Callable[[dict[str, Any]], None]:
    keys = _keys(path)

    def mutate(obj: dict[str, Any]) -> None:
        del _parent(obj, keys)[keys[-1]]

    return mutate


def _replace(value: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def mutate(obj: dict[str, Any]) -> None:
        obj.clear()
        obj.update(copy.deepcopy(value))

    return mutate


def _all(*mutations: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def mutate(obj: dict[str, Any]) -> None:
        for m in mutations:
            m(obj)

    return mutate


# short names for the case tables
CALL = "callvault.call.ended.v1"
DSR_REQ = "callvault.dsr.requested.v1"
HOLD = "callvault.hold.placed.v1"
RELEASE = "callvault.hold.released.v1"
STORED = "callvault.recording.stored.v1"
DUE = "callvault.retention.due.v1"
PURGED = "callvault.recording.purged.v1"
DISCARDED = "callvault.recording.discarded.v1"
DSR_DONE = "callvault.dsr.completed.v1"
DEADLETTER = "callvault.deadletter.v1"

REC = "3f0c5a9e-8d1b-5c2e-9a47-1b6d2e8f4c10"
SHA = "a" * 64

# (id, event type, mutation of the example's *data*)
VALID_VARIANTS: list[tuple[str, str, Callable[[dict[str, Any]], None]]] = [
    (
        "call-minimal-anonymous-tel",
        CALL,
        _replace(
            {
                "call_id": "a",
                "direction": "outbound",
                "caller": "tel:+370-5-214-4500",
                "callee": "anonymous",
                "started_at": "2025-02-28T23:59:59-05:00",
                "ended_at": "2025-03-01T05:00:00.5z",
                "notice_played": False,
                "recording": {"uri": "file:///var/spool/pbx/rec%20001.wav"},
            }
        ),
    ),
    ("call-notations-1", CALL, _set("caller", "8 5 214 4500")),
    ("call-notations-2", CALL, _set("caller", "(8 5) 271 2804")),
    ("call-notations-3", CALL, _set("caller", "+37052144500")),
    *(
        (f"call-withheld-{i}", CALL, _set("caller", value))
        for i, value in enumerate(
            [
                "",
                "anonymous",
                "Anonymous",
                "ANONYMOUS",
                "unknown",
                "Restricted",
                "unavailable",
                "PRIVATE",
                "blocked",
                "Withheld",
                "0000000000",
                "sip:anonymous@anonymous.invalid",
                "+266696687",
                "+7378742833",
                "+86282452253",
                "+8656696",
                "+2562533",
            ]
        )
    ),
    ("call-https-uri", CALL, _set("recording.uri", "https://pbx.example/r/1")),
    ("call-http-uri", CALL, _set("recording.uri", "http://10.0.0.5:8080/a.wav")),
    ("call-call-id-128", CALL, _set("call_id", "x" * 128)),
    ("call-vendor-field", CALL, _set("recording.x_codec", "g711")),
    (
        "dsr-rectification",
        DSR_REQ,
        _all(_set("type", "rectification"), _set("rectification", {"email": "ona@example.com"})),
    ),
    (
        "dsr-restriction-lift",
        DSR_REQ,
        _all(_set("type", "restriction"), _set("restriction", "lift")),
    ),
    ("dsr-unverified", DSR_REQ, _set("identity_verified", False)),
    ("dsr-only-order-id", DSR_REQ, _set("subject", {"order_ids": ["O-1"]})),
    ("hold-recording-ids", HOLD, _set("scope", {"recording_ids": [REC]})),
    ("hold-call-ids", HOLD, _set("scope", {"call_ids": ["c1", "c2"]})),
    ("hold-no-case-ref", HOLD, _del("case_ref")),
    (
        "purged-erasure",
        PURGED,
        _all(_set("reason", "erasure"), _set("due_at", None), _set("lag_seconds", None)),
    ),
    ("purged-lag-int", PURGED, _set("lag_seconds", 0)),
    ("discarded-no-tenant", DISCARDED, _del("tenant")),
    (
        "dsr-access-export",
        DSR_DONE,
        _replace(
            {
                "request_id": "DSR-1",
                "type": "access",
                "status": "completed",
                "received_at": "2025-01-31T10:00:00Z",
                "due_at": "2025-02-28T10:00:00Z",
                "completed_at": "2025-01-31T10:05:00Z",
                "recordings": [{"recording_id": REC, "call_id": "c1", "outcome": "exported"}],
                "export": {
                    "url": "https://s3.local:9000/exports/DSR-1.zip?X-Amz-Signature=abc",
                    "expires_at": "2025-02-07T10:05:00Z",
                    "sha256": SHA,
                    "size_bytes": 123456,
                    "format": "zip",
                },
            }
        ),
    ),
    (
        "dsr-no-match",
        DSR_DONE,
        _all(
            _set("status", "completed"),
            _del("reason"),
            _set("recordings", []),
            _del("certificate"),
            _del("letter"),
        ),
    ),
    (
        "dsr-rejected-malformed",
        DSR_DONE,
        _replace(
            {
                "request_id": "DSR-2",
                "type": None,
                "status": "rejected",
                "reason": "schema_violation: received_at is missing",
                "received_at": None,
                "due_at": None,
                "completed_at": "2025-01-31T10:05:00Z",
                "recordings": [],
            }
        ),
    ),
    (
        "dsr-rejected-unverified",
        DSR_DONE,
        _all(
            _set("status", "rejected"),
            _set("reason", "identity_not_verified"),
            _set("recordings", []),
            _del("certificate"),
            _del("letter"),
        ),
    ),
    (
        "dsr-restricted",
        DSR_DONE,
        _all(
            _set("type", "restriction"),
            _set("status", "completed"),
            _del("reason"),
            _del("certificate"),
            _del("letter"),
            _set("recordings", [{"recording_id": REC, "call_id": "c1", "outcome": "restricted"}]),
        ),
    ),
    ("deadletter-null-key", DEADLETTER, _set("key", None)),
    (
        "deadletter-minimal",
        DEADLETTER,
        _all(_del("failed_at"), _del("event_id"), _set("value_b64", "")),
    ),
]


@pytest.mark.parametrize(
    ("event_type", "mutate"),
    [pytest.param(t, m, id=i) for i, t, m in VALID_VARIANTS],
)
def test_valid_variant(event_type: str, mutate: Callable[[dict[str, Any]], None]) -> None:
    event = _example(event_type)
    mutate(event["data"])
    assert _errors(_event_validator(event_type), event) == []


# --------------------------------------------------------------------------------------------
# invalid events

# (id, event type, mutation of the whole *envelope*)
INVALID_CASES: list[tuple[str, str, Callable[[dict[str, Any]], None]]] = [
    # call.ended
    ("call-id-bad-chars", CALL, _set("data.call_id", "call 1/2")),
    ("call-id-129-chars", CALL, _set("data.call_id", "x" * 129)),
    ("call-id-empty", CALL, _set("data.call_id", "")),
    ("call-missing-notice", CALL, _del("data.notice_played")),
    ("call-notice-string", CALL, _set("data.notice_played", "true")),
    ("call-ended-no-offset", CALL, _set("data.ended_at", "2025-03-14T12:21:02")),
    ("call-started-date-only", CALL, _set("data.started_at", "2025-03-14")),
    ("call-ended-month-13", CALL, _set("data.ended_at", "2025-13-01T00:00:00Z")),
    ("call-uri-too-long", CALL, _set("data.recording.uri", "s3://b/" + "k" * 2042)),
    ("call-missing-uri", CALL, _set("data.recording", {"sha256": SHA})),
    ("call-sha256-short", CALL, _set("data.recording.sha256", "ab" * 31)),
    ("call-sha256-not-hex", CALL, _set("data.recording.sha256", "g" * 64)),
    ("call-size-negative", CALL, _set("data.recording.size_bytes", -1)),
    ("call-direction", CALL, _set("data.direction", "internal")),
    ("call-caller-name", CALL, _set("data.caller", "Ona Petraitiene")),
    ("call-caller-withheld-word-misspelt", CALL, _set("data.caller", "anonymus")),
    ("call-caller-withheld-word-padded", CALL, _set("data.caller", " private")),
    ("call-missing-callee", CALL, _del("data.callee")),
    ("call-tenant-bad", CALL, _set("data.tenant", "shop lt")),
    ("call-order-ids-string", CALL, _set("data.customer.order_ids", "O-1")),
    ("call-name-too-long", CALL, _set("data.customer.name", "n" * 201)),
    # dsr.requested
    ("dsr-type-unknown", DSR_REQ, _set("data.type", "deletion")),
    (
        "dsr-subject-all-empty",
        DSR_REQ,
        _set(
            "data.subject",
            {"phone_numbers": [], "emails": [], "customer_ids": [], "order_ids": []},
        ),
    ),
    ("dsr-subject-empty-object", DSR_REQ, _set("data.subject", {})),
    ("dsr-subject-unknown-key", DSR_REQ, _set("data.subject.phones", ["1"])),
    ("dsr-missing-identity", DSR_REQ, _del("data.identity_verified")),
    ("dsr-received-no-offset", DSR_REQ, _set("data.received_at", "2025-04-02 09:58")),
    ("dsr-request-id-bad", DSR_REQ, _set("data.request_id", "DSR 1")),
    ("dsr-rectification-missing", DSR_REQ, _set("data.type", "rectification")),
    (
        "dsr-rectification-empty",
        DSR_REQ,
        _all(_set("data.type", "rectification"), _set("data.rectification", {})),
    ),
    (
        "dsr-rectification-on-erasure",
        DSR_REQ,
        _set("data.rectification", {"name": "Ona"}),
    ),
    (
        "dsr-restriction-bad",
        DSR_REQ,
        _all(_set("data.type", "restriction"), _set("data.restriction", "pause")),
    ),
    ("dsr-restriction-on-erasure", DSR_REQ, _set("data.restriction", "apply")),
    # holds
    (
        "hold-scope-two-keys",
        HOLD,
        _set("data.scope", {"call_ids": ["c1"], "recording_ids": [REC]}),
    ),
    ("hold-scope-empty", HOLD, _set("data.scope", {})),
    ("hold-scope-empty-list", HOLD, _set("data.scope", {"call_ids": []})),
    ("hold-scope-bad-uuid", HOLD, _set("data.scope", {"recording_ids": ["1"]})),
    ("hold-missing-reason", HOLD, _del("data.reason")),
    ("hold-subject-empty", HOLD, _set("data.scope", {"subject": {"emails": []}})),
    ("hold-released-no-id", RELEASE, _set("data", {})),
    # outputs never carry personal data or extra fields
    ("stored-extra-caller", STORED, _set("data.caller", "+37052144500")),
    ("stored-missing-sha", STORED, _del("data.sha256")),
    ("stored-recording-id-not-uuid", STORED, _set("data.recording_id", "r1")),
    ("due-extra-field", DUE, _set("data.customer", {"name": "Ona"})),
    ("due-policy-not-duration", DUE, _set("data.policy", "1 year")),
    ("due-policy-bare-p", DUE, _set("data.policy", "P")),
    ("purged-reason", PURGED, _set("data.reason", "expired")),
    ("purged-retention-null-due", PURGED, _set("data.due_at", None)),
    ("purged-erasure-with-lag", PURGED, _set("data.reason", "erasure")),
    ("purged-negative-versions", PURGED, _set("data.versions_deleted", -1)),
    ("purged-negative-lag", PURGED, _set("data.lag_seconds", -0.5)),
    ("discarded-reason", DISCARDED, _set("data.reason", "no_audio")),
    ("discarded-extra-recording", DISCARDED, _set("data.recording_id", REC)),
    ("completed-status", DSR_DONE, _set("data.status", "done")),
    ("completed-extra-email", DSR_DONE, _set("data.email", "ona@example.com")),
    ("completed-partial-no-reason", DSR_DONE, _del("data.reason")),
    ("completed-erasure-no-certificate", DSR_DONE, _del("data.certificate")),
    ("completed-erasure-no-letter", DSR_DONE, _del("data.letter")),
    ("completed-letter-as-zip", DSR_DONE, _set("data.letter.format", "zip")),
    ("completed-outcome", DSR_DONE, _set("data.recordings.0.outcome", "deleted")),
    ("completed-null-received", DSR_DONE, _set("data.received_at", None)),
    (
        "completed-cert-algorithm",
        DSR_DONE,
        _set("data.certificate.algorithm", "RSA"),
    ),
    (
        "completed-cert-signature-not-b64",
        DSR_DONE,
        _set("data.certificate.signature", "not base64!"),
    ),
    (
        "completed-cert-extra-call-id",
        DSR_DONE,
        _set("data.certificate.recordings.0.call_id", "c1"),
    ),
    (
        "completed-export-on-erasure",
        DSR_DONE,
        _set(
            "data.export",
            {
                "url": "https://x.example/e.zip",
                "expires_at": "2025-01-01T00:00:00Z",
                "sha256": SHA,
                "size_bytes": 1,
                "format": "zip",
            },
        ),
    ),
    (
        "completed-rejected-with-recordings",
        DSR_DONE,
        _all(_set("data.status", "rejected"), _del("data.certificate"), _del("data.letter")),
    ),
    ("deadletter-error-code-camel", DEADLETTER, _set("data.error_code", "InvalidJson")),
    ("deadletter-partition-string", DEADLETTER, _set("data.partition", "0")),
    ("deadletter-offset-negative", DEADLETTER, _set("data.offset", -1)),
    ("deadletter-value-not-b64", DEADLETTER, _set("data.value_b64", "%%%")),
    ("deadletter-missing-key", DEADLETTER, _del("data.key")),
    ("deadletter-extra", DEADLETTER, _set("data.caller", "+37052144500")),
    # envelope
    ("envelope-no-specversion", CALL, _del("specversion")),
    ("envelope-specversion-0.3", CALL, _set("specversion", "0.3")),
    ("envelope-text-plain", CALL, _set("datacontenttype", "text/plain")),
    ("envelope-no-datacontenttype", DUE, _del("datacontenttype")),
    ("envelope-empty-id", CALL, _set("id", "")),
    ("envelope-no-source", CALL, _del("source")),
    ("envelope-empty-source", CALL, _set("source", "")),
    ("envelope-no-time", CALL, _del("time")),
    ("envelope-time-no-offset", CALL, _set("time", "2025-03-14T10:21:03")),
    ("envelope-data-string", CALL, _set("data", "{}")),
    ("envelope-no-data", RELEASE, _del("data")),
    ("envelope-data-base64", RELEASE, _set("data_base64", "e30=")),
    ("envelope-wrong-type", RELEASE, _set("type", "callvault.hold.placed.v1")),
]


@pytest.mark.parametrize(
    ("event_type", "mutate"),
    [pytest.param(t, m, id=i) for i, t, m in INVALID_CASES],
)
def test_invalid_case_is_rejected(
    event_type: str, mutate: Callable[[dict[str, Any]], None]
) -> None:
    event = _example(event_type)
    mutate(event)
    assert _errors(_event_validator(event_type), event) != [], "expected a violation"


def test_invalid_case_ids_are_unique() -> None:
    ids = [i for i, _, _ in INVALID_CASES] + [i for i, _, _ in VALID_VARIANTS]
    assert len(ids) == len(set(ids))


# --------------------------------------------------------------------------------------------
# the AsyncAPI document


def test_asyncapi_matches_contract_topics_and_schemas() -> None:
    doc = _asyncapi()
    assert doc["asyncapi"] == "3.0.0"
    assert doc["servers"]["local"]["host"] == "127.0.0.1:19092"
    assert doc["servers"]["local"]["protocol"] == "kafka"

    messages = doc["components"]["messages"]
    channels = doc["channels"]
    by_address = {c["address"]: (cid, c) for cid, c in channels.items()}
    assert set(by_address) == set(TOPICS)

    referenced_data_files: set[str] = set()
    for address, (env_var, types, _recv, _send) in TOPICS.items():
        cid, channel = by_address[address]
        assert env_var in channel["description"], cid
        assert channel["x-env-var"] == env_var, cid
        channel_types = set()
        for ref in channel["messages"].values():
            prefix = "#/components/messages/"
            assert ref["$ref"].startswith(prefix), cid
            message = messages[ref["$ref"].removeprefix(prefix)]
            event_type = message["name"]
            channel_types.add(event_type)
            all_of = message["payload"]["allOf"]
            assert all_of[0] == {"$ref": "./cloudevent.schema.json"}
            assert all_of[1]["properties"]["type"] == {"const": event_type}
            data_ref = all_of[1]["properties"]["data"]["$ref"]
            assert data_ref == f"./{event_type}.schema.json"
            assert (SCHEMAS / data_ref).is_file(), data_ref
            referenced_data_files.add(Path(data_ref).name)
            for example in message.get("examples", []):
                assert (SCHEMAS / example["payload"]["$ref"]).is_file()
            assert message["bindings"]["kafka"]["key"]["description"], event_type
        assert channel_types == types, cid

    type_files = {p.name for p in _schema_files()} - {
        "cloudevent.schema.json",
        "common.schema.json",
    }
    assert referenced_data_files == type_files
    assert {m["name"] for m in messages.values()} == set(EVENT_TYPES)


def test_asyncapi_operations_are_from_callvaults_point_of_view() -> None:
    doc = _asyncapi()
    channel_address = {cid: c["address"] for cid, c in doc["channels"].items()}
    seen: dict[str, set[str]] = {"receive": set(), "send": set()}
    for name, op in doc["operations"].items():
        cid = op["channel"]["$ref"].removeprefix("#/channels/")
        seen[op["action"]].add(channel_address[cid])
        channel_messages = {
            f"#/channels/{cid}/messages/{m}" for m in doc["channels"][cid]["messages"]
        }
        assert {m["$ref"] for m in op["messages"]} == channel_messages, name
    assert seen["receive"] == {t for t, v in TOPICS.items() if v[2]}
    assert seen["send"] == {t for t, v in TOPICS.items() if v[3]}


def test_asyncapi_refs_are_all_local() -> None:
    for ptr, key, value in _walk(_asyncapi()):
        if key == "$ref":
            assert value.startswith(("#/", "./")), ptr
            if value.startswith("./"):
                assert (SCHEMAS / value).is_file(), ptr


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: cannot run the AsyncAPI parser (schemas/package.json)")
    return node


def _ensure_node_modules() -> None:
    if (SCHEMAS / "node_modules" / "@asyncapi" / "parser").is_dir():
        return
    npm = shutil.which("npm")
    assert npm is not None, "node is installed but npm is not: cannot install schemas/node_modules"
    subprocess.run(
        [npm, "ci", "--prefix", str(SCHEMAS), "--no-audit", "--no-fund"],
        cwd=ROOT,
        check=True,
        timeout=600,
    )


def test_asyncapi_document_is_valid() -> None:
    node = _node()
    _ensure_node_modules()
    result = subprocess.run(
        [node, str(SCHEMAS / "validate-asyncapi.mjs"), str(ASYNCAPI)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_patterns_are_valid_ecmascript_regexes() -> None:
    """JavaScript consumers (the AsyncAPI tooling, portals) must compile the same patterns."""
    node = _node()
    patterns = sorted(
        {
            value
            for path in _schema_files()
            for _, key, value in _walk(_load_json(path))
            if key == "pattern" and isinstance(value, str)
        }
    )
    script = (
        "const ps = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        "for (const p of ps) new RegExp(p, 'u');"
    )
    result = subprocess.run(
        [node, "-e", script],
        input=json.dumps(patterns),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_npm_lock_is_committed_without_registry_urls() -> None:
    lock = (SCHEMAS / "package-lock.json").read_text(encoding="utf-8")
    assert not re.search(r"https?://", lock)
    assert '"resolved"' not in lock
    assert json.loads(lock)["packages"]["node_modules/@asyncapi/parser"]["integrity"]
    assert "node_modules" in (SCHEMAS / ".gitignore").read_text(encoding="utf-8")
