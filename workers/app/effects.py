"""What each domain event becomes when its unit of work commits: an audit entry (what a
regulator may ask to see), an outbound CloudEvent (what the outside world is told) and a
follow-up command (what callvault itself must do next) - all written in the same transaction
as the state change that raised the event.

Audit details and output events name recordings, requests and holds by callvault's ids;
never a phone number, a name, an e-mail, a raw call id or staff's free text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..domain import events as ce
from ..domain.messages import (
    AuditCheckpointed,
    CallDiscarded,
    Command,
    DataKeysRewrapped,
    DeleteExports,
    DigestsRekeyed,
    EraseLateRecordings,
    Event,
    ExportsDoomed,
    HashKeyRotated,
    HoldDriftRepaired,
    HoldPlaced,
    HoldReleased,
    KeysToSweep,
    LateRecordingFound,
    LegalHoldsChanged,
    MasterKeysRetired,
    PolicyApplied,
    PurgeRecordings,
    PurgesScheduled,
    RecordingDue,
    RecordingPurged,
    RecordingsFreed,
    RecordingStored,
    RequestAnswered,
    ResumeErasures,
    SweepPurgedKeys,
    SyncLegalHolds,
)
from ..domain.retention import rfc3339
from .console.messages import (
    AccountChanged,
    RecordingConsulted,
    RecordingsDisclosed,
    RequestRegistered,
)

ACCESS = "access"  # the audit action of a consultation; the access log indexes these entries


@dataclass(frozen=True)
class AuditRecord:
    action: str
    entity_id: str
    details: dict[str, Any]
    at: datetime


@dataclass
class Effects:
    audit: list[AuditRecord] = field(default_factory=list)
    outbound: list[ce.OutboundEvent] = field(default_factory=list)
    follow_ups: list[Command] = field(default_factory=list)


def effects_of(events: list[Event], now: datetime) -> Effects:
    """The rows to write for one commit's events, in the order the events were recorded;
    follow-ups of one kind are merged into one command per commit."""
    effects = Effects()
    for event in events:
        _audit(event, now, effects.audit)
        _outbound(event, now, effects.outbound)
    effects.follow_ups = _follow_ups(events)
    return effects


def _audit(event: Event, now: datetime, into: list[AuditRecord]) -> None:
    match event:
        case RecordingStored(recording=r):
            details: dict[str, Any] = {
                "sha256": r.sha256,
                "size_bytes": r.size_bytes,
                "retention_due_at": rfc3339(r.retention_due_at),
                "policy": r.policy,
                "held": r.held,
            }
            into.append(AuditRecord("store", r.recording_id, details, now))
        case CallDiscarded(call_digest=digest, at=at):
            into.append(AuditRecord("discard", digest, {"reason": "notice_not_played"}, at))
        case RecordingPurged(recording=r):
            details = {
                "reason": r.purge_reason.value if r.purge_reason else None,
                "sha256": r.sha256,
                "versions_deleted": r.versions_deleted,
                "due_at": rfc3339(r.retention_due_at),
            }
            into.append(AuditRecord("purge", r.recording_id, details, r.purged_at or now))
        case HoldPlaced(hold=hold, recording_ids=ids, at=at, by=by):
            details = {"scope": hold.scope_kind.value, "recording_ids": sorted(ids)}
            into.append(AuditRecord("hold_placed", hold.hold_id, details | _by(by), at))
        case HoldReleased(hold_id=hold_id, freed_ids=ids, at=at, by=by):
            details = {"recording_ids": sorted(ids)} | _by(by)
            into.append(AuditRecord("hold_released", hold_id, details, at))
        case HoldDriftRepaired(recording_ids=ids, at=at):
            into.append(AuditRecord("hold_drift_repaired", "holds", {"recording_ids": ids}, at))
        case RequestAnswered() as answer:
            outcomes = [
                {"recording_id": o["recording_id"], "outcome": o["outcome"]}
                for o in answer.outcomes
            ]
            details = {"type": answer.dsr_type, "status": answer.status}
            details["recordings"] = outcomes
            into.append(AuditRecord("dsr", answer.request_id, details, answer.at or now))
        case PolicyApplied(tenant=tenant, old=old, new=new, rescheduled=n, at=at):
            details = {"old": old, "new": new, "rescheduled": n}
            into.append(AuditRecord("policy", tenant, details, at))
        case _:
            _audit_keys(event, into)
            _audit_console(event, into)


def _by(staff: str | None) -> dict[str, str]:
    """Who acted, when a person of the console did (a Kafka command names nobody)."""
    return {"by": staff} if staff else {}


def _audit_keys(event: Event, into: list[AuditRecord]) -> None:
    """Key rotations: which data keys moved to which master key, which keys were retired,
    which recordings' digests were re-keyed (ids only; never a key or a check value)."""
    details: dict[str, Any]
    match event:
        case DataKeysRewrapped(recording_ids=ids, from_key_ids=old, to_key_id=new, at=at):
            details = {"recording_ids": list(ids), "from": list(old), "to": new}
            into.append(AuditRecord("keys_rewrapped", new, details, at))
        case MasterKeysRetired(key_ids=ids, current=current, at=at):
            into.append(AuditRecord("master_keys_retired", current, {"retired": list(ids)}, at))
        case DigestsRekeyed(recording_ids=ids, at=at):
            into.append(AuditRecord("digests_rekeyed", "hash", {"recording_ids": list(ids)}, at))
        case HashKeyRotated(holds=holds, unmapped=unmapped, at=at):
            details = {"holds": list(holds), "unmapped_hold_digests": unmapped}
            into.append(AuditRecord("hash_key_rotated", "hash", details, at))
        case _:
            pass


