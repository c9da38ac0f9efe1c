"""Reconciliation of the vault against the database: versions nobody references (orphans: an
upload whose commit never came, a delete marker made behind callvault's back), stored
recordings whose version is gone (missing), recordings overdue but not purged, held
recordings whose object is not under the store's legal hold (and released ones that still
are), and multipart uploads a crashed worker left open."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ...domain.messages import SyncLegalHolds
from ...domain.model import PurgeReason, Recording, RecordingStatus
from ..context import Context
from ..ports.objects import VersionRef
from .holds import sync_legal_holds
from .purge import purge

PAGE = 1000
ORPHAN_GRACE = timedelta(minutes=15)  # an upload's version exists a moment before its row
OVERDUE_GRACE = timedelta(minutes=5)
STALE_UPLOAD = timedelta(hours=6)


@dataclass
class Reconciliation:
    orphan_objects: list[str] = field(default_factory=list)  # key@version
    missing_objects: list[str] = field(default_factory=list)
    overdue_not_purged: list[str] = field(default_factory=list)
    legal_hold_mismatch: list[str] = field(default_factory=list)
    repaired: dict[str, int] = field(default_factory=dict)
    _orphans: list[VersionRef] = field(default_factory=list, repr=False)

    def counts(self) -> dict[str, int]:
        return {
            "orphan_object": len(self.orphan_objects),
            "missing_object": len(self.missing_objects),
            "overdue_not_purged": len(self.overdue_not_purged),
            "legal_hold_mismatch": len(self.legal_hold_mismatch),
        }

    def as_dict(self) -> dict[str, object]:
        return {
            "orphan_objects": self.orphan_objects,
            "missing_objects": self.missing_objects,
            "overdue_not_purged": self.overdue_not_purged,
            "legal_hold_mismatch": self.legal_hold_mismatch,
            "repaired": self.repaired,
        }


def reconcile(
    ctx: Context,
    *,
    repair: bool = False,
    orphan_grace: timedelta = ORPHAN_GRACE,
    progress: Callable[[int], object] | None = None,
) -> Reconciliation:
    """Compare; with ``repair``, mend what was found. A version younger than
    ``orphan_grace`` is never an orphan: an upload's version exists a moment before its row."""
    now = ctx.clock()
    listed = list(ctx.objects.all_versions(ctx.vault, "recordings/"))
    vault = _Vault(listed)
    result = Reconciliation()
    referenced: set[tuple[str, str | None]] = set()
    for n, recording in enumerate(_recordings(ctx), start=1):
        if progress is not None and n % PAGE == 0:
            progress(PAGE)
        if recording.status is not RecordingStatus.PURGED:
            referenced.add((recording.object_key, recording.object_version))
            _check(recording, vault, now, result)
    result._orphans = [v for v in listed if _orphan(v, referenced, now - orphan_grace)]
    result.orphan_objects = [f"{v.key}@{v.version_id}" for v in result._orphans]
    if repair:
        result.repaired = _repair(result, ctx, now)
    for kind, count in result.counts().items():
        ctx.metrics.reconcile_findings.labels(kind=kind).set(count)
    return result


class _Vault:
    """What the listing shows: the versions holding data, by key."""

    def __init__(self, listed: list[VersionRef]) -> None:
        self.versions = {(v.key, v.version_id) for v in listed if not v.is_delete_marker}
        self.keys = {v.key for v in listed if not v.is_delete_marker}

    def holds(self, recording: Recording) -> bool:
        if recording.object_version is None:  # a row from before versions were recorded
            return recording.object_key in self.keys
        return (recording.object_key, recording.object_version) in self.versions


def _recordings(ctx: Context) -> Iterator[Recording]:
    after = "00000000-0000-0000-0000-000000000000"  # recording ids are uuids: start below all
    while True:
        with ctx.uow() as uow:
            page = uow.scans.page(after, PAGE)
        if not page:
            return
        yield from page
        after = page[-1].recording_id


def _check(recording: Recording, vault: _Vault, now: datetime, result: Reconciliation) -> None:
    if recording.status is RecordingStatus.STORED:
        if not vault.holds(recording):
            result.missing_objects.append(recording.recording_id)
        if recording.held != recording.legal_hold:
            result.legal_hold_mismatch.append(recording.recording_id)
    if not recording.held and now - recording.retention_due_at > OVERDUE_GRACE:
        result.overdue_not_purged.append(recording.recording_id)


def _orphan(
    version: VersionRef, referenced: set[tuple[str, str | None]], older_than: datetime
) -> bool:
    if (version.key, version.version_id) in referenced or (version.key, None) in referenced:
        return False
    return version.last_modified is None or version.last_modified <= older_than


def _repair(found: Reconciliation, ctx: Context, now: datetime) -> dict[str, int]:
    if found._orphans:
        ctx.objects.delete_versions(ctx.vault, found._orphans)
    if found.legal_hold_mismatch:
        sync_legal_holds(SyncLegalHolds(tuple(found.legal_hold_mismatch)), ctx)
    if found.overdue_not_purged:
        purge(found.overdue_not_purged, PurgeReason.RETENTION, ctx)
    aborted = ctx.buckets.abort_stale_uploads(ctx.vault, now - STALE_UPLOAD)
    return {
        "orphan_objects_deleted": len(found._orphans),
        "legal_holds_synced": len(found.legal_hold_mismatch),
        "overdue_purged": len(found.overdue_not_purged),
        "stale_uploads_aborted": aborted,
    }
