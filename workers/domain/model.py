"""The things callvault keeps and the commands that change them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from .calendar import LocalCalendar
from .errors import SchemaViolation
from .identifiers import Subject, normalize_email, normalize_exact, normalize_phone
from .keyed import Mac, keyed
from .messages import (
    Event,
    HoldPlaced,
    HoldReleased,
    LegalHoldsChanged,
    PurgesScheduled,
    RecordingDue,
    RecordingPurged,
    RecordingsFreed,
    RecordingStored,
    RequestAnswered,
)
from .retention import IsoDuration, as_utc, parse_timestamp

DSR_DEADLINE = IsoDuration.parse("P1M")  # GDPR Art. 12(3): one month from receipt


def recording_id_for(key: Mac, call_id: str) -> str:
    """One call_id always maps to the same recording_id, on every worker. Keyed, because PBXs
    build call ids from phone numbers and a public derivation could be reversed by guessing."""
    (digest,) = keyed(key, "recording", [call_id])
    return str(uuid.UUID(bytes=digest[:16], version=5))


def call_digest(key: Mac, call_id: str) -> str:
    """The only form in which a call id outlives its recording (tombstones, discards)."""
    return call_digests(key, [call_id])[0]


def call_digests(key: Mac, call_ids: Sequence[str]) -> list[str]:
    return [d.hex() for d in keyed(key, "call", call_ids)]


def collected_times(recordings: Sequence[Recording]) -> tuple[datetime, ...]:
    """The first and the last of the recordings' collection times: the monthly partitions
    between them hold every one (a purge searches no others)."""
    times = [r.collected_at for r in recordings]
    return tuple(sorted({min(times), max(times)}))


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


# Deadlines and retention are counted from a time (and times are shown in UTC): one outside
# these leaves no room to count, or to convert.
EARLIEST_TIME, LATEST_TIME = datetime(1900, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC)


def _timestamp(data: dict[str, Any], name: str) -> datetime:
    try:
        moment = parse_timestamp(str(data[name]))
    except (KeyError, ValueError) as exc:
        raise SchemaViolation(f"{name} is not an RFC 3339 timestamp with offset") from exc
    if not EARLIEST_TIME <= moment < LATEST_TIME:
        raise SchemaViolation(
            f"{name} is not within the years {EARLIEST_TIME.year}-{LATEST_TIME.year - 1}"
        )
    return moment


class RecordingStatus(StrEnum):
    STORED = "stored"
    PURGING = "purging"  # data key destroyed; object versions being deleted
    PURGED = "purged"  # tombstone: ids, dates, sha256, a keyed digest of the call id


class PurgeReason(StrEnum):
    RETENTION = "retention"
    ERASURE = "erasure"
    OBJECTION = "objection"


class Verdict(StrEnum):
    """What a purge may do with one recording."""

    PURGE = "purged"
    ALREADY_PURGED = "already_purged"
    HELD = "held"
    NOT_DUE = "not_due"
    UNKNOWN = "unknown"


class Aggregate:
    """Remembers which attributes its methods changed, so that a repository writes only those
    columns (never a whole row read earlier), and the events they recorded, so that the unit
    of work writes their audit, outbox and follow-up rows in the same transaction."""

    def _set(self, **values: Any) -> None:
        for name, value in values.items():
            setattr(self, name, value)
        self.__dict__.setdefault("_changed", set()).update(values)

    def _record(self, event: Event) -> None:
        self.__dict__.setdefault("_events", []).append(event)

    def collect(self) -> tuple[dict[str, Any], list[Event]]:
        """The changed attributes and the recorded events - each handed out once."""
        changed = {name: getattr(self, name) for name in sorted(self.__dict__.get("_changed", ()))}
        self.__dict__.pop("_changed", None)
        return changed, self.__dict__.pop("_events", [])


@dataclass(frozen=True)
class StoredAudio:
    """What the vault holds for one recording, as measured while it streamed in."""

    size_bytes: int
    sha256: str
    content_type: str
    object_version: str | None
    duration_seconds: float | None = None
    channels: int | None = None


@dataclass(frozen=True)
class Sealed:
    """A recording's secrets: its data key wrapped by a master key, and the customer's
    personal data sealed with the data key (both opaque to the domain)."""

    wrapped_key: bytes
    master_key_id: str | None
    customer: bytes | None


@dataclass
class Recording(Aggregate):
    recording_id: str
    call_id: str | None  # None once purged: the tombstone keeps only call_digest
    call_digest: str  # keyed digest of the call id: finds repeats of a purged call
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
    object_version: str | None = None
    duration_seconds: float | None = None  # read from the audio's headers as it streamed in
    channels: int | None = None  # 2 for dual-channel (caller and agent) recordings
    wrapped_key: bytes | None = None
    master_key_id: str | None = None
    customer_sealed: bytes | None = None
    restricted: bool = False
    held: bool = False
    legal_hold: bool = False  # the store's object legal hold is (believed) on
    due_announced_at: datetime | None = None
    purge_reason: PurgeReason | None = None
    versions_deleted: int | None = None
    purged_at: datetime | None = None
    source_event_id: str | None = None

    @classmethod
    def store(
        cls,
        call: CallEnded,
        *,
        recording_id: str,
        call_digest: str,
        policy: IsoDuration,
        audio: StoredAudio,
        sealed: Sealed,
        held: bool,
        now: datetime,
    ) -> Recording:
        recording = cls(
            recording_id=recording_id,
            call_id=call.call_id,
            call_digest=call_digest,
            tenant=call.tenant,
            direction=call.direction.value,
            agent_id=call.agent_id,
            started_at=as_utc(call.started_at),
            collected_at=call.collected_at,
            retention_due_at=policy.after(call.collected_at),
            policy=policy.text,
            status=RecordingStatus.STORED,
            object_key=object_key_for(recording_id),
            stored_at=now,
            size_bytes=audio.size_bytes,
            sha256=audio.sha256,
            content_type=audio.content_type,
            object_version=audio.object_version,
            duration_seconds=audio.duration_seconds,
            channels=audio.channels,
            wrapped_key=sealed.wrapped_key,
            master_key_id=sealed.master_key_id,
            customer_sealed=sealed.customer,
            held=held,
            source_event_id=call.event_id,
        )
        recording._record(RecordingStored(replace(recording)))
        if held:
            recording._record(LegalHoldsChanged((recording_id,)))
        return recording

    @property
    def alive(self) -> bool:
        return self.status is RecordingStatus.STORED

    def announce_due(self, now: datetime) -> None:
        self._set(due_announced_at=now)
        self._record(RecordingDue(replace(self), now))

    def verdict(self, reason: PurgeReason, now: datetime, *, covered: bool) -> Verdict:
        """Whether a purge for ``reason`` may go ahead now; ``covered`` says whether a hold in
        force covers the recording, as read under the recording's row lock."""
        if self.status is RecordingStatus.PURGED:
            return Verdict.ALREADY_PURGED
        if self.status is RecordingStatus.PURGING:
            return Verdict.PURGE  # finish what a crash interrupted: the key is gone already
        if covered:
            return Verdict.HELD
        if reason is PurgeReason.RETENTION and self.retention_due_at > now:
            return Verdict.NOT_DUE  # the policy was lengthened after the announcement
        return Verdict.PURGE

    def postpone(self) -> None:
        """The due date moved into the future: announce it again when it comes."""
        self._set(due_announced_at=None)

    def shred(self, reason: PurgeReason, versions: int) -> None:
        """Destroy the data key: from now on no copy of the ciphertext can be read."""
        if self.status is RecordingStatus.STORED:
            self._set(
                status=RecordingStatus.PURGING,
                wrapped_key=None,
                purge_reason=reason,
                versions_deleted=versions,
            )

    def tombstone(self, now: datetime) -> None:
        """What remains after a purge: nothing that can identify or reach the subject."""
        call_id = self.call_id or ""
        self._set(
            status=RecordingStatus.PURGED,
            call_id=None,
            agent_id=None,
            wrapped_key=None,
            customer_sealed=None,
            source_event_id=None,
            purged_at=now,
            held=False,
        )
        self._record(RecordingPurged(replace(self), call_id))

    def set_held(self, held: bool) -> bool:
        """Follow the holds in force; returns whether the flag changed."""
        if self.held == held or self.status is not RecordingStatus.STORED:
            return False
        self._set(held=held)
        self._record(LegalHoldsChanged((self.recording_id,)))
        return True

    def note_legal_hold(self, on: bool) -> None:
        if self.legal_hold != on:
            self._set(legal_hold=on)

    def restrict(self, restricted: bool) -> None:
        if self.restricted != restricted:
            self._set(restricted=restricted)

    def reseal(self, customer: bytes) -> None:
        self._set(customer_sealed=customer)

    def rewrap(self, wrapped_key: bytes, master_key_id: str) -> None:
        """The same data key, wrapped under another master key (a master-key rotation)."""
        if self.wrapped_key is not None:
            self._set(wrapped_key=wrapped_key, master_key_id=master_key_id)

    def rekey_call(self, call_digest: str) -> None:
        """The call digest under a new hash key (a hash-key rotation)."""
        self._set(call_digest=call_digest)


