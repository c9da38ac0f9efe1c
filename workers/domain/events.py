"""CloudEvents that callvault writes. Output data carry ids, dates and digests - never a
phone number, a name or an e-mail (the dead-letter copy of a rejected input aside)."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .model import PurgeReason, Recording
from .retention import lag_seconds, rfc3339

EVENT_NAMESPACE = uuid.UUID("0b7e0c57-58f4-4d8c-8e39-5f0f1d6ab1c2")
# The CloudEvents Kafka protocol binding: every record callvault produces is in structured
# content mode and says so in its content-type header.
STRUCTURED_HEADER = ("content-type", b"application/cloudevents+json; charset=UTF-8")
# A dead letter keeps the rejected record's own headers under this prefix (binary mode needs
# them), so that `callvault deadletter replay` sends the record as it came.
ORIGINAL_HEADER_PREFIX = "callvault-original-"

STORED = "callvault.recording.stored.v1"
DUE = "callvault.retention.due.v1"
PURGED = "callvault.recording.purged.v1"
DISCARDED = "callvault.recording.discarded.v1"
DSR_COMPLETED = "callvault.dsr.completed.v1"
DEADLETTER = "callvault.deadletter.v1"
AUDIT_CHECKPOINT = "callvault.audit.checkpoint.v1"
CALL_ENDED = "callvault.call.ended.v1"
DSR_REQUESTED = "callvault.dsr.requested.v1"
HOLD_PLACED = "callvault.hold.placed.v1"
HOLD_RELEASED = "callvault.hold.released.v1"
SCHEMA_BASE = "https://callvault.dev/schemas/"  # the $id prefix of schemas/*.schema.json


@dataclass(frozen=True)
class OutboundEvent:
    """An event to publish: the logical topic (a settings name such as ``recordings_stored``),
    the Kafka key, the event's type, the id of what it is about (its stable event id derives
    from it), when it happened and its data. ``subject`` (the entity the event is about, by
    default ``about``) lets a consumer route without reading ``data``. On the wire it is a
    CloudEvent: the Kafka codec's envelope (``workers.adapters.kafka.codec.outbound``)."""

    topic: str
    key: str
    type: str
    about: str
    at: datetime
    data: dict[str, Any]
    subject: str | None = None

    @property
    def id(self) -> str:
        return event_id(self.type, self.about)


def event_id(event_type: str, *parts: str) -> str:
    """A deterministic id: a re-published event keeps its id, so consumers can drop repeats."""
    return str(uuid.uuid5(EVENT_NAMESPACE, "/".join((event_type, *parts))))


def dataschema(event_type: str) -> str:
    return f"{SCHEMA_BASE}{event_type}.schema.json"


def stored_data(rec: Recording) -> dict[str, Any]:
    assert rec.stored_at is not None
    return {
        "recording_id": rec.recording_id,
        "call_id": rec.call_id,
        "tenant": rec.tenant,
        "collected_at": rfc3339(rec.collected_at),
        "stored_at": rfc3339(rec.stored_at),
        "retention_due_at": rfc3339(rec.retention_due_at),
        "size_bytes": rec.size_bytes,
        "sha256": rec.sha256,
        "content_type": rec.content_type,
    } | {  # optional audio metadata, present when the format carries it
        name: value
        for name, value in (("duration_seconds", rec.duration_seconds), ("channels", rec.channels))
        if value is not None
    }


def due_data(rec: Recording) -> dict[str, Any]:
    return {
        "recording_id": rec.recording_id,
        "call_id": rec.call_id,
        "tenant": rec.tenant,
        "due_at": rfc3339(rec.retention_due_at),
        "policy": rec.policy,
    }


def purged_data(rec: Recording, call_id: str) -> dict[str, Any]:
    """The output event of a purge; ``call_id`` is the one the tombstone no longer keeps."""
    assert rec.purged_at is not None
    assert rec.purge_reason is not None
    is_retention = rec.purge_reason is PurgeReason.RETENTION
    return {
        "recording_id": rec.recording_id,
        "call_id": call_id,
        "reason": rec.purge_reason.value,
        "due_at": rfc3339(rec.retention_due_at) if is_retention else None,
        "purged_at": rfc3339(rec.purged_at),
        "lag_seconds": max(0.0, lag_seconds(rec.retention_due_at, rec.purged_at))
        if is_retention
        else None,
        "versions_deleted": rec.versions_deleted or 0,
        "sha256": rec.sha256,
    }


def discarded_data(call_id: str, tenant: str) -> dict[str, Any]:
    return {"call_id": call_id, "tenant": tenant, "reason": "notice_not_played"}


def receipt(rec: Recording) -> dict[str, Any]:
    """One line of a deletion certificate: proof of a purge that names no one."""
    assert rec.purged_at is not None
    return {
        "recording_id": rec.recording_id,
        "sha256": rec.sha256,
        "versions_deleted": rec.versions_deleted or 0,
        "purged_at": rfc3339(rec.purged_at),
    }


def deadletter_data(
    *,
    source_topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    error_code: str,
    error: str,
    value: bytes,
    failed_at: datetime,
    original_event_id: str | None,
) -> dict[str, Any]:
    return {
        "source_topic": source_topic,
        "partition": partition,
        "offset": offset,
        "key": None if key is None else key.decode("utf-8", errors="replace"),
        "error_code": error_code,
        "error": error,
        "value_b64": base64.b64encode(value).decode(),
        "failed_at": rfc3339(failed_at),
        "event_id": original_event_id,
    }
