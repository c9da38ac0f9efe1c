"""Purge: throughput of the real purge path (``PurgeService`` in-process) against a raw
multi-object delete + one DELETE per batch, and the purge lag (purged_at - due_at) that a
worker process achieves under a steady ingest rate with a short retention."""

from __future__ import annotations

import cProfile
import hashlib
import io
import json
import os
import pstats
import queue
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from . import common
from .common import Producer, Reader, Timed, land, log
from .ingest import AUDIO_BYTES, ROUNDS


def _profile_top(profile: cProfile.Profile, limit: int = 15) -> list[str]:
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("tottime").print_stats(limit)
    lines = [ln.rstrip() for ln in out.getvalue().splitlines() if ln.strip()]
    start = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls")), 0)
    return lines[start : start + limit + 1]


def _proof(settings: Any, ids: list[str]) -> dict[str, int]:
    """What proves each purge one by one: tombstone rows, audit entries, outbox events."""
    with psycopg.connect(settings.migration_dsn) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM recordings WHERE recording_id = ANY(%(ids)s::uuid[]) "
            "AND status = 'purged' AND wrapped_key IS NULL AND call_id IS NULL), "
            "(SELECT count(DISTINCT entity_id) FROM audit_log WHERE action = 'purge' "
            "AND entity_id = ANY(%(ids)s::text[])), "
            "(SELECT count(DISTINCT key) FROM outbox WHERE topic = 'recordings_purged' "
            "AND key = ANY(%(ids)s::text[])), "
            "(SELECT count(*) FROM subject_keys WHERE recording_id = ANY(%(ids)s::uuid[]))",
            {"ids": ids},
        ).fetchone()
    assert row is not None
    return dict(
        zip(("tombstones", "audit_entries", "purged_events", "digests_left"), row, strict=True)
    )


def _vault_objects(
    settings: Any, objects: Any, n: int, audio: bytes, table: str
) -> list[tuple[str, str, str | None]]:
    """n encrypted objects in the vault (vault key layout, same retention header as ingest),
    each with a row in ``table``; returns (id, key, version) of each."""
    from minio.commonconfig import GOVERNANCE
    from minio.retention import Retention

    from workers.adapters import crypto
    from workers.domain.model import object_key_for  # the vault's own key layout

    locked = objects.has_object_lock(settings.vault_bucket)
    due = datetime.now(UTC) + timedelta(days=365)
    targets: list[tuple[str, str, str | None]] = []
    with psycopg.connect(settings.migration_dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS bench")  # never callvault's tables
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (id uuid PRIMARY KEY, object_key text, "
                "version_id text, wrapped_key bytea, status text, purged_at timestamptz)"
            ).format(sql.Identifier("bench", table))
        )
        insert = sql.SQL("INSERT INTO {} VALUES (%s, %s, %s, %s, 'stored', NULL)").format(
            sql.Identifier("bench", table)
        )
        for _ in range(n):
            rid = str(uuid.uuid4())
            key = object_key_for(rid)
            sealed = b"".join(crypto.encrypt_stream(crypto.new_data_key(), rid, [audio]))
            result = objects.client.put_object(
                settings.vault_bucket,
                key,
                io.BytesIO(sealed),
                len(sealed),
                retention=Retention(GOVERNANCE, due) if locked else None,
            )
            conn.execute(insert, (rid, key, result.version_id, crypto.new_data_key()))
            targets.append((rid, key, result.version_id))
    return targets


def _timed_batches(
    settings: Any,
    targets: list[tuple[str, str, str | None]],
    batch: int,
    workers: int,
    one: Any,
) -> dict[str, Any]:
    """``one(connection, chunk)`` for each batch, ``workers`` at once, each worker on its own
    open connection."""
    connections = queue.SimpleQueue[psycopg.Connection[Any]]()
    for _ in range(workers):
        connections.put(psycopg.connect(settings.migration_dsn, autocommit=True))

    def run(chunk: list[tuple[str, str, str | None]]) -> None:
        conn = connections.get()
        try:
            one(conn, chunk)
        finally:
            connections.put(conn)

    chunks = [targets[start : start + batch] for start in range(0, len(targets), batch)]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(run, chunks))
    elapsed = time.perf_counter() - started
    while not connections.empty():
        connections.get().close()
    return {
        "seconds": round(elapsed, 3),
        "per_s": round(len(targets) / elapsed, 2),
        "batch": batch,
        "concurrency": workers,
    }


