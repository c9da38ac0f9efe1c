"""Checkpoints of the audit trail: a DBA who can write the database can recompute every hash
of the chain, but not the signature on a checkpoint of its head, kept outside the database
(an object-locked object in the vault bucket, and an event on the audit topic). The trail is
checked against the newest checkpoint: an edited, deleted or truncated tail shows. A
verification records, signed, how far each partition's chain is proven, so the next one reads
only what was appended since (a full one remains possible)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ...domain.audit import (
    CHECKPOINT_TYPE,
    GENESIS,
    VERIFIED_TYPE,
    AuditEntry,
    verify_chain,
)
from ...domain.messages import AuditCheckpointed, CheckpointAudit
from ...domain.retention import rfc3339
from ..context import Context

PREFIX = "audit-checkpoints/"


def checkpoint_key(seq: int) -> str:
    return f"{PREFIX}{seq:020d}.json"


def checkpoint_audit(command: CheckpointAudit, ctx: Context) -> str:
    head = ctx.read(lambda uow: uow.audit_head())
    now = ctx.clock()
    outcome = "empty" if head is None else _keep_checkpoint(ctx, head, now)
    # callvault_audit_last_checkpoint_timestamp_seconds: an empty chain is not late either
    ctx.metrics.audit_checkpointed_at.set(now.timestamp())
    return outcome


def _keep_checkpoint(ctx: Context, head: AuditEntry, now: datetime) -> str:
    """Sign the head, keep it object-locked in the vault, and record it in the chain."""
    signed = ctx.keys.sign(
        {
            "type": CHECKPOINT_TYPE,
            "seq": head.seq,
            "hash": head.hash.hex(),
            "at": rfc3339(now),
            "source": ctx.settings.source_uri,
        }
    )
    body = json.dumps(signed, sort_keys=True).encode()
    keep_until = ctx.settings.policy.default.after(now)
    ctx.objects.put_stream(
        ctx.vault,
        checkpoint_key(head.seq),
        [body],
        content_type="application/json",
        retain_until=keep_until,
    )
    with ctx.uow() as uow:
        uow.record(AuditCheckpointed(signed))
        uow.commit()
    return f"checkpoint:{head.seq}"


def latest_checkpoint(ctx: Context) -> dict[str, Any] | None:
    """The newest checkpoint kept in the object store (not the database's word for it)."""
    keys = sorted(ctx.objects.list_keys(ctx.vault, PREFIX))
    if not keys:
        return None
    found: dict[str, Any] = json.loads(b"".join(ctx.objects.get_stream(ctx.vault, keys[-1])))
    return found


@dataclass(frozen=True)
class CheckpointCheck:
    ok: bool
    reason: str
    seq: int | None = None


def check_against(
    checkpoint: dict[str, Any] | None, entry_at_seq: AuditEntry | None, valid_signature: bool
) -> CheckpointCheck:
    """Whether the chain still holds the entry the checkpoint signed."""
    if checkpoint is None:
        return CheckpointCheck(True, "no checkpoint yet")
    seq = int(checkpoint["seq"])
    if not valid_signature:
        return CheckpointCheck(False, "the checkpoint's signature does not verify", seq)
    if entry_at_seq is None:
        return CheckpointCheck(
            False, f"the chain ends before checkpoint {seq}: entries deleted", seq
        )
    if entry_at_seq.hash.hex() != checkpoint["hash"]:
        return CheckpointCheck(
            False, f"entry {seq} differs from its checkpoint: history rewritten", seq
        )
    return CheckpointCheck(True, f"matches checkpoint {seq} of {checkpoint['at']}", seq)


# verification ----------------------------------------------------------------------------
PAGE = 5000
Valid = Callable[[dict[str, Any], str], bool]  # (signed document, its expected type) -> ok


@dataclass(frozen=True)
class TrailCheck:
    """What ``audit verify`` found: the chain's entries after ``since`` (0: from the genesis)
    were read and checked, the newest checkpoint compared, the partitions ``marked``."""

    checked: int
    broken_at: int | None
    since: int
    start: str
    checkpoint: CheckpointCheck
    marked: list[str]

    @property
    def ok(self) -> bool:
        return self.broken_at is None and self.checkpoint.ok


def verify_trail(
    ctx: Context,
    valid: Valid,
    *,
    full: bool = False,
    first: int | None = None,
    last: int | None = None,
) -> TrailCheck:
    """Check the chain from the newest signed record of a verified entry (per partition; from
    the genesis when ``full`` or when there is none that still matches the trail), or only the
    entries ``first``..``last``; then the chain against the newest signed checkpoint. A whole
    verification up to that checkpoint is recorded, signed, per partition, so the next one
    starts there: only what was appended since is read again."""
    checkpoint = latest_checkpoint(ctx)
    anchor = int(checkpoint["seq"]) if checkpoint else None
    ranged = first is not None or last is not None
    since, prev, start = _start(ctx, valid, full=full, first=first)
    ranges = ctx.read(lambda uow: uow.audit_ranges())
    ends = _partition_ends(ranges, anchor) if anchor is not None and not ranged else {}
    wanted = {*ends.values(), *([anchor] if anchor is not None else [])}
    seen: dict[int, AuditEntry] = {}
    checked, broken = verify_chain(_kept(_entries(ctx, since, last), wanted, seen), prev)
    if anchor is not None and anchor not in seen:
        found = _entry(ctx, anchor)
        if found is not None:
            seen[anchor] = found
    signed = checkpoint is not None and valid(checkpoint, CHECKPOINT_TYPE)
    against = check_against(checkpoint, seen.get(anchor or 0), signed)
    marked: list[str] = []
    if broken is None and against.ok and ends:
        marked = _mark(ctx, ends, since, seen)
    return TrailCheck(checked, broken, since, start, against, marked)


def _start(ctx: Context, valid: Valid, *, full: bool, first: int | None) -> tuple[int, bytes, str]:
    """(seq after which to read, the hash the next entry follows, how that was chosen)."""
    if first is not None:
        entry = _entry(ctx, first)
        return first - 1, entry.prev_hash if entry else GENESIS, f"entry {first}"
    if not full:
        marks = [m for m in ctx.read(lambda uow: uow.audit_marks()) if valid(m, VERIFIED_TYPE)]
        for mark in sorted(marks, key=lambda m: int(m["seq"]), reverse=True):
            entry = _entry(ctx, int(mark["seq"]))
            if entry is not None and entry.hash.hex() == mark["hash"]:
                return entry.seq, entry.hash, f"entry {entry.seq}, verified {mark['at']}"
    return 0, GENESIS, "the genesis"


def _partition_ends(
    ranges: list[tuple[str, int | None, int | None]], anchor: int
) -> dict[str, int]:
    """Per partition, its newest entry up to the checkpoint's."""
    ends = {}
    for name, lower, upper in ranges:
        end = anchor if upper is None else min(anchor, upper - 1)
        if lower is None or end >= lower:
            ends[name] = end
    return ends


def _mark(ctx: Context, ends: dict[str, int], since: int, seen: dict[int, AuditEntry]) -> list[str]:
    marked = []
    now = ctx.clock()
    for partition, end in ends.items():
        entry = seen.get(end)
        if end <= since or entry is None:
            continue  # proven before, or not read
        signed = ctx.keys.sign(
            {
                "type": VERIFIED_TYPE,
                "partition": partition,
                "seq": end,
                "hash": entry.hash.hex(),
                "at": rfc3339(now),
                "source": ctx.settings.source_uri,
            }
        )
        with ctx.uow() as uow:
            uow.mark_verified(partition, entry, signed)
            uow.commit()
        marked.append(partition)
    return marked


def _kept(
    entries: Iterator[AuditEntry], wanted: set[int], seen: dict[int, AuditEntry]
) -> Iterator[AuditEntry]:
    for entry in entries:
        if entry.seq in wanted:
            seen[entry.seq] = entry
        yield entry


def _entries(ctx: Context, after: int, last: int | None) -> Iterator[AuditEntry]:
    while True:
        page = ctx.read(lambda uow, a=after: uow.audit_entries(a, PAGE))  # type: ignore[misc]
        for entry in page:
            if last is not None and entry.seq > last:
                return
            yield entry
        if len(page) < PAGE:
            return
        after = page[-1].seq


def _entry(ctx: Context, seq: int) -> AuditEntry | None:
    found = ctx.read(lambda uow: uow.audit_entries(seq - 1, 1))
    return found[0] if found and found[0].seq == seq else None
