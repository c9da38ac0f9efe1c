"""The audit trail's chain: every entry's hash covers the previous hash, so an edit, a deletion
or a reordering anywhere breaks every hash after it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .retention import rfc3339

GENESIS = b"\x00" * 32
# the signed ``type`` of a checkpoint of the chain's head: never taken for a deletion certificate
CHECKPOINT_TYPE = "audit_checkpoint"
# the signed ``type`` of a record that the chain was verified up to an entry of a partition
VERIFIED_TYPE = "audit_verified"


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: datetime
    action: str  # store, discard, hold_placed, hold_released, purge, dsr
    entity_id: str
    details: dict[str, Any]
    prev_hash: bytes
    hash: bytes


def canonical(
    seq: int, at: datetime, action: str, entity_id: str, details: dict[str, Any]
) -> bytes:
    """What an entry's hash covers: its fields as JSON with sorted keys, no spaces."""
    return numbered(unnumbered(at, action, entity_id, details), seq)


def unnumbered(at: datetime, action: str, entity_id: str, details: dict[str, Any]) -> bytes:
    """An entry's canonical form up to its sequence number, which sorts last: everything an
    append can prepare before it takes the chain's lock and learns its number."""
    body = {"at": rfc3339(at), "action": action, "entity": entity_id, "details": details}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return text[:-1].encode()  # without the closing brace


def numbered(unnumbered_body: bytes, seq: int) -> bytes:
    return b'%s,"seq":%d}' % (unnumbered_body, seq)


def chain_hash(prev_hash: bytes, body: bytes) -> bytes:
    return hashlib.sha256(prev_hash + body).digest()


def verify_chain(entries: Iterable[AuditEntry], prev: bytes = GENESIS) -> tuple[int, int | None]:
    """(entries checked, seq of the first broken entry or ``None`` when the chain holds);
    ``prev`` is the hash the first entry must follow (a verified entry's, else the genesis)."""
    count = 0
    for entry in entries:
        body = canonical(entry.seq, entry.at, entry.action, entry.entity_id, entry.details)
        if entry.prev_hash != prev or chain_hash(prev, body) != entry.hash:
            return count, entry.seq
        prev, count = entry.hash, count + 1
    return count, None
