"""Scale: the largest partitioned callvault this machine holds, and what it costs to run.

``python -m bench scale`` builds one instance (``benchscale…``: database, buckets, topics) with
as many recordings as the disk allows - 100 M if it fits, else the most that leaves
``KEEP_FREE`` bytes free for everyone else on the machine - spread over 13 monthly partitions,
with two subject keys each and one chained audit entry each (``bench/bulk.py``'s rows;
the audit trail hashed in Python so that ``audit verify`` verifies it). The build is
resumable: chunks commit with their progress, and a run that finds the instance
(``bench/results/scale-instance.json``) goes on where the last one stopped. Before each chunk
the free disk space is checked; the build stops short of the margin.

Then, with worker processes running on that instance:

* the due query (``claim_due``) p50/p99 and plan, on a backlog of due recordings of one month;
* the DSR look-up of 100 subjects, and erasure of 20 subjects with 20 recordings each among
  all (p95 goal <= 1 s);
* ingest throughput on the big instance and on an empty one, the same run (ratio goal >= 1);
* the purge of a month's backlog (due recordings with real vault objects) by a retention
  worker, the scheduler's announcements made in-process;
* the month's partition before and after that purge and after ``VACUUM``: dead rows, size;
* ``audit verify --full`` and ``audit verify`` (since the newest checkpoint), timed.

Afterwards the instance is dropped (``--keep`` keeps it for another run)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from testbed.stack import Instance, free_port

from . import bulk, common, dsr, ingest, lookup, scheduler
from .common import log

MAX_ROWS = 100_000_000
KEEP_FREE = 44 * 10**9  # 40 GB for the other engineers on this disk, and a reserve
CHUNK = 500_000
STATE = common.RESULTS / "scale-instance.json"
PREFIX = "bulk-"
PER_ROW_GUESS = 1_700  # bytes a recording takes with its keys, audit entry and indexes
INDEX_SHARE = 0.25  # of those bytes, built after the load (measured: 1.5 KB, 0.36 KB indexes)
BACKLOG = 20_000  # due recordings of one month, with vault objects, purged by a worker
ROLES = ("ingest", "retention", "holds", "dsr", "outbox")  # no scheduler: see README


# ------------------------------------------------------------------------------ instance
def _instance(stack: dict[str, str]) -> tuple[Instance, dict[str, Any]]:
    """The scale instance of an earlier run, or a new one (migrated)."""
    if STATE.exists():
        saved = json.loads(STATE.read_text())
        env = saved["env"] | {"CALLVAULT_METRICS_PORT": str(free_port())}
        inst = Instance(saved["name"], env, saved["admin_url"], saved["owner_url"])
        return inst, saved
    inst = common.new_instance(stack, "scale")
    common.migrate(inst)
    saved = {
        "name": inst.name,
        "env": inst.env,
        "admin_url": inst.admin_url,
        "owner_url": inst.owner_url,
    }
    STATE.parent.mkdir(parents=True, exist_ok=True)
    STATE.write_text(json.dumps(saved))
    return inst, saved


def _drop(inst: Instance) -> None:
    common.drop_instance(inst)
    STATE.unlink(missing_ok=True)


def free_bytes() -> int:
    return shutil.disk_usage(common.ROOT).free


# --------------------------------------------------------------------------------- build
_PROGRESS = """
CREATE SCHEMA IF NOT EXISTS bench;
CREATE TABLE IF NOT EXISTS bench.scale (
    id int PRIMARY KEY, target bigint, loaded bigint, audit_seq bigint, audit_hash bytea,
    timings jsonb NOT NULL DEFAULT '{}')
