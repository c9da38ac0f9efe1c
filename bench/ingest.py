"""Ingest: throughput of the whole pipeline (landing object + call-ended event -> encrypted
vault object + rows + recording.stored event) against a raw put+INSERT loop, and the worker's
peak RSS while it ingests one large file."""

from __future__ import annotations

import io
import json
import queue
import subprocess
import sys
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

AUDIO_BYTES = 256 * 1024
ROUNDS = {False: 3, True: 1}  # floor + pipeline rounds: full run, --quick
WARMUP = 8  # calls before the clock starts: both partitions get some
MB = 1_000_000


class RawCall:
    """Exactly the unavoidable I/O of one call, each thread on its own open connection: GET
    the landing object, encrypt it with a fresh key, PUT it to the vault with the same
    retention header, one autocommitted INSERT, DELETE the landing copy."""

    def __init__(self, settings: Any, objects: Any, workers: int) -> None:
        self._client = objects.client
        self._url = settings.migration_dsn
        self._vault, self._landing = settings.vault_bucket, settings.landing_bucket
        self.locked = objects.has_object_lock(self._vault)
        with psycopg.connect(self._url, autocommit=True) as conn:
            conn.execute(
                "CREATE SCHEMA IF NOT EXISTS bench; "  # never callvault's: its checks pass over it
                "CREATE TABLE IF NOT EXISTS bench.baseline (id uuid PRIMARY KEY, object_key "
                "text, size_bytes bigint, stored_at timestamptz)"
            )
        self._connections = queue.SimpleQueue[psycopg.Connection[Any]]()
        for _ in range(workers):
            self._connections.put(psycopg.connect(self._url, autocommit=True))

    def __call__(self, uri: str) -> str:
        """Stores the call's audio; returns the new recording's id."""
        from minio.commonconfig import GOVERNANCE
        from minio.retention import Retention

        from workers.adapters import crypto
        from workers.domain.model import object_key_for  # the vault's own key layout

        client, key = self._client, uri.removeprefix(f"s3://{self._landing}/")
        response = client.get_object(self._landing, key)
        try:
            body = response.read()
        finally:
            response.close()
            response.release_conn()
        rid = str(uuid.uuid4())
        sealed = b"".join(crypto.encrypt_stream(crypto.new_data_key(), rid, [body]))
        retain = datetime.now(UTC) + timedelta(days=365)
        client.put_object(
            self._vault,
            object_key_for(rid),
            io.BytesIO(sealed),
            len(sealed),
            content_type="application/octet-stream",
            retention=Retention(GOVERNANCE, retain) if self.locked else None,
        )
        conn = self._connections.get()
        try:
            conn.execute(
                "INSERT INTO bench.baseline VALUES (%s, %s, %s, now())",
                (rid, object_key_for(rid), len(body)),
            )
        finally:
            self._connections.put(conn)
        client.remove_object(self._landing, key)
        return rid

    def close(self) -> None:
        while not self._connections.empty():
            self._connections.get().close()


def baseline(settings: Any, objects: Any, n: int, audio: bytes, workers: int) -> dict[str, Any]:
    """:class:`RawCall` for n calls, ``workers`` at once (the pipeline's concurrency)."""
    uris = [land(objects, settings.landing_bucket, audio) for _ in range(n)]
    raw = RawCall(settings, objects, workers)
    started, cpu, busy = time.perf_counter(), time.process_time(), common.machine_busy_seconds()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(raw, uris))
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    busy = common.machine_busy_seconds() - busy
    raw.close()
    return {
        "n": n,
        "concurrency": workers,
        "cpu_ms_per_call": round(cpu / n * 1000, 2),
        "machine_cpu_ms_per_call": round(busy / n * 1000, 2),
        "seconds": round(elapsed, 3),
        "calls_per_s": round(n / elapsed, 2),
        "mb_per_s": round(n * len(audio) / MB / elapsed, 2),
        "object_lock": raw.locked,
    }