def _delete_objects(settings: Any, objects: Any, chunk: list[tuple[str, str, str | None]]) -> int:
    from minio.deleteobjects import DeleteObject

    failed = objects.client.remove_objects(
        settings.vault_bucket,
        [DeleteObject(k, v) for _, k, v in chunk],
        bypass_governance_mode=True,
    )
    return len(list(failed))


def baseline(
    settings: Any, objects: Any, n: int, audio: bytes, batch: int, workers: int
) -> dict[str, Any]:
    """The raw store's speed: n encrypted objects, then per batch one multi-object delete
    (versions known, governance bypassed) + one DELETE, ``workers`` batches at once."""
    targets = _vault_objects(settings, objects, n, audio, "bench_purge_baseline")
    errors: list[int] = []

    def one(conn: psycopg.Connection[Any], chunk: list[tuple[str, str, str | None]]) -> None:
        errors.append(_delete_objects(settings, objects, chunk))
        conn.execute(
            "DELETE FROM bench.bench_purge_baseline WHERE id = ANY(%s::uuid[])",
            ([r for r, _, _ in chunk],),
        )

    return {**_timed_batches(settings, targets, batch, workers, one), "delete_errors": sum(errors)}


_FLOOR_TABLES = (  # {0}..{5}: the floor's tables and index, as proof_floor names them
    "CREATE TABLE IF NOT EXISTS {1} (seq bigserial PRIMARY KEY, entity text, details jsonb, "
    "hash text)",
    "CREATE TABLE IF NOT EXISTS {2} (id bigserial PRIMARY KEY, key text, event jsonb)",
    "CREATE TABLE IF NOT EXISTS {3} (digest bytea, recording_id uuid, "
    "PRIMARY KEY (digest, recording_id))",
    "CREATE INDEX IF NOT EXISTS {5} ON {3} (recording_id)",
    "CREATE TABLE IF NOT EXISTS {4} (hold_id uuid PRIMARY KEY, recording_id uuid, "
    "released_at timestamptz)",
)


def proof_floor(
    settings: Any, objects: Any, n: int, audio: bytes, batch: int, workers: int, *, safe: bool
) -> dict[str, Any]:
    """The least a proven purge does beyond the baseline, per batch: the data keys destroyed
    in one committed UPDATE before the delete, the multi-object delete, then one transaction
    with the tombstones (one UPDATE) and, per recording, an audit row chained by SHA-256 and
    an outbox row. ``safe`` adds what a correct purge needs besides: the holds re-checked
    under a shared advisory lock, the rows locked in id order in both transactions, and the
    subject's identifiers (two per recording) deleted. No domain objects either way: the
    ratios to the baseline bound what the real purge can reach here."""
    from psycopg.types.json import Jsonb

    name = "bench_purge_safe" if safe else "bench_purge_floor"
    targets = _vault_objects(settings, objects, n, audio, name)
    tables = [
        sql.Identifier("bench", name + suffix)
        for suffix in ("", "_audit", "_outbox", "_keys", "_holds")
    ] + [sql.Identifier(name + "_keys_recording")]  # an index: named in its table's schema

    def query(text: str) -> sql.Composed:
        return sql.SQL(text).format(*tables)

    with psycopg.connect(settings.migration_dsn, autocommit=True) as conn:
        for statement in _FLOOR_TABLES:
            conn.execute(query(statement))
        keys = [(os.urandom(32), rid) for rid, _, _ in targets for _ in range(2)]
        with conn.cursor() as cur:
            cur.executemany(query("INSERT INTO {3} VALUES (%s, %s)"), keys)
    errors: list[int] = []

    def locked(cur: psycopg.Cursor[Any], ids: list[str]) -> None:
        cur.execute(
            query("SELECT id FROM {0} WHERE id = ANY(%s::uuid[]) ORDER BY id FOR UPDATE"), (ids,)
        )
        cur.fetchall()

    def one(conn: psycopg.Connection[Any], chunk: list[tuple[str, str, str | None]]) -> None:
        ids = [r for r, _, _ in chunk]
        with conn.transaction(), conn.cursor() as cur:
            if safe:
                cur.execute("SELECT pg_advisory_xact_lock_shared(1)")
                locked(cur, ids)
                cur.execute(
                    query(
                        "SELECT recording_id FROM {4} "
                        "WHERE released_at IS NULL AND recording_id = ANY(%s::uuid[])"
                    ),
                    (ids,),
                )
                cur.fetchall()
            cur.execute(
                query(
                    "UPDATE {0} SET wrapped_key = NULL, status = 'purging' "
                    "WHERE id = ANY(%s::uuid[])"
                ),
                (ids,),
            )
        errors.append(_delete_objects(settings, objects, chunk))
        chain, audit = "0" * 64, []
        for rid in ids:
            details = json.dumps({"recording_id": rid, "reason": "retention"})
            chain = hashlib.sha256((chain + details).encode()).hexdigest()
            audit.append((rid, details, chain))
        with conn.transaction(), conn.cursor() as cur:
            if safe:
                locked(cur, ids)
                cur.execute(query("DELETE FROM {3} WHERE recording_id = ANY(%s::uuid[])"), (ids,))
            cur.execute(
                query(
                    "UPDATE {0} SET status = 'purged', purged_at = now() WHERE id = ANY(%s::uuid[])"
                ),
                (ids,),
            )
            cur.executemany(
                query("INSERT INTO {1} (entity, details, hash) VALUES (%s, %s::jsonb, %s)"), audit
            )
            cur.executemany(
                query("INSERT INTO {2} (key, event) VALUES (%s, %s)"),
                [(rid, Jsonb({"type": "recording.purged", "data": {"id": rid}})) for rid in ids],
            )

    return {**_timed_batches(settings, targets, batch, workers, one), "delete_errors": sum(errors)}


