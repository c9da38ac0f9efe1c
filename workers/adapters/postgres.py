"""The PostgreSQL store: recordings, holds, DSRs, the outbox and the audit trail."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from ..domain.audit import GENESIS, AuditEntry, canonical, chain_hash
from ..domain.events import OutboundEvent
from ..domain.model import Hold, HoldScopeKind, PurgeReason, Recording, RecordingStatus
from ..domain.retention import IsoDuration
from ..ports import DsrRecord

_AUDIT_LOCK = 0x6361_6C6C_7661  # one advisory lock serialises appends to the hash chain

_RECORDING_COLUMNS = (
    "recording_id, call_id, tenant, direction, agent_id, started_at, collected_at, "
    "retention_due_at, policy, status, object_key, stored_at, size_bytes, sha256, content_type, "
    "wrapped_key, customer_sealed, restricted, held, due_announced_at, purge_reason, "
    "versions_deleted, purged_at, source_event_id, "
    "duration_seconds, channels"  # telephony: audio metadata (0050_audio_metadata)
)
_FIELDS = [c.strip() for c in _RECORDING_COLUMNS.split(",")]
_SELECT = f"SELECT {_RECORDING_COLUMNS} FROM recordings"  # noqa: S608 - constant columns


def _recording(row: dict[str, Any]) -> Recording:
    values = dict(row)
    values["recording_id"] = str(values["recording_id"])
    values["status"] = RecordingStatus(values["status"])
    if values["purge_reason"] is not None:
        values["purge_reason"] = PurgeReason(values["purge_reason"])
    for name in ("wrapped_key", "customer_sealed"):
        if values[name] is not None:
            values[name] = bytes(values[name])
    return Recording(**values)


def _params(rec: Recording) -> dict[str, Any]:
    params = {name: getattr(rec, name) for name in _FIELDS}
    params["status"] = rec.status.value
    params["purge_reason"] = rec.purge_reason.value if rec.purge_reason else None
    return params


def _hold(row: dict[str, Any], digests: frozenset[bytes]) -> Hold:
    return Hold(
        hold_id=row["hold_id"],
        reason=row["reason"],
        case_ref=row["case_ref"],
        scope_kind=HoldScopeKind(row["scope_kind"]),
        targets=tuple(row["targets"]),
        subject_digests=digests,
        placed_at=row["placed_at"],
        released_at=row["released_at"],
    )


class PostgresTx:
    def __init__(self, conn: psycopg.Connection[dict[str, Any]]) -> None:
        self._conn = conn

    @property
    def connection(self) -> psycopg.Connection[dict[str, Any]]:
        """The transaction's connection, for adapters keeping their own tables in it."""
        # console: workers.adapters.postgres_console runs its SQL in the same transaction
        return self._conn

    def _one(self, sql: str, params: Any = None) -> dict[str, Any] | None:
        return self._conn.execute(sql, params).fetchone()

    def _all(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        return self._conn.execute(sql, params).fetchall()

    # recordings ---------------------------------------------------------------------------
    def recording(self, recording_id: str, *, for_update: bool = False) -> Recording | None:
        lock = " FOR UPDATE" if for_update else ""
        row = self._one(f"{_SELECT} WHERE recording_id = %s{lock}", (recording_id,))
        return _recording(row) if row else None

    def recording_by_call(self, call_id: str, *, for_update: bool = False) -> Recording | None:
        lock = " FOR UPDATE" if for_update else ""
        row = self._one(f"{_SELECT} WHERE call_id = %s{lock}", (call_id,))
        return _recording(row) if row else None

    def insert_recording(self, rec: Recording) -> bool:
        names = ", ".join(f"%({n})s" for n in _FIELDS)
        cur = self._conn.execute(
            f"INSERT INTO recordings ({_RECORDING_COLUMNS}) VALUES ({names}) "  # noqa: S608
            "ON CONFLICT DO NOTHING",
            _params(rec),
        )
        return cur.rowcount == 1

    def save_recording(self, rec: Recording) -> None:
        assignments = ", ".join(f"{n} = %({n})s" for n in _FIELDS if n != "recording_id")
        self._conn.execute(
            f"UPDATE recordings SET {assignments} WHERE recording_id = %(recording_id)s",  # noqa: S608
            _params(rec),
        )

    def delete_recording(self, recording_id: str) -> None:
        self._conn.execute("DELETE FROM recordings WHERE recording_id = %s", (recording_id,))

    def set_subject_keys(self, recording_id: str, digests: frozenset[bytes]) -> None:
        self._conn.execute("DELETE FROM subject_keys WHERE recording_id = %s", (recording_id,))
        with self._conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO subject_keys (digest, recording_id) VALUES (%s, %s)",
                [(d, recording_id) for d in digests],
            )

    def subject_keys_of(self, recording_id: str) -> frozenset[bytes]:
        rows = self._all("SELECT digest FROM subject_keys WHERE recording_id = %s", (recording_id,))
        return frozenset(bytes(r["digest"]) for r in rows)

    def recordings_matching(self, digests: frozenset[bytes]) -> list[Recording]:
        rows = self._all(
            f"{_SELECT} WHERE recording_id IN "  # noqa: S608
            "(SELECT recording_id FROM subject_keys WHERE digest = ANY(%s)) "
            "AND status IN ('stored', 'purging') ORDER BY collected_at, recording_id",
            (list(digests),),
        )
        return [_recording(r) for r in rows]

    def claim_due(self, now: datetime, limit: int) -> list[Recording]:
        rows = self._all(
            f"{_SELECT} WHERE status = 'stored' AND NOT held AND due_announced_at IS NULL "
            "AND retention_due_at <= %s ORDER BY retention_due_at LIMIT %s "
            "FOR UPDATE SKIP LOCKED",
            (now, limit),
        )
        return [_recording(r) for r in rows]

    def overdue_summary(self, now: datetime) -> tuple[int, datetime | None]:
        row = self._one(
            "SELECT count(*) AS n, min(retention_due_at) AS oldest FROM recordings "
            "WHERE status IN ('stored', 'purging') AND NOT held AND retention_due_at <= %s",
            (now,),
        )
        assert row is not None
        return int(row["n"]), row["oldest"]

    def reschedule(self, tenant: str | None, policy: IsoDuration, others: list[str]) -> int:
        """Apply a policy to stored recordings whose due date was computed from another one."""
        scope = "tenant = %(tenant)s" if tenant is not None else "NOT (tenant = ANY(%(others)s))"
        sql = (
            "UPDATE recordings SET policy = %(policy)s, due_announced_at = NULL, "  # noqa: S608 - constant scope
            "retention_due_at = ((collected_at AT TIME ZONE 'UTC') + %(policy)s::interval) "
            "AT TIME ZONE 'UTC' "
            f"WHERE status = 'stored' AND policy <> %(policy)s AND {scope}"
        )
        cur = self._conn.execute(
            sql,
            {"policy": policy.text, "tenant": tenant, "others": others},
        )
        return cur.rowcount

    def recordings_page(self, after_id: str, limit: int) -> list[Recording]:
        rows = self._all(
            f"{_SELECT} WHERE recording_id > %s ORDER BY recording_id LIMIT %s",
            (after_id, limit),
        )
        return [_recording(r) for r in rows]

    # holds --------------------------------------------------------------------------------
    def _hold_digests(self, hold_id: str) -> frozenset[bytes]:
        rows = self._all("SELECT digest FROM hold_subject_keys WHERE hold_id = %s", (hold_id,))
        return frozenset(bytes(r["digest"]) for r in rows)

    def hold(self, hold_id: str) -> Hold | None:
        row = self._one("SELECT * FROM holds WHERE hold_id = %s FOR UPDATE", (hold_id,))
        return _hold(row, self._hold_digests(hold_id)) if row else None

    def save_hold(self, hold: Hold) -> None:
        self._conn.execute(
            "INSERT INTO holds (hold_id, reason, case_ref, scope_kind, targets, placed_at, "
            "released_at) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (hold_id) DO UPDATE "
            "SET placed_at = EXCLUDED.placed_at, released_at = EXCLUDED.released_at",
            (
                hold.hold_id,
                hold.reason,
                hold.case_ref,
                hold.scope_kind.value,
                list(hold.targets),
                hold.placed_at,
                hold.released_at,
            ),
        )
        with self._conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO hold_subject_keys (digest, hold_id) VALUES (%s, %s) "
                "ON CONFLICT DO NOTHING",
                [(d, hold.hold_id) for d in hold.subject_digests],
            )

    def recordings_in_scope(self, hold: Hold) -> list[Recording]:
        if hold.scope_kind is HoldScopeKind.RECORDINGS:
            ids = [t for t in hold.targets if _is_uuid(t)]
            rows = self._all(f"{_SELECT} WHERE recording_id = ANY(%s::uuid[])", (ids,))
        elif hold.scope_kind is HoldScopeKind.CALLS:
            rows = self._all(f"{_SELECT} WHERE call_id = ANY(%s)", (list(hold.targets),))
        else:
            return self.recordings_matching(hold.subject_digests)
        return [_recording(r) for r in rows]

    def holds_covering(self, rec: Recording, digests: frozenset[bytes]) -> list[Hold]:
        rows = self._all(
            "SELECT * FROM holds WHERE released_at IS NULL AND placed_at IS NOT NULL AND ("
            "(scope_kind = 'recording_ids' AND %(rid)s = ANY(targets)) OR "
            "(scope_kind = 'call_ids' AND %(cid)s = ANY(targets)) OR "
            "(scope_kind = 'subject' AND hold_id IN "
            " (SELECT hold_id FROM hold_subject_keys WHERE digest = ANY(%(digests)s))))",
            {"rid": rec.recording_id, "cid": rec.call_id, "digests": list(digests)},
        )
        return [_hold(r, self._hold_digests(r["hold_id"])) for r in rows]

    def active_holds(self) -> list[Hold]:
        rows = self._all(
            "SELECT * FROM holds WHERE released_at IS NULL AND placed_at IS NOT NULL "
            "ORDER BY placed_at"
        )
        return [_hold(r, self._hold_digests(r["hold_id"])) for r in rows]

    # discards -----------------------------------------------------------------------------
    def record_discard(self, call_id: str, tenant: str, at: datetime) -> bool:
        cur = self._conn.execute(
            "INSERT INTO discards (call_id, tenant, discarded_at) VALUES (%s, %s, %s) "
            "ON CONFLICT DO NOTHING",
            (call_id, tenant, at),
        )
        return cur.rowcount == 1

    # outbox -------------------------------------------------------------------------------
    def enqueue(self, event: OutboundEvent) -> None:
        self._conn.execute(
            "INSERT INTO outbox (topic, key, event) VALUES (%s, %s, %s)",
            (event.topic, event.key, Jsonb(event.cloudevent)),
        )

    def unpublished(self, limit: int) -> list[tuple[int, OutboundEvent]]:
        rows = self._all(
            "SELECT id, topic, key, event FROM outbox WHERE published_at IS NULL "
            "ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
            (limit,),
        )
        return [(r["id"], OutboundEvent(r["topic"], r["key"], r["event"])) for r in rows]

    def mark_published(self, ids: list[int]) -> None:
        self._conn.execute("UPDATE outbox SET published_at = now() WHERE id = ANY(%s)", (ids,))

    # audit --------------------------------------------------------------------------------
    def append_audit(
        self, action: str, entity_id: str, details: dict[str, Any], at: datetime
    ) -> AuditEntry:
        self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_AUDIT_LOCK,))
        last = self._one("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        seq = last["seq"] + 1 if last else 1
        prev = bytes(last["hash"]) if last else GENESIS
        # Round-trip the details through JSON so the hash covers exactly what is stored.
        details = json.loads(json.dumps(details))
        entry_hash = chain_hash(prev, canonical(seq, at, action, entity_id, details))
        self._conn.execute(
            "INSERT INTO audit_log (seq, at, action, entity_id, details, prev_hash, hash) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (seq, at, action, entity_id, Jsonb(details), prev, entry_hash),
        )
        return AuditEntry(seq, at, action, entity_id, details, prev, entry_hash)

    def audit_entries(self, after_seq: int, limit: int) -> list[AuditEntry]:
        rows = self._all(
            "SELECT * FROM audit_log WHERE seq > %s ORDER BY seq LIMIT %s", (after_seq, limit)
        )
        return [
            AuditEntry(
                r["seq"],
                r["at"],
                r["action"],
                r["entity_id"],
                r["details"],
                bytes(r["prev_hash"]),
                bytes(r["hash"]),
            )
            for r in rows
        ]

    # data-subject requests ----------------------------------------------------------------
    def dsr_request(self, request_id: str, *, for_update: bool = False) -> DsrRecord | None:
        lock = " FOR UPDATE" if for_update else ""
        sql = f"SELECT * FROM dsr_requests WHERE request_id = %s{lock}"  # noqa: S608 - constant
        row = self._one(sql, (request_id,))
        return _dsr(row) if row else None

    def save_dsr_request(self, record: DsrRecord) -> None:
        self._conn.execute(
            "INSERT INTO dsr_requests (request_id, dsr_type, status, received_at, due_at, "
            "completed_at, pending, result) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (request_id) DO UPDATE SET status = EXCLUDED.status, "
            "completed_at = EXCLUDED.completed_at, pending = EXCLUDED.pending, "
            "result = EXCLUDED.result",
            (
                record.request_id,
                record.dsr_type,
                record.status,
                record.received_at,
                record.due_at,
                record.completed_at,
                record.pending_recording_ids,
                Jsonb(record.result),
            ),
        )

    def open_dsr_requests(self) -> list[DsrRecord]:
        rows = self._all(
            "SELECT * FROM dsr_requests WHERE cardinality(pending) > 0 ORDER BY due_at"
        )
        return [_dsr(r) for r in rows]

    # exports ------------------------------------------------------------------------------
    def add_export(self, key: str, request_id: str, expires_at: datetime) -> None:
        self._conn.execute(
            "INSERT INTO exports (object_key, request_id, expires_at) VALUES (%s, %s, %s) "
            "ON CONFLICT DO NOTHING",
            (key, request_id, expires_at),
        )

    def expired_exports(self, now: datetime) -> list[str]:
        rows = self._all("SELECT object_key FROM exports WHERE expires_at <= %s", (now,))
        return [r["object_key"] for r in rows]

    def remove_export(self, key: str) -> None:
        self._conn.execute("DELETE FROM exports WHERE object_key = %s", (key,))

    def held_count(self) -> int:
        """Recordings kept by a hold (served by the small partial index on held rows)."""
        row = self._one("SELECT count(*) AS n FROM recordings WHERE held AND status <> 'purged'")
        return int(row["n"]) if row else 0

    def count_recordings(self) -> dict[str, int]:
        rows = self._all("SELECT status, count(*) AS n FROM recordings GROUP BY status")
        counts = {r["status"]: int(r["n"]) for r in rows}
        held = self._one("SELECT count(*) AS n FROM recordings WHERE held")
        counts["held"] = int(held["n"]) if held else 0
        return counts


def _dsr(row: dict[str, Any]) -> DsrRecord:
    return DsrRecord(
        request_id=row["request_id"],
        dsr_type=row["dsr_type"],
        status=row["status"],
        received_at=row["received_at"],
        due_at=row["due_at"],
        completed_at=row["completed_at"],
        pending_recording_ids=list(row["pending"]),
        result=row["result"],
    )


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


class PostgresStore:
    def __init__(
        self, dsn: str, *, min_size: int = 1, max_size: int = 8, timeout: float = 10.0
    ) -> None:
        self._pool: ConnectionPool[psycopg.Connection[dict[str, Any]]] = ConnectionPool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            kwargs={"row_factory": dict_row, "autocommit": False},
            open=False,
        )

    def open(self) -> None:
        self._pool.open(wait=True, timeout=30)

    def close(self) -> None:
        self._pool.close()

    @contextmanager
    def transaction(self) -> Iterator[PostgresTx]:
        with self._pool.connection() as conn, conn.transaction():
            yield PostgresTx(conn)

    @contextmanager
    def exclusive(self, key: str) -> Iterator[None]:
        """A session advisory lock on ``key`` across every worker process; a killed worker's
        lock dies with its connection."""
        with self._pool.connection() as conn:
            conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (key,))
            conn.commit()
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))
                conn.commit()
