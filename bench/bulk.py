"""Bulk generation of recordings (and their subject keys) directly in PostgreSQL with
``INSERT ... SELECT generate_series``, on the project's own schema (every migration applied).

Layout of row ``i`` (0 <= i < rows), decided by arithmetic so that any size has the same
number of due / held / announced rows, spread evenly over the heap:

* ``i % 20 == 7``                  -> purged tombstone (5 %), no subject keys
* ``i % (rows // due) == 1``       -> stored and past due            (``due`` rows)
* ``i % (rows // held) == 3``      -> past due but held              (``held`` rows)
* ``i % (rows // announced) == 5`` -> past due, already announced    (``announced`` rows)
* everything else                  -> stored, due within the next year (not due)

Subject keys: two per stored recording - keyed-digest look-alikes of the customer's phone
and e-mail, ``sha256('phone<s>')`` / ``sha256('email<s>')`` with ``s = i % (rows // 4)``, so a
subject has about four recordings. ``subject_digests(s)`` gives the digests of subject ``s``.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from .common import log

GENERATOR_VERSION = "5"  # 5: partitioned by month
CHUNK = 1_000_000
BULK_TABLES = ("recordings", "subject_keys")


def subject_count(rows: int) -> int:
    return max(1, rows // 4)


def subject_digests(subject: int) -> frozenset[bytes]:
    return frozenset(
        hashlib.sha256(f"{kind}{subject}".encode()).digest() for kind in ("phone", "email")
    )


def _layout(rows: int, due: int, held: int, announced: int) -> dict[str, int]:
    return {  # a stride of 0 means "none of this kind"
        "due_stride": max(2, rows // due) if due else 0,
        "held_stride": max(4, rows // held) if held else 0,
        "ann_stride": max(6, rows // announced) if announced else 0,
        "subjects": subject_count(rows),
    }


_RECORDINGS_SQL = """
INSERT INTO recordings (recording_id, call_id, call_digest, tenant, direction, agent_id,
    started_at, collected_at, retention_due_at, policy, status, object_key, stored_at,
    size_bytes, sha256, content_type, object_version, wrapped_key, master_key_id,
    customer_sealed, restricted, held, due_announced_at, purge_reason, versions_deleted,
    purged_at, source_event_id)
SELECT id, CASE WHEN purged THEN NULL ELSE %(prefix)s::text || i END, h || reverse(h),
       'default',
       CASE WHEN i %% 2 = 0 THEN 'inbound' ELSE 'outbound' END, 'agent-' || (i %% 50),
       c - interval '4 minutes', c, c + interval '1 year', 'P1Y',
       CASE WHEN purged THEN 'purged' ELSE 'stored' END,
       'recordings/' || left(id::text, 2) || '/' || id || '.cva',
       c + interval '2 seconds', 262144 + i %% 1000,
       h || reverse(h), 'audio/wav', left(h, 32),
       CASE WHEN purged THEN NULL ELSE decode(h || reverse(h) || h || 'ab', 'hex') END, 'k1',
       CASE WHEN purged THEN NULL ELSE decode(repeat(h, 5), 'hex') END,
       false, kind = 'held', CASE WHEN kind = 'announced' THEN now() END,
       CASE WHEN purged THEN 'retention' END, CASE WHEN purged THEN 1 END,
       CASE WHEN purged THEN c + interval '1 year 1 hour' END, reverse(h)
