"""The operator's commands against a running instance: publish, hold, dsr, audit, shutdown."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from kafka import KafkaAdminClient

from testbed.stack import Instance
from tests.e2e.harness import CALLVAULT, Callvault, cloudevent, make_wav


def run(cv: Callvault, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CALLVAULT, *args], env=cv.env, capture_output=True, text=True, check=check, timeout=120
    )


def test_publish_dsr_and_audit_commands(callvault: Callvault, tmp_path: Any) -> None:
    cv = callvault
    cv.start_worker()
    audio = tmp_path / "call.wav"
    audio.write_bytes(make_wav(0.5))
    run(
        cv,
        "publish",
        "--audio",
        str(audio),
        "--call-id",
        "cli-1",
        "--caller",
        "8 612 34567",
        "--customer-email",
        "Ona@Example.lt",
        "--order-id",
        "ORD-5",
    )
    cv.read("recordings_stored", lambda seen: any(e["data"]["call_id"] == "cli-1" for e in seen))
    run(cv, "hold", "place", "case-7", "--reason", "complaint", "--order-id", "ORD-5")
    request_id = run(cv, "dsr", "submit", "erasure", "--phone", "+370 612 34567").stdout.strip()
    answers = cv.read(
        "dsr_results", lambda seen: any(e["data"]["request_id"] == request_id for e in seen)
    )
    answer = next(e["data"] for e in answers if e["data"]["request_id"] == request_id)
    assert answer["status"] == "partial"
    assert [r["outcome"] for r in answer["recordings"]] == ["held"]
    status = json.loads(run(cv, "dsr", "status", request_id, "--json").stdout)
    assert status["pending_recordings"] == [answer["recordings"][0]["recording_id"]]
    holds = json.loads(run(cv, "hold", "list", "--json").stdout)
    assert [(h["hold_id"], len(h["recordings"])) for h in holds] == [("case-7", 1)]
    certificate = tmp_path / "answer.json"
    certificate.write_text(json.dumps(answer))
    assert "certificate valid" in run(cv, "verify-certificate", str(certificate)).stdout

    verified = run(cv, "audit", "verify")
    assert "intact" in verified.stdout
    # Someone with database access edits history: the chain shows it.
    with psycopg.connect(cv.instance.owner_url, autocommit=True) as conn:  # the owner
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change")
        conn.execute("UPDATE audit_log SET details = '{\"forged\": true}' WHERE seq = 1")
    # Entries proven by an earlier verification are read again by a full one.
    tampered = run(cv, "audit", "verify", "--full", check=False)
    assert tampered.returncode == 1
    assert "BROKEN at entry 1" in tampered.stdout


def test_malformed_dsr_is_answered_and_dead_lettered(callvault: Callvault) -> None:
    cv = callvault
    cv.start_worker()
    data = {
        "request_id": "bad-req-1",
        "type": "erasure",
        "received_at": "2026-01-01T00:00:00Z",
        "identity_verified": True,
        "subject": {"phone_numbers": []},
    }
    cv.send("dsr_requests", "bad-req-1", cloudevent("callvault.dsr.requested.v1", data))
    answer = cv.read("dsr_results", lambda seen: len(seen) >= 1)[0]["data"]
    assert (answer["request_id"], answer["status"]) == ("bad-req-1", "rejected")
    assert answer["reason"].startswith("malformed_request")
    dead = cv.read("deadletter", lambda seen: len(seen) >= 1)[0]["data"]
    assert (dead["key"], dead["error_code"]) == ("bad-req-1", "schema_violation")


def committed_offsets(cv: Callvault, logical: str) -> int:
    """The consumer group's committed offsets on a topic, summed over its partitions."""
    admin = KafkaAdminClient(bootstrap_servers=cv.settings.kafka)
    try:
        offsets = admin.list_group_offsets({cv.settings.app_id: None})[cv.settings.app_id]
    finally:
        admin.close()
    topic = cv.instance.topic(logical)
    return sum(o.offset for tp, o in offsets.items() if tp.topic == topic and o.offset > 0)


