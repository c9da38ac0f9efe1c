"""Profile: where a worker's CPU goes while it ingests, sampled by py-spy from outside the
process (so the worker runs unmodified), only the thread holding the GIL at each sample: the
worker's Python is GIL-bound, so that is where its CPU goes (waits on sockets are left out).

One worker process (``--only ingest,outbox``, ``CALLVAULT_CONCURRENCY=4``) ingests N calls
of 256 KiB as ``bench ingest`` does; py-spy samples it from the first publish to the last
``recording.stored``. The collapsed stacks (``bench/results/profile-*.txt``, for
flamegraph.pl or speedscope) are summed into the share of samples by the innermost frame
(self time) and by the first callvault frame on the stack (what callvault code asked for), and
by area: Kafka and Faust, the S3 client, PostgreSQL, cryptography, JSON/validation, other."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from . import common, ingest
from .common import Producer, Reader, land, log

N = 600
AREAS = (  # (area, substrings of a frame's file) - the first that matches
    ("kafka+faust", ("/faust/", "/mode/", "/kafka/", "/aiokafka/", "workers/adapters/kafka")),
    ("s3 client", ("/minio/", "/urllib3/", "workers/adapters/s3")),
    ("postgresql", ("/psycopg", "workers/adapters/postgres")),
    ("crypto", ("/cryptography/", "workers/adapters/crypto", "workers/adapters/keys")),
    ("json+validation", ("/json/", "/jsonschema", "/pydantic", "/fastjsonschema", "/orjson")),
    ("logging+metrics", ("/structlog/", "/prometheus_client/", "/logging/")),
    ("asyncio", ("/asyncio/", "/selectors.py", "/threading.py", "/concurrent/")),
)


def area_of(frame: str) -> str:
    for name, parts in AREAS:
        if any(p in frame for p in parts):
            return name
    return "callvault" if "workers/" in frame else "other"


def summarise(collapsed: Path, top: int = 25) -> dict[str, Any]:
    """Shares of samples from py-spy's raw (collapsed) output: ``frame;frame;… count``."""
    selfs: Counter[str] = Counter()
    callers: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        selfs[frames[-1]] += count
        areas[_innermost_area(frames)] += count
        ours = next((f for f in frames if "workers/" in f and "entrypoints" not in f), "(none)")
        callers[ours] += count

    def shares(counter: Counter[str], n: int) -> list[tuple[str, float]]:
        return [(k, round(v / total, 4)) for k, v in counter.most_common(n)] if total else []

    return {
        "samples": total,
        "by_area": dict(shares(areas, 20)),
        "self_top": shares(selfs, top),
        "callvault_entry_top": shares(callers, top),
    }


def _innermost_area(frames: list[str]) -> str:
    """The area of the innermost frame that belongs to a known library or to callvault."""
    for frame in reversed(frames):
        found = area_of(frame)
        if found != "other":
            return found
    return "other"


def run(quick: bool, rebuild: bool = False) -> dict[str, Any]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    n = 150 if quick else N
    stack = common.ensure_stack()
    from workers.bootstrap import object_store

    inst = common.new_instance(stack, "prof")
    out = common.RESULTS / f"profile-{time.strftime('%Y%m%dT%H%M%S')}.txt"
    try:
        common.migrate(inst)
        settings = inst.settings()
        objects = object_store(settings)
        audio = common.wav_bytes(ingest.AUDIO_BYTES)
        uris = [land(objects, settings.landing_bucket, audio) for _ in range(n + ingest.WARMUP)]
        producer = Producer(settings.kafka_bootstrap)
        worker = ingest.start_workers(inst, 1, 4, ("ingest", "outbox"))[0]
        reader = Reader(settings.kafka_bootstrap, inst.topic("recordings_stored"))
        topic = inst.topic("calls_ended")
        try:
            for i in range(ingest.WARMUP):
                producer.send_call(topic, f"warm-{i}", uris[i])
            producer.flush()
            reader.until(lambda ev: common.calls_in(ev) >= ingest.WARMUP, 120)
            log(f"profile: py-spy on the worker while it ingests {n} calls")
            sampler = subprocess.Popen(
                [
                    spy,
                    "record",
                    "--pid",
                    str(worker.pid),
                    "--format",
                    "raw",
                    "--rate",
                    "200",
                    "--output",
                    str(out),
                    "--nonblocking",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            time.sleep(1.0)
            cpu = common.cpu_seconds(worker.pid)
            started = time.monotonic()
            for i in range(n):
                producer.send_call(topic, f"prof-{i}", uris[ingest.WARMUP + i])
            producer.flush()
            done = reader.until(lambda ev: common.calls_in(ev) >= n + ingest.WARMUP, 60 + n * 2)
            cpu = common.cpu_seconds(worker.pid) - cpu
            sampler.send_signal(2)  # SIGINT: py-spy writes what it has
            sampler.wait(timeout=60)
        finally:
            reader.close()
            producer.close()
            common.stop_workers(inst)
    finally:
        common.drop_instance(inst)
    elapsed = done - started
    return {
        "n": n,
        "calls_per_s": round(n / elapsed, 2),
        "worker_cpu_ms_per_call": round(cpu / n * 1000, 2),
        "collapsed_stacks": str(out),
        **summarise(out),
    }


def rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    areas = ", ".join(f"{k} {v:.0%}" for k, v in result["by_area"].items())
    return [
        ("profile", "worker CPU per call", f"{result['worker_cpu_ms_per_call']} ms"),
        ("profile", "CPU samples by area", areas),
    ]
