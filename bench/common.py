"""What every benchmark shares: the local stack, isolated instances, worker processes, Kafka
readers/writers, WAV generation, statistics and result files."""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from testbed.probes import metrics_text, wait_for
from testbed.stack import Instance, read_stack_env, stop_processes
from testbed.stack import drop_instance as drop_test_instance
from testbed.stack import new_instance as new_test_instance
from workers.adapters.kafka import codec

ROOT = Path(__file__).resolve().parents[1]
STACK_ENV = ROOT / ".local" / "stack.env"
RESULTS = Path(__file__).resolve().parent / "results"
LOGS = RESULTS / "logs"
CALLVAULT = str(Path(sys.executable).parent / "callvault")


# ----------------------------------------------------------------------------- the stack
def _port_open(host: str, port: int) -> bool:
    with closing(socket.socket()) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _endpoints(stack: dict[str, str]) -> list[tuple[str, int]]:
    """Kafka, PostgreSQL and S3 as host and port."""
    urls = [
        "kafka://" + stack["CALLVAULT_KAFKA_BOOTSTRAP"].split(",")[0],
        stack["CALLVAULT_DATABASE_URL"],
        stack["CALLVAULT_S3_ENDPOINT"],
    ]
    return [(u.hostname or "127.0.0.1", u.port or 443) for u in map(urlsplit, urls)]


def stack_settings() -> dict[str, str]:
    """``.local/stack.env``, with any ``CALLVAULT_*`` variable of the environment taking
    precedence (so a run can point at another Kafka, PostgreSQL or S3)."""
    values = read_stack_env() if STACK_ENV.exists() else {}
    values.update({k: v for k, v in os.environ.items() if k.startswith("CALLVAULT_")})
    return values


def ensure_stack(wait: float = 60) -> dict[str, str]:
    """The stack's settings. Another engineer may be restarting it: wait a while, then start it.
    callvault's own logs in this process (in-process benchmarks) are kept to warnings."""
    from workers.adapters.logs import configure

    configure("console", "WARNING")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        stack = stack_settings()
        if "CALLVAULT_KAFKA_BOOTSTRAP" in stack and all(
            _port_open(h, p) for h, p in _endpoints(stack)
        ):
            return stack
        time.sleep(2)
    subprocess.run(["bash", str(ROOT / "deploy" / "stack.sh"), "up"], check=True)
    return stack_settings()


# ------------------------------------------------------------------------------ instances
def new_instance(stack: dict[str, str], label: str, **overrides: str) -> Instance:
    """An isolated instance named ``bench<label>…``, quieter than a test's."""
    defaults = {"CALLVAULT_LOG_LEVEL": "WARNING"}
    return new_test_instance(stack, prefix=f"bench{label}", **{**defaults, **overrides})


def migrate(instance: Instance) -> dict[str, Any]:
    done = subprocess.run(
        [CALLVAULT, "migrate", "--json"],
        env={**os.environ, **instance.migration_env},
        capture_output=True,
        check=False,
        timeout=180,
    )
    if done.returncode != 0:
        raise RuntimeError(f"callvault migrate failed: {done.stderr.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def start_worker(instance: Instance, *args: str, **extra_env: str) -> subprocess.Popen[bytes]:
    LOGS.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **instance.env, **extra_env}
    log = (LOGS / f"{instance.name}-worker-{len(instance.workers)}.log").open("wb")
    process = subprocess.Popen(
        [CALLVAULT, "worker", *args], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    instance.workers.append(process)
    port = int(env["CALLVAULT_METRICS_PORT"])
    wait_for(lambda: metrics_text(port) is not None or process.poll() is not None, 60, "metrics")
    if process.poll() is not None:
        raise RuntimeError(f"worker exited at start-up; see {log.name}")
    return process


def wait_ready(port: int, timeout: float = 120) -> None:
    """Until the worker on this metrics port holds its partitions (``callvault_worker_ready``)."""
    wait_for(lambda: "callvault_worker_ready 1.0" in (metrics_text(port) or ""), timeout, "ready")


def stop_workers(instance: Instance) -> None:
    stop_processes(instance.workers)
    instance.workers.clear()


def drop_instance(instance: Instance) -> None:
    """Stop the instance's workers, then remove its buckets, topics and database."""
    stop_workers(instance)
    drop_test_instance(instance)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (from /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time the whole machine has spent busy so far, over all cores (from /proc/stat):
    the worker, PostgreSQL, Kafka and the S3 server together."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM (KiB) of a process from /proc/<pid>/status."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0])
    return values


