"""Purge: throughput of the real purge path (``PurgeService`` in-process) against a raw
multi-object delete + one DELETE per batch, and the purge lag (purged_at - due_at) that a
worker process achieves under a steady ingest rate with a short retention."""

from __future__ import annotations

import cProfile
import io
import pstats
import queue
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from . import common
from .common import Producer, Reader, Timed, land, log
from .ingest import AUDIO_BYTES


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


def baseline(
    settings: Any, objects: Any, n: int, audio: bytes, batch: int, workers: int
) -> dict[str, Any]:
    """The raw store's speed: n encrypted objects (same bucket, same retention header), then
    per batch one multi-object delete (versions known, governance bypassed) + one DELETE,
    ``workers`` batches at once, each worker on its own open connection."""
    from minio.commonconfig import GOVERNANCE
    from minio.deleteobjects import DeleteObject
    from minio.retention import Retention

    from workers.adapters import crypto
    from workers.domain.model import object_key_for  # the vault's own key layout

    client = objects.client
    url = settings.migration_dsn
    locked = objects.has_object_lock(settings.vault_bucket)
    due = datetime.now(UTC) + timedelta(days=365)
    targets: list[tuple[str, str, str | None]] = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_purge_baseline (id uuid PRIMARY KEY, "
            "object_key text, version_id text)"
        )
        for _ in range(n):
            rid = str(uuid.uuid4())
            key = object_key_for(rid)
            sealed = b"".join(crypto.encrypt_stream(crypto.new_data_key(), rid, [audio]))
            result = client.put_object(
                settings.vault_bucket,
                key,
                io.BytesIO(sealed),
                len(sealed),
                retention=Retention(GOVERNANCE, due) if locked else None,
            )
            conn.execute(
                "INSERT INTO bench_purge_baseline VALUES (%s, %s, %s)",
                (rid, key, result.version_id),
            )
            targets.append((rid, key, result.version_id))
    connections = queue.SimpleQueue[psycopg.Connection[Any]]()
    for _ in range(workers):
        connections.put(psycopg.connect(url, autocommit=True))
    errors: list[int] = []

    def one(chunk: list[tuple[str, str, str | None]]) -> None:
        conn = connections.get()
        try:
            failed = client.remove_objects(
                settings.vault_bucket,
                [DeleteObject(k, v) for _, k, v in chunk],
                bypass_governance_mode=True,
            )
            errors.append(len(list(failed)))
            conn.execute(
                "DELETE FROM bench_purge_baseline WHERE id = ANY(%s::uuid[])",
                ([r for r, _, _ in chunk],),
            )
        finally:
            connections.put(conn)

    chunks = [targets[start : start + batch] for start in range(0, n, batch)]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, chunks))
    elapsed = time.perf_counter() - started
    while not connections.empty():
        connections.get().close()
    return {
        "seconds": round(elapsed, 3),
        "per_s": round(n / elapsed, 2),
        "batch": batch,
        "concurrency": workers,
        "delete_errors": sum(errors),
    }


def throughput(stack: dict[str, str], n: int, workers: int) -> dict[str, Any]:
    """``PurgeRecordings`` (the follow-up the scheduler writes) through the message bus of a
    container built by ``bootstrap``, ``workers`` batches at once (as a worker's follow-up
    dispatcher runs them), against the raw baseline at the same concurrency."""
    from workers.bootstrap import bootstrap, object_store
    from workers.domain.messages import PurgeRecordings
    from workers.domain.model import PurgeReason, recording_id_for

    # Default retention (P1Y): each vault object carries a future governance retain-until, as
    # in production; the purging container's clock is moved 400 days ahead so they are due.
    inst = common.new_instance(stack, "pur")
    try:
        common.migrate(inst)
        settings = inst.settings()
        batch = settings.purge_batch
        audio = common.wav_bytes(AUDIO_BYTES)
        profiled = batch
        call_ids = [f"purge-{i}" for i in range(n + profiled)]
        log(f"purge: storing {len(call_ids)} recordings through the bus (in-process)")
        storer = bootstrap(settings)
        ingest_s = common.store_calls(storer, call_ids, audio, settings.concurrency)
        hash_key = storer.keys.hash_key
        storer.close()
        ids = [recording_id_for(hash_key, c) for c in call_ids]

        timed = Timed(object_store(settings))
        later = datetime.now(UTC) + timedelta(days=400)
        purger = bootstrap(
            settings, clock=lambda: later + timedelta(seconds=time.monotonic()), objects=timed
        )
        outcomes: list[str] = []
        log(f"purge: {n} recordings as PurgeRecordings batches of {batch}, {workers} at once")
        chunks = [tuple(ids[start : min(n, start + batch)]) for start in range(0, n, batch)]
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            outcomes += pool.map(
                lambda chunk: purger.bus.handle(PurgeRecordings(chunk, PurgeReason.RETENTION)),
                chunks,
            )
        purge_s = time.perf_counter() - started
        s3_calls = timed.report(n)
        profile = cProfile.Profile()
        profile.enable()
        profile_started = time.perf_counter()
        outcomes.append(purger.bus.handle(PurgeRecordings(tuple(ids[n:]), PurgeReason.RETENTION)))
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
    finally:
        common.drop_instance(inst)
    per_s = n / purge_s
    return {
        "n": n,
        "purge": {
            "batch": batch,
            "concurrency": workers,
            "seconds": round(purge_s, 3),
            "per_s": round(per_s, 2),
            "outcomes": outcomes,
            "proof": proof,
            "object_versions_left": left,
            "s3_calls": s3_calls,
            "profiled_batch_s": round(profile_s, 3),
            "profile_tottime": _profile_top(profile),
        },
        "baseline": base,
        "ratio": round(per_s / base["per_s"], 3),
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
        settings = inst.settings()
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
            producer.send(
                topic,
                "warmup",
                common.cloudevent("callvault.call.ended.v1", common.call_data("warmup", uris[0])),
            )
            producer.flush()
            stored.until(lambda ev: len(ev) >= 1, 120)
            log(f"purge lag: {rate} calls/s for {duration:.0f} s, retention PT10S")
            t0 = time.monotonic()
            for i in range(n):
                wait = t0 + i / rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                call_id = f"lag-{i}"
                producer.send(
                    topic,
                    call_id,
                    common.cloudevent(
                        "callvault.call.ended.v1", common.call_data(call_id, uris[i + 1])
                    ),
                )
                producer.flush()
                purged.poll(0)
            sent_s = time.monotonic() - t0

            def all_purged(events: list[dict[str, Any]]) -> bool:
                return len({e["data"]["call_id"] for e in events} - {"warmup"}) >= n

            purged.until(all_purged, 120)
            stored.until(lambda ev: len(ev) >= n + 1, 30)
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
    n = 400 if quick else 2000
    rate, duration = (3.0, 8.0) if quick else (5.0, 60.0)
    result: dict[str, Any] = {
        "params": {"n": n, "rate": rate, "duration": duration, "quick": quick}
    }
    from workers.settings import Settings

    workers = Settings.model_fields["concurrency"].default
    result["throughput"] = throughput(stack, n, workers)
    result["ratio"] = result["throughput"]["ratio"]
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