FROM (
    SELECT i, h, h::uuid AS id, kind, kind = 'purged' AS purged,
           CASE WHEN kind = 'not_due'
                THEN now() - interval '360 days' * (((i * 7919) %% 100000) / 100000.0)::float8
                ELSE now() - interval '1 year 1 day' - interval '1 minute' * (i %% 20000)
           END AS c
    FROM (
        SELECT i, md5(%(prefix)s::text || i) AS h, CASE WHEN i %% 20 = 7 THEN 'purged'
                       WHEN i %% NULLIF(%(due_stride)s, 0) = 1 THEN 'due'
                       WHEN i %% NULLIF(%(held_stride)s, 0) = 3 THEN 'held'
                       WHEN i %% NULLIF(%(ann_stride)s, 0) = 5 THEN 'announced'
                       ELSE 'not_due' END AS kind
        FROM generate_series(%(lo)s::bigint, %(hi)s::bigint - 1) AS i OFFSET 0
    ) k OFFSET 0
) s
"""

_SUBJECT_KEYS_SQL = """
INSERT INTO subject_keys (digest, recording_id)
SELECT sha256(convert_to(kind || (i %% %(subjects)s), 'UTF8')), md5(%(prefix)s::text || i)::uuid
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint - 1) AS i,
     (VALUES ('phone'), ('email')) AS k(kind)
WHERE i %% 20 <> 7
"""


MONTHS_BACK = 15  # the generated rows were collected up to 13.5 months ago


def months(conn: psycopg.Connection[Any], back: int = MONTHS_BACK, ahead: int = 3) -> list[str]:
    """The monthly partitions of ``recordings`` from ``back`` months ago to ``ahead`` months
    ahead (made as the scheduler makes them ahead, by the owner's function); their names."""
    rows = conn.execute(
        "SELECT callvault_add_partition('recordings', to_char(m, '\"recordings_y\"YYYY\"m\"MM'), "
        "'collected_at', (m AT TIME ZONE 'UTC')::text, "
        "((m + interval '1 month') AT TIME ZONE 'UTC')::text) FROM generate_series("
        "date_trunc('month', now() AT TIME ZONE 'UTC') - make_interval(months => %s), "
        "date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => %s), "
        "interval '1 month') m",
        (back, ahead),
    ).fetchall()
    return [r[0] for r in rows if r[0]]


def bulk_session(conn: psycopg.Connection[Any]) -> None:
    """A loading session: partitions for every month the rows fall in, and no row triggers
    (the per-call guard would take an advisory lock per row; generated ids are unique)."""
    conn.execute("SET session_replication_role = replica")
    months(conn)


def relation_bytes(conn: psycopg.Connection[Any], name: str) -> int:
    """Bytes of a table or index with all its partitions (and their indexes and TOAST)."""
    row = conn.execute(
        "SELECT coalesce(sum(pg_total_relation_size(relid)), pg_total_relation_size(%s)) "
        "FROM pg_partition_tree(%s)",
        (name, name),
    ).fetchone()
    return int(row[0]) if row else 0


def _definitions(conn: psycopg.Connection[Any]) -> tuple[list[str], list[str], list[str]]:
    """(drop statements, re-create statements for constraints, for indexes) of the bulk tables."""
    cons = conn.execute(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), contype "
        "FROM pg_constraint WHERE conrelid::regclass::text = ANY(%s) AND contype IN ('p','u','f')",
        (list(BULK_TABLES),),
    ).fetchall()
    idx = conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = ANY(%s) "
        "AND indexname NOT IN (SELECT conname FROM pg_constraint)",
        (list(BULK_TABLES),),
    ).fetchall()
    order = {"f": 0, "u": 1, "p": 2}
    drops = [
        f'ALTER TABLE {t} DROP CONSTRAINT "{n}"'
        for t, n, _, c in sorted(cons, key=lambda r: order[r[3]])
    ]
    drops += [f'DROP INDEX "{n}"' for n, _ in idx]
    creates_c = [
        f'ALTER TABLE {t} ADD CONSTRAINT "{n}" {d}' + (" NOT VALID" if c == "f" else "")
        for t, n, d, c in sorted(cons, key=lambda r: -order[r[3]])
    ]
    creates_i = [d.replace(" ON ONLY ", " ON ", 1) for _, d in idx]  # every partition too
    return drops, creates_c, creates_i