# ------------------------------------------------------------------------------ Kafka I/O
class Producer:
    def __init__(self, bootstrap: str) -> None:
        from kafka import KafkaProducer

        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap.split(","), acks="all", linger_ms=5
        )

    def send(self, topic: str, key: str, value: bytes) -> None:
        self._producer.send(topic, key=key.encode(), value=value)

    def send_call(self, topic: str, call_id: str, uri: str, **details: Any) -> None:
        """The ``call.ended`` of ``call_id`` whose audio is at ``uri``, keyed by the call id;
        ``details`` go to :func:`call_data` (caller, customer, ended)."""
        data = call_data(call_id, uri, **details)
        self.send(topic, call_id, cloudevent("callvault.call.ended.v1", data))

    def flush(self) -> None:
        self._producer.flush(timeout=60)

    def close(self) -> None:
        self._producer.close(timeout=5)


def assign_from_start(consumer: Any, topic: str, timeout: float = 60) -> None:
    """Assign every partition of ``topic`` to ``consumer``, positioned at its start, once the
    broker's metadata lists them (a topic just created has none for a moment: a consumer that
    subscribed then would be assigned nothing until its next metadata refresh, minutes later);
    returns when the positions are known, so nothing published afterwards is missed."""
    from kafka import TopicPartition

    deadline = time.monotonic() + timeout
    partitions = consumer.partitions_for_topic(topic)
    while not partitions and time.monotonic() < deadline:
        time.sleep(0.2)
        consumer.poll(timeout_ms=0)  # lets the client refresh its metadata
        partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        raise TimeoutError(f"topic {topic} has no partitions after {timeout:.0f} s")
    assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(assigned)
    consumer.seek_to_beginning()
    for partition in assigned:
        consumer.position(partition)  # resolves the start offset now


def calls_in(events: list[dict[str, Any]]) -> int:
    """Distinct calls among ``recording.stored`` events (the outbox publishes at least once:
    a count of events may include a repeat)."""
    return len({e["data"]["call_id"] for e in events})


class Reader:
    """Reads every event of one topic from the beginning, keeping what it has seen."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from kafka import KafkaConsumer

        self._consumer = KafkaConsumer(
            bootstrap_servers=bootstrap.split(","), enable_auto_commit=False
        )
        assign_from_start(self._consumer, topic)
        self.seen: list[tuple[float, dict[str, Any]]] = []  # (monotonic arrival, event)

    def poll(self, timeout_ms: int = 100) -> list[dict[str, Any]]:
        batch = self._consumer.poll(timeout_ms=timeout_ms)
        now = time.monotonic()
        new = [json.loads(m.value) for records in batch.values() for m in records]
        self.seen.extend((now, e) for e in new)
        return new

    def until(self, check: Callable[[list[dict[str, Any]]], bool], timeout: float) -> float:
        """Polls until ``check(all events seen)`` holds; returns the monotonic time it did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll()
            if check([e for _, e in self.seen]):
                return time.monotonic()
        raise TimeoutError(f"{len(self.seen)} event(s) seen before the timeout")

    def close(self) -> None:
        self._consumer.close()


# ------------------------------------------------------------------------------- payloads
def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def cloudevent(event_type: str, data: dict[str, Any]) -> bytes:
    """A telephony system's event, in callvault's envelope (the Kafka codec's)."""
    return codec.encode(codec.envelope(event_type, data, source="urn:bench:telephony"))


