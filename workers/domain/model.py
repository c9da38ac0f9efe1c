"""The things callvault keeps and the commands that change them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from .errors import SchemaViolation
from .identifiers import Subject, normalize_email, normalize_exact, normalize_phone
from .retention import IsoDuration, as_utc, parse_timestamp

# A fixed namespace so that one call_id always maps to the same recording_id, on every worker.
RECORDING_NAMESPACE = uuid.UUID("6f1c8a52-3c1e-4f53-9a57-2b9e4c1d0a11")
DSR_DEADLINE = IsoDuration.parse("P1M")  # GDPR Art. 12(3): one month from receipt


def recording_id_for(call_id: str) -> str:
    return str(uuid.uuid5(RECORDING_NAMESPACE, call_id))


def object_key_for(recording_id: str) -> str:
    """The vault key: derived from callvault's own id only, never from anything a caller sent."""
    return f"recordings/{recording_id[:2]}/{recording_id}.cva"


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


@dataclass(frozen=True)
class AudioSource:
    uri: str
    content_type: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class Customer:
    name: str | None = None
    email: str | None = None
    customer_id: str | None = None
    order_ids: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "email": self.email,
            "customer_id": self.customer_id,
            "order_ids": list(self.order_ids),
        }


@dataclass(frozen=True)
class CallEnded:
    """A call-ended event from the telephony system, already checked against its schema."""

    event_id: str
    call_id: str
    tenant: str
    direction: Direction
    caller: str
    callee: str
    agent_id: str | None
    started_at: datetime
    ended_at: datetime
    notice_played: bool
    audio: AudioSource
    customer: Customer | None

    @property
    def customer_number(self) -> str:
        """The customer party: the caller of an inbound call, the callee of an outbound one."""
        return self.caller if self.direction is Direction.INBOUND else self.callee

    @property
    def collected_at(self) -> datetime:
        return as_utc(self.ended_at)

    def subject_pairs(self, default_region: str) -> set[tuple[str, str]]:
        """Every identifier of the customer, normalised for keyed look-up."""
        pairs: set[tuple[str, str]] = set()
        phone = normalize_phone(self.customer_number, default_region)
        if phone:
            pairs.add(("phone", phone))
        if self.customer is not None:
            email = normalize_email(self.customer.email or "")
            if email:
                pairs.add(("email", email))
            customer_id = normalize_exact(self.customer.customer_id or "")
            if customer_id:
                pairs.add(("customer_id", customer_id))
            pairs.update(("order_id", o) for o in self.customer.order_ids if normalize_exact(o))
        return pairs

    @classmethod
    def from_data(cls, event_id: str, data: dict[str, Any]) -> CallEnded:
        started = _timestamp(data, "started_at")
        ended = _timestamp(data, "ended_at")
        if ended < started:
            raise SchemaViolation("ended_at is before started_at")
        recording = data["recording"]
        customer = data.get("customer")
        return cls(
            event_id=event_id,
            call_id=data["call_id"],
            tenant=data.get("tenant") or "default",
            direction=Direction(data["direction"]),
            caller=data["caller"],
            callee=data["callee"],
            agent_id=data.get("agent_id"),
            started_at=started,
            ended_at=ended,
            notice_played=bool(data["notice_played"]),
            audio=AudioSource(
                uri=recording["uri"],
                content_type=recording.get("content_type"),
                size_bytes=recording.get("size_bytes"),
                sha256=(recording.get("sha256") or "").lower() or None,
            ),
            customer=None
            if customer is None
            else Customer(
                name=customer.get("name"),
                email=customer.get("email"),
                customer_id=customer.get("customer_id"),
                order_ids=tuple(customer.get("order_ids") or ()),
            ),
        )


def _timestamp(data: dict[str, Any], name: str) -> datetime:
    try:
        return parse_timestamp(str(data[name]))
    except (KeyError, ValueError) as exc:
        raise SchemaViolation(f"{name} is not an RFC 3339 timestamp with offset") from exc


class RecordingStatus(StrEnum):
    STORING = "storing"  # claimed; audio upload under way
    STORED = "stored"
    PURGING = "purging"  # data key destroyed; object versions being deleted
    PURGED = "purged"  # tombstone: ids, dates, sha256 - no personal data


class PurgeReason(StrEnum):
    RETENTION = "retention"
    ERASURE = "erasure"
    OBJECTION = "objection"