def purge_reason_for(dsr_type: str) -> PurgeReason:
    return PurgeReason.OBJECTION if dsr_type == "objection" else PurgeReason.ERASURE


CALL_ID = "call_id"  # the kind of a call hold's sealed identifiers (see Hold.identifiers)


class HoldScopeKind(StrEnum):
    RECORDINGS = "recording_ids"
    CALLS = "call_ids"
    SUBJECT = "subject"


@dataclass
class Hold(Aggregate):
    """A legal hold: while active, the recordings it covers are never purged. ``reason`` and
    ``case_ref`` are staff's free text: kept sealed at rest, never emitted anywhere."""

    hold_id: str
    reason: str
    case_ref: str | None
    scope_kind: HoldScopeKind
    targets: tuple[str, ...] = ()  # canonical recording ids, or keyed digests of call ids
    subject_digests: frozenset[bytes] = field(default_factory=frozenset)
    placed_at: datetime | None = None
    released_at: datetime | None = None
    # What a subject or call hold names, as (kind, value) pairs - a subject's normalised
    # identifiers, or ("call_id", id) - kept only sealed at rest and only while the hold is in
    # force, so that a hash-key rotation can re-compute its digests.
    identifiers: frozenset[tuple[str, str]] = field(default_factory=frozenset)

    @property
    def active(self) -> bool:
        return self.placed_at is not None and self.released_at is None

    def covers(self, recording: Recording, recording_digests: frozenset[bytes]) -> bool:
        if not self.active:
            return False
        if self.scope_kind is HoldScopeKind.RECORDINGS:
            return recording.recording_id in self.targets
        if self.scope_kind is HoldScopeKind.CALLS:
            return recording.call_digest in self.targets
        return bool(self.subject_digests & recording_digests)

    def place(self, now: datetime, covered: tuple[str, ...], by: str | None = None) -> None:
        self._set(placed_at=now, released_at=None)
        self._record(HoldPlaced(replace(self), covered, now, by))

    def release(self, now: datetime) -> None:
        self._set(released_at=now, identifiers=frozenset())  # identifiers kept no longer

    def freed(self, recordings: list[Recording], now: datetime, by: str | None = None) -> None:
        """Record what the release freed: erasures waiting for these recordings resume, and
        those announced due while held are purged now (they are not announced twice)."""
        ids = tuple(r.recording_id for r in recordings)
        self._record(HoldReleased(self.hold_id, ids, now, by))
        if ids:
            self._record(RecordingsFreed(ids))
        due = [
            r for r in recordings if r.due_announced_at is not None and r.retention_due_at <= now
        ]
        if due:
            due_ids = tuple(r.recording_id for r in due)
            self._record(PurgesScheduled(due_ids, PurgeReason.RETENTION, collected_times(due)))

    @classmethod
    def released_before_placed(cls, hold_id: str, now: datetime) -> Hold:
        """A release that arrived first (out-of-order delivery): remembered, so the late
        'placed' command holds nothing."""
        hold = cls(hold_id, "released before placed", None, HoldScopeKind.CALLS)
        hold._set(released_at=now)
        return hold

    def extend_subject(self, digests: frozenset[bytes]) -> None:
        """A subject hold follows the person through a rectification of their identifiers."""
        if self.scope_kind is HoldScopeKind.SUBJECT and not digests <= self.subject_digests:
            self._set(subject_digests=self.subject_digests | digests)