def call_data(
    call_id: str,
    uri: str,
    *,
    caller: str = "+370 612 34567",
    ended: datetime | None = None,
    customer: dict[str, Any] | None = None,
) -> dict[str, Any]:
    ended = ended or datetime.now(UTC)
    data: dict[str, Any] = {
        "call_id": call_id,
        "direction": "inbound",
        "caller": caller,
        "callee": "+370 521 44500",
        "started_at": stamp(ended - timedelta(minutes=3)),
        "ended_at": stamp(ended),
        "notice_played": True,
        "recording": {"uri": uri},
    }
    if customer:
        data["customer"] = customer
    return data


WAV_HEADER_SIZE = 44


def wav_header(data_bytes: int, rate: int = 8000) -> bytes:
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


def wav_chunks(total_bytes: int, chunk: int = 1024 * 1024) -> Iterator[bytes]:
    """A mono 16-bit WAV of exactly ``total_bytes``, generated as it streams (pseudo-random
    samples, so nothing downstream can compress it)."""
    body = total_bytes - WAV_HEADER_SIZE
    yield wav_header(body)
    noise = os.urandom(chunk)
    sent = 0
    while sent < body:
        piece = noise[: min(chunk, body - sent)]
        sent += len(piece)
        yield piece


def wav_bytes(total_bytes: int) -> bytes:
    return b"".join(wav_chunks(total_bytes))


# ------------------------------------------------------------------------------ statistics
def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "min": min(values) if values else float("nan"),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": max(values) if values else float("nan"),
        "mean": statistics.fmean(values) if values else float("nan"),
    }


def machine() -> dict[str, Any]:
    return {
        "host": platform.node(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }


def write_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    result = {"benchmark": name, "at": stamp(now), "machine": machine(), **result}
    path = RESULTS / f"{name}-{now.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    return path


def log(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Timed:
    """A proxy that counts and times every method call on the wrapped object (by name)."""

    def __init__(self, target: Any) -> None:
        self._target = target
        self.calls: dict[str, list[float]] = {}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            finally:
                self.calls.setdefault(name, []).append(time.perf_counter() - started)

        return timed

    def report(self, per: int) -> dict[str, dict[str, float]]:
        """Per method: calls per unit of work and milliseconds per unit of work."""
        return {
            name: {
                "calls_per_item": round(len(times) / per, 2),
                "ms_per_item": round(sum(times) * 1000 / per, 2),
            }
            for name, times in sorted(self.calls.items())
        }

    def reset(self) -> None:
        self.calls.clear()


# ------------------------------------------------------------------ callvault in-process
def call_ended(call_id: str, uri: str, **kwargs: Any) -> Any:
    """A parsed ``call.ended`` (what the ingest input hands the bus)."""
    from workers.domain.model import CallEnded

    return CallEnded.from_data(str(uuid.uuid4()), call_data(call_id, uri, **kwargs))


def store_calls(container: Any, call_ids: list[str], audio: bytes, workers: int) -> float:
    """Land the audio and store each call through ``container.messagebus`` (``StoreCall``, the
    command the ingest agent sends), ``workers`` at once; returns the seconds the stores took."""
    from concurrent.futures import ThreadPoolExecutor

    from workers.domain.messages import StoreCall

    settings = container.settings
    uris = [land(container.objects, settings.landing_bucket, audio) for _ in call_ids]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = list(
            pool.map(
                lambda pair: container.messagebus.handle(StoreCall(call_ended(*pair))),
                zip(call_ids, uris, strict=True),
            )
        )
    elapsed = time.perf_counter() - started
    if set(outcomes) != {"stored"}:
        raise RuntimeError(f"stores answered {sorted(set(outcomes))}")
    return elapsed


def land(objects: Any, bucket: str, audio: bytes) -> str:
    """Put audio in the landing bucket as a telephony system would; returns its s3:// URI."""
    import io

    key = f"incoming/{uuid.uuid4()}.wav"
    objects.client.put_object(
        bucket, key, io.BytesIO(audio), len(audio), content_type="application/octet-stream"
    )
    return f"s3://{bucket}/{key}"