@dataclass
class Recording:
    recording_id: str
    call_id: str
    tenant: str
    direction: str
    agent_id: str | None
    started_at: datetime
    collected_at: datetime
    retention_due_at: datetime
    policy: str
    status: RecordingStatus
    object_key: str
    stored_at: datetime | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    content_type: str | None = None
    wrapped_key: bytes | None = None
    customer_sealed: bytes | None = None
    restricted: bool = False
    held: bool = False
    due_announced_at: datetime | None = None
    purge_reason: PurgeReason | None = None
    versions_deleted: int | None = None
    purged_at: datetime | None = None
    source_event_id: str | None = None
    duration_seconds: float | None = None  # telephony: read from the audio while it is stored
    channels: int | None = None  # telephony: 2 for dual-channel (caller and agent) recordings

    def tombstone(self, reason: PurgeReason, versions: int, purged_at: datetime) -> Recording:
        """What remains after a purge: nothing that can identify or reach the subject."""
        return replace(
            self,
            status=RecordingStatus.PURGED,
            agent_id=None,
            wrapped_key=None,
            customer_sealed=None,
            purge_reason=reason,
            versions_deleted=versions,
            purged_at=purged_at,
        )


def new_recording(call: CallEnded, due_at: datetime, policy: IsoDuration) -> Recording:
    recording_id = recording_id_for(call.call_id)
    return Recording(
        recording_id=recording_id,
        call_id=call.call_id,
        tenant=call.tenant,
        direction=call.direction.value,
        agent_id=call.agent_id,
        started_at=as_utc(call.started_at),
        collected_at=call.collected_at,
        retention_due_at=due_at,
        policy=policy.text,
        status=RecordingStatus.STORING,
        object_key=object_key_for(recording_id),
        source_event_id=call.event_id,
    )


class HoldScopeKind(StrEnum):
    RECORDINGS = "recording_ids"
    CALLS = "call_ids"
    SUBJECT = "subject"


@dataclass(frozen=True)
class Hold:
    """A legal hold: while active, the recordings it covers are never purged."""

    hold_id: str
    reason: str
    case_ref: str | None
    scope_kind: HoldScopeKind
    targets: tuple[str, ...] = ()  # recording or call ids
    subject_digests: frozenset[bytes] = field(default_factory=frozenset)
    placed_at: datetime | None = None
    released_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.placed_at is not None and self.released_at is None

    def covers(self, recording: Recording, recording_digests: frozenset[bytes]) -> bool:
        if not self.active:
            return False
        if self.scope_kind is HoldScopeKind.RECORDINGS:
            return recording.recording_id in self.targets
        if self.scope_kind is HoldScopeKind.CALLS:
            return recording.call_id in self.targets
        return bool(self.subject_digests & recording_digests)


def parse_subject(data: dict[str, Any]) -> Subject:
    def items(name: str) -> tuple[str, ...]:
        return tuple(str(v) for v in data.get(name) or ())

    return Subject(
        phone_numbers=items("phone_numbers"),
        emails=items("emails"),
        customer_ids=items("customer_ids"),
        order_ids=items("order_ids"),
    )


class DsrType(StrEnum):
    ACCESS = "access"
    ERASURE = "erasure"
    RECTIFICATION = "rectification"
    RESTRICTION = "restriction"
    OBJECTION = "objection"
    PORTABILITY = "portability"


class DsrStatus(StrEnum):
    COMPLETED = "completed"
    PARTIAL = "partial"
    REJECTED = "rejected"


class Outcome(StrEnum):
    ERASED = "erased"
    EXPORTED = "exported"
    RESTRICTED = "restricted"
    UNRESTRICTED = "unrestricted"
    RECTIFIED = "rectified"
    HELD = "held"


@dataclass(frozen=True)
class DsrRequest:
    event_id: str
    request_id: str
    type: DsrType
    received_at: datetime
    identity_verified: bool
    subject: Subject
    rectify_name: str | None = None
    rectify_email: str | None = None
    lift_restriction: bool = False

    @property
    def due_at(self) -> datetime:
        return DSR_DEADLINE.after(self.received_at)

    @classmethod
    def from_data(cls, event_id: str, data: dict[str, Any]) -> DsrRequest:
        rectification = data.get("rectification") or {}
        return cls(
            event_id=event_id,
            request_id=data["request_id"],
            type=DsrType(data["type"]),
            received_at=_timestamp(data, "received_at"),
            identity_verified=bool(data["identity_verified"]),
            subject=parse_subject(data["subject"]),
            rectify_name=rectification.get("name"),
            rectify_email=rectification.get("email"),
            lift_restriction=data.get("restriction", "apply") == "lift",
        )


@dataclass(frozen=True)
class RecordingOutcome:
    recording_id: str
    call_id: str
    outcome: Outcome

    def as_dict(self) -> dict[str, str]:
        return {"recording_id": self.recording_id, "call_id": self.call_id, "outcome": self.outcome}