def canonical_recording_id(text: str) -> str:
    """Recording ids compare as UUIDs (upper-case input is valid); anything else as given."""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return text


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
    tenant: str | None = None  # when given, matching is limited to this tenant
    language: str | None = None  # of the answer's letters; None: the default language

    def deadline(self, calendar: LocalCalendar) -> datetime:
        """One calendar month from receipt, on the calendar of the people answering it."""
        return calendar.after(DSR_DEADLINE, self.received_at)

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
            tenant=data.get("tenant"),
            language=data.get("language"),
        )


PROCESSING = "processing"


@dataclass
class RequestRecord(Aggregate):
    """A data-subject request as callvault keeps it: the recordings it matched (so that a
    redelivery after a crash finishes the same set), the ones still waiting for a hold, and
    the last answer given. Call ids (which PBXs may build from phone numbers) are kept only
    while the request is open; the answer kept afterwards names recordings by id."""

    request_id: str
    dsr_type: str
    status: str
    received_at: datetime | None
    due_at: datetime | None
    completed_at: datetime | None = None
    matched: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()  # held recordings an erasure still waits for
    result: dict[str, Any] = field(default_factory=dict)
    tenant: str | None = None
    language: str | None = None  # as the request asked; None: the default language

    @property
    def answered(self) -> bool:
        return self.status != PROCESSING

    @property
    def call_ids(self) -> dict[str, str]:
        """Recording id to call id, for the answers of an open request."""
        found: dict[str, str] = dict(self.result.get("call_ids") or {})
        for outcome in self.result.get("recordings") or ():
            if outcome.get("call_id"):
                found.setdefault(outcome["recording_id"], outcome["call_id"])
        return found

    @classmethod
    def begin(
        cls, request: DsrRequest, matched: dict[str, str], calendar: LocalCalendar
    ) -> RequestRecord:
        return cls(
            request.request_id,
            request.type.value,
            PROCESSING,
            request.received_at,
            request.deadline(calendar),
            matched=tuple(matched),
            result={"call_ids": matched},
            tenant=request.tenant,
            language=request.language,
        )

    @classmethod
    def rejected(cls, command: Any, calendar: LocalCalendar) -> RequestRecord:
        received = command.received_at
        return cls(
            command.request_id,
            command.dsr_type or "unknown",
            PROCESSING,
            received,
            calendar.after(DSR_DEADLINE, received) if received else None,
        )

    def attach(self, late: dict[str, str]) -> None:
        """Recordings stored after the request that it covers (recording id -> call id)."""
        new = {rid: cid for rid, cid in late.items() if rid not in self.matched}
        if new:
            call_ids = dict(self.result.get("call_ids") or {}) | new
            self._set(
                matched=self.matched + tuple(new),
                pending=self.pending + tuple(new),
                result=self.result | {"call_ids": call_ids},
            )

    def answer(
        self,
        status: DsrStatus,
        data: dict[str, Any],
        now: datetime,
        *,
        pending: tuple[str, ...] = (),
        revision: str = "",
        notes: dict[str, Any] | None = None,
    ) -> None:
        """Answer; ``notes`` are kept with the answer but not sent (the v1 event has no field
        for them), e.g. the recipients an erasure must be passed on to (Art. 19)."""
        kept = (data if pending else _without_call_ids(data)) | (notes or {})
        self._set(status=status.value, result=kept, completed_at=now, pending=pending)
        outcomes = tuple(data.get("recordings", ()))
        self._record(
            RequestAnswered(
                self.request_id, self.dsr_type, status.value, data, revision, now, outcomes
            )
        )


def _without_call_ids(data: dict[str, Any]) -> dict[str, Any]:
    outcomes = [{k: v for k, v in o.items() if k != "call_id"} for o in data.get("recordings", ())]
    return data | {"recordings": outcomes}
