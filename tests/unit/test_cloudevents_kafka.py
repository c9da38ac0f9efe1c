"""The CloudEvents Kafka protocol binding, both ways: every record callvault produces says
it is a structured-mode CloudEvent in its ``content-type`` header; input arrives in
structured or binary content mode (``ce_*`` headers, the data as the value) and means the
same either way; output events name their subject and the JSON Schema of their data."""

from __future__ import annotations

import base64
import json
from typing import Any

from tests.unit.conftest import CUSTOMER_PHONE, World, call_data, cloudevent, encode, subject
from workers.adapters.kafka.bus import DeadLetter
from workers.domain.events import STRUCTURED_HEADER

SCHEMAS = "https://callvault.dev/schemas/"


def binary(event: dict[str, Any], content_type: str = "application/json") -> tuple[bytes, Any]:
    """The same event in binary content mode: attributes as ce_* headers, data as the value."""
    headers = [
        (f"ce_{name}", str(value).encode())
        for name, value in event.items()
        if name not in ("data", "datacontenttype")
    ]
    headers.append(("content-type", content_type.encode()))
    return json.dumps(event["data"]).encode(), tuple(headers)


def test_every_record_callvault_produces_carries_the_structured_content_type(
    world: World,
) -> None:
    world.store_call("c-1")
    world.deliver("calls.ended", b"{not json", "c-2")
    world.send_dsr("r-1", "access", subject(phone_numbers=[CUSTOMER_PHONE]))
    topics = {topic for topic, _, _ in world.bus.records}
    assert {"recordings.stored", "callvault.deadletter", "dsr.results"} <= topics
    assert world.bus.headers
    for headers in world.bus.headers:
        assert headers[0] == STRUCTURED_HEADER
        assert STRUCTURED_HEADER == ("content-type", b"application/cloudevents+json; charset=UTF-8")


def test_a_call_in_binary_content_mode_is_stored_like_a_structured_one(world: World) -> None:
    event = world.call_event("c-bin")
    value, headers = binary(event)
    assert world.deliver("calls.ended", value, "c-bin", headers) == "stored"
    recording = world.recording("c-bin")
    assert recording is not None
    assert recording.source_event_id == event["id"]
    (stored,) = world.data("recordings.stored")
    assert stored["call_id"] == "c-bin"


def test_json_with_charset_is_json_and_structured_content_type_wins(world: World) -> None:
    value, headers = binary(world.call_event("c-charset"), "application/json; charset=utf-8")
    assert world.deliver("calls.ended", value, "c-charset", headers) == "stored"
    # A structured record that also carries ce_ headers (some SDKs add them) is structured.
    event = world.call_event("c-both")
    both = (("ce_specversion", b"1.0"), STRUCTURED_HEADER)
    assert world.deliver("calls.ended", encode(event), "c-both", both) == "stored"


def test_binary_mode_is_checked_against_the_same_schemas(world: World) -> None:
    event = world.call_event("c-bad")
    del event["data"]["direction"]
    value, headers = binary(event)
    assert world.deliver("calls.ended", value, "c-bad", headers) == "deadletter"
    value, headers = binary(world.call_event("c-text"), "text/plain")
    assert world.deliver("calls.ended", value, "c-text", headers) == "deadletter"
    value, headers = binary(world.call_event("c-notype"))
    headers = tuple(h for h in headers if h[0] != "ce_type")
    assert world.deliver("calls.ended", value, "c-notype", headers) == "deadletter"
    codes = [d["error_code"] for d in world.data("callvault.deadletter")]
    assert codes == ["schema_violation"] * 3
    assert world.recordings() == []


def test_a_binary_dead_letter_keeps_the_headers_a_replay_needs(world: World) -> None:
    event = world.call_event("c-replay")
    event["data"]["direction"] = "sideways"
    value, headers = binary(event)
    assert world.deliver("calls.ended", value, "c-replay", headers) == "deadletter"
    ((raw, record_headers),) = [
        (value, headers)
        for (topic, _, value), headers in zip(world.bus.records, world.bus.headers, strict=True)
        if topic == "callvault.deadletter"
    ]
    letter = DeadLetter(0, 0, json.loads(raw)["data"], tuple(record_headers))
    assert base64.b64decode(letter.data["value_b64"]) == value
    assert letter.original_headers() == list(headers)
    assert record_headers[0] == STRUCTURED_HEADER  # the dead letter itself is structured


def test_a_malformed_binary_request_is_still_answered(world: World) -> None:
    data = {"request_id": "r-bin", "type": "erasure", "identity_verified": True}
    event = cloudevent("callvault.dsr.requested.v1", data)
    value, headers = binary(event)
    assert world.deliver("dsr.requests", value, "r-bin", headers) == "deadletter"
    (answer,) = world.data("dsr.results")
    assert answer["request_id"] == "r-bin"
    assert answer["status"] == "rejected"


def test_output_events_name_their_subject_and_data_schema(world: World) -> None:
    recording = world.store_call("c-1")
    world.send_dsr("r-1", "erasure", subject(phone_numbers=[CUSTOMER_PHONE]))
    events = [
        *world.published("recordings.stored"),
        *world.published("recordings.purged"),
        *world.published("dsr.results"),
    ]
    assert len(events) == 3
    for event in events:
        assert event["dataschema"] == f"{SCHEMAS}{event['type']}.schema.json"
    subjects = [event["subject"] for event in events]
    assert subjects == [recording.recording_id, recording.recording_id, "r-1"]


def test_binary_input_with_a_wrong_uri_is_dead_lettered_with_its_code(world: World) -> None:
    event = cloudevent("callvault.call.ended.v1", call_data("c-uri", "ftp://x/y.wav"))
    value, headers = binary(event)
    assert world.deliver("calls.ended", value, "c-uri", headers) == "deadletter"
    (letter,) = world.data("callvault.deadletter")
    assert letter["error_code"] == "unsupported_uri"
    assert letter["event_id"] == event["id"]