def fill(
    url: str,
    rows: int,
    *,
    due: int = 5000,
    held: int = 2000,
    announced: int = 1000,
    prefix: str = "bulk-",
) -> dict[str, Any]:
    """Add ``rows`` generated recordings (+ subject keys) to a migrated database."""
    params = _layout(rows, due, held, announced) | {"prefix": prefix}
    timings: dict[str, float] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("SET max_parallel_maintenance_workers = 2")
        bulk_session(conn)
        drops, creates_c, creates_i = _definitions(conn)
        for statement in drops:
            conn.execute(statement)  # type: ignore[arg-type]
        started = time.monotonic()
        for lo in range(0, rows, CHUNK):
            hi = min(rows, lo + CHUNK)
            conn.execute(_RECORDINGS_SQL, params | {"lo": lo, "hi": hi})  # type: ignore[arg-type]
            conn.execute(_SUBJECT_KEYS_SQL, params | {"lo": lo, "hi": hi})  # type: ignore[arg-type]
            if rows > CHUNK:
                log(f"bulk: {hi:,}/{rows:,} rows ({time.monotonic() - started:.0f} s)")
        timings["load_s"] = time.monotonic() - started
        started = time.monotonic()
        for statement in creates_c + creates_i:
            conn.execute(statement)  # type: ignore[arg-type]
        timings["index_s"] = time.monotonic() - started
        started = time.monotonic()
        conn.execute("VACUUM ANALYZE recordings")
        conn.execute("VACUUM ANALYZE subject_keys")
        timings["vacuum_s"] = time.monotonic() - started
    return {k: round(v, 1) for k, v in timings.items()}


def counts(url: str) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) AS total, "
            "count(*) FILTER (WHERE status = 'purged') AS purged, "
            "count(*) FILTER (WHERE status = 'stored' AND NOT held AND due_announced_at IS NULL "
            "  AND retention_due_at <= now()) AS due, "
            "count(*) FILTER (WHERE status = 'stored' AND held AND retention_due_at <= now()) "
            "  AS held_due, "
            "count(*) FILTER (WHERE due_announced_at IS NOT NULL) AS announced "
            "FROM recordings"
        ).fetchone()
        keys = conn.execute("SELECT count(*) FROM subject_keys").fetchone()
        size = [
            f"{relation_bytes(conn, name) / 1e6:.1f} MB"
            for name in ("recordings", "subject_keys", "recordings_due_idx")
        ]
    assert row is not None
    assert keys is not None
    names = ("total", "purged", "due", "held_due", "announced")
    return dict(zip(names, row, strict=True)) | {
        "subject_keys": keys[0],
        "recordings_size": size[0],
        "subject_keys_size": size[1],
        "recordings_due_idx_size": size[2],
    }


def cached_database(admin_url: str, base_url: str, rows: int, rebuild: bool) -> tuple[str, dict]:
    """A dedicated database with ``rows`` generated recordings, reused across runs unless
    ``rebuild`` (or the generator changed). Returns its URL and how it was made. The build is
    resumable: chunks are committed with the progress, so a database restart (other people's
    fault-injection tests restart the shared one) only repeats the chunk in flight."""
    name = f"cvbench_rec_{rows}"
    url = f"{base_url}/{name}"
    state = None if rebuild else _state(url, rows)
    if state == "complete":
        with psycopg.connect(url) as conn:
            meta = conn.execute("SELECT timings FROM bench_meta LIMIT 1").fetchone()
        return url, {"reused": True, **(meta[0] if meta else {})}
    if state is None:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]
            admin.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
        from workers.adapters.postgres.migrate import migrate_database

        migrate_database(url)
        _start_progress(url, rows)
    log(f"bulk: generating {rows:,} recordings in database {name}")
    for _ in range(10):
        try:
            timings = _build(url, rows)
            break
        except psycopg.OperationalError as exc:
            log(f"bulk: database connection lost ({type(exc).__name__}); resuming")
            _wait_until_up(url)
    else:
        raise RuntimeError("the bulk database kept going away")
    return url, {"reused": False, **timings}


