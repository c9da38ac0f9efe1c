"""The upgrade to partitioned tables, online: a database of the previous version with
recordings and an audit trail, a worker of this version ingesting a steady stream of calls,
and `callvault migrate` partitioning both tables meanwhile. No call is lost, doubled or held
up for more than seconds; the heaps become the first partitions; the chain still verifies."""

from __future__ import annotations

import itertools
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from yoyo import get_backend, read_migrations

from testbed.stack import Instance, database
from tests.e2e.harness import CALLVAULT, Callvault, make_wav
from workers.adapters.postgres.migrate import yoyo_url
from workers.adapters.postgres.schema import MIGRATIONS
from workers.bootstrap import bootstrap
from workers.domain.messages import PolicyApplied
from workers.domain.retention import parse_timestamp

EARLIER_ROWS = 40_000  # enough that the keys take a while to build concurrently
RATE = 8.0  # calls a second while the migration runs
LONGEST_PAUSE_S = 6.0  # the switch waits at most 2 s for its lock, a few times at worst

EARLIER = """
INSERT INTO recordings (recording_id, call_digest, tenant, direction, started_at,
    collected_at, retention_due_at, policy, status, object_key, stored_at, purged_at)
SELECT md5('earlier' || i)::uuid, md5('earlier' || i) || md5('e' || i), 'default', 'inbound',
    c, c, c + interval '1 day', 'P1D', 'purged', 'recordings/x', c, c + interval '1 day'
FROM (SELECT i, now() - interval '1 minute' * i - interval '2 days' AS c
      FROM generate_series(1, %s) i) s
"""  # tombstones: what a year of purges leaves


def _previous_version(instance: Instance) -> None:
    """A database of the version before partitioning, with rows in both tables, after this
    version's migrations were applied and before its tables were partitioned (what a start
    of this version leaves: a populated heap is `callvault migrate`'s to convert)."""
    backend = get_backend(yoyo_url(instance.owner_url))
    with backend.lock():
        backend.apply_migrations(backend.to_apply(read_migrations(str(MIGRATIONS))))
    with psycopg.connect(instance.owner_url, autocommit=True) as conn:
        conn.execute(EARLIER, (EARLIER_ROWS,))
    db = database(instance.owner_url)
    db.open()
    with db.unit_of_work() as uow:  # a chained entry, as the previous version wrote them
        uow.record(PolicyApplied("*", None, "P1Y", 0, datetime.now(UTC)))
        uow.commit()
    db.close()
    app = bootstrap(instance.migration_settings())
    try:
        report = app.migrate(apply_policy=False)  # what a worker's start migrates
    finally:
        app.close()
    assert "recordings: one heap still" in report.partitions[0]


def _relkinds(instance: Instance) -> dict[str, str]:
    with psycopg.connect(instance.owner_url) as conn:
        rows = conn.execute(
            "SELECT relname, relkind FROM pg_class WHERE relname IN "
            "('recordings', 'audit_log', 'recordings_legacy', 'audit_log_legacy')"
        ).fetchall()
    return dict(rows)


def test_migrate_partitions_a_populated_database_while_a_worker_ingests(
    instance: Instance, tmp_path: Path
) -> None:
    _previous_version(instance)
    cv = Callvault(instance, tmp_path)
    try:
        cv.start_worker("--only", "ingest,outbox")
        assert _relkinds(instance) == {"recordings": "r", "audit_log": "r"}
        audio, sent, stop = make_wav(0.5), [], threading.Event()

        def steady() -> None:
            started = time.monotonic()
            while not stop.is_set():
                call_id = f"upgrade-{len(sent)}"
                cv.call(call_id, audio)
                sent.append(call_id)
                time.sleep(max(0.0, started + len(sent) / RATE - time.monotonic()))

        publisher = threading.Thread(target=steady)
        publisher.start()
        try:
            time.sleep(3)
            began = time.monotonic()
            migrated = subprocess.run(
                [CALLVAULT, "migrate"],
                env={**cv.env, **instance.migration_env},
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            took = time.monotonic() - began
            time.sleep(3)
        finally:
            stop.set()
            publisher.join(timeout=30)
        assert migrated.returncode == 0, migrated.stderr
        stored = cv.read(
            "recordings_stored",
            lambda events: {e["data"]["call_id"] for e in events} >= set(sent),
            timeout=180,
        )
    finally:
        cv.stop_all()
    assert _relkinds(instance) == {
        "recordings": "p",
        "audit_log": "p",
        "recordings_legacy": "r",
        "audit_log_legacy": "r",
    }
    with psycopg.connect(instance.owner_url) as conn:
        counts = conn.execute(
            "SELECT count(*), count(DISTINCT call_id) FROM recordings "
            "WHERE call_id LIKE 'upgrade-%'"
        ).fetchone()
        earlier = conn.execute("SELECT count(*) FROM recordings_legacy").fetchone()
    assert counts == (len(sent), len(sent))  # every call once
    assert earlier == (EARLIER_ROWS + len(sent),)  # all collected before the heap's bound
    times = sorted(parse_timestamp(e["data"]["stored_at"]) for e in stored)
    pauses = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    print(f"migrate took {took:.1f} s; longest pause between stored calls {max(pauses):.2f} s")
    assert max(pauses) < LONGEST_PAUSE_S, f"ingest paused {max(pauses):.1f} s ({took:.1f} s)"
    verified = subprocess.run(
        [CALLVAULT, "audit", "verify", "--full"], env=cv.env, capture_output=True, text=True
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    again = subprocess.run(
        [CALLVAULT, "migrate", "--json"],
        env={**cv.env, **instance.migration_env},
        capture_output=True,
        text=True,
        check=True,
    )
    assert '"partitions": []' in again.stdout
