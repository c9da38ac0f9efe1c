"""Retention end to end with a policy of seconds: every recording purged shortly after it falls
due, every object version gone, the lag measured; legal holds keep recordings past due."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from testbed.probes import wait_for
from testbed.stack import Instance, free_port
from tests.e2e.harness import Callvault, cloudevent, make_wav

POLICY = "PT6S"


@pytest.fixture
def short_lived(instance: Instance, tmp_path: Any) -> Any:
    instance.env.update(
        {
            "CALLVAULT_RETENTION": POLICY,
            "CALLVAULT_SCHEDULER_INTERVAL": "PT0.5S",
            "CALLVAULT_METRICS_INTERVAL": "PT1S",
        }
    )
    cv = Callvault(instance, tmp_path)
    cv.migrate()
    yield cv
    cv.stop_all()


def by_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


def hold(cv: Callvault, hold_id: str, scope: dict[str, Any]) -> None:
    data = {"hold_id": hold_id, "reason": "complaint under investigation", "scope": scope}
    cv.send("holds_commands", hold_id, cloudevent("callvault.hold.placed.v1", data))


def release(cv: Callvault, hold_id: str) -> None:
    cv.send(
        "holds_commands", hold_id, cloudevent("callvault.hold.released.v1", {"hold_id": hold_id})
    )


def db(cv: Callvault, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(cv.settings.database_url.get_secret_value()) as conn:
        return conn.execute(sql, args).fetchall()


def test_recordings_are_purged_on_time_with_every_version(short_lived: Callvault) -> None:
    cv = short_lived
    cv.start_worker()
    calls = [f"ret-{i}" for i in range(4)]
    for call_id in calls:
        cv.call(call_id, make_wav(0.3), customer={"email": "x@example.lt"})
    purged = cv.read("recordings_purged", lambda seen: len(seen) >= 4, timeout=120)
    assert sorted(e["data"]["call_id"] for e in purged) == calls
    for event in purged:
        data = event["data"]
        assert data["reason"] == "retention"
        assert 0 <= data["lag_seconds"] < 30
        assert data["versions_deleted"] >= 1
        assert data["due_at"] is not None
    due = cv.read("retention_due", lambda seen: len(seen) >= 4)
    assert sorted(e["data"]["call_id"] for e in due) == calls
    assert {e["data"]["policy"] for e in due} == {POLICY}
    # no object, no version, no delete marker of a recording is left in the vault
    assert recording_versions(cv) == []
    rows = db(cv, "SELECT status, wrapped_key, customer_sealed FROM recordings")
    assert rows == [("purged", None, None)] * 4
    assert db(cv, "SELECT count(*) FROM subject_keys") == [(0,)]
    wait_for(lambda: cv.metric("callvault_purge_lag_seconds_count") >= 4, 20, "lag histogram")
    wait_for(
        lambda: cv.metric("callvault_retention_overdue_recordings") == 0,
        20,
        "overdue gauge back to 0",
    )
    assert cv.metric("callvault_retention_oldest_overdue_seconds") == 0
    assert cv.metric('callvault_recordings_purged_total{reason="retention"}') == 4


def test_held_recordings_survive_until_released(short_lived: Callvault) -> None:
    cv = short_lived
    cv.start_worker()
    hold(cv, "case-1", {"call_ids": ["held-1"]})
    hold(cv, "case-2", {"subject": {"phone_numbers": ["8 699 00001"]}})  # before the call exists
    time.sleep(2)
    cv.call("held-1", make_wav(0.3))
    cv.call("held-2", make_wav(0.3), caller="+370 699 00001")
    cv.call("free-1", make_wav(0.3))
    purged = cv.read("recordings_purged", lambda seen: len(seen) >= 1, timeout=90)
    time.sleep(10)  # well past due: held ones must still be there
    purged = cv.read("recordings_purged", lambda seen: True, timeout=5)
    assert [e["data"]["call_id"] for e in purged] == ["free-1"]
    assert sorted(r[0] for r in db(cv, "SELECT call_id FROM recordings WHERE status='stored'")) == [
        "held-1",
        "held-2",
    ]
    wait_for(lambda: cv.metric("callvault_holds_active") == 2, 20, "holds gauge")
    release(cv, "case-1")
    release(cv, "case-2")
    purged = cv.read("recordings_purged", lambda seen: len(seen) >= 3, timeout=60)
    assert sorted(e["data"]["call_id"] for e in purged) == ["free-1", "held-1", "held-2"]
    wait_for(lambda: cv.metric("callvault_holds_active") == 0, 20, "holds gauge to 0")


def test_holds_placed_while_no_worker_ran_are_in_force_before_anything_is_purged(
    short_lived: Callvault,
) -> None:
    """Compliance places holds while every worker is down, and the recordings fall due
    meanwhile. The worker that starts again purges none of them: its purges wait until its
    holds consumer has read every hold, the many ahead of them too."""
    cv = short_lived
    worker = cv.start_worker()
    calls = [f"down-{i}" for i in range(6)]
    for call_id in calls:
        cv.call(call_id, make_wav(0.3))
    cv.read("recordings_stored", lambda seen: len(seen) >= len(calls), timeout=60)
    cv.kill(worker)
    for i in range(200):  # other cases' holds, ahead of these in the topic
        hold(cv, f"other-{i}", {"call_ids": [f"elsewhere-{i}"]})
    for call_id in calls:
        hold(cv, f"case-{call_id}", {"call_ids": [call_id]})
    (due,) = db(cv, "SELECT max(retention_due_at) FROM recordings")[0]
    time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()) + 1)  # all past due
    cv.start_worker()
    wait_for(lambda: cv.metric("callvault_holds_active") == 206, 90, "every hold applied")
    wait_for(lambda: db(cv, "SELECT count(*) FROM followups") == [(0,)], 90, "purges settled")
    assert cv.read("recordings_purged", lambda seen: True, timeout=3) == []
    stored = db(cv, "SELECT call_id FROM recordings WHERE status = 'stored'")
    assert sorted(r[0] for r in stored) == calls
    for call_id in calls:
        release(cv, f"case-{call_id}")
    purged = cv.read("recordings_purged", lambda seen: len(seen) >= len(calls), timeout=90)
    assert sorted(e["data"]["call_id"] for e in purged) == calls


def test_two_workers_announce_each_recording_once(short_lived: Callvault) -> None:
    cv = short_lived
    cv.start_worker()
    cv.start_worker(metrics_port=free_port())
    calls = [f"two-{i}" for i in range(12)]
    for call_id in calls:
        cv.call(call_id, make_wav(0.2))
    cv.read("recordings_purged", lambda seen: len(seen) >= len(calls), timeout=150)
    time.sleep(3)
    due = cv.read("retention_due", lambda seen: True, timeout=5)
    announced = [e["data"]["recording_id"] for e in due]
    assert len(announced) == len(calls) == len(set(announced))


def test_purge_interrupted_half_way_finishes_after_restart(short_lived: Callvault) -> None:
    cv = short_lived
    # Store and announce, but nobody consumes retention.due yet.
    cv.start_worker("--only", "ingest,scheduler,outbox")
    cv.call("crash-1", make_wav(0.3))
    cv.call("crash-2", make_wav(0.3))
    cv.read("retention_due", lambda seen: len(seen) >= 2, timeout=90)
    # What a worker killed right after destroying the data key leaves behind:
    db(
        cv,
        "UPDATE recordings SET status='purging', wrapped_key=NULL, versions_deleted=1, "
        "purge_reason='retention' WHERE call_id='crash-1' RETURNING 1",
    )
    purger = cv.start_worker("--only", "retention", metrics_port=free_port())
    cv.kill(purger)  # kill -9 while it may be purging
    cv.start_worker("--only", "retention", metrics_port=free_port())
    purged = cv.read(
        "recordings_purged",
        lambda seen: {"crash-1", "crash-2"} <= {e["data"]["call_id"] for e in seen},
        timeout=90,
    )
    assert sorted({e["data"]["call_id"] for e in purged}) == ["crash-1", "crash-2"]
    assert db(cv, "SELECT DISTINCT status FROM recordings") == [("purged",)]
    assert recording_versions(cv) == []
    audit = db(cv, "SELECT action FROM audit_log WHERE action = 'purge'")
    assert len(audit) == 2
    assert json.dumps(purged)  # events are JSON all the way


def recording_versions(cv: Callvault) -> list[Any]:
    """Every object version and delete marker under ``recordings/`` (the vault also keeps the
    audit checkpoints, which outlive every recording)."""
    listed = cv.objects.client.list_objects(
        cv.settings.vault_bucket, prefix="recordings/", recursive=True, include_version=True
    )
    return list(listed)


def test_a_call_already_past_due_is_stored_then_purged_not_lost(callvault: Callvault) -> None:
    """A late replay of a call from 400 days ago: the law says it should be gone already, so it
    is purged at once - but first it is accounted for, never silently dropped or stuck."""
    cv = callvault
    cv.start_worker()
    old = datetime.now(UTC) - timedelta(days=400)
    cv.call("late-1", make_wav(0.3), ended=old)
    purged = cv.read("recordings_purged", lambda seen: len(seen) >= 1, timeout=90)
    assert purged[0]["data"]["call_id"] == "late-1"
    assert purged[0]["data"]["reason"] == "retention"
    assert db(cv, "SELECT status FROM recordings") == [("purged",)]
    assert recording_versions(cv) == []