def _state(url: str, rows: int) -> str | None:
    """``complete``, ``partial`` (a build to resume) or ``None`` (build from scratch)."""
    try:
        with psycopg.connect(url) as conn:
            tables = {
                r[0]
                for r in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE tablename LIKE 'bench_%%'"
                ).fetchall()
            }
            if "bench_meta" in tables:
                meta = conn.execute("SELECT rows, version FROM bench_meta LIMIT 1").fetchone()
                filled = conn.execute("SELECT EXISTS (SELECT 1 FROM recordings)").fetchone()
                ok = meta == (rows, GENERATOR_VERSION) and filled is not None and filled[0]
                return "complete" if ok else None
            if "bench_progress" in tables:
                meta = conn.execute("SELECT rows, version FROM bench_progress").fetchone()
                return "partial" if meta == (rows, GENERATOR_VERSION) else None
    except psycopg.Error:
        return None
    return None


def _start_progress(url: str, rows: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        drops, creates_c, creates_i = _definitions(conn)
        for statement in drops:
            conn.execute(statement)  # type: ignore[arg-type]
        conn.execute(
            "CREATE TABLE bench_progress (rows bigint, version text, loaded bigint, "
            "creates jsonb, timings jsonb)"
        )
        conn.execute(
            "INSERT INTO bench_progress VALUES (%s, %s, 0, %s, '{}')",
            (rows, GENERATOR_VERSION, Jsonb(creates_c + creates_i)),
        )


def _build(url: str, rows: int) -> dict[str, float]:
    """Load the chunks not yet loaded, then the constraints and indexes not yet made."""
    params = _layout(rows, 5000, 2000, 1000) | {"prefix": "bulk-"}
    with psycopg.connect(url, autocommit=True) as conn:
        bulk_session(conn)
        row = conn.execute("SELECT loaded, creates, timings FROM bench_progress").fetchone()
        assert row is not None
        loaded, creates, timings = row
        started = time.monotonic()
        for lo in range(loaded, rows, CHUNK):
            hi = min(rows, lo + CHUNK)
            with conn.transaction():
                conn.execute(_RECORDINGS_SQL, params | {"lo": lo, "hi": hi})  # type: ignore[arg-type]
                conn.execute(_SUBJECT_KEYS_SQL, params | {"lo": lo, "hi": hi})  # type: ignore[arg-type]
                conn.execute("UPDATE bench_progress SET loaded = %s", (hi,))
            log(f"bulk: {hi:,}/{rows:,} rows ({time.monotonic() - started:.0f} s)")
        timings["load_s"] = timings.get("load_s", 0) + time.monotonic() - started
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("SET max_parallel_maintenance_workers = 2")
        started = time.monotonic()
        for statement in creates:
            if not _made(conn, statement):
                conn.execute(statement)
        timings["index_s"] = timings.get("index_s", 0) + time.monotonic() - started
        started = time.monotonic()
        conn.execute("VACUUM ANALYZE recordings")
        conn.execute("VACUUM ANALYZE subject_keys")
        timings["vacuum_s"] = time.monotonic() - started
        timings = {k: round(v, 1) for k, v in timings.items()}
        with conn.transaction():
            conn.execute("CREATE TABLE bench_meta (rows bigint, version text, timings jsonb)")
            conn.execute(
                "INSERT INTO bench_meta VALUES (%s, %s, %s)",
                (rows, GENERATOR_VERSION, Jsonb(timings)),
            )
            conn.execute("DROP TABLE bench_progress")
    return timings


def _made(conn: psycopg.Connection[Any], statement: str) -> bool:
    """Whether the constraint or index this statement creates exists already."""
    words = statement.split()
    name = statement.split('"')[1] if '"' in statement else words[words.index("INDEX") + 1]
    found = conn.execute(
        "SELECT 1 FROM pg_class WHERE relname = %s UNION SELECT 1 FROM pg_constraint "
        "WHERE conname = %s",
        (name, name),
    ).fetchone()
    return found is not None


def _wait_until_up(url: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(url, connect_timeout=3):
                return
        except psycopg.OperationalError:
            time.sleep(2)
    raise RuntimeError("the database did not come back")
