"""Purge: throughput of the real purge path (``PurgeService`` in-process) against a raw
multi-object delete + one DELETE per batch, and the purge lag (purged_at - due_at) that a
worker process achieves under a steady ingest rate with a short retention."""

from __future__ import annotations

import cProfile
import io
import pstats
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from . import common
from .common import Producer, Reader, Timed, log
from .ingest import AUDIO_BYTES, land


def _call_ended(call_id: str, uri: str) -> Any:
    from workers.domain.model import CallEnded

    return CallEnded.from_data(str(uuid.uuid4()), common.call_data(call_id, uri))


def _instrument(container: Any) -> Timed:
    """Time every object-store call the services make (ingest's fetcher included)."""
    timed = Timed(container.ctx.objects)
    container.ctx.objects = timed
    fetcher = getattr(container.ingest, "_fetcher", None)
    if fetcher is not None and hasattr(fetcher, "_objects"):
        fetcher._objects = timed
    return timed


def _profile_top(profile: cProfile.Profile, limit: int = 12) -> list[str]:
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("tottime").print_stats(limit)
    lines = [ln.rstrip() for ln in out.getvalue().splitlines() if ln.strip()]
    start = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls")), 0)
    return lines[start : start + limit + 1]


def throughput(stack: dict[str, str], n: int) -> dict[str, Any]:
    from minio.commonconfig import GOVERNANCE
    from minio.deleteobjects import DeleteObject
    from minio.retention import Retention

    from workers.adapters import crypto
    from workers.bootstrap import bootstrap
    from workers.domain.model import PurgeReason, recording_id_for

    # Default retention (P1Y): the vault put carries a future retain-until date, as in
    # production; the purge then runs with the service clock moved past the due date.
    inst = common.new_instance(stack, "pur")
    try:
        common.migrate(inst)
        settings = inst.settings()
        container = bootstrap(settings)
        objects = container.objects
        audio = common.wav_bytes(AUDIO_BYTES)
        timed = _instrument(container)
        profiled = min(30, n // 3)

        log(f"purge: storing {n} recordings through IngestService (in-process)")
        uris = [land(objects, settings.landing_bucket, audio) for _ in range(n)]
        started = time.perf_counter()
        for i in range(n):
            assert container.ingest.handle(_call_ended(f"purge-{i}", uris[i])) == "stored"
        ingest_s = time.perf_counter() - started
        ingest_s3 = timed.report(n)
        timed.reset()

        ids = [recording_id_for(f"purge-{i}") for i in range(n)]
        container.ctx.clock = lambda: datetime.now(UTC) + timedelta(days=400)
        workers = settings.concurrency
        log(f"purge: PurgeService.purge x {n}, {workers} at once (as a worker's agent runs it)")
        verdicts: dict[str, int] = {}

        def purge_one(rid: str) -> str:
            return str(container.purge.purge(rid, PurgeReason.RETENTION).verdict.value)

        concurrent = ids[: n - profiled]
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for verdict in pool.map(purge_one, concurrent):
                verdicts[verdict] = verdicts.get(verdict, 0) + 1
        purge_s = time.perf_counter() - started
        # the last few one at a time, under the profiler (cProfile sees one thread only)
        profile = cProfile.Profile()
        profile.enable()
        serial_started = time.perf_counter()
        for rid in ids[n - profiled :]:
            verdict = purge_one(rid)
            verdicts[verdict] = verdicts.get(verdict, 0) + 1
        serial_s = time.perf_counter() - serial_started
        profile.disable()
        purge_s3 = timed.report(n)
        left = list(
            objects.client.list_objects(
                settings.vault_bucket, prefix="recordings/", recursive=True, include_version=True
            )
        )
        container.close()

        # baseline: same bucket, same retention header; versions known from the puts
        log(f"purge: baseline, {n} objects, remove_objects + DELETE per batch")
        client = objects.client
        batch = settings.purge_batch
        locked = objects.has_object_lock(settings.vault_bucket)
        due = datetime.now(UTC) + timedelta(days=365)
        targets: list[tuple[str, str, str | None]] = []
        with psycopg.connect(settings.database_url.get_secret_value(), autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE bench_purge_baseline (id uuid PRIMARY KEY, object_key text, "
                "version_id text)"
            )
            for _ in range(n):
                rid = str(uuid.uuid4())
                key = f"baseline/{rid}.cva"
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
            started = time.perf_counter()
            errors = 0
            for start in range(0, n, batch):
                chunk = targets[start : start + batch]
                errors += len(
                    list(
                        client.remove_objects(
                            settings.vault_bucket,
                            [DeleteObject(k, v) for _, k, v in chunk],
                            bypass_governance_mode=True,
                        )
                    )
                )
                conn.execute(
                    "DELETE FROM bench_purge_baseline WHERE id = ANY(%s::uuid[])",
                    ([r for r, _, _ in chunk],),
                )
            base_s = time.perf_counter() - started
    finally:
        common.drop_instance(inst)
    return {
        "n": n,
        "purge": {
            "concurrency": workers,
            "seconds": round(purge_s, 3),
            "per_s": round(len(concurrent) / purge_s, 2),
            "serial_per_s_profiled": round(profiled / serial_s, 2),
            "verdicts": verdicts,
            "object_versions_left": len(left),
            "s3_calls": purge_s3,
            f"profile_tottime_last_{profiled}": _profile_top(profile),
        },
        "baseline": {
            "seconds": round(base_s, 3),
            "per_s": round(n / base_s, 2),
            "batch": batch,
            "delete_errors": errors,
        },
        "ratio": round((len(concurrent) / purge_s) / (n / base_s), 4),
        "inprocess_ingest": {
            "seconds": round(ingest_s, 3),
            "per_s": round(n / ingest_s, 2),
            "s3_calls": ingest_s3,
        },
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
    n = 30 if quick else 500
    rate, duration = (3.0, 8.0) if quick else (5.0, 60.0)
    result = {"params": {"n": n, "rate": rate, "duration": duration, "quick": quick}}
    result["throughput"] = throughput(stack, n)
    result["lag"] = lag(stack, rate, duration)
    return result


def rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    t, lag_ = result["throughput"], result["lag"]
    s = lag_["lag_s"]
    return [
        (
            "purge",
            f"PurgeService.purge, {t['purge']['concurrency']} at once",
            f"{t['purge']['per_s']} recordings/s",
        ),
        (
            "purge",
            "PurgeService.purge, one at a time",
            f"{t['purge']['serial_per_s_profiled']} recordings/s",
        ),
        ("purge", "baseline remove_objects+DELETE", f"{t['baseline']['per_s']} recordings/s"),
        ("purge", "ratio purge/baseline", f"{t['ratio']}"),
        ("purge", "in-process IngestService", f"{t['inprocess_ingest']['per_s']} calls/s"),
        (
            "purge",
            f"purge lag @{lag_['rate_calls_per_s']:g}/s x {lag_['duration_s']:g}s (n={lag_['n']})",
            f"p50 {s['p50']:.2f} s, p99 {s['p99']:.2f} s, max {s['max']:.2f} s",
        ),
    ]
