"""The hash-chained audit trail in PostgreSQL: one advisory lock serialises appends, so every
entry's hash covers the one before it. A commit appends all its entries under one lock."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from ...domain.audit import GENESIS, AuditEntry, chain_hash, numbered, unnumbered

_AUDIT_LOCK = 0x6361_6C6C_7661
Record = tuple[str, str, dict[str, Any], datetime]  # action, entity id, details, at


def append_audit(
    conn: psycopg.Connection[dict[str, Any]],
    action: str,
    entity_id: str,
    details: dict[str, Any],
    at: datetime,
) -> AuditEntry:
    return append_audits(conn, [(action, entity_id, details, at)])[0]


def append_audits(
    conn: psycopg.Connection[dict[str, Any]],
    records: list[Record],
) -> list[AuditEntry]:
    """Append entries in order under one lock: the chain head is read once, and every entry's
    hash covers the one before it, as if appended one by one."""
    if not records:
        return []
    prepared = prepare(records)
    head = lock_head(conn)
    entries = chained(head.fetchone(), prepared)
    insert_entries(conn, entries)
    return entries


def lock_head(conn: psycopg.Connection[dict[str, Any]]) -> psycopg.Cursor[dict[str, Any]]:
    """Take the chain's lock, then read its head (in a statement of its own, so that its
    snapshot sees every entry committed before the lock was granted)."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_AUDIT_LOCK,))
    return conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")


@dataclass(frozen=True)
class Prepared:
    """An entry before the lock: what it stores (its details as JSON gives them back) and its
    canonical form but for its number."""

    record: Record
    body: bytes


def prepare(records: list[Record]) -> list[Prepared]:
    """Everything but the chaining, done before the lock is taken: the lock then stays held
    for the hashes alone (a purge of 200 recordings appends 200 entries)."""
    prepared = []
    for action, entity_id, details, at in records:
        # Round-trip the details through JSON so the hash covers exactly what is stored.
        stored = json.loads(json.dumps(details))
        body = unnumbered(at, action, entity_id, stored)
        prepared.append(Prepared((action, entity_id, stored, at), body))
    return prepared


def chained(head: dict[str, Any] | None, prepared: list[Prepared]) -> list[AuditEntry]:
    seq = head["seq"] if head else 0
    prev = bytes(head["hash"]) if head else GENESIS
    entries = []
    for entry in prepared:
        seq += 1
        action, entity_id, details, at = entry.record
        hashed = chain_hash(prev, numbered(entry.body, seq))
        entries.append(AuditEntry(seq, at, action, entity_id, details, prev, hashed))
        prev = hashed
    return entries


def insert_entries(conn: psycopg.Connection[dict[str, Any]], entries: list[AuditEntry]) -> None:
    """One statement for any number of entries."""
    if entries:
        conn.execute(
            "INSERT INTO audit_log (seq, at, action, entity_id, details, prev_hash, hash) "
            "SELECT * FROM unnest(%b::bigint[], %b::timestamptz[], %b::text[], %b::text[], "
            "%b::jsonb[], %b::bytea[], %b::bytea[])",
            (
                [e.seq for e in entries],
                [e.at for e in entries],
                [e.action for e in entries],
                [e.entity_id for e in entries],
                [Jsonb(e.details) for e in entries],
                [e.prev_hash for e in entries],
                [e.hash for e in entries],
            ),
        )  # %b: arrays sent in binary, so the JSON texts need no per-character escaping


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


def audit_ranges(
    conn: psycopg.Connection[dict[str, Any]],
) -> list[tuple[str, int | None, int | None]]:
    rows = conn.execute(
        "SELECT partition::text AS name, lower_bound, upper_bound "
        "FROM callvault_partition_bounds('audit_log') WHERE NOT is_default"
    ).fetchall()
    if not rows:
        return [("audit_log", None, None)]
    ranges = [(r["name"], _bound(r["lower_bound"]), _bound(r["upper_bound"])) for r in rows]
    return sorted(ranges, key=lambda r: -1 if r[1] is None else r[1])


def _bound(value: str | None) -> int | None:
    return None if value is None else int(value)


def audit_marks(conn: psycopg.Connection[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r["signed"] for r in conn.execute("SELECT signed FROM audit_verified").fetchall()]


def mark_verified(
    conn: psycopg.Connection[dict[str, Any]],
    partition: str,
    entry: AuditEntry,
    signed: dict[str, Any],
    at: datetime,
) -> None:
    conn.execute(
        "INSERT INTO audit_verified (partition, last_seq, last_hash, verified_at, signed) "
        "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (partition) DO UPDATE SET "
        "last_seq = EXCLUDED.last_seq, last_hash = EXCLUDED.last_hash, "
        "verified_at = EXCLUDED.verified_at, signed = EXCLUDED.signed",
        (partition, entry.seq, entry.hash, at, Jsonb(signed)),
    )
