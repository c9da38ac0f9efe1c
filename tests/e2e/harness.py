"""Running callvault as the operators do - ``callvault migrate`` and ``callvault worker`` as
processes - and talking to it only through Kafka, S3 and its /metrics endpoint."""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from testbed.probes import metrics_text, wait_for
from testbed.stack import Instance, stop_processes
from workers.adapters.kafka import codec
from workers.bootstrap import object_store
from workers.domain.audio import pcm_wav
from workers.settings import Settings, load_settings

CALLVAULT = str(Path(sys.executable).parent / "callvault")


def make_wav(seconds: float = 1.0, rate: int = 8000, tone: float = 440.0) -> bytes:
    frames = b"".join(
        struct.pack("<h", int(6000 * math.sin(2 * math.pi * tone * i / rate)))
        for i in range(int(rate * seconds))
    )
    return pcm_wav(frames, rate)


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def cloudevent(event_type: str, data: dict[str, Any], event_id: str | None = None) -> bytes:
    """An input event, in callvault's envelope (the Kafka codec's)."""
    envelope = codec.envelope(event_type, data, source="urn:test:telephony", id=event_id)
    return codec.encode(envelope)


class Callvault:
    """One isolated instance: its settings, worker processes, producer and output readers."""

    def __init__(self, instance: Instance, log_dir: Path) -> None:
        self.instance = instance
        self.env = {**os.environ, **instance.env}
        self.settings: Settings = load_settings(**instance.settings_kwargs())
        self.objects = object_store(self.settings)
        self.log_dir = log_dir
        self.workers: list[subprocess.Popen[bytes]] = []
        self._producer: KafkaProducer | None = None

    # processes -------------------------------------------------------------------------
    def migrate(self) -> dict[str, Any]:
        done = subprocess.run(
            [CALLVAULT, "migrate", "--json"],
            env={**self.env, "CALLVAULT_DATABASE_ADMIN_URL": self.instance.owner_url},
            capture_output=True,
            check=True,
            timeout=120,
        )
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    def start_worker(
        self, *args: str, metrics_port: int | None = None, extra_env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        env = dict(self.env)
        if metrics_port is not None:
            env["CALLVAULT_METRICS_PORT"] = str(metrics_port)
        env.update(extra_env or {})
        log = (self.log_dir / f"worker-{len(self.workers)}.log").open("wb")
        process = subprocess.Popen(
            [CALLVAULT, "worker", *args], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        self.workers.append(process)
        port = int(env["CALLVAULT_METRICS_PORT"])

        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"the worker exited with {process.returncode}")
            return self.metric("callvault_worker_ready", port) == 1

        wait_for(ready, 90, "the worker's readiness (callvault_worker_ready 1)")
        return process

    def kill(self, process: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> int:
        process.send_signal(sig)
        return process.wait(timeout=60)

    def stop_all(self) -> None:
        stop_processes(self.workers)
        if self._producer is not None:
            self._producer.close()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("*.log")))

    # inputs ----------------------------------------------------------------------------
    @property
    def producer(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = KafkaProducer(
                bootstrap_servers=self.settings.kafka_bootstrap, acks="all"
            )
        return self._producer

    def send(self, logical: str, key: str | None, value: bytes) -> None:
        self.producer.send(
            self.instance.topic(logical), key=key.encode() if key is not None else None, value=value
        )
        self.producer.flush()

    def land(self, audio: bytes, suffix: str = ".wav") -> str:
        key = f"incoming/{uuid.uuid4()}{suffix}"
        self.objects.put_stream(
            self.settings.landing_bucket, key, [audio], content_type="application/octet-stream"
        )
        return f"s3://{self.settings.landing_bucket}/{key}"

    def call(
        self,
        call_id: str,
        audio: bytes | None = None,
        *,
        uri: str | None = None,
        direction: str = "inbound",
        caller: str = "+370 612 34567",
        callee: str = "+370 521 44500",
        notice: bool = True,
        declare: bool = True,
        ended: datetime | None = None,
        customer: dict[str, Any] | None = None,
        event_id: str | None = None,
        tenant: str | None = None,
        content_type: str | None = None,
    ) -> dict[str, Any]:
        """Publish a call-ended event (landing the audio first when given) and return its data."""
        ended = ended or datetime.now(UTC)
        recording: dict[str, Any] = {"uri": uri or self.land(audio or make_wav())}
        if content_type:
            recording["content_type"] = content_type
        if audio is not None and declare:
            recording.update(size_bytes=len(audio), sha256=hashlib.sha256(audio).hexdigest())
        data: dict[str, Any] = {
            "call_id": call_id,
            "direction": direction,
            "caller": caller,
            "callee": callee,
            "started_at": stamp(ended - timedelta(minutes=3)),
            "ended_at": stamp(ended),
            "notice_played": notice,
            "recording": recording,
        }
        if customer:
            data["customer"] = customer
        if tenant:
            data["tenant"] = tenant
        self.send("calls_ended", call_id, cloudevent("callvault.call.ended.v1", data, event_id))
        return data

    # outputs ---------------------------------------------------------------------------
    def read(
        self, logical: str, until: Callable[[list[dict[str, Any]]], bool], timeout: float = 90
    ) -> list[dict[str, Any]]:
        """Every event on an output topic, read from the start, once ``until`` holds."""
        consumer = KafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            enable_auto_commit=False,
            consumer_timeout_ms=500,
        )
        topic = self.instance.topic(logical)
        deadline = time.monotonic() + timeout
        try:
            partitions = None
            while partitions is None and time.monotonic() < deadline:
                partitions = consumer.partitions_for_topic(topic)
                if partitions is None:
                    time.sleep(0.5)
            consumer.assign([TopicPartition(topic, p) for p in sorted(partitions or ())])
            consumer.seek_to_beginning()
            seen: list[dict[str, Any]] = []
            while time.monotonic() < deadline:
                for message in consumer:
                    seen.append(json.loads(message.value))
                if until(seen):
                    return seen
            raise AssertionError(f"timed out on {logical}: {len(seen)} event(s) seen")
        finally:
            consumer.close()

    def metrics_text(self, port: int | None = None) -> str | None:
        return metrics_text(port or int(self.env["CALLVAULT_METRICS_PORT"]))

    def metric(self, name: str, port: int | None = None) -> float:
        text = self.metrics_text(port) or ""
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and (line[len(name)] in " {"):
                total += float(line.rsplit(" ", 1)[1])
        return total