def test_worker_stops_cleanly_on_sigterm(callvault: Callvault) -> None:
    cv = callvault
    worker = cv.start_worker()
    cv.call("term-1", make_wav(0.3))
    cv.read("recordings_stored", lambda seen: len(seen) >= 1)
    assert cv.kill(worker, signal.SIGTERM) == 0
    # The offset of the handled event was committed before the worker went away.
    assert committed_offsets(cv, "calls_ended") == 1
    cv.start_worker()
    cv.call("term-2", make_wav(0.3))
    stored = cv.read("recordings_stored", lambda seen: len(seen) >= 2)
    assert sorted(e["data"]["call_id"] for e in stored) == ["term-1", "term-2"]
    assert "Traceback" not in cv.logs()


@pytest.mark.parametrize("after_seconds", [0.2, 1.0, 2.5])
def test_a_worker_stopped_while_it_starts_exits_cleanly(
    callvault: Callvault, after_seconds: float
) -> None:
    """A supervisor may stop a worker it restarted a moment ago: that is a clean stop (0),
    not a death by signal, whatever the worker was doing (importing, migrating, joining)."""
    worker = subprocess.Popen(
        [CALLVAULT, "worker"], env=callvault.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    time.sleep(after_seconds)  # the fault's timing is the point, not a wait for readiness
    worker.send_signal(signal.SIGTERM)
    _, stderr = worker.communicate(timeout=60)
    assert worker.returncode == 0, stderr.decode(errors="replace")[-2000:]
    assert b"Traceback" not in stderr


def test_a_worker_with_another_retention_policy_refuses_to_start_until_migrate(
    callvault: Callvault,
) -> None:
    """A stale worker must not revert a changed policy: the policy in force is the one
    `callvault migrate` recorded, and a worker configured otherwise names both and stops."""
    cv = callvault
    shorter = {**cv.env, "CALLVAULT_RETENTION": "P6M"}
    refused = subprocess.run(
        [CALLVAULT, "worker"], env=shorter, capture_output=True, text=True, timeout=120
    )
    assert refused.returncode == 3
    assert "*=P1Y" in refused.stderr
    assert "*=P6M" in refused.stderr
    assert "callvault migrate" in refused.stderr
    applied = subprocess.run(
        [CALLVAULT, "migrate", "--json"],
        env={**shorter, **cv.instance.migration_env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert json.loads(applied.stdout)["policy"].startswith("applied")
    cv.env = shorter
    cv.start_worker()  # ready: the configured policy is the one in force now
    stale = subprocess.run(
        [CALLVAULT, "worker"],
        env={**shorter, "CALLVAULT_RETENTION": "P1Y"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert stale.returncode == 3  # the old configuration cannot come back by a restart


def test_a_worker_told_to_migrate_on_start_prepares_what_it_needs(
    instance: Instance, tmp_path: Path
) -> None:
    """CALLVAULT_MIGRATE_ON_START=true (off by default) with the owner's URL: a single-host
    install's worker runs the idempotent `callvault migrate` first."""
    cv = Callvault(instance, tmp_path)  # no `callvault migrate` here
    try:
        cv.start_worker(extra_env={**instance.migration_env, "CALLVAULT_MIGRATE_ON_START": "true"})
        cv.call("fresh-1", make_wav(0.3))
        stored = cv.read("recordings_stored", lambda seen: len(seen) >= 1)
        assert stored[0]["data"]["call_id"] == "fresh-1"
        assert cv.objects.has_object_lock(cv.settings.vault_bucket)
    finally:
        cv.stop_all()


def test_worker_stops_when_the_database_stays_away_and_loses_nothing(
    callvault: Callvault,
) -> None:
    cv = callvault
    worker = cv.start_worker(
        extra_env={
            "CALLVAULT_CONCURRENCY": "1",
            "CALLVAULT_DB_TIMEOUT": "PT2S",
            "CALLVAULT_RETRY_BUDGET": "PT10S",
        }
    )
    cv.call("before-outage", make_wav(0.3))
    cv.read("recordings_stored", lambda seen: len(seen) >= 1)
    name = cv.instance.name
    with psycopg.connect(cv.instance.admin_url, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
    try:
        cv.call("during-outage", make_wav(0.3))
        # retries with backoff, then a clean stop with EX_TEMPFAIL for the supervisor
        assert worker.wait(timeout=120) == 75
    finally:
        with psycopg.connect(cv.instance.admin_url, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    cv.start_worker()
    stored = cv.read("recordings_stored", lambda seen: len(seen) >= 2)
    assert sorted(e["data"]["call_id"] for e in stored) == ["before-outage", "during-outage"]


def _rewrite_chain(cv: Callvault, keep_below: int | None = None) -> None:
    """What a DBA with write access can do: edit an entry (or drop the tail) and recompute
    every hash after it, so that the chain itself verifies again."""
    from psycopg.types.json import Jsonb

    from workers.domain.audit import GENESIS, canonical, chain_hash

    with psycopg.connect(cv.instance.owner_url, autocommit=True) as conn:  # the owner
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
        if keep_below is not None:
            conn.execute("DELETE FROM audit_log WHERE seq >= %s", (keep_below,))
        else:
            conn.execute("UPDATE audit_log SET details = '{\"forged\": true}' WHERE seq = 1")
        prev = GENESIS
        rows = conn.execute(
            "SELECT seq, at, action, entity_id, details FROM audit_log ORDER BY seq"
        ).fetchall()
        for seq, at, action, entity, details in rows:
            digest = chain_hash(prev, canonical(seq, at, action, entity, details))
            conn.execute(
                "UPDATE audit_log SET prev_hash = %s, hash = %s, details = %s WHERE seq = %s",
                (prev, digest, Jsonb(details), seq),
            )
            prev = digest
        conn.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")


def test_a_rewritten_or_truncated_audit_trail_fails_against_its_checkpoint(
    callvault: Callvault,
) -> None:
    cv = callvault
    cv.start_worker()
    for n in range(3):
        cv.call(f"au-{n}", make_wav(0.2))
    cv.read("recordings_stored", lambda seen: len(seen) >= 3)
    assert run(cv, "audit", "checkpoint").stdout.startswith("checkpoint:")
    checkpoints = cv.read("audit_checkpoints", lambda seen: len(seen) >= 1)
    assert checkpoints[-1]["type"] == "callvault.audit.checkpoint.v1"
    intact = json.loads(run(cv, "audit", "verify", "--json").stdout)
    assert intact["intact"] is True
    assert intact["checkpoint"]["ok"] is True

    _rewrite_chain(cv)  # every hash recomputed: the chain alone no longer shows the edit
    rewritten = run(cv, "audit", "verify", "--json", check=False)
    assert rewritten.returncode == 1
    report = json.loads(rewritten.stdout)
    assert report["intact"] is True
    assert "history rewritten" in report["checkpoint"]["reason"]

    _rewrite_chain(cv, keep_below=2)  # the tail deleted, the rest consistent
    truncated = run(cv, "audit", "verify", check=False)
    assert truncated.returncode == 1
    assert "entries deleted" in truncated.stdout


def test_the_audit_trail_refuses_truncation(callvault: Callvault) -> None:
    cv = callvault
    run(cv, "audit", "checkpoint")
    with (
        psycopg.connect(cv.instance.owner_url, autocommit=True) as conn,  # even the owner
        pytest.raises(psycopg.errors.RaiseException, match="append-only"),
    ):
        conn.execute("TRUNCATE audit_log CASCADE")