def _purge_all(purger: Any, ids: list[str], batch: int, workers: int) -> tuple[float, list[str]]:
    """``PurgeRecordings`` batches of these ids, ``workers`` at once; the seconds it took."""
    from workers.domain.messages import PurgeRecordings
    from workers.domain.model import PurgeReason

    chunks = [tuple(ids[start : start + batch]) for start in range(0, len(ids), batch)]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = list(
            pool.map(
                lambda chunk: purger.messagebus.handle(
                    PurgeRecordings(chunk, PurgeReason.RETENTION)
                ),
                chunks,
            )
        )
    return time.perf_counter() - started, outcomes


def throughput(stack: dict[str, str], n: int, workers: int, rounds: int = 1) -> dict[str, Any]:
    """``PurgeRecordings`` (the follow-up the scheduler writes) through the message bus of a
    container built by ``bootstrap``, ``workers`` batches at once (as a worker's follow-up
    dispatcher runs them), against the raw baseline at the same concurrency. ``rounds``: n
    recordings purged each round between a safe floor run before and one after; the median
    round's ratio is the result (a purge of 4 000 takes under two seconds, and a shared
    machine's speed drifts more than that within a minute)."""
    from workers.bootstrap import bootstrap, object_store
    from workers.domain.messages import PurgeRecordings
    from workers.domain.model import PurgeReason, recording_id_for

    # Default retention (P1Y): each vault object carries a future governance retain-until, as
    # in production; the purging container's clock is moved 400 days ahead so they are due.
    inst = common.new_instance(stack, "pur")
    try:
        common.migrate(inst)
        settings = inst.migration_settings()  # the owner: the floors' rows
        batch = settings.purge_batch
        audio = common.wav_bytes(AUDIO_BYTES)
        profiled = batch
        call_ids = [f"purge-{i}" for i in range(n * rounds + profiled)]
        log(f"purge: storing {len(call_ids)} recordings through the bus (in-process)")
        storer = bootstrap(settings)
        ingest_s = common.store_calls(storer, call_ids, audio, settings.concurrency)
        hash_key = storer.keys.hasher
        storer.close()
        ids = [recording_id_for(hash_key, c) for c in call_ids]

        timed = Timed(object_store(settings))
        later = datetime.now(UTC) + timedelta(days=400)
        purger = bootstrap(
            settings, clock=lambda: later + timedelta(seconds=time.monotonic()), objects=timed
        )
        measured: list[dict[str, Any]] = []
        outcomes: list[str] = []
        for index in range(rounds):
            log(f"purge: round {index + 1}/{rounds}: safe floor, {n} purged, safe floor")
            before = proof_floor(settings, timed, n, audio, batch, workers, safe=True)
            seconds, answered = _purge_all(purger, ids[index * n : (index + 1) * n], batch, workers)
            after = proof_floor(settings, timed, n, audio, batch, workers, safe=True)
            outcomes += answered
            safe_per_s = (before["per_s"] + after["per_s"]) / 2
            measured.append(
                {
                    "seconds": round(seconds, 3),
                    "per_s": round(n / seconds, 2),
                    "safe": {
                        **after,
                        "per_s": round(safe_per_s, 2),
                        "before_per_s": before["per_s"],
                        "after_per_s": after["per_s"],
                    },
                    "ratio": round(n / seconds / safe_per_s, 3),
                }
            )
        s3_calls = timed.report(n * rounds)
        profile = cProfile.Profile()
        profile.enable()
        profile_started = time.perf_counter()
        outcomes.append(
            purger.messagebus.handle(
                PurgeRecordings(tuple(ids[n * rounds :]), PurgeReason.RETENTION)
            )
        )
        profile_s = time.perf_counter() - profile_started
        profile.disable()
        purger.close()
        proof = _proof(settings, ids)
        left = sum(
            1
            for _ in timed.client.list_objects(
                settings.vault_bucket, prefix="recordings/", recursive=True, include_version=True
            )
        )
        log(f"purge: baseline, {n} objects, multi-object delete + DELETE per {batch}")
        base = baseline(settings, timed, n, audio, batch, workers)
        log(f"purge: floor, the baseline + key destroy + proof rows per {batch}")
        floor = proof_floor(settings, timed, n, audio, batch, workers, safe=False)
    finally:
        common.drop_instance(inst)
    middle = sorted(measured, key=lambda r: r["ratio"])[len(measured) // 2]
    per_s, safe = middle["per_s"], middle["safe"]
    return {
        "n": n,
        "purge": {
            "batch": batch,
            "concurrency": workers,
            "seconds": middle["seconds"],
            "per_s": per_s,
            "outcomes": outcomes,
            "proof": proof,
            "object_versions_left": left,
            "s3_calls": s3_calls,
            "profiled_batch_s": round(profile_s, 3),
            "profile_tottime": _profile_top(profile),
        },
        "rounds": [
            {"per_s": r["per_s"], "safe_floor_per_s": r["safe"]["per_s"], "ratio": r["ratio"]}
            for r in measured
        ],
        "baseline": base,
        "ratio": round(per_s / base["per_s"], 3),
        "proof_floor": floor,
        "floor_ratio": round(floor["per_s"] / base["per_s"], 3),
        "safe_floor": safe,
        "safe_floor_ratio": round(safe["per_s"] / base["per_s"], 3),
        # the purge's share of what the safe floor reaches (goal >= 0.9): the median round's
        "floor_ratio_of_pipeline": middle["ratio"],
        "proof_floor_ratio_of_pipeline": round(per_s / floor["per_s"], 3),
        "inprocess_ingest": {"seconds": round(ingest_s, 3), "per_s": round(len(ids) / ingest_s, 2)},
    }


def lag(stack: dict[str, str], rate: float, duration: float) -> dict[str, Any]:
    """A worker process, ingest at ``rate`` calls/s for ``duration`` s, retention PT10S."""
    from workers.domain.retention import parse_timestamp

    inst = common.new_instance(
        stack, "lag", CALLVAULT_RETENTION="PT10S", CALLVAULT_SCHEDULER_INTERVAL="PT0.5S"
    )
    n = int(rate * duration)
    try:
        common.migrate(inst)
        settings = inst.migration_settings()
        from workers.bootstrap import object_store

        objects = object_store(settings)
        audio = common.wav_bytes(AUDIO_BYTES)
        uris = [land(objects, settings.landing_bucket, audio) for _ in range(n + 1)]
        producer = Producer(settings.kafka_bootstrap)
        topic = inst.topic("calls_ended")
        common.start_worker(inst)
        purged = Reader(settings.kafka_bootstrap, inst.topic("recordings_purged"))
        stored = Reader(settings.kafka_bootstrap, inst.topic("recordings_stored"))
        try:
            producer.send_call(topic, "warmup", uris[0])
            producer.flush()
            stored.until(lambda ev: len(ev) >= 1, 120)
            log(f"purge lag: {rate} calls/s for {duration:.0f} s, retention PT10S")
            t0 = time.monotonic()
            for i in range(n):
                wait = t0 + i / rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                producer.send_call(topic, f"lag-{i}", uris[i + 1])
                producer.flush()
                purged.poll(0)
            sent_s = time.monotonic() - t0

            def all_purged(events: list[dict[str, Any]]) -> bool:
                return len({e["data"]["call_id"] for e in events} - {"warmup"}) >= n

            purged.until(all_purged, 120)
            stored.until(lambda ev: common.calls_in(ev) >= n + 1, 30)
        finally:
            producer.close()
            common.stop_workers(inst)
        lags, lag_field = [], []
        for _, event in purged.seen:
            data = event["data"]
            if data["call_id"] == "warmup" or data.get("reason") != "retention":
                continue
            lags.append(
                (
                    parse_timestamp(data["purged_at"]) - parse_timestamp(data["due_at"])
                ).total_seconds()
            )
            lag_field.append(float(data["lag_seconds"]))
        ingest_latency = []
        for _, event in stored.seen:
            data = event["data"]
            if data["call_id"] != "warmup":
                ingest_latency.append(
                    (
                        parse_timestamp(data["stored_at"]) - parse_timestamp(data["collected_at"])
                    ).total_seconds()
                )
        purged.close()
        stored.close()
    finally:
        common.drop_instance(inst)
    return {
        "rate_calls_per_s": rate,
        "duration_s": duration,
        "n": n,
        "send_seconds": round(sent_s, 2),
        "retention": "PT10S",
        "scheduler_interval": "PT0.5S",
        "lag_s": {k: round(v, 3) for k, v in common.summary(lags).items()},
        "lag_seconds_field": {k: round(v, 3) for k, v in common.summary(lag_field).items()},
        "ingest_latency_s": {k: round(v, 3) for k, v in common.summary(ingest_latency).items()},
    }


def run(quick: bool, rebuild: bool = False) -> dict[str, Any]:
    stack = common.ensure_stack()
    n = 400 if quick else 4000
    rate, duration = (3.0, 8.0) if quick else (5.0, 60.0)
    result: dict[str, Any] = {
        "params": {"n": n, "rate": rate, "duration": duration, "quick": quick}
    }
    from workers.settings import Settings

    workers = Settings.model_fields["concurrency"].default
    result["throughput"] = throughput(stack, n, workers, ROUNDS[quick])
    result["ratio"] = result["throughput"]["ratio"]
    result["floor_ratio_of_pipeline"] = result["throughput"]["floor_ratio_of_pipeline"]
    result["serial"] = throughput(stack, n, 1)
    result["lag"] = lag(stack, rate, duration)
    return result


def rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    t, lag_ = result["throughput"], result["lag"]
    s = lag_["lag_s"]
    return [
        (
            "purge",
            f"PurgeRecordings, batches of {t['purge']['batch']}, "
            f"{t['purge']['concurrency']} at once (n={t['n']})",
            f"{t['purge']['per_s']} recordings/s",
        ),
        ("purge", "baseline multi-delete+DELETE", f"{t['baseline']['per_s']} recordings/s"),
        ("purge", "ratio purge/baseline", f"{result['ratio']}"),
        (
            "purge",
            "floor: baseline + key destroy + proof rows",
            f"{t['proof_floor']['per_s']} recordings/s (ratio {t['floor_ratio']})",
        ),
        (
            "purge",
            "safe floor: + holds re-checked, rows locked, identifiers deleted",
            f"{t['safe_floor']['per_s']} recordings/s (ratio {t['safe_floor_ratio']}; "
            f"before the purge {t['safe_floor']['before_per_s']}, "
            f"after {t['safe_floor']['after_per_s']})",
        ),
        (
            "purge",
            f"purge / safe floor (median of {len(t['rounds'])} rounds)",
            f"{result['floor_ratio_of_pipeline']} "
            f"(rounds: {', '.join(str(r['ratio']) for r in t['rounds'])})",
        ),
        (
            "purge",
            "one batch at a time: purge / baseline",
            f"{result['serial']['purge']['per_s']} / {result['serial']['baseline']['per_s']}"
            f" recordings/s (ratio {result['serial']['ratio']})",
        ),
        (
            "purge",
            "proof per recording",
            ", ".join(f"{k} {v}" for k, v in t["purge"]["proof"].items()),
        ),
        (
            "purge",
            f"purge lag @{lag_['rate_calls_per_s']:g}/s x {lag_['duration_s']:g}s (n={lag_['n']})",
            f"p50 {s['p50']:.2f} s, p99 {s['p99']:.2f} s, max {s['max']:.2f} s",
        ),
    ]