"""


def _progress(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    conn.execute(_PROGRESS)
    conn.execute("INSERT INTO bench.scale (id, loaded) VALUES (1, 0) ON CONFLICT DO NOTHING")
    row = conn.execute(
        "SELECT target, loaded, audit_seq, audit_hash, timings FROM bench.scale"
    ).fetchone()
    assert row is not None
    return dict(zip(("target", "loaded", "audit_seq", "audit_hash", "timings"), row, strict=True))


def _database_bytes(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return int(row[0]) if row else 0


def build(inst: Instance, rows_wanted: int | None) -> dict[str, Any]:
    """Load chunks until the target is reached: decided at the start from the free disk and
    ``PER_ROW_GUESS``, then from the bytes the first chunk really took; the disk is checked
    again before every chunk. Returns how it went."""
    with psycopg.connect(inst.owner_url, autocommit=True) as conn:
        bulk.bulk_session(conn)
        state = _progress(conn)
        timings = state["timings"]
        target = state["target"] or rows_wanted or _fitting(0, PER_ROW_GUESS)
        subjects = timings.setdefault("subjects", bulk.subject_count(target))
        loaded, per_row = state["loaded"], timings.get("bytes_per_recording")
        if "creates" not in timings:  # keys and indexes are built once, after the load
            drops, creates_c, creates_i = bulk._definitions(conn)
            timings["creates"] = creates_c + creates_i
            conn.execute("UPDATE bench.scale SET timings = %s", (Jsonb(timings),))
            for statement in drops:
                conn.execute(statement)  # type: ignore[arg-type]
        started = time.monotonic()
        while loaded < target:
            hi = min(target, loaded + CHUNK)
            indexes_due = loaded * (per_row or 0) * INDEX_SHARE  # built after the load
            if per_row and free_bytes() - (hi - loaded) * per_row - indexes_due < KEEP_FREE:
                target = loaded
                log(f"scale: stopping at {loaded:,} recordings: the disk keeps {KEEP_FREE:,} B")
                break
            conn.execute("SELECT callvault_ensure_partitions(now())")  # the trail's next range
            before = _database_bytes(conn)
            params = bulk._layout(MAX_ROWS, 0, 0, 0) | {
                "prefix": PREFIX,
                "lo": loaded,
                "hi": hi,
                "subjects": subjects,
            }
            with conn.transaction():
                conn.execute(bulk._RECORDINGS_SQL, params)  # type: ignore[arg-type]
                conn.execute(bulk._SUBJECT_KEYS_SQL, params)  # type: ignore[arg-type]
                seq, last = _audit_chunk(conn, loaded, hi, state)
                conn.execute(
                    "UPDATE bench.scale SET loaded = %s, audit_seq = %s, audit_hash = %s",
                    (hi, seq, last),
                )
            state |= {"audit_seq": seq, "audit_hash": last}
            grown = _database_bytes(conn) - before
            if per_row is None and grown > 0 and rows_wanted is None:
                # + the indexes still to build, + 10 % for vacuum and statistics
                per_row = round(grown / (hi - loaded) / (1 - INDEX_SHARE) * 1.1)
                target = min(target, _fitting(hi, per_row))
                timings["bytes_per_recording"] = per_row
                log(f"scale: {per_row} B a recording; building {target:,} recordings")
            loaded = hi
            conn.execute(
                "UPDATE bench.scale SET target = %s, timings = %s", (target, Jsonb(timings))
            )
            log(
                f"scale: {loaded:,}/{target:,} ({time.monotonic() - started:.0f} s, "
                f"{free_bytes() / 1e9:.1f} GB free)"
            )
        timings["load_s"] = round(timings.get("load_s", 0) + time.monotonic() - started, 1)
        conn.execute("UPDATE bench.scale SET target = %s, timings = %s", (target, Jsonb(timings)))
        started = time.monotonic()
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("SET max_parallel_maintenance_workers = 2")
        for statement in timings["creates"]:
            if not bulk._made(conn, statement):
                log(f"scale: {statement[:90]}")
                conn.execute(statement)
        timings["index_s"] = round(time.monotonic() - started, 1)
        conn.execute("UPDATE bench.scale SET timings = %s", (Jsonb(timings),))
    return {"recordings": loaded, "timings": {k: v for k, v in timings.items() if k != "creates"}}


def _fitting(loaded: int, per_row: int) -> int:
    """The most recordings (whole chunks, at most ``MAX_ROWS``) that keep ``KEEP_FREE`` free
    when ``loaded`` are there and each more takes ``per_row`` bytes."""
    more = max(0, free_bytes() - KEEP_FREE) // per_row
    return max(CHUNK, min(MAX_ROWS, ((loaded + more) // CHUNK) * CHUNK))


_AUDIT_COPY = "COPY audit_log (seq, at, action, entity_id, details, prev_hash, hash) FROM STDIN"


def _audit_chunk(
    conn: psycopg.Connection[Any], lo: int, hi: int, state: dict[str, Any]
) -> tuple[int, bytes]:
    """One ``store`` audit entry per generated recording, chained after the trail's head
    exactly as callvault chains them (so ``audit verify`` verifies every one)."""
    from workers.domain.audit import GENESIS, canonical, chain_hash

    if state["audit_seq"] is None:
        head = conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        found = head.fetchone()
        seq, prev = (found[0], bytes(found[1])) if found else (0, GENESIS)
    else:
        seq, prev = state["audit_seq"], bytes(state["audit_hash"])
    at = datetime.now(UTC).replace(microsecond=0)
    with conn.cursor().copy(_AUDIT_COPY) as copy:
        for i in range(lo, hi):
            seq += 1
            rid = str(uuid.UUID(hashlib.md5(f"{PREFIX}{i}".encode()).hexdigest()))  # noqa: S324
            details = {
                "recording_id": rid,
                "tenant": "default",
                "policy": "P1Y",
                "size_bytes": 262144 + i % 1000,
                "source": "bench",
            }
            entry = chain_hash(prev, canonical(seq, at, "store", rid, details))
            copy.write_row((seq, at, "store", rid, json.dumps(details), prev, entry))
            prev = entry
    return seq, prev


# ------------------------------------------------------------------------------- backlog
_BACKLOG_SQL = """
INSERT INTO recordings (recording_id, call_id, call_digest, tenant, direction, started_at,
    collected_at, retention_due_at, policy, status, object_key, stored_at, size_bytes,
    sha256, content_type, object_version, wrapped_key, master_key_id, restricted, held,
    legal_hold)
