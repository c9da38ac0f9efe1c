"""The chaos suite's oracle can fail: a held recording purged, a late purge, a lost event or a
second effect for one call are each reported (synthetic runs, no services)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.chaos.checks import Judge, Row, Snapshot
from tests.chaos.faults import Injected
from tests.chaos.traffic import CallSent, HoldSent, Ledger

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def call(n: int, subject: int = 9) -> CallSent:
    return CallSent(
        f"call-{n}", f"00000000-0000-0000-0000-00000000000{n}", subject, at(0), at(20), at(1),
        True, "ab" * 32, f"event-{n}", b"{}",
    )  # fmt: skip


def row(c: CallSent, status: str = "purged", purged: float | None = 21, **kw: Any) -> Row:
    values: dict[str, Any] = {
        "recording_id": c.recording_id,
        "status": status,
        "held": False,
        "readable": status == "stored",
        "object_version": "v1",
        "due_at": c.due_at,
        "stored_at": at(2),
        "purged_at": at(purged) if purged is not None else None,
        "purge_reason": "retention" if status == "purged" else None,
    }
    return Row(**(values | kw))


def events(c: CallSent, purged: bool = True) -> dict[str, list[dict[str, Any]]]:
    def ev(kind: str, data: dict[str, Any], n: int = 0) -> dict[str, Any]:
        return {"id": f"{kind}-{c.recording_id}-{n}", "type": kind, "time": "t", "data": data}

    rid = {"recording_id": c.recording_id, "call_id": c.call_id}
    return {
        "recordings_stored": [ev("stored", rid | {"stored_at": "s"})],
        "retention_due": [ev("due", rid)] if purged else [],
        "recordings_purged": [ev("callvault.recording.purged.v1", rid | {"purged_at": "p"})]
        if purged
        else [],
        "dsr_results": [],
        "deadletter": [],
    }


def judge(
    calls: list[CallSent],
    rows: list[Row],
    holds: dict[str, tuple[HoldSent, datetime | None, datetime | None]] | None = None,
    outputs: dict[str, list[dict[str, Any]]] | None = None,
    faults: list[Injected] | None = None,
    now: float = 200,
) -> Any:
    ledger = Ledger()
    ledger.calls = {c.call_id: c for c in calls}
    holds = holds or {}
    ledger.holds = {h: sent for h, (sent, _, _) in holds.items()}
    snap = Snapshot(
        rows={r.recording_id: r for r in rows},
        hold_times={h: (p, r) for h, (_, p, r) in holds.items()},
        hold_lists={h: {c.recording_id for c in calls} for h in holds},
        requests={},
        outbox=0,
        followups=0,
        followups_failed=0,
    )
    merged: dict[str, list[dict[str, Any]]] = {}
    for c in calls:
        for topic, found in events(c).items():
            merged.setdefault(topic, []).extend(found)
    return Judge(ledger, snap, outputs or merged, faults or [], 90, at(now)).judge()


def test_a_calm_run_breaks_no_promise() -> None:
    c = call(1)
    verdicts = judge([c], [row(c)])
    assert not any(verdicts.failures().values())
    assert verdicts.worst_lag == 1


def test_a_recording_purged_under_a_hold_in_force_is_reported() -> None:
    c = call(1)
    hold = HoldSent("h1", "call", calls=(c.call_id,))
    verdicts = judge([c], [row(c, purged=30)], {"h1": (hold, at(10), None)})
    assert verdicts.held_purged == ["call-1 (hold h1)"]


def test_a_purge_after_the_release_is_lawful_and_timed_from_it() -> None:
    c = call(1)
    hold = HoldSent("h1", "call", calls=(c.call_id,))
    verdicts = judge([c], [row(c, purged=62)], {"h1": (hold, at(10), at(60))})
    assert verdicts.held_purged == []
    assert verdicts.worst_lag == 2


def test_a_hold_placed_before_the_recording_was_stored_covers_it_from_arrival() -> None:
    c = replace(call(1), due_at=at(-10))  # past due on arrival at 1 s, stored at 2 s
    hold = HoldSent("h1", "call", calls=(c.call_id,))
    verdicts = judge([c], [row(c, purged=101)], {"h1": (hold, at(1.5), at(100))})
    assert verdicts.worst_lag == 1


def test_the_renewed_hold_of_a_pair_keeps_the_recording_without_a_gap() -> None:
    c = call(1)
    old = HoldSent("h1", "call", calls=(c.call_id,))
    renewed = HoldSent("h2", "call", calls=(c.call_id,))
    holds = {"h1": (old, at(10), at(60)), "h2": (renewed, at(60.2), at(100))}
    assert judge([c], [row(c, purged=101)], holds).worst_lag == 1


def test_a_purge_late_after_an_outage_is_reported_but_the_outage_is_forgiven() -> None:
    c = call(1)
    outage = Injected("postgres_kill", at(15), at(50))
    assert judge([c], [row(c, purged=120)], faults=[outage]).late == []
    assert judge([c], [row(c, purged=200)], faults=[outage]).late == ["call-1 (150s)"]


def test_a_purge_during_an_outage_that_did_not_stop_it_was_on_time() -> None:
    c = call(1)
    kafka_away = Injected("kafka_kill", at(15), at(50))
    verdicts = judge([c], [row(c, purged=21)], faults=[kafka_away])
    assert verdicts.lags == [0.0]  # on time, not early: the outage forgives, never credits


def test_an_unheld_recording_still_stored_long_after_its_due_time_is_past_due() -> None:
    c = call(1)
    verdicts = judge([c], [row(c, status="stored", purged=None)], outputs=events(c, False))
    assert len(verdicts.past_due) == 1


def test_a_held_recording_without_its_key_is_unreadable() -> None:
    c = call(1)
    hold = HoldSent("h1", "subject", subject=c.subject)
    stored = row(c, status="stored", purged=None, held=True, readable=False)
    verdicts = judge([c], [stored], {"h1": (hold, at(0), None)}, outputs=events(c, False))
    assert verdicts.held_unreadable == ["call-1 (stored)"]


def test_lost_and_duplicated_events_are_told_apart_from_repeats_by_id() -> None:
    c = call(1)
    outputs = events(c)
    repeat = dict(outputs["recordings_stored"][0])
    second = repeat | {"id": "another-id"}
    outputs["recordings_stored"] += [repeat, second]
    outputs["retention_due"] = []
    verdicts = judge([c], [row(c)], outputs=outputs)
    assert verdicts.duplicate_deliveries["recordings_stored"] == 1
    assert verdicts.duplicated["stored_event"] == ["call-1"]
    assert verdicts.lost["retention_due_event"] == ["call-1"]
    assert judge([c], []).lost["recording"] == ["call-1"]