def kafka_floor(
    inst: Instance, objects: Any, n: int, audio: bytes, workers: int, tag: str = "floor"
) -> dict[str, Any]:
    """What any pipeline that honours the contract must do at least: the baseline's I/O for
    each ``call.ended`` read from Kafka, and one event published per stored call - with no
    validation, audit, outbox or transaction. Clocked like the pipeline: from the first
    publish to the n-th output event read back. Its ratio to the baseline is the ceiling of
    the pipeline's ratio on this machine."""
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    settings = inst.settings()
    servers = settings.kafka_bootstrap.split(",")
    inbox, outbox = f"{inst.name}.{tag}.in", f"{inst.name}.{tag}.out"
    admin = KafkaAdminClient(bootstrap_servers=servers)
    admin.create_topics([NewTopic(inbox, 2, 1), NewTopic(outbox, 2, 1)])
    admin.close()
    uris = [land(objects, settings.landing_bucket, audio) for _ in range(n)]
    raw = RawCall(inst.migration_settings(), objects, workers)  # the owner: its table
    output = KafkaProducer(bootstrap_servers=servers, acks="all", linger_ms=5)
    stop = threading.Event()
    failures: list[BaseException] = []

    def store(value: bytes, slots: threading.Semaphore) -> None:
        try:
            data = json.loads(value)["data"]
            rid = raw(data["recording"]["uri"])
            event = {"data": {"call_id": data["call_id"], "recording_id": rid}}
            output.send(outbox, key=rid.encode(), value=json.dumps(event).encode())
        except BaseException as exc:  # noqa: BLE001 - reported after the run
            failures.append(exc)
        finally:
            slots.release()

    consumer = KafkaConsumer(
        bootstrap_servers=servers, group_id=f"{inst.name}-{tag}", enable_auto_commit=False
    )
    common.assign_from_start(consumer, inbox)  # ready before the first call is published

    def consume() -> None:
        slots = threading.BoundedSemaphore(workers * 2)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            while not stop.is_set():
                polled = consumer.poll(timeout_ms=50, max_records=workers)
                for record in (r for records in polled.values() for r in records):
                    slots.acquire()
                    pool.submit(store, record.value, slots)
                if polled:
                    consumer.commit_async()
        consumer.close()

    reader = Reader(settings.kafka_bootstrap, outbox)
    looping = threading.Thread(target=consume, daemon=True)
    looping.start()
    producer = Producer(settings.kafka_bootstrap)
    try:
        warm = uris[:WARMUP]
        for i, uri in enumerate(warm):
            producer.send_call(inbox, f"warmup-{i}", uri)
        producer.flush()
        reader.until(lambda events: len(events) >= WARMUP, 120)
        started = time.monotonic()
        for i, uri in enumerate(uris[WARMUP:]):
            producer.send_call(inbox, f"{tag}-{i}", uri)
        producer.flush()
        done = reader.until(lambda events: len(events) >= n, 60 + n * 2)
    finally:
        stop.set()
        looping.join(timeout=30)
        output.close(timeout=5)
        producer.close()
        reader.close()
        raw.close()
    if failures:
        raise RuntimeError(f"the floor loop failed: {failures[0]!r}")
    calls = n - WARMUP
    return {"n": calls, "concurrency": workers, "calls_per_s": round(calls / (done - started), 2)}