SELECT r.id::uuid, 'backlog-' || r.n, encode(sha256(('backlog-' || r.n)::bytea), 'hex'),
    'default', 'inbound', r.c - interval '4 minutes', r.c, r.c + interval '1 year', 'P1Y',
    'stored', r.k, r.c, 1024, repeat('0', 64), 'audio/wav', r.v, %s, %s, false, false, false
FROM unnest(%s::text[], %s::text[], %s::text[], %s::int[], %s::timestamptz[])
    AS r(id, k, v, n, c)
"""


def backlog(inst: Instance, n: int) -> dict[str, Any]:
    """``n`` due recordings of the oldest stored month, each with a real vault object (a
    1 KiB version, its id recorded, as ingest records it)."""
    from workers.bootstrap import bootstrap, object_store

    settings = inst.migration_settings()
    objects = object_store(settings)
    container = bootstrap(settings)
    wrapped, master = container.keys.wrap(os.urandom(32), "backlog")
    container.close()
    month = (datetime.now(UTC) - timedelta(days=395)).replace(day=1, hour=0, minute=0)
    ids, keys, versions, numbers, times = [], [], [], [], []
    started = time.monotonic()
    for k in range(n):
        rid = str(uuid.uuid4())
        key = f"recordings/{rid[:2]}/{rid}.cva"
        put = objects.client.put_object(settings.vault_bucket, key, io.BytesIO(b"\0" * 1024), 1024)
        ids.append(rid)
        keys.append(key)
        versions.append(put.version_id)
        numbers.append(k)
        times.append(month + timedelta(seconds=k * 100))
    put_s = time.monotonic() - started
    with psycopg.connect(inst.owner_url, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute(_BACKLOG_SQL, (wrapped, master, ids, keys, versions, numbers, times))
        conn.execute("ANALYZE recordings")
        row = conn.execute(
            "SELECT tableoid::regclass::text FROM recordings WHERE recording_id = %s::uuid",
            (ids[0],),
        ).fetchone()
    assert row is not None
    return {"n": n, "partition": row[0], "objects_put_s": round(put_s, 1), "ids": ids}


# ------------------------------------------------------------------------------ measures
def _stat(conn: psycopg.Connection[Any], partition: str) -> dict[str, Any]:
    row = conn.execute(
        "SELECT n_live_tup, n_dead_tup, pg_relation_size(relid), pg_total_relation_size(relid) "
        "FROM pg_stat_user_tables WHERE relid = %s::regclass",
        (partition,),
    ).fetchone()
    assert row is not None
    return dict(zip(("live_rows", "dead_rows", "heap_bytes", "total_bytes"), row, strict=True))


def purge_backlog(inst: Instance, made: dict[str, Any]) -> dict[str, Any]:
    """A retention worker purges the month's backlog; the scheduler's announcements are made
    in-process (a scheduler process would first reconcile every row: see README). Then the
    month's partition is vacuumed."""
    from workers.bootstrap import bootstrap
    from workers.domain.messages import AnnounceDue

    partition, ids = made["partition"], made["ids"]
    with psycopg.connect(inst.owner_url, autocommit=True) as conn:
        before = _stat(conn, partition)
    worker = common.start_worker(inst, "--only", "retention,outbox")
    container = bootstrap(inst.settings())
    started = time.monotonic()
    try:
        announced = 0
        while (outcome := container.messagebus.handle(AnnounceDue())) != "announced:0":
            announced += int(outcome.split(":")[1])
        announced_s = time.monotonic() - started
        left = _wait_purged(inst, ids, timeout=60 + len(ids) / 20)
        purge_s = time.monotonic() - started
    finally:
        container.close()
        common.stop_workers(inst)
    del worker
    with psycopg.connect(inst.owner_url, autocommit=True) as conn:
        conn.execute(f'ANALYZE "{partition}"')
        after = _stat(conn, partition)
        vacuum_started = time.monotonic()
        conn.execute(f'VACUUM (ANALYZE) "{partition}"')
        vacuum_s = time.monotonic() - vacuum_started
        vacuumed = _stat(conn, partition)
    return {
        "n": len(ids),
        "announced": announced,
        "announce_s": round(announced_s, 2),
        "seconds": round(purge_s, 2),
        "per_s": round(len(ids) / purge_s, 1),
        "left_unpurged": left,
        "partition": partition,
        "before": before,
        "after_purge": after,
        "vacuum_s": round(vacuum_s, 2),
        "after_vacuum": vacuumed,
    }


