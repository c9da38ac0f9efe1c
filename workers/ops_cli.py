"""What the ops commands read from Kafka: dead letters, consumer lag, the status screen."""

from __future__ import annotations

import base64
import json
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from .adapters.kafka import KafkaBus, LagProbe
from .logs import mask
from .settings import Settings


def read_dead_letters(settings: Settings, timeout_ms: int = 1500) -> list[dict[str, Any]]:
    topic = settings.topic_deadletter
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap.split(","),
        enable_auto_commit=False,
        consumer_timeout_ms=timeout_ms,
    )
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        consumer.seek_to_beginning()
        rows = []
        for message in consumer:
            data = json.loads(message.value).get("data", {})
            rows.append(
                {
                    "partition": message.partition,
                    "offset": message.offset,
                    "failed_at": data.get("failed_at", ""),
                    "error_code": data.get("error_code", ""),
                    "error": mask(str(data.get("error", ""))),
                    "source_topic": data.get("source_topic", ""),
                    "source_partition": data.get("partition"),
                    "source_offset": data.get("offset"),
                    "key": mask(str(data.get("key"))),
                    "value_b64": data.get("value_b64", ""),
                    "original_key": data.get("key"),
                }
            )
        return rows
    finally:
        consumer.close()


def replay_dead_letters(
    settings: Settings, positions: set[tuple[int, int]], error_code: str | None
) -> int:
    """Re-publish the chosen dead letters' original bytes; ``positions`` are (partition, offset)
    in the dead-letter topic. Handlers are idempotent, so replaying twice changes nothing."""
    chosen = [
        r
        for r in read_dead_letters(settings)
        if (r["partition"], r["offset"]) in positions
        or (error_code and r["error_code"] == error_code)
    ]
    bus = KafkaBus(settings.kafka_bootstrap, f"{settings.app_id}-replay")
    try:
        bus.publish(
            [
                (r["source_topic"], r["original_key"], base64.b64decode(r["value_b64"]))
                for r in chosen
            ]
        )
    finally:
        bus.close()
    return len(chosen)


def gather_status(container: Any) -> dict[str, Any]:
    from .services.ops import status_summary

    settings: Settings = container.settings
    report = status_summary(container.ctx)
    container.close()
    report["dead_letters"] = len(read_dead_letters(settings, timeout_ms=800))
    probe = LagProbe(settings.kafka_bootstrap, settings.app_id)
    try:
        inputs = [
            settings.topic_calls_ended,
            settings.topic_dsr_requests,
            settings.topic_holds_commands,
            settings.topic_retention_due,
        ]
        report["consumer_lag"] = {
            f"{t}[{p}]": lag for (t, p), lag in sorted(probe.measure(inputs).items())
        }
    finally:
        probe.close()
    return report


def render_status(report: dict[str, Any]) -> str:
    recordings = report["recordings"]
    lag = report.get("consumer_lag", {})
    lines = [
        "callvault status",
        "----------------",
        f"recordings stored      {recordings.get('stored', 0)}",
        f"  being stored         {recordings.get('storing', 0)}",
        f"  being purged         {recordings.get('purging', 0)}",
        f"  purged (tombstones)  {recordings.get('purged', 0)}",
        f"  held                 {recordings.get('held', 0)}",
        f"overdue (not held)     {report['overdue']}",
        f"oldest overdue         {report['oldest_overdue_seconds']:.0f} s",
        f"open DSRs              {report['open_dsr_requests']}",
        f"nearest DSR deadline   {report['nearest_dsr_deadline'] or '-'}",
        f"legal holds active     {report['holds_active']}",
        f"dead letters           {report['dead_letters']}",
        f"consumer lag (total)   {sum(lag.values())}",
    ]
    lines += [f"  {name:<30}{value}" for name, value in lag.items() if value]
    return "\n".join(lines)
