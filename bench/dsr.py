"""DSR erasure latency: ``dsr.requested`` published -> ``dsr.completed`` read back, through a
worker process, for subjects with 20 recordings each (stored for real through the ingest
pipeline, so their objects exist) among 1 million other recordings (bulk-generated)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

from testbed.stack import Instance
from workers.domain.retention import parse_timestamp

from . import bulk, common
from .common import Producer, Reader, log
from .ingest import AUDIO_BYTES, land

PER_SUBJECT = 20
ROLES = "ingest,retention,holds,dsr,outbox"
BIG_SUBJECT = 10_000  # the index of the subject with many recordings


def subject(k: int) -> dict[str, Any]:
    return {
        "phone": f"+3706{1_000_000 + k:07d}",
        "email": f"bench.subject{k}@example.com",
        "customer_id": f"bench-customer-{k}",
    }


def run(quick: bool, rebuild: bool = False) -> dict[str, Any]:
    inst = common.new_instance(common.ensure_stack(), "dsr")
    try:
        return measure(inst, quick)
    finally:
        common.drop_instance(inst)


def measure(inst: Instance, quick: bool) -> dict[str, Any]:
    """The erasure latencies on ``inst`` (migrated here; dropped by the caller)."""

    others = 50_000 if quick else 1_000_000
    common.migrate(inst)
    log(f"dsr: bulk-generating {others:,} other recordings")
    # no due/held rows: the scheduler must not start purging the generated rows meanwhile
    made = bulk.fill(
        inst.owner_url,
        others,
        due=0,
        held=0,
        announced=0,
        prefix="other-",
    )
    return {"bulk": made, **erasures(inst, quick, others)}


def erasures(inst: Instance, quick: bool, others: int) -> dict[str, Any]:
    """Subjects with 20 recordings (and one with many) ingested through a worker process on
    ``inst``, then erased one request at a time."""
    from workers.bootstrap import object_store

    requests = 3 if quick else 20
    big = 100 if quick else 1000
    settings = inst.settings()
    objects = object_store(settings)
    audio = common.wav_bytes(AUDIO_BYTES)
    n_calls = requests * PER_SUBJECT
    uris = [land(objects, settings.landing_bucket, audio) for _ in range(n_calls + big)]
    producer = Producer(settings.kafka_bootstrap)
    # Every role but the scheduler's: its reconciliation pages through every row at start,
    # and the 1 M generated rows have no vault objects (1 M "missing" findings).
    common.start_worker(inst, "--only", ROLES)
    stored = Reader(settings.kafka_bootstrap, inst.topic("recordings_stored"))
    results = Reader(settings.kafka_bootstrap, inst.topic("dsr_results"))
    latencies: list[float] = []
    server_side: list[float] = []
    outcomes: list[dict[str, Any]] = []
    try:
        log(f"dsr: ingesting {n_calls} calls of {requests} subjects through the worker")
        topic = inst.topic("calls_ended")
        for k in range(requests):
            who = subject(k)
            for j in range(PER_SUBJECT):
                call_id = f"dsr-{k}-{j}"
                producer.send_call(
                    topic,
                    call_id,
                    uris[k * PER_SUBJECT + j],
                    caller=who["phone"],
                    customer={"email": who["email"], "customer_id": who["customer_id"]},
                )
        who = subject(BIG_SUBJECT)
        for j in range(big):
            call_id = f"dsr-big-{j}"
            producer.send_call(
                topic,
                call_id,
                uris[n_calls + j],
                caller=who["phone"],
                customer={"email": who["email"], "customer_id": who["customer_id"]},
            )
        producer.flush()
        # every call stored before the first erasure (else a late one makes an answer partial)
        stored.until(lambda ev: common.calls_in(ev) >= n_calls + big, 60 + n_calls + big)
        log(f"dsr: {requests} erasure requests, one at a time")
        dsr_topic = inst.topic("dsr_requests")
        for k in range(requests):
            request_id = f"bench-dsr-{k}-{uuid.uuid4().hex[:6]}"
            answer, seconds = erase(producer, results, dsr_topic, subject(k), request_id, 300)
            latencies.append(seconds)
            server_side.append(server_seconds(answer))
            outcomes.append({"status": answer["status"], "erased": erased_in(answer)})
        log(f"dsr: one erasure request for a subject with {big} recordings")
        request_id = f"bench-dsr-big-{uuid.uuid4().hex[:6]}"
        big_answer, seconds = erase(
            producer, results, dsr_topic, subject(BIG_SUBJECT), request_id, 600
        )
        big_result = {
            "recordings": big,
            "latency_s": round(seconds, 3),
            "server_side_s": round(server_seconds(big_answer), 3),
            "status": big_answer["status"],
            "erased": erased_in(big_answer),
        }
    finally:
        stored.close()
        results.close()
        producer.close()
        common.stop_workers(inst)
    left = sum(
        1
        for _ in objects.client.list_objects(
            settings.vault_bucket, prefix="recordings/", recursive=True, include_version=True
        )
    )
    erased = [o["erased"] for o in outcomes]
    return {
        "params": {
            "other_recordings": others,
            "requests": requests,
            "recordings_per_subject": PER_SUBJECT,
            "quick": quick,
        },
        "latency_s": {k: round(v, 3) for k, v in common.summary(latencies).items()},
        "server_side_s": {k: round(v, 3) for k, v in common.summary(server_side).items()},
        "latencies_s": [round(v, 3) for v in latencies],
        "per_recording_ms_p50": round(common.percentile(latencies, 50) / PER_SUBJECT * 1000, 1),
        "statuses": sorted({o["status"] for o in outcomes}),
        "erased_per_request": {"min": min(erased), "max": max(erased)},
        "vault_object_versions_left": left,
        "subject_with_many": big_result,
    }


def erase(
    producer: Producer,
    results: Reader,
    topic: str,
    who: dict[str, Any],
    request_id: str,
    timeout: float,
) -> tuple[dict[str, Any], float]:
    """Publish one erasure request and wait for its answer: (answer, seconds until read)."""
    data = {
        "request_id": request_id,
        "type": "erasure",
        "received_at": common.stamp(datetime.now(UTC)),
        "identity_verified": True,
        "subject": {"phone_numbers": [who["phone"]], "emails": [who["email"]]},
    }
    started = time.monotonic()
    producer.send(topic, request_id, common.cloudevent("callvault.dsr.requested.v1", data))
    producer.flush()
    done = results.until(lambda ev: any(e["data"]["request_id"] == request_id for e in ev), timeout)
    answer = next(e["data"] for _, e in results.seen if e["data"]["request_id"] == request_id)
    return answer, done - started


def server_seconds(answer: dict[str, Any]) -> float:
    completed = parse_timestamp(answer["completed_at"])
    return (completed - parse_timestamp(answer["received_at"])).total_seconds()


def erased_in(answer: dict[str, Any]) -> int:
    return sum(r["outcome"] == "erased" for r in answer["recordings"])


def rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    p, lat, many = result["params"], result["latency_s"], result["subject_with_many"]
    return [
        (
            "dsr",
            f"erasure latency, {many['recordings']} recs of one subject",
            f"{many['latency_s']:.2f} s ({many['erased']} erased, {many['status']})",
        ),
        (
            "dsr",
            f"erasure latency, {p['recordings_per_subject']} recs among "
            f"{p['other_recordings']:,} (n={p['requests']})",
            f"p50 {lat['p50']:.2f} s, p95 {lat['p95']:.2f} s "
            f"(~{result['per_recording_ms_p50']} ms/recording)",
        ),
        (
            "dsr",
            "erased per request / statuses",
            f"{result['erased_per_request']['min']}-{result['erased_per_request']['max']} / "
            f"{','.join(result['statuses'])}",
        ),
    ]