def _wait_purged(inst: Instance, ids: list[str], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    left = len(ids)
    with psycopg.connect(inst.owner_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM recordings WHERE recording_id = ANY(%s::uuid[]) "
                "AND status <> 'purged'",
                (ids,),
            ).fetchone()
            left = int(row[0]) if row else left
            if left == 0:
                return 0
            time.sleep(0.5)
    return left


def _cli(inst: Instance, *args: str) -> tuple[float, dict[str, Any] | str]:
    started = time.monotonic()
    done = subprocess.run(
        [common.CALLVAULT, *args],
        env={**os.environ, **inst.env},
        capture_output=True,
        text=True,
        check=False,
        timeout=7200,
    )
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"callvault {' '.join(args)}: {done.stdout[-500:]} {done.stderr[-500:]}")
    try:
        return seconds, json.loads(done.stdout)
    except json.JSONDecodeError:
        return seconds, done.stdout.strip()


def audit_full(inst: Instance) -> dict[str, Any]:
    _, checkpoint = _cli(inst, "audit", "checkpoint")
    seconds, report = _cli(inst, "audit", "verify", "--full", "--json")
    assert isinstance(report, dict)
    return {"checkpoint": checkpoint, "seconds": round(seconds, 1), **report}


def audit_since(inst: Instance) -> dict[str, Any]:
    _, checkpoint = _cli(inst, "audit", "checkpoint")
    seconds, report = _cli(inst, "audit", "verify", "--json")
    assert isinstance(report, dict)
    return {"checkpoint": checkpoint, "seconds": round(seconds, 2), **report}


def lookups(url: str, rows: int) -> dict[str, Any]:
    rng = random.Random(7)
    subjects = [rng.randrange(bulk.subject_count(rows)) for _ in range(100)]
    lookup._lookups(url, [bulk.subject_digests(s) for s in subjects[:10]])  # warm the path
    times, found, _ = lookup._lookups(url, [bulk.subject_digests(s) for s in subjects])
    return lookup._stats(times, found)


def ingest_ratio(stack: dict[str, str], big: Instance, n: int) -> dict[str, Any]:
    """The ingest pipeline on an empty instance and on the big one, alternately, the same
    workers' roles and sizes."""
    from workers.bootstrap import object_store

    audio = common.wav_bytes(ingest.AUDIO_BYTES)
    empty = common.new_instance(stack, "scalempty")
    results: dict[str, list[dict[str, Any]]] = {"empty": [], "big": []}
    roles = ("ingest", "outbox")
    try:
        common.migrate(empty)
        for round_ in range(2):
            for label, inst in (("empty", empty), ("big", big)):
                log(f"scale: ingest round {round_ + 1}, {label} database")
                objects = object_store(inst.settings())
                results[label].append(
                    ingest.pipeline(inst, objects, n, audio, 1, 4, tag=f"s{round_}", roles=roles)
                )
    finally:
        common.drop_instance(empty)
    rate = {k: sum(r["calls_per_s"] for r in v) / len(v) for k, v in results.items()}
    return {
        "n": n,
        "rounds": results,
        "calls_per_s": {k: round(v, 2) for k, v in rate.items()},
        "ratio": round(rate["big"] / rate["empty"], 3),
    }


