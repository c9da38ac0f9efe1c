"""Subject lookup: ``PostgresRecordings.matching`` (the query behind every DSR and every
subject-scoped hold) on 10 million recordings with two subject keys each."""

from __future__ import annotations

import hashlib
import random
import time
from typing import Any

import psycopg
from psycopg.rows import dict_row

from . import bulk, common
from .common import log
from .scheduler import Recorder, explain, top_buffers

HEAVY = hashlib.sha256(b"bench-heavy-subject").digest()
HEAVY_RECORDINGS = 20
SAMPLES = 100


def _add_heavy_subject(url: str, rows: int) -> None:
    """A subject with 20 recordings spread over the table (idempotent)."""
    step = rows // HEAVY_RECORDINGS
    call_ids = [f"bulk-{i * step + 11}" for i in range(HEAVY_RECORDINGS)]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO subject_keys (digest, recording_id) SELECT %s, recording_id "
            "FROM recordings WHERE call_id = ANY(%s) AND status = 'stored' ON CONFLICT DO NOTHING",
            (HEAVY, call_ids),
        )


def _lookups(url: str, digest_sets: list[frozenset[bytes]]) -> tuple[list[float], list[int], Any]:
    """One connection for all look-ups (as the worker's pool keeps them), one transaction each."""
    from workers.adapters.postgres.repositories import PostgresRecordings

    times: list[float] = []
    found: list[int] = []
    recorder: Recorder | None = None
    with psycopg.connect(url, row_factory=dict_row) as conn:
        for digests in digest_sets:
            recorder = Recorder(conn)
            started = time.perf_counter()
            result = PostgresRecordings(recorder, []).matching(digests)  # type: ignore[arg-type]
            times.append((time.perf_counter() - started) * 1000)
            conn.rollback()
            found.append(len(result))
    return times, found, recorder.statements if recorder else []


def _stats(times: list[float], found: list[int]) -> dict[str, Any]:
    return {
        "ms": {k: round(v, 3) for k, v in common.summary(times).items()},
        "recordings_found_mean": round(sum(found) / len(found), 2) if found else 0,
    }


def run(quick: bool, rebuild: bool = False) -> dict[str, Any]:
    stack = common.ensure_stack()
    rows = 200_000 if quick else 10_000_000
    base_url = stack["CALLVAULT_PG_ADMIN_URL"].rsplit("/", 1)[0]  # the owner: the bulk tables
    url, made = bulk.cached_database(stack["CALLVAULT_PG_ADMIN_URL"], base_url, rows, rebuild)
    _add_heavy_subject(url, rows)
    rng = random.Random(7)
    subjects = [rng.randrange(bulk.subject_count(rows)) for _ in range(SAMPLES)]
    log(f"lookup: matching x {SAMPLES} subjects on {rows:,} recordings")
    _lookups(url, [bulk.subject_digests(s) for s in subjects[:10]])  # warm the index path
    typical_t, typical_n, statements = _lookups(url, [bulk.subject_digests(s) for s in subjects])
    heavy_t, heavy_n, _ = _lookups(url, [frozenset({HEAVY})] * 20)
    miss_t, miss_n, _ = _lookups(
        url, [frozenset({hashlib.sha256(f"nobody{i}".encode()).digest()}) for i in range(20)]
    )
    sql, params = statements[-1]
    plan, exec_ms, used = explain(url, sql, params)
    heavy_plan, heavy_exec, _ = explain(url, sql, {"digests": [HEAVY], "tenant": None})
    return {
        "params": {"rows": rows, "samples": SAMPLES, "quick": quick},
        "database": made,
        "counts": bulk.counts(url),
        "sql": sql,
        "typical_subject": _stats(typical_t, typical_n),
        "subject_with_20": _stats(heavy_t, heavy_n),
        "unknown_subject": _stats(miss_t, miss_n),
        "explain_typical": plan,
        "explain_typical_ms": exec_ms,
        "explain_typical_buffers": top_buffers(plan),
        "explain_20": heavy_plan,
        "explain_20_ms": heavy_exec,
        "explain_20_buffers": top_buffers(heavy_plan),
        "indexes_used": used,
    }


def rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    n = result["params"]["rows"]
    out = []
    for key, label in (
        ("typical_subject", "typical subject"),
        ("subject_with_20", "subject with 20 recordings"),
        ("unknown_subject", "unknown subject"),
    ):
        r = result[key]
        out.append(
            (
                "lookup",
                f"matching, {label}, {n:,} rows",
                f"p50 {r['ms']['p50']:.2f} ms, p95 {r['ms']['p95']:.2f} ms "
                f"({r['recordings_found_mean']:g} found)",
            )
        )
    out.append(
        (
            "lookup",
            "EXPLAIN subject with 20 recordings",
            f"{result['explain_20_ms']} ms, {result['explain_20_buffers']}",
        )
    )
    return out
