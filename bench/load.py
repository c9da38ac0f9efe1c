"""Lag under load: a worker process ingests at 80 % of its measured maximum while a backlog
of due recordings (as after an outage) falls due at once. Measured: how fast the backlog is
cleared, the purge lag of the recordings that fall due meanwhile, and ingest latency."""

from __future__ import annotations

import io
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from testbed.stack import free_port

from . import common
from .common import Instance, Producer, Reader, land, log
from .ingest import AUDIO_BYTES

# Ingest and retention in processes of their own, as the README advises for a large operator:
# a backlog of purges then never competes with ingest for one interpreter's lock.
ROLES = ("ingest,holds,dsr,outbox", "retention,scheduler,outbox")
# Every ingested call falls due 45 s after it ended: during the load, and - like any real
# retention - long after it was stored, even with ingest lagging behind the 80 % rate on two
# shared cores. A call stored after it fell due would carry ingest's delay into its purge lag.
RETENTION = "PT45S"
BACKLOG_DUE_AFTER = 50.0  # seconds into the load at which the whole backlog falls due


def _land_all(objects: Any, bucket: str, audio: bytes, n: int) -> list[str]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda _: land(objects, bucket, audio), range(n)))


def make_backlog(settings: Any, objects: Any, n: int, due: datetime) -> list[str]:
    """``n`` stored recordings due at ``due`` (moved by :func:`fall_due`): a small object each
    (with the vault's retention header, its version id recorded as ingest records it) and its
    row."""
    from minio.commonconfig import GOVERNANCE
    from minio.retention import Retention

    client = objects.client
    vault = settings.vault_bucket
    locked = objects.has_object_lock(vault)
    body = os.urandom(4096)

    def put(rid: str) -> tuple[str, str | None]:
        key = f"recordings/{rid[:2]}/{rid}.cva"
        result = client.put_object(
            vault,
            key,
            io.BytesIO(body),
            len(body),
            retention=Retention(GOVERNANCE, due + timedelta(minutes=5)) if locked else None,
        )
        return key, result.version_id

    ids = [str(uuid.uuid4()) for _ in range(n)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        stored = list(pool.map(put, ids))
    collected = due - timedelta(seconds=20)
    with (
        psycopg.connect(settings.migration_dsn) as conn,
        conn.cursor() as cur,
        cur.copy(
            "COPY recordings (recording_id, call_id, call_digest, tenant, direction, "
            "started_at, collected_at, retention_due_at, policy, status, object_key, "
            "stored_at, size_bytes, sha256, content_type, object_version, wrapped_key) "
            "FROM STDIN"
        ) as copy,
    ):
        for rid, (key, version) in zip(ids, stored, strict=True):
            copy.write_row(
                (
                    rid,
                    f"backlog-{rid}",
                    uuid.uuid4().hex,
                    "default",
                    "inbound",
                    collected - timedelta(minutes=3),
                    collected,
                    due,
                    RETENTION,
                    "stored",
                    key,
                    collected,
                    len(body),
                    "0" * 64,
                    "audio/wav",
                    version,
                    os.urandom(60),
                )
            )
    return ids


def fall_due(settings: Any, due: datetime) -> None:
    """The whole backlog's due date becomes ``due`` (one statement)."""
    with psycopg.connect(settings.migration_dsn) as conn:
        conn.execute(
            "UPDATE recordings SET retention_due_at = %s WHERE call_id LIKE 'backlog-%%'", (due,)
        )


def start_roles(inst: Instance) -> list[Any]:
    workers, ports = [], []
    for index, roles in enumerate(ROLES):
        ports.append(inst.env["CALLVAULT_METRICS_PORT"] if index == 0 else str(free_port()))
        workers.append(common.start_worker(inst, "--only", roles, CALLVAULT_METRICS_PORT=ports[-1]))
    for port in ports:
        common.wait_ready(int(port))
    return workers


def calibrate(inst: Instance, uris: list[str]) -> float:
    """The pipeline's maximum on this instance: calls published at once, stored/s."""
    settings = inst.settings()
    producer = Producer(settings.kafka_bootstrap)
    stored = Reader(settings.kafka_bootstrap, inst.topic("recordings_stored"))
    try:
        started = time.monotonic()
        for i, uri in enumerate(uris):
            producer.send_call(inst.topic("calls_ended"), f"calibrate-{i}", uri)
        producer.flush()
        done = stored.until(lambda ev: common.calls_in(ev) >= len(uris), 60 + len(uris))
    finally:
        producer.close()
        stored.close()
    return len(uris) / (done - started)


class Watcher:
    """Reads ``recording.stored`` and ``recording.purged`` as they come (a thread)."""

    def __init__(self, inst: Instance) -> None:
        bootstrap = inst.settings().kafka_bootstrap
        self.stored = Reader(bootstrap, inst.topic("recordings_stored"))
        self.purged = Reader(bootstrap, inst.topic("recordings_purged"))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.stored.poll(50)
            self.purged.poll(50)

    def purged_ids(self) -> set[str]:
        return {e["data"]["recording_id"] for _, e in list(self.purged.seen)}

    def purged_calls(self, prefix: str) -> int:
        return len(
            {e["data"]["call_id"] for _, e in list(self.purged.seen)}
            & {
                e["data"]["call_id"]
                for _, e in list(self.stored.seen)
                if e["data"]["call_id"].startswith(prefix)
            }
        )

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.stored.close()
        self.purged.close()


def run(quick: bool, rebuild: bool = False) -> dict[str, Any]:
    from workers.bootstrap import object_store
    from workers.domain.retention import parse_timestamp

    backlog_n = 1000 if quick else 10_000
    duration = 25.0 if quick else 60.0
    calibration_n = 150 if quick else 800  # long enough to be the sustained maximum
    stack = common.ensure_stack()
    inst = common.new_instance(stack, "load", CALLVAULT_RETENTION=RETENTION)
    try:
        common.migrate(inst)
        settings = inst.migration_settings()  # the owner: the baseline's rows
        objects = object_store(settings)
        audio = common.wav_bytes(AUDIO_BYTES)
        log(f"load: landing {calibration_n} calibration calls")
        calibration_uris = _land_all(objects, settings.landing_bucket, audio, calibration_n)
        workers = start_roles(inst)
        maximum = calibrate(inst, calibration_uris)
        rate = round(0.8 * maximum, 1)
        n = int(rate * duration)
        log(f"load: pipeline maximum {maximum:.1f} calls/s; landing {n} calls for {rate}/s")
        uris = _land_all(objects, settings.landing_bucket, audio, n)
        log(f"load: a backlog of {backlog_n} recordings")
        later = datetime.now(UTC) + timedelta(days=1)
        backlog = set(make_backlog(settings, objects, backlog_n, later))
        watcher = Watcher(inst)
        producer = Producer(settings.kafka_bootstrap)
        topic = inst.topic("calls_ended")
        due = datetime.now(UTC) + timedelta(seconds=BACKLOG_DUE_AFTER)
        fall_due(settings, due)
        cpu_before = [common.cpu_seconds(w.pid) for w in workers]
        log(
            f"load: {rate} calls/s for {duration:.0f} s; "
            f"the backlog falls due at +{BACKLOG_DUE_AFTER:.0f} s"
        )
        t0 = time.monotonic()
        for i, uri in enumerate(uris):
            pause = t0 + i / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            producer.send_call(topic, f"load-{i}", uri)
            if i % 20 == 0:
                producer.flush()
        producer.flush()
        sent_s = time.monotonic() - t0
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if backlog <= watcher.purged_ids() and watcher.purged_calls("load-") >= n:
                break
            time.sleep(0.5)
        cpu = [common.cpu_seconds(w.pid) - c for w, c in zip(workers, cpu_before, strict=True)]
        watcher.close()
        producer.close()
        common.stop_workers(inst)
        purged_events = [e["data"] for _, e in watcher.purged.seen]
        stored_events = [e["data"] for _, e in watcher.stored.seen]
    finally:
        common.drop_instance(inst)
    return summarise(
        purged_events, stored_events, backlog, due, parse_timestamp, rate, maximum, n
    ) | {
        "params": {
            "quick": quick,
            "backlog": backlog_n,
            "duration_s": duration,
            "retention": RETENTION,
            "backlog_due_after_s": BACKLOG_DUE_AFTER,
        },
        "send_seconds": round(sent_s, 1),
        "roles": list(ROLES),
        "worker_cpu_share": [round(c / max(1.0, sent_s), 2) for c in cpu],
    }


def summarise(
    purged: list[dict[str, Any]],
    stored: list[dict[str, Any]],
    backlog: set[str],
    due: datetime,
    parse: Any,
    rate: float,
    maximum: float,
    n: int,
) -> dict[str, Any]:
    backlog_done = [parse(p["purged_at"]) for p in purged if p["recording_id"] in backlog]
    cleared_at = max(backlog_done) if backlog_done else None
    clearance_s = (cleared_at - due).total_seconds() if cleared_at else float("nan")
    load = [
        p for p in purged if p["recording_id"] not in backlog and p["call_id"].startswith("load-")
    ]
    lags = [(parse(p["purged_at"]) - parse(p["due_at"])).total_seconds() for p in load]
    after = [
        (parse(p["purged_at"]) - parse(p["due_at"])).total_seconds()
        for p in load
        if cleared_at is not None and parse(p["due_at"]) > cleared_at
    ]
    during = [
        (parse(p["purged_at"]) - parse(p["due_at"])).total_seconds()
        for p in load
        if cleared_at is not None and parse(p["due_at"]) <= cleared_at
    ]
    latency = [
        (parse(s["stored_at"]) - parse(s["collected_at"])).total_seconds()
        for s in stored
        if s["call_id"].startswith("load-")
    ]
    stored_at = {s["recording_id"]: parse(s["stored_at"]) for s in stored}
    late = [
        p
        for p in load
        if p["recording_id"] in stored_at and stored_at[p["recording_id"]] > parse(p["due_at"])
    ]
    in_backlog = [
        (parse(s["stored_at"]) - parse(s["collected_at"])).total_seconds()
        for s in stored
        if s["call_id"].startswith("load-")
        and cleared_at is not None
        and due <= parse(s["stored_at"]) <= cleared_at
    ]

    def stats(values: list[float]) -> dict[str, float]:
        return {k: round(v, 3) for k, v in common.summary(values).items()}

    backlog_per_s = len(backlog_done) / clearance_s if clearance_s > 0 else float("nan")
    return {
        "pipeline_max_calls_per_s": round(maximum, 1),
        "ingest_rate_calls_per_s": rate,
        "calls": n,
        "calls_stored": len(latency),
        "calls_purged": len(load),
        "backlog_purged": len(backlog_done),
        "backlog_clearance_s": round(clearance_s, 2),
        "backlog_per_s": round(backlog_per_s, 1),
        "backlog_vs_ingest": round(backlog_per_s / rate, 1),
        "lag_p99_s": round(common.percentile(after, 99), 3),
        "lag_after_backlog_s": stats(after),
        "lag_during_backlog_s": stats(during),
        "lag_all_s": stats(lags),
        "ingest_latency_s": stats(latency),
        "ingest_latency_during_backlog_s": stats(in_backlog),
        "calls_stored_after_due": len(late),
    }


def rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    after, during = result["lag_after_backlog_s"], result["lag_during_backlog_s"]
    latency = result["ingest_latency_s"]
    return [
        (
            "load",
            f"ingest at 80 % of {result['pipeline_max_calls_per_s']} calls/s",
            f"{result['ingest_rate_calls_per_s']} calls/s ({result['calls_stored']} stored)",
        ),
        (
            "load",
            f"backlog of {result['params']['backlog']:,} due at once",
            f"cleared in {result['backlog_clearance_s']} s = {result['backlog_per_s']}/s "
            f"({result['backlog_vs_ingest']}x ingest)",
        ),
        (
            "load",
            "purge lag after the backlog (n={})".format(after["n"]),
            f"p50 {after['p50']:.2f} s, p99 {after['p99']:.2f} s",
        ),
        (
            "load",
            "purge lag while the backlog clears (n={})".format(during["n"]),
            f"p50 {during['p50']:.2f} s, p99 {during['p99']:.2f} s",
        ),
        (
            "load",
            "ingest latency (stored_at - ended_at)",
            f"p50 {latency['p50']:.2f} s, p99 {latency['p99']:.2f} s "
            f"({result['calls_stored_after_due']} calls stored after they fell due)",
        ),
    ]