def run(quick: bool, rebuild: bool = False, keep: bool = False) -> dict[str, Any]:
    stack = common.ensure_stack()
    if rebuild and STATE.exists():
        inst, _ = _instance(stack)
        _drop(inst)
    inst, _ = _instance(stack)
    result: dict[str, Any] = {"params": {"quick": quick, "keep_free_bytes": KEEP_FREE}}
    try:
        log(f"scale: building in {inst.name} ({free_bytes() / 1e9:.1f} GB free)")
        result["build"] = build(inst, 200_000 if quick else None)
        rows = result["build"]["recordings"]
        with psycopg.connect(inst.owner_url, autocommit=True) as conn:
            started = time.monotonic()
            conn.execute("VACUUM ANALYZE")
            result["build"]["vacuum_analyze_s"] = round(time.monotonic() - started, 1)
        result["sizes"] = _sizes(inst)
        log("scale: audit verify --full")
        result["audit_full"] = audit_full(inst)
        made = backlog(inst, 2_000 if quick else BACKLOG)
        log(f"scale: the due query over {rows:,} recordings ({made['n']:,} due)")
        result["due_query"] = scheduler.measure(inst.owner_url, 200)
        result["dsr_lookup"] = lookups(inst.owner_url, rows)
        log("scale: ingest on an empty database and on the big one")
        result["ingest"] = ingest_ratio(stack, inst, 200 if quick else 600)
        log("scale: erasure of 20 subjects among all")
        result["erasure"] = dsr.erasures(inst, quick, rows)
        log(f"scale: purging a month's backlog of {made['n']:,}")
        result["purge"] = purge_backlog(inst, made)
        log("scale: audit verify since the last checkpoint")
        result["audit_since_checkpoint"] = audit_since(inst)
        result["recordings"] = rows
        result["ratio"] = result["ingest"]["ratio"]
        result["machine_load"] = os.getloadavg()
    finally:
        if not keep:
            _drop(inst)
    return result


def _sizes(inst: Instance) -> dict[str, Any]:
    with psycopg.connect(inst.owner_url) as conn:
        return {
            "database_bytes": _database_bytes(conn),
            **{
                name: bulk.relation_bytes(conn, name)
                for name in (
                    "recordings",
                    "subject_keys",
                    "audit_log",
                    "recordings_pkey",
                    "recordings_call_key",
                    "recordings_due_idx",
                )
            },
            "partitions": conn.execute(
                "SELECT count(*) FROM pg_inherits WHERE inhparent = 'recordings'::regclass"
            ).fetchone()[0],  # type: ignore[index]
        }


def rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    n = result["recordings"]
    due, purge = result["due_query"], result["purge"]
    erase, full, since = (
        result["erasure"]["latency_s"],
        result["audit_full"],
        result["audit_since_checkpoint"],
    )
    return [
        ("scale", "recordings built", f"{n:,} ({result['sizes']['database_bytes'] / 1e9:.1f} GB)"),
        (
            "scale",
            f"claim_due, {due['claimed']} of the backlog",
            f"p50 {due['claim_due_ms']['p50']:.1f} ms, p99 {due['claim_due_ms']['p99']:.1f} ms",
        ),
        ("scale", "DSR look-up (100 subjects)", f"p50 {result['dsr_lookup']['ms']['p50']:.2f} ms"),
        ("scale", "erasure, 20 recordings among all", f"p95 {erase['p95']:.2f} s"),
        (
            "scale",
            "ingest big / empty",
            f"{result['ingest']['calls_per_s']} (ratio {result['ingest']['ratio']})",
        ),
        ("scale", f"purge of a month's backlog ({purge['n']:,})", f"{purge['per_s']} /s"),
        (
            "scale",
            "month partition after purge / after VACUUM",
            f"{purge['after_purge']['dead_rows']:,} dead; VACUUM {purge['vacuum_s']} s, "
            f"{purge['after_vacuum']['dead_rows']:,} dead",
        ),
        ("scale", f"audit verify --full ({full['entries']:,})", f"{full['seconds']} s"),
        (
            "scale",
            f"audit verify since checkpoint ({since['entries']:,})",
            f"{since['seconds']} s",
        ),
    ]