def floor_and_pipeline(
    inst: Instance, objects: Any, n: int, audio: bytes, workers: int, rounds: int
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """The floor and the pipeline, back to back, ``rounds`` times: on a shared machine one
    run's speed drifts with the load beside it (the same code measured 55 and 96 calls/s in
    two runs a minute apart), and a ratio within one round, taken over several rounds,
    cancels most of it. Returns the median round's floor and pipeline and every round."""
    measured = []
    for index in range(rounds):
        log(f"ingest: round {index + 1}/{rounds}: the floor, then the pipeline ({n} calls each)")
        floor = kafka_floor(inst, objects, n, audio, workers, tag=f"floor{index}")
        pipe = pipeline(inst, objects, n, audio, 1, workers, tag=f"p1r{index}")
        ratio = round(pipe["calls_per_s"] / floor["calls_per_s"], 3)
        measured.append({"floor": floor, "pipeline": pipe, "ratio": ratio})
    middle = sorted(measured, key=lambda r: r["ratio"])[len(measured) // 2]
    summary = [
        {
            "floor_calls_per_s": r["floor"]["calls_per_s"],
            "pipeline_calls_per_s": r["pipeline"]["calls_per_s"],
            "worker_cpu_ms_per_call": r["pipeline"]["worker_cpu_ms_per_call"],
            "ratio": r["ratio"],
        }
        for r in measured
    ]
    return middle["floor"], middle["pipeline"], summary


def _stored(count: int, tag: str):  # type: ignore[no-untyped-def]
    def check(events: list[dict[str, Any]]) -> bool:
        calls = {e["data"]["call_id"] for e in events}
        return len({c for c in calls if c.startswith(tag)}) >= count

    return check


def start_workers(
    inst: Instance, processes: int, concurrency: int, roles: tuple[str, ...] = ()
) -> list[Any]:
    """``processes`` worker processes sharing the consumer group, ``concurrency`` events at
    once each (``roles``: ``--only`` these); returns them once every one holds its partitions."""
    workers, ports = [], []
    only = ("--only", ",".join(roles)) if roles else ()
    for index in range(processes):
        ports.append(inst.env["CALLVAULT_METRICS_PORT"] if index == 0 else str(free_port()))
        workers.append(
            common.start_worker(
                inst,
                *only,
                CALLVAULT_CONCURRENCY=str(concurrency),
                CALLVAULT_METRICS_PORT=ports[-1],
            )
        )
    for port in ports:
        common.wait_ready(int(port))
    return workers


def pipeline(
    inst: Instance,
    objects: Any,
    n: int,
    audio: bytes,
    processes: int,
    concurrency: int,
    tag: str = "p1",
    roles: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Calls published as fast as Kafka takes them; the clock runs from the first publish to
    the n-th ``recording.stored`` read back. ``tag`` starts every call id of this run."""
    settings = inst.settings()
    uris = [land(objects, settings.landing_bucket, audio) for _ in range(n + WARMUP)]
    producer = Producer(settings.kafka_bootstrap)
    topic = inst.topic("calls_ended")
    workers = start_workers(inst, processes, concurrency, roles)
    reader = Reader(settings.kafka_bootstrap, inst.topic("recordings_stored"))
    try:
        # warm-up: every partition's worker has stored a call, every connection is open
        for i in range(WARMUP):
            producer.send_call(topic, f"{tag}-warmup-{i}", uris[i])
        producer.flush()
        reader.until(_stored(WARMUP, tag), 120)
        rss_idle = common.proc_status(workers[0].pid)
        cpu_before = sum(common.cpu_seconds(w.pid) for w in workers)
        busy = common.machine_busy_seconds()
        started = time.monotonic()
        for i in range(n):
            producer.send_call(topic, f"{tag}-bench-{i}", uris[i + WARMUP])
        producer.flush()
        published = time.monotonic() - started
        done = reader.until(_stored(n + WARMUP, tag), 60 + n * 2)
        elapsed = done - started
        cpu = sum(common.cpu_seconds(w.pid) for w in workers) - cpu_before
        busy = common.machine_busy_seconds() - busy
        rss_after = common.proc_status(workers[0].pid)
        histogram = _ingest_histogram(common.metrics_text(int(inst.env["CALLVAULT_METRICS_PORT"])))
    finally:
        reader.close()
        producer.close()
        common.stop_workers(inst)
    return {
        "n": n,
        "processes": processes,
        "concurrency_per_process": concurrency,
        "seconds": round(elapsed, 3),
        "publish_seconds": round(published, 3),
        "calls_per_s": round(n / elapsed, 2),
        "mb_per_s": round(n * len(audio) / MB / elapsed, 2),
        "handler_mean_ms": histogram,
        "worker_cpu_ms_per_call": round(cpu / n * 1000, 2),
        "worker_cpu_share": round(cpu / elapsed, 2),
        "machine_cpu_ms_per_call": round(busy / n * 1000, 2),
        "worker_rss_kib": {"idle": rss_idle, "after": rss_after},
    }


def _ingest_histogram(text: str | None) -> float | None:
    """Mean time the ingest handler spent per call (from the worker's own histogram)."""
    total = count = None
    for line in (text or "").splitlines():
        if line.startswith("callvault_ingest_duration_seconds_sum"):
            total = float(line.rsplit(" ", 1)[1])
        elif line.startswith("callvault_ingest_duration_seconds_count"):
            count = float(line.rsplit(" ", 1)[1])
    if total is None or not count:
        return None
    return round(total / count * 1000, 2)


def big_file(inst: Instance, objects: Any, size: int) -> dict[str, Any]:
    """Peak RSS (VmHWM) of a fresh worker process ingesting ONE file of ``size`` bytes."""
    settings = inst.settings()
    bucket = settings.landing_bucket
    key = f"incoming/big-{uuid.uuid4()}.wav"
    log(f"ingest: landing a {size / 2**20:.0f} MiB WAV (streamed)")
    objects.put_stream(bucket, key, common.wav_chunks(size), content_type="audio/wav")
    small = land(objects, bucket, common.wav_bytes(AUDIO_BYTES))
    producer = Producer(settings.kafka_bootstrap)
    topic = inst.topic("calls_ended")
    worker = common.start_worker(inst)
    reader = Reader(settings.kafka_bootstrap, inst.topic("recordings_stored"))
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            try:
                samples.append(common.proc_status(worker.pid)["VmRSS"])
            except (OSError, KeyError):
                return
            time.sleep(0.2)

    try:
        producer.send_call(topic, "big-warmup", small)
        producer.flush()
        reader.until(lambda ev: "big-warmup" in {e["data"]["call_id"] for e in ev}, 120)
        time.sleep(1.0)
        idle = common.proc_status(worker.pid)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.monotonic()
        producer.send_call(topic, "big-0", f"s3://{bucket}/{key}")
        producer.flush()
        done = reader.until(lambda ev: "big-0" in {e["data"]["call_id"] for e in ev}, 900)
        elapsed = done - started
        stop.set()
        sampler.join(timeout=2)
        peak = common.proc_status(worker.pid)
        stored = next(e for _, e in reader.seen if e["data"]["call_id"] == "big-0")["data"]
    finally:
        stop.set()
        reader.close()
        producer.close()
        common.stop_workers(inst)
    return {
        "file_bytes": size,
        "stored_size_bytes": stored["size_bytes"],
        "seconds": round(elapsed, 2),
        "mb_per_s": round(size / MB / elapsed, 2),
        "idle_rss_mib": round(idle["VmRSS"] / 1024, 1),
        "idle_hwm_mib": round(idle["VmHWM"] / 1024, 1),
        "peak_hwm_mib": round(peak["VmHWM"] / 1024, 1),
        "peak_sampled_rss_mib": round(max(samples, default=0) / 1024, 1),
    }


IMPORTS = (
    "faust",
    "kafka",
    "psycopg",
    "psycopg_pool",
    "minio",
    "cryptography.hazmat.primitives.ciphers.aead",
    "prometheus_client",
    "pydantic_settings",
    "structlog",
    "phonenumbers",
    "yoyo",
    "fastapi",
)


def import_costs() -> dict[str, Any]:
    """What the imports cost: VmRSS of a fresh interpreter, then after importing each library
    alone, then after importing the worker's entrypoint (everything a worker loads)."""
    script = (
        "import importlib, sys\n"
        "def rss():\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith('VmRSS'): return int(line.split()[1])\n"
        "before = rss(); importlib.import_module(sys.argv[1]); print(before, rss())\n"
    )

    def cost(module: str) -> tuple[int, int]:
        out = subprocess.run(
            [sys.executable, "-c", script, module], capture_output=True, check=True, text=True
        )
        before, after = map(int, out.stdout.split())
        return before, after

    bare, worker = cost("workers.entrypoints.worker")
    return {
        "interpreter_mib": round(bare / 1024, 1),
        "worker_imports_mib": round((worker - bare) / 1024, 1),
        "by_library_mib": {m: round((a - b) / 1024, 1) for m in IMPORTS for b, a in [cost(m)]},
    }


def run(quick: bool, rebuild: bool = False) -> dict[str, Any]:
    n = 60 if quick else 600
    big = (64 if quick else 1024) * 2**20
    stack = common.ensure_stack()
    from workers.bootstrap import object_store

    inst = common.new_instance(stack, "ing")
    try:
        common.migrate(inst)
        settings = inst.migration_settings()  # the owner: the baseline's tables
        objects = object_store(settings)
        audio = common.wav_bytes(AUDIO_BYTES)
        workers = settings.concurrency
        log(f"ingest: baseline, {n} x GET+encrypt+PUT+INSERT+DELETE, {workers} at once")
        base = baseline(settings, objects, n, audio, workers)
        floor, pipe, rounds = floor_and_pipeline(inst, objects, n, audio, workers, ROUNDS[quick])
        log(
            f"ingest: pipeline, {n} calls through two worker processes, {workers // 2} at once each"
        )
        pair = pipeline(inst, objects, n, audio, 2, workers // 2, tag="p2")
        log("ingest: one large file, peak RSS")
        large = big_file(inst, objects, big)
        log(f"ingest: an idle worker with every role, CPU over {IDLE_SECONDS:.0f} s")
        idle = idle_worker(inst)
    finally:
        common.drop_instance(inst)
    return {
        "params": {"n": n, "audio_bytes": AUDIO_BYTES, "large_file_bytes": big, "quick": quick},
        "baseline": base,
        "pipeline": pipe,
        "ratio": round(pipe["calls_per_s"] / base["calls_per_s"], 3),
        "two_processes": pair,
        "two_processes_ratio": round(pair["calls_per_s"] / base["calls_per_s"], 3),
        "kafka_floor": floor,
        "floor_ratio": round(floor["calls_per_s"] / base["calls_per_s"], 3),
        # the pipeline's share of what the floor reaches (goal >= 0.8): the median round's,
        # each round a floor run and a pipeline run back to back
        "floor_ratio_of_pipeline": round(pipe["calls_per_s"] / floor["calls_per_s"], 3),
        "rounds": rounds,
        "large_file": large,
        "imports": import_costs(),
        "idle_worker": idle,
    }


def rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    b, p, big = result["baseline"], result["pipeline"], result["large_file"]
    workers_each = result["two_processes"]["concurrency_per_process"]
    mib = big["file_bytes"] // 2**20
    growth = round(big["peak_hwm_mib"] - big["idle_rss_mib"], 1)
    imports = result["imports"]
    return [
        ("ingest", "pipeline throughput", f"{p['calls_per_s']} calls/s, {p['mb_per_s']} MB/s"),
        (
            "ingest",
            f"baseline GET+encrypt+PUT+INSERT+DELETE, {b['concurrency']} at once",
            f"{b['calls_per_s']} calls/s, {b['mb_per_s']} MB/s",
        ),
        ("ingest", "ratio pipeline/baseline", f"{result['ratio']}"),
        (
            "ingest",
            f"two worker processes, {workers_each} at once each",
            f"{result['two_processes']['calls_per_s']} calls/s "
            f"(ratio {result['two_processes_ratio']})",
        ),
        (
            "ingest",
            "floor: baseline I/O + Kafka in and out",
            f"{result['kafka_floor']['calls_per_s']} calls/s (ratio {result['floor_ratio']})",
        ),
        (
            "ingest",
            f"pipeline / floor (median of {len(result['rounds'])} rounds)",
            f"{result['floor_ratio_of_pipeline']} "
            f"(rounds: {', '.join(str(r['ratio']) for r in result['rounds'])})",
        ),
        (
            "ingest",
            "worker CPU per call (goal <= 4.2 ms)",
            f"{p['worker_cpu_ms_per_call']} ms",
        ),
        (
            "ingest",
            "machine CPU per call: pipeline / baseline",
            f"{p['machine_cpu_ms_per_call']} / {b['machine_cpu_ms_per_call']} ms",
        ),
        ("ingest", "handler mean (worker histogram)", f"{p['handler_mean_ms']} ms/call"),
        ("ingest", f"worker idle RSS (before {mib} MiB file)", f"{big['idle_rss_mib']} MiB"),
        (
            "ingest",
            f"worker peak VmHWM ({mib} MiB file)",
            f"{big['peak_hwm_mib']} MiB (+{growth} MiB over idle)",
        ),
        ("ingest", f"{mib} MiB file ingest", f"{big['seconds']} s, {big['mb_per_s']} MB/s"),
        (
            "ingest",
            "imports: interpreter + worker modules",
            f"{imports['interpreter_mib']} + {imports['worker_imports_mib']} MiB",
        ),
        (
            "ingest",
            "idle worker, every role: CPU",
            f"{result['idle_worker']['worker_cpu_ms_per_s']} ms/s",
        ),
    ]


IDLE_SECONDS = 10.0
SETTLE_SECONDS = 5.0  # the start-up rounds (scheduler, gauges, reconciliation) done


def idle_worker(inst: Instance) -> dict[str, Any]:
    """CPU a worker with every role spends while nothing happens: once it holds its
    partitions and its start-up rounds are over, its CPU time over ``IDLE_SECONDS``."""
    workers = start_workers(inst, 1, inst.settings().concurrency)
    try:
        time.sleep(SETTLE_SECONDS)
        pid = workers[0].pid
        cpu, started = common.cpu_seconds(pid), time.monotonic()
        time.sleep(IDLE_SECONDS)
        cpu, elapsed = common.cpu_seconds(pid) - cpu, time.monotonic() - started
    finally:
        common.stop_workers(inst)
    return {
        "roles": "all",
        "seconds": round(elapsed, 1),
        "worker_cpu_ms_per_s": round(cpu / elapsed * 1000, 1),
    }
