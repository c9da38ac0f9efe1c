"""Follow-up commands as rows: what a commit asks callvault to do next, written in the same
transaction and carried out later by the dispatcher (at least once; every handler is
idempotent)."""

from __future__ import annotations

from typing import Any

from ..domain.messages import (
    Command,
    DeleteExports,
    EraseLateRecordings,
    PurgeRecordings,
    ResumeErasures,
    SweepPurgedKeys,
    SyncLegalHolds,
)
from ..domain.model import PurgeReason
from ..domain.retention import parse_timestamp, rfc3339

# Claimed only when no other follow-up is due: a stray sweep lists every purged key to delete
# versions that another writer left (unreadable already, the data key being gone), so a
# backlog of purges is not slowed by sweeps of the purges before it.
LAST = "sweep_purged_keys"


def encode(command: Command) -> tuple[str, dict[str, Any]]:
    match command:
        case PurgeRecordings(recording_ids=ids, reason=reason, collected=times):
            collected = [rfc3339(t) for t in times]
            return "purge", {"recording_ids": list(ids), "reason": reason.value} | (
                {"collected": collected} if collected else {}
            )
        case SyncLegalHolds(recording_ids=ids):
            return "sync_legal_holds", {"recording_ids": list(ids)}
        case ResumeErasures(recording_ids=ids):
            return "resume_erasures", {"recording_ids": list(ids)}
        case DeleteExports(object_keys=keys):
            return "delete_exports", {"object_keys": list(keys)}
        case SweepPurgedKeys(recording_ids=ids):
            return "sweep_purged_keys", {"recording_ids": list(ids)}
        case EraseLateRecordings(request_id=request_id, recording_ids=ids):
            return "erase_late_recordings", {"request_id": request_id, "recording_ids": list(ids)}
    raise ValueError(f"{type(command).__name__} is not a follow-up")


def decode(kind: str, payload: dict[str, Any]) -> Command:
    ids = tuple(payload.get("recording_ids", ()))
    if kind == "purge":
        times = tuple(parse_timestamp(t) for t in payload.get("collected", ()))
        return PurgeRecordings(ids, PurgeReason(payload["reason"]), times)
    if kind == "sync_legal_holds":
        return SyncLegalHolds(ids)
    if kind == "resume_erasures":
        return ResumeErasures(ids)
    if kind == "erase_late_recordings":
        return EraseLateRecordings(payload["request_id"], ids)
    if kind == "sweep_purged_keys":
        return SweepPurgedKeys(ids)
    if kind == "delete_exports":
        return DeleteExports(tuple(payload["object_keys"]))
    raise ValueError(f"unknown follow-up kind {kind!r}")
