"""The hash-chained audit trail in PostgreSQL: one advisory lock serialises appends, so every
entry's hash covers the one before it."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from ...domain.audit import GENESIS, AuditEntry, canonical, chain_hash

_AUDIT_LOCK = 0x6361_6C6C_7661


def append_audit(
    conn: psycopg.Connection[dict[str, Any]],
    action: str,
    entity_id: str,
    details: dict[str, Any],
    at: datetime,
) -> AuditEntry:
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_AUDIT_LOCK,))
    last = conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    seq = last["seq"] + 1 if last else 1
    prev = bytes(last["hash"]) if last else GENESIS
    # Round-trip the details through JSON so the hash covers exactly what is stored.
    details = json.loads(json.dumps(details))
    entry_hash = chain_hash(prev, canonical(seq, at, action, entity_id, details))
    conn.execute(
        "INSERT INTO audit_log (seq, at, action, entity_id, details, prev_hash, hash) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (seq, at, action, entity_id, Jsonb(details), prev, entry_hash),
    )
    return AuditEntry(seq, at, action, entity_id, details, prev, entry_hash)


def audit_head(conn: psycopg.Connection[dict[str, Any]]) -> AuditEntry | None:
    row = conn.execute("SELECT * FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    return _entry(row) if row else None


def audit_entries(
    conn: psycopg.Connection[dict[str, Any]], after_seq: int, limit: int
) -> list[AuditEntry]:
    rows = conn.execute(
        "SELECT * FROM audit_log WHERE seq > %s ORDER BY seq LIMIT %s", (after_seq, limit)
    ).fetchall()
    return [_entry(r) for r in rows]


def _entry(r: dict[str, Any]) -> AuditEntry:
    return AuditEntry(
        r["seq"],
        r["at"],
        r["action"],
        r["entity_id"],
        r["details"],
        bytes(r["prev_hash"]),
        bytes(r["hash"]),
    )
