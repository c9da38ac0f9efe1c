"""Privacy across the whole pipeline: a day of traffic full of personal data - stored,
discarded and rejected calls, holds by person, every kind of DSR, retention purges - and
afterwards no phone number (in any notation), name or e-mail is in any log line, any
Prometheus sample or any event callvault published (the dead-letter copy aside)."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator

import pytest
import structlog
from conftest import (
    CUSTOMER_EMAIL,
    CUSTOMER_NOTATIONS,
    CUSTOMER_PHONE,
    OTHER_EMAIL,
    OTHER_NAME,
    OTHER_PHONE,
    PDF,
    SHOP_PHONE,
    World,
    encode,
    personal_data_in,
    subject,
)
from prometheus_client import generate_latest

from workers.adapters import logs
from workers.adapters.kafka.codec import Codec
from workers.domain.messages import StoreCall

NEW_EMAIL = "ona.naujoji@example.org"


def traffic(world: World) -> None:
    """Everything callvault does, fed with personal data."""
    world.store_call("c-in")
    world.store_call("c-out", direction="outbound", caller=SHOP_PHONE, callee="8 612 34567")
    world.store_call(
        "c-other",
        caller=OTHER_PHONE,
        customer={"name": OTHER_NAME, "email": OTHER_EMAIL, "customer_id": "C-2"},
    )
    world.store_call("c-kept", caller=OTHER_PHONE, customer={"name": OTHER_NAME})  # retention
    world.send_call(world.call_event("c-quiet", notice_played=False))
    # rejected inputs, each carrying the customer's data
    world.deliver("calls.ended", encode(world.call_event("c-pdf", PDF, content_type=None)), "c-pdf")
    broken = world.call_event("c-broken")
    broken["data"]["notice_played"] = CUSTOMER_PHONE  # wrong type, personal value
    world.send_call(broken)
    world.send_call(world.call_event("c-bad-uri", recording={"uri": "https://evil.example/a"}))
    world.deliver("calls.ended", f'{{"caller": "{CUSTOMER_PHONE}", '.encode(), "c-json")
    wrong_sha = world.call_event("c-sha")
    wrong_sha["data"]["recording"]["sha256"] = "0" * 64
    world.send_call(wrong_sha)
    # holds by person, in other notations
    world.place_hold("H1", {"subject": subject(phone_numbers=[CUSTOMER_NOTATIONS[1]])})
    world.place_hold("H2", {"subject": subject(emails=[OTHER_EMAIL.upper()])})
    # every DSR type
    who = subject(phone_numbers=list(CUSTOMER_NOTATIONS), emails=[f" {CUSTOMER_EMAIL} "])
    world.send_dsr("R-access", "access", who)
    world.send_dsr("R-port", "portability", who)
    world.send_dsr("R-restrict", "restriction", who)
    world.send_dsr("R-lift", "restriction", who, restriction="lift")
    world.send_dsr(
        "R-rect", "rectification", who, rectification={"name": "Ona N", "email": NEW_EMAIL}
    )
    world.send_dsr("R-unverified", "erasure", who, verified=False)
    world.send_dsr("R-erase", "erasure", who)  # held: partial
    world.send_dsr("R-object", "objection", subject(emails=[OTHER_EMAIL]))  # held: partial
    world.send_dsr("R-bad", "erasure", {"phone_numbers": [CUSTOMER_PHONE], "name": OTHER_NAME})
    world.release_hold("H1")  # erasure resumes
    # retention for the rest
    world.clock.advance(days=400)
    world.release_hold("H2")
    world.tick()
    world.refresh_gauges()


PERSONAL_EXTRA = (NEW_EMAIL, "ona.naujoji", "Ona N")


def leaks(text: str) -> list[str]:
    return personal_data_in(text) + [s for s in PERSONAL_EXTRA if s in text]


@pytest.fixture
def json_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The production log configuration (JSON, INFO), writing to a buffer."""
    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buffer)
    logs.configure("json", "DEBUG")
    yield buffer
    structlog.reset_defaults()


