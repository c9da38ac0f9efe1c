"""Scheduler: the due query (``PostgresRecordings.claim_due``, captured verbatim) on
10 million recordings and on 1 million, its EXPLAIN (ANALYZE, BUFFERS) plan, and the cost of
the other queries the scheduler role runs on every tick (the gauges)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from . import bulk, common
from .common import log

REPEAT = 15


class Recorder:
    """Stands in for the psycopg connection under the repository: runs and records SQL."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn
        self.statements: list[tuple[str, Any]] = []

    def execute(self, sql: Any, params: Any = None, **kwargs: Any) -> Any:
        text = sql if isinstance(sql, str) else sql.as_string(self._conn)
        self.statements.append((text, params))
        return self._conn.execute(sql, params, **kwargs)

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        return self._conn.cursor(*args, **kwargs)


def timed_call(url: str, call: Any, repeat: int = REPEAT) -> tuple[list[float], Any, list]:
    """Runs ``call(tx)`` ``repeat`` times, each in a transaction rolled back afterwards (so
    claimed rows stay unclaimed); returns wall times (ms), the last result and the SQL."""
    from workers.adapters.postgres.repositories import PostgresRecordings

    times: list[float] = []
    result: Any = None
    statements: list[tuple[str, Any]] = []
    with psycopg.connect(url, row_factory=dict_row) as conn:
        for _ in range(repeat):
            recorder = Recorder(conn)
            started = time.perf_counter()
            result = call(PostgresRecordings(recorder, []))  # type: ignore[arg-type]
            times.append((time.perf_counter() - started) * 1000)
            conn.rollback()
            statements = recorder.statements
    return times, result, statements


def explain(url: str, sql: str, params: Any) -> tuple[list[str], float | None, list[str]]:
    """EXPLAIN (ANALYZE, BUFFERS) of one statement (rolled back); the plan lines, the
    execution time (ms) and the indexes the plan uses."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params).fetchall()
        conn.rollback()
    lines = [r[0] for r in rows]
    execution = next(
        (float(ln.split(":")[1].split()[0]) for ln in lines if ln.startswith("Execution Time")),
        None,
    )
    used: set[str] = set()
    for ln in lines:
        if " using " in ln:
            used.add(ln.split(" using ", 1)[1].split()[0])
        elif "Bitmap Index Scan on " in ln:
            used.add(ln.split("Bitmap Index Scan on ", 1)[1].split()[0])
    return lines, execution, sorted(used)


def top_buffers(lines: list[str]) -> str:
    """The buffer counts of the plan's top node (what the whole execution touched)."""
    return next((ln.split(":", 1)[1].strip() for ln in lines if "Buffers:" in ln), "")


def measure(url: str, limit: int) -> dict[str, Any]:
    now = datetime.now(UTC)
    times, due, statements = timed_call(url, lambda tx: tx.claim_due(now, limit))
    sql, params = statements[-1]
    plan, exec_ms, used = explain(url, sql, params)
    gauges: dict[str, Any] = {}
    for name, call in (
        ("overdue_summary", lambda tx: tx.overdue_summary(now)),
        ("held_count", lambda tx: tx.held_count()),
    ):
        g_times, _, g_statements = timed_call(url, call, repeat=3)
        plans = [explain(url, s, p) for s, p in g_statements]
        gauges[name] = {
            "ms": {k: round(v, 2) for k, v in common.summary(g_times).items()},
            "plans": [{"plan": pl, "execution_ms": ex, "indexes": ix} for pl, ex, ix in plans],
        }
    return {
        "sql": sql,
        "limit": limit,
        "claimed": len(due),
        "claim_due_ms": {k: round(v, 2) for k, v in common.summary(times).items()},
        "explain": plan,
        "explain_execution_ms": exec_ms,
        "explain_buffers": top_buffers(plan),
        "indexes_used": used,
        "gauges": gauges,
    }


def run(quick: bool, rebuild: bool = False) -> dict[str, Any]:
    from workers.settings import Settings

    stack = common.ensure_stack()
    big, small = (200_000, 50_000) if quick else (10_000_000, 1_000_000)
    limit = Settings.model_fields["purge_batch"].default
    base_url = stack["CALLVAULT_PG_ADMIN_URL"].rsplit("/", 1)[0]  # the owner: the bulk tables
    result: dict[str, Any] = {"params": {"rows": [small, big], "quick": quick, "limit": limit}}
    for rows in (small, big):
        url, made = bulk.cached_database(stack["CALLVAULT_PG_ADMIN_URL"], base_url, rows, rebuild)
        log(f"scheduler: measuring claim_due on {rows:,} rows")
        result[str(rows)] = {"database": made, "counts": bulk.counts(url), **measure(url, limit)}
    return result


def rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    out = []
    for size in result["params"]["rows"]:
        r = result[str(size)]
        out.append(
            (
                "scheduler",
                f"claim_due on {size:,} rows ({r['counts']['due']} due)",
                f"p50 {r['claim_due_ms']['p50']:.2f} ms, EXPLAIN exec "
                f"{r['explain_execution_ms']:.2f} ms, {r['explain_buffers']}, "
                f"index {','.join(r['indexes_used']) or 'NONE (seq scan)'}",
            )
        )
    for size in result["params"]["rows"]:
        gauge = result[str(size)]["gauges"]["held_count"]["ms"]["p50"]
        out.append(("scheduler", f"gauge held_count on {size:,} rows", f"{gauge:.1f} ms"))
    return out
