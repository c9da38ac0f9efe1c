"""The partitioned layout on a fresh install: recordings by month, the audit trail by range,
a call stored once whatever month its repeat names, partitions made ahead by the workers'
role through the owner's function, and a row beyond them caught by the DEFAULT partition and
moved out at the next round."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from testbed.stack import Instance, database

INSERT = (
    "INSERT INTO recordings (recording_id, call_digest, tenant, direction, started_at, "
    "collected_at, retention_due_at, policy, status, object_key) VALUES (%s, %s, 'default', "
    "'inbound', %s, %s, %s, 'P1Y', 'stored', 'recordings/x') ON CONFLICT DO NOTHING"
)


@pytest.fixture
def migrated(instance: Instance) -> Instance:
    from workers.adapters.postgres.migrate import migrate_schema

    migrate_schema(instance.migration_settings())
    return instance


def _insert(conn: psycopg.Connection[Any], digest: str, collected: datetime) -> int:
    row = (str(uuid.uuid4()), digest, collected, collected, collected + timedelta(days=365))
    return conn.execute(INSERT, row).rowcount


def _partitions(url: str, table: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
            (table,),
        ).fetchall()
    return dict(rows)


def test_a_fresh_install_is_partitioned_with_months_made_ahead(migrated: Instance) -> None:
    now = datetime.now(UTC)
    months = [
        (now.replace(day=1) + timedelta(days=31 * n)).strftime("recordings_y%Ym%m")
        for n in range(4)
    ]
    recordings = _partitions(migrated.owner_url, "recordings")
    assert set(months) <= set(recordings)
    assert recordings["recordings_default"] == "DEFAULT"
    trail = _partitions(migrated.owner_url, "audit_log")
    assert {"audit_log_p000000", "audit_log_p000001", "audit_log_default"} <= set(trail)


def test_a_call_is_stored_once_whatever_month_its_repeat_names(migrated: Instance) -> None:
    now = datetime.now(UTC)
    with psycopg.connect(migrated.database_url, autocommit=True) as conn:
        assert _insert(conn, "a" * 64, now) == 1
        assert _insert(conn, "a" * 64, now - timedelta(days=40)) == 0  # another partition
        assert _insert(conn, "a" * 64, now) == 0  # the same one


def test_concurrent_repeats_in_two_partitions_store_one_row(migrated: Instance) -> None:
    url, now, results = migrated.database_url, datetime.now(UTC), []
    with psycopg.connect(url) as first:
        assert _insert(first, "b" * 64, now) == 1  # not committed yet

        def second() -> None:
            with psycopg.connect(url, autocommit=True) as conn:
                results.append(_insert(conn, "b" * 64, now - timedelta(days=40)))

        racer = threading.Thread(target=second)
        racer.start()
        racer.join(timeout=1.5)
        assert racer.is_alive()  # it waits for the first to commit or roll back
        first.commit()
        racer.join(timeout=30)
    assert results == [0]
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM recordings WHERE call_digest = %s", ("b" * 64,))
        assert row.fetchone() == (1,)


def test_a_row_beyond_the_partitions_is_caught_then_moved_out(migrated: Instance) -> None:
    db = database(migrated.database_url)  # the workers' role
    db.open()
    try:
        far = datetime(datetime.now(UTC).year + 3, 5, 17, tzinfo=UTC)
        with psycopg.connect(migrated.database_url, autocommit=True) as conn:
            assert _insert(conn, "c" * 64, far) == 1
        assert db.stray_rows() == {"recordings": 1, "audit_log": 0}
        made = db.ensure_partitions()
        assert far.strftime("recordings_y%Ym%m") in made
        assert db.stray_rows() == {"recordings": 0, "audit_log": 0}
        assert db.ensure_partitions() == []  # nothing left to make
    finally:
        db.close()
    with psycopg.connect(migrated.owner_url) as conn:
        row = conn.execute(
            "SELECT tableoid::regclass::text FROM recordings WHERE call_digest = %s", ("c" * 64,)
        ).fetchone()
    assert row == (far.strftime("recordings_y%Ym%m"),)


def test_the_workers_role_reaches_the_trail_only_through_audit_log(migrated: Instance) -> None:
    with psycopg.connect(migrated.database_url, autocommit=True) as conn:
        for statement in (
            "SELECT count(*) FROM audit_log_p000000",
            "INSERT INTO audit_log_p000000 (seq, at, action, entity_id, details, prev_hash, "
            "hash) VALUES (1, now(), 'x', 'x', '{}', '', '')",
            "CREATE TABLE recordings_y2099m01 PARTITION OF recordings FOR VALUES FROM "
            "('2099-01-01') TO ('2099-02-01')",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


def test_only_months_of_tombstones_past_every_policy_are_archived(migrated: Instance) -> None:
    from workers.adapters.postgres.partitions import archive_partitions

    old, older = datetime(2021, 3, 9, tzinfo=UTC), datetime(2021, 2, 9, tzinfo=UTC)
    with psycopg.connect(migrated.database_url, autocommit=True) as conn:
        assert _insert(conn, "d" * 64, old) == 1
        conn.execute("UPDATE recordings SET status = 'purged' WHERE call_digest = %s", ("d" * 64,))
        assert _insert(conn, "e" * 64, older) == 1  # still stored (held, say)
    db = database(migrated.database_url)
    db.open()
    db.ensure_partitions()  # both months get their partitions
    db.close()
    names = archive_partitions(migrated.owner_url, 400, dry_run=True)
    assert names == ["recordings_y2021m03"]
    assert archive_partitions(migrated.owner_url, 400, dry_run=False) == names
    with psycopg.connect(migrated.owner_url) as conn:
        moved = conn.execute("SELECT to_regclass('callvault_archive.recordings_y2021m03')")
        assert moved.fetchone() != (None,)
        live = conn.execute("SELECT count(*) FROM recordings WHERE collected_at < '2022-01-01'")
        assert live.fetchone() == (1,)  # the stored one of February
    assert archive_partitions(migrated.owner_url, 400, dry_run=True) == []