def test_traffic_covers_every_path(world: World) -> None:
    """Guard for the tests below: the traffic really reaches every path it claims to."""
    sample = json.dumps(world.call_event("c-x"), ensure_ascii=False)
    assert {CUSTOMER_PHONE, CUSTOMER_EMAIL, "Petraitien"} <= set(leaks(sample))  # the probe works
    traffic(world)
    codes = {d["error_code"] for d in world.data("callvault.deadletter")}
    assert codes == {
        "not_audio",
        "schema_violation",
        "uri_not_allowed",
        "invalid_json",
        "checksum_mismatch",
    }
    types = {e["type"] for e in world.published("recordings.purged")}
    assert types == {"callvault.recording.purged.v1", "callvault.recording.discarded.v1"}
    statuses = {d["request_id"]: d["status"] for d in world.data("dsr.results")}
    assert statuses["R-erase"] == "completed"  # resumed after H1 was released
    assert statuses["R-unverified"] == "rejected"
    assert {d["reason"] for d in world.data("recordings.purged") if "reason" in d} >= {
        "erasure",
        "objection",
        "retention",
        "notice_not_played",
    }


def test_no_personal_data_in_json_logs(world: World, json_logs: io.StringIO) -> None:
    traffic(world)
    text = json_logs.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    assert any(line["event"] == "event_dead_lettered" for line in lines)
    assert any(line["event"] == "handled" for line in lines)
    assert leaks(text) == []


def test_no_personal_data_in_raw_log_events(world: World) -> None:
    """Before any masking: the code itself never hands personal data to the logger."""
    with structlog.testing.capture_logs() as captured:
        traffic(world)
    assert len(captured) > 20
    assert leaks(repr(captured)) == []


def test_no_personal_data_in_metrics(world: World) -> None:
    traffic(world)
    exposition = generate_latest(world.metrics.registry).decode()
    assert "callvault_recordings_stored_total 4.0" in exposition
    assert 'callvault_deadletter_total{error_code="not_audio"} 1.0' in exposition
    assert "callvault_purge_lag_seconds_count" in exposition
    assert leaks(exposition) == []


def test_contract_metrics_are_exposed(world: World) -> None:
    traffic(world)
    exposition = generate_latest(world.metrics.registry).decode()
    for name in (
        "callvault_purge_lag_seconds_bucket",
        "callvault_retention_overdue_recordings",
        "callvault_retention_oldest_overdue_seconds",
        "callvault_recordings_stored_total",
        'callvault_recordings_purged_total{reason="retention"}',
        'callvault_recordings_purged_total{reason="erasure"}',
        'callvault_recordings_purged_total{reason="objection"}',
        'callvault_deadletter_total{error_code="invalid_json"}',
        'callvault_dsr_requests_total{status="rejected",type="erasure"}',
        "callvault_dsr_open_requests",
        "callvault_holds_active",
    ):
        assert name in exposition, name
    assert world.sample("callvault_holds_active") == 0  # both holds were released
    assert world.sample("callvault_dsr_open_requests") == 0  # every request carried out


def test_no_personal_data_in_published_events(world: World) -> None:
    traffic(world)
    codec = Codec()
    checked = 0
    for topic, _, value in world.bus.records:
        event = json.loads(value)
        codec.check("cloudevent", event)
        codec.check(event["type"], event["data"])
        if topic != "callvault.deadletter":
            assert leaks(value.decode()) == [], (topic, event)
            checked += 1
    assert checked > 10


def test_no_personal_data_in_the_audit_trail(world: World) -> None:
    traffic(world)
    entries = world.audit(everything=True)
    assert {e.action for e in entries} >= {"store", "discard", "hold_placed", "purge", "dsr"}
    assert leaks(repr(entries)) == []


def test_tombstones_and_holds_keep_no_personal_data(world: World) -> None:
    traffic(world)
    assert leaks(repr(world.db.state.recordings)) == []
    assert leaks(repr(world.db.state.holds)) == []
    assert leaks(repr(world.db.state.requests)) == []
    assert all(not keys for keys in world.db.state.subject_keys.values())


def test_handler_bug_is_dead_lettered_and_its_log_is_masked(
    world: World, json_logs: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    handlers = world.container.messagebus._handlers
    original = handlers[StoreCall]

    def buggy(command: StoreCall) -> str:
        if command.call.call_id == "c1":
            raise ValueError(f"cannot parse {command.call.caller} / {CUSTOMER_EMAIL}")
        return original(command)

    monkeypatch.setitem(handlers, StoreCall, buggy)
    assert world.send_call(world.call_event("c1")) == "deadletter"
    (letter,) = world.data("callvault.deadletter")
    assert letter["error_code"] == "internal_error"
    assert leaks(letter["error"]) == []
    text = json_logs.getvalue()
    assert "handler_failed" in text
    assert "ValueError" in text
    assert CUSTOMER_PHONE not in text
    assert CUSTOMER_EMAIL not in text
    # the pipeline goes on
    assert world.send_call(world.call_event("c2")) == "stored"