def _audit_console(event: Event, into: list[AuditRecord]) -> None:
    """Staff's actions: consultations (the access log is a projection of these entries),
    disclosures and account operations - names of staff, ids and codes, never a customer's
    data, a password or a token."""
    details: dict[str, Any]
    match event:
        case RecordingConsulted(access=a):
            details = {
                "user": a.username,
                "role": a.role.value,
                "purpose": a.purpose.value,
                "case_ref": a.case_ref,
                "kind": a.kind.value,
            }
            into.append(AuditRecord(ACCESS, a.recording_id, details, a.at))
        case RecordingsDisclosed(disclosure=d):
            details = {
                "recipient_kind": d.recipient_kind.value,
                "by": d.disclosed_by,
                "recording_ids": list(d.recording_ids),
                "sha256": d.export_sha256,
            }
            into.append(AuditRecord("disclosure", d.disclosure_id, details, d.disclosed_at))
        case RequestRegistered(request_id=request_id, details=details, at=at):
            into.append(AuditRecord("request_registered", request_id, details, at))
        case AccountChanged(action=action, username=username, by=by, at=at, details=more):
            details = {"action": action, "by": by, **more}
            into.append(AuditRecord("account", username, details, at))
        case _:
            pass


def _outbound(event: Event, now: datetime, into: list[ce.OutboundEvent]) -> None:
    match event:
        case RecordingStored(recording=r):
            data = ce.stored_data(r)
            into.append(_event("recordings_stored", ce.STORED, r.recording_id, now, data))
        case CallDiscarded(call_id=call_id, tenant=tenant, at=at):
            data = ce.discarded_data(call_id, tenant)
            into.append(_event("recordings_purged", ce.DISCARDED, call_id, at, data))
        case RecordingDue(recording=r, at=at):
            data = ce.due_data(r)
            into.append(_event("retention_due", ce.DUE, r.recording_id, at, data))
        case RecordingPurged(recording=r, call_id=call_id):
            data = ce.purged_data(r, call_id)
            at = r.purged_at or now
            into.append(_event("recordings_purged", ce.PURGED, r.recording_id, at, data))
        case AuditCheckpointed(checkpoint=checkpoint):
            key = str(checkpoint["seq"])
            into.append(_event("audit_checkpoints", ce.AUDIT_CHECKPOINT, key, now, checkpoint))
        case RequestAnswered(request_id=rid, data=data, revision=revision, at=at):
            answer = f"{rid}{revision}"
            into.append(
                ce.OutboundEvent("dsr_results", rid, ce.DSR_COMPLETED, answer, at or now, data, rid)
            )
        case _:
            pass


def _event(
    topic: str, event_type: str, key: str, at: datetime, data: dict[str, Any]
) -> ce.OutboundEvent:
    return ce.OutboundEvent(topic, key, event_type, key, at, data)


def _follow_ups(events: list[Event]) -> list[Command]:
    purges: dict[Any, list[str]] = {}
    collected: dict[Any, set[datetime]] = {}
    legal: list[str] = []
    freed: list[str] = []
    doomed: list[str] = []
    swept: list[str] = []
    late: dict[str, list[str]] = {}
    for event in events:
        match event:
            case LateRecordingFound(request_id=request_id, recording_id=recording_id):
                late.setdefault(request_id, []).append(recording_id)
            case KeysToSweep(recording_ids=ids):
                swept.extend(ids)
            case PurgesScheduled(recording_ids=ids, reason=reason, collected=times):
                purges.setdefault(reason, []).extend(ids)
                collected.setdefault(reason, set()).update(times)
            case LegalHoldsChanged(recording_ids=ids):
                legal.extend(ids)
            case RecordingsFreed(recording_ids=ids):
                freed.extend(ids)
            case ExportsDoomed(object_keys=keys):
                doomed.extend(keys)
            case _:
                pass
    commands: list[Command] = [
        PurgeRecordings(tuple(dict.fromkeys(ids)), reason, tuple(sorted(collected[reason])))
        for reason, ids in purges.items()
    ]
    if legal:
        commands.append(SyncLegalHolds(tuple(dict.fromkeys(legal))))
    if freed:
        commands.append(ResumeErasures(tuple(dict.fromkeys(freed))))
    if doomed:
        commands.append(DeleteExports(tuple(dict.fromkeys(doomed))))
    if swept:
        commands.append(SweepPurgedKeys(tuple(dict.fromkeys(swept))))
    commands += [EraseLateRecordings(rid, tuple(ids)) for rid, ids in late.items()]
    return commands
