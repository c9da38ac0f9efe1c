"""Checkpoints of the audit trail: a DBA who can write the database can recompute every hash
of the chain, but not the signature on a checkpoint of its head, kept outside the database
(an object-locked object in the vault bucket, and an event on the audit topic). The trail is
checked against the newest checkpoint: an edited, deleted or truncated tail shows."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ...domain.audit import CHECKPOINT_TYPE, AuditEntry
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
