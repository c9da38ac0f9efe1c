"""One repository per aggregate, on the unit of work's connection. Writes change only the
columns an aggregate's methods changed; rows that will change are read ``FOR UPDATE``, and
several rows are always locked in id order."""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from ...app.ports.keys import KeyCheck
from ...app.ports.unit_of_work import Discard, ErasedSubject, ExportRecord, StoredKeyCheck
from ...domain.messages import Event
from ...domain.model import (
    Hold,
    HoldScopeKind,
    PurgeReason,
    Recording,
    RecordingStatus,
    RequestRecord,
)
from ...domain.retention import IsoDuration
from ..crypto import TextSealer

Connection = psycopg.Connection[dict[str, Any]]

RECORDING_COLUMNS = (
    "recording_id",
    "call_id",
    "call_digest",
    "tenant",
    "direction",
    "agent_id",
    "started_at",
    "collected_at",
    "retention_due_at",
    "policy",
    "status",
    "object_key",
    "stored_at",
    "size_bytes",
    "sha256",
    "content_type",
    "object_version",
    "duration_seconds",
    "channels",
    "wrapped_key",
    "master_key_id",
    "customer_sealed",
    "restricted",
    "held",
    "legal_hold",
    "due_announced_at",
    "purge_reason",
    "versions_deleted",
    "purged_at",
    "source_event_id",
)
# Plain constant statements (composed once, not on every call).
_COLUMNS = ", ".join(RECORDING_COLUMNS)
_COLUMN_NAMES = frozenset(RECORDING_COLUMNS)
_SELECTED = ", ".join(f"r.{c}" for c in RECORDING_COLUMNS)
_VALUES = ", ".join(f"%({c})s" for c in RECORDING_COLUMNS)
_SELECT = f"SELECT {_SELECTED} FROM recordings r "  # noqa: S608 - constant column names
# The row and its look-up digests in one statement; a call stored or discarded before
# inserts neither (and counts 0).
_INSERT = sql.SQL(
    f"WITH added AS (INSERT INTO recordings ({_COLUMNS}) SELECT {_VALUES} "  # noqa: S608 - constant column names
    "WHERE NOT EXISTS (SELECT 1 FROM discarded_calls WHERE call_digest = %(call_digest)s) "
    "ON CONFLICT DO NOTHING RETURNING recording_id), "
    "keyed AS (INSERT INTO subject_keys (digest, recording_id) "
    "SELECT d, added.recording_id FROM added, unnest(%(digests)b::bytea[]) AS d) "
    "SELECT count(*) AS added FROM added"
)
_UPDATE = sql.SQL(
    "UPDATE recordings SET {} WHERE recording_id = ANY(%(ids)s::uuid[]) "
    "AND collected_at = ANY(%(months)s::timestamptz[])"
)
_LOCK = "WHERE r.recording_id = ANY(%s::uuid[]) ORDER BY r.recording_id FOR UPDATE"
# Between the first and the last collection time: only the partitions of those months (a
# range prunes them as cheaply as one month, where a list of 200 times is a costly filter).
_LOCK_IN_MONTHS = (
    "WHERE r.recording_id = ANY(%s::uuid[]) AND r.collected_at BETWEEN %s AND %s "
    "ORDER BY r.recording_id FOR UPDATE"
)
_ALIVE = "r.status <> 'purged'"
_BEFORE_ALL = "00000000-0000-0000-0000-000000000000"  # "" as a page's start: below every id
# A hold in force covers recording r (used where the recording row exists already).
_COVERED = """EXISTS (SELECT 1 FROM holds h WHERE h.released_at IS NULL
    AND h.placed_at IS NOT NULL AND (
    (h.scope_kind = 'recording_ids' AND r.recording_id::text = ANY(h.targets)) OR
    (h.scope_kind = 'call_ids' AND r.call_digest = ANY(h.targets)) OR
    (h.scope_kind = 'subject' AND EXISTS (SELECT 1 FROM hold_subject_keys hk
        JOIN subject_keys sk ON sk.digest = hk.digest
        WHERE hk.hold_id = h.hold_id AND sk.recording_id = r.recording_id))))"""


# Held rows, and unheld stored rows that a hold in force names: the candidates for drift.
_HELD_IN_DOUBT = """
SELECT recording_id FROM recordings WHERE held AND status <> 'purged'
UNION
SELECT r.recording_id FROM holds h JOIN recordings r ON r.call_digest = ANY(h.targets)
WHERE h.scope_kind = 'call_ids' AND h.released_at IS NULL AND h.placed_at IS NOT NULL
  AND NOT r.held AND r.status = 'stored'
UNION
SELECT r.recording_id FROM holds h JOIN recordings r ON r.recording_id = ANY(
    SELECT t::uuid FROM unnest(h.targets) t
    WHERE t ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$')
WHERE h.scope_kind = 'recording_ids' AND h.released_at IS NULL AND h.placed_at IS NOT NULL
  AND NOT r.held AND r.status = 'stored'
UNION
SELECT r.recording_id FROM holds h
JOIN hold_subject_keys hk ON hk.hold_id = h.hold_id
JOIN subject_keys sk ON sk.digest = hk.digest
JOIN recordings r ON r.recording_id = sk.recording_id
WHERE h.scope_kind = 'subject' AND h.released_at IS NULL AND h.placed_at IS NOT NULL
  AND NOT r.held AND r.status = 'stored'
"""


def _query(tail: str) -> sql.SQL:
    return sql.SQL(_SELECT + tail)  # tails are constants


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


def _column_value(value: Any) -> Any:
    if isinstance(value, RecordingStatus | PurgeReason):
        return value.value
    return value


def _uuids(values: list[str]) -> list[str]:
    valid = []
    for value in values:
        try:
            valid.append(str(uuid.UUID(value)))
        except ValueError:
            continue
    return valid


def _recordings(conn: Connection, query: sql.SQL, params: Any = None) -> list[Recording]:
    return [_recording(r) for r in conn.execute(query, params).fetchall()]


class PostgresRecordings:
    def __init__(self, conn: Connection, events: list[Event]) -> None:
        self._conn = conn
        self._events = events

    def _all(self, query: sql.SQL, params: Any = None) -> list[Recording]:
        return _recordings(self._conn, query, params)

    def get(self, recording_id: str, *, lock: bool = False) -> Recording | None:
        if not _uuids([recording_id]):
            return None
        tail = "WHERE r.recording_id = %s" + (" FOR UPDATE" if lock else "")
        found = self._all(_query(tail), (recording_id,))
        return found[0] if found else None

    def get_many(self, recording_ids: list[str]) -> list[Recording]:
        tail = "WHERE r.recording_id = ANY(%s::uuid[]) ORDER BY r.recording_id"
        return self._all(_query(tail), (_uuids(recording_ids),))

    def by_call(self, call_digest: str) -> Recording | None:
        found = self._all(_query("WHERE r.call_digest = %s"), (call_digest,))
        return found[0] if found else None

    def lock(
        self, recording_ids: list[str], collected: Collection[datetime] = ()
    ) -> list[Recording]:
        """By id alone, every partition's key is probed (200 ids: 7.6 ms among 20 partitions
        of 11.5 M rows); with the collection times, only their months' partitions. Should a
        row not be found in them, all are locked again in one statement, in id order."""
        ids = _uuids(recording_ids)
        if collected:
            pruned = self._all(_query(_LOCK_IN_MONTHS), (ids, min(collected), max(collected)))
            if len(pruned) == len(set(ids)):
                return pruned
        return self._all(_query(_LOCK), (ids,))

    def add(self, recording: Recording, digests: frozenset[bytes]) -> bool:
        _, events = recording.collect()
        params = {c: _column_value(getattr(recording, c)) for c in RECORDING_COLUMNS}
        row = self._conn.execute(_INSERT, params | {"digests": sorted(digests)}).fetchone()
        if row is None or row["added"] != 1:
            return False
        self._events.extend(events)
        return True

    def update(self, recording: Recording) -> None:
        self.update_many([recording])

    def update_many(self, recordings: list[Recording]) -> None:
        """One ``UPDATE`` per distinct change: a batch of purges changes the same columns to
        the same values, so 200 shredded or tombstoned rows cost one statement."""
        groups: dict[tuple[tuple[str, Any], ...], list[Recording]] = {}
        for recording in recordings:
            changed, events = recording.collect()
            if not changed.keys() <= _COLUMN_NAMES:
                raise ValueError(f"not recording columns: {sorted(changed.keys() - _COLUMN_NAMES)}")
            if changed:
                change = tuple((c, _column_value(v)) for c, v in changed.items())
                groups.setdefault(change, []).append(recording)
            self._events.extend(events)
        for change, rows in groups.items():
            assignments = sql.SQL(", ").join(
                sql.SQL("{} = {}").format(sql.Identifier(c), sql.Placeholder(c)) for c, _ in change
            )
            ids = [r.recording_id for r in rows]
            months = sorted({r.collected_at for r in rows})  # only their partitions are visited
            self._conn.execute(
                _UPDATE.format(assignments), dict(change) | {"ids": ids, "months": months}
            )

    def digests_of(self, recording_id: str) -> frozenset[bytes]:
        return self._digests_of_many([recording_id]).get(recording_id, frozenset())

    def _digests_of_many(self, recording_ids: list[str]) -> dict[str, frozenset[bytes]]:
        rows = self._conn.execute(
            "SELECT recording_id, digest FROM subject_keys WHERE recording_id = ANY(%s::uuid[])",
            (_uuids(recording_ids),),
        ).fetchall()
        found: dict[str, set[bytes]] = {}
        for row in rows:
            found.setdefault(str(row["recording_id"]), set()).add(bytes(row["digest"]))
        return {k: frozenset(v) for k, v in found.items()}

    def forget_digests(self, recording_ids: list[str]) -> None:
        self._conn.execute(
            "DELETE FROM subject_keys WHERE recording_id = ANY(%s::uuid[])", (recording_ids,)
        )

    def replace_digests(self, recording_id: str, digests: frozenset[bytes]) -> None:
        self._conn.execute("DELETE FROM subject_keys WHERE recording_id = %s", (recording_id,))
        self._add_digests(recording_id, digests)

    def _add_digests(self, recording_id: str, digests: frozenset[bytes]) -> None:
        if digests:
            self._conn.execute(
                "INSERT INTO subject_keys (digest, recording_id) "
                "SELECT unnest(%b::bytea[]), %s::uuid",
                (sorted(digests), recording_id),
            )

    def matching(self, digests: frozenset[bytes], tenant: str | None = None) -> list[Recording]:
        tail = (
            "WHERE r.recording_id IN (SELECT recording_id FROM subject_keys "
            "WHERE digest = ANY(%(digests)s)) AND r.status IN ('stored', 'purging') "
            "AND (%(tenant)s::text IS NULL OR r.tenant = %(tenant)s) "
            "ORDER BY r.collected_at, r.recording_id"
        )
        return self._all(_query(tail), {"digests": list(digests), "tenant": tenant})

    def in_scope(self, hold: Hold, *, lock: bool = True) -> list[Recording]:
        tail = f" AND {_ALIVE} ORDER BY r.recording_id" + (" FOR UPDATE" if lock else "")
        if hold.scope_kind is HoldScopeKind.RECORDINGS:
            query = _query("WHERE r.recording_id = ANY(%s::uuid[])" + tail)
            return self._all(query, (_uuids(list(hold.targets)),))
        if hold.scope_kind is HoldScopeKind.CALLS:
            query = _query("WHERE r.call_digest = ANY(%s)" + tail)
            return self._all(query, (list(hold.targets),))
        subject = (
            "WHERE r.recording_id IN (SELECT recording_id FROM subject_keys WHERE digest = ANY(%s))"
        )
        return self._all(_query(subject + tail), (list(hold.subject_digests),))

    def claim_due(self, now: datetime, limit: int) -> list[Recording]:
        tail = (
            "WHERE r.status = 'stored' AND NOT r.held AND r.due_announced_at IS NULL "
            "AND r.retention_due_at <= %s ORDER BY r.retention_due_at LIMIT %s "
            "FOR UPDATE SKIP LOCKED"
        )
        return self._all(_query(tail), (now, limit))

    def reschedule(self, tenant: str | None, policy: IsoDuration, others: list[str]) -> int:
        """Apply a policy to stored recordings whose due date was computed from another one."""
        scope = "tenant = %(tenant)s" if tenant is not None else "NOT (tenant = ANY(%(others)s))"
        query = (
            "UPDATE recordings SET policy = %(policy)s, due_announced_at = NULL, "
            "retention_due_at = ((collected_at AT TIME ZONE 'UTC') + %(policy)s::interval) "
            "AT TIME ZONE 'UTC' WHERE status = 'stored' AND policy <> %(policy)s AND "
        )
        cur = self._conn.execute(
            sql.SQL(query + scope),  # constant scope
            {"policy": policy.text, "tenant": tenant, "others": others},
        )
        return cur.rowcount


class PostgresRecordingScans:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def page(self, after_id: str, limit: int) -> list[Recording]:
        tail = "WHERE r.recording_id > %s ORDER BY r.recording_id LIMIT %s"
        return _recordings(self._conn, _query(tail), (after_id or _BEFORE_ALL, limit))

    def wrapped_elsewhere(self, master_key_id: str, after_id: str, limit: int) -> list[str]:
        rows = self._conn.execute(
            "SELECT recording_id FROM recordings WHERE recording_id > %s::uuid "
            "AND wrapped_key IS NOT NULL AND master_key_id IS DISTINCT FROM %s "
            "ORDER BY recording_id LIMIT %s",
            (after_id or _BEFORE_ALL, master_key_id, limit),
        ).fetchall()
        return [str(r["recording_id"]) for r in rows]

    def stalled(self, announced_before: datetime, limit: int) -> list[str]:
        rows = self._conn.execute(
            "SELECT recording_id FROM recordings WHERE status = 'purging' OR (status = 'stored' "
            "AND NOT held AND due_announced_at < %s) ORDER BY due_announced_at LIMIT %s",
            (announced_before, limit),
        ).fetchall()
        return [str(r["recording_id"]) for r in rows]

    def held_flags_in_doubt(self) -> list[str]:
        rows = self._conn.execute(_HELD_IN_DOUBT).fetchall()
        return sorted(str(r["recording_id"]) for r in rows)


class PostgresRecordingCounts:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def overdue_summary(self, now: datetime) -> tuple[int, datetime | None]:
        row = self._conn.execute(
            "SELECT count(*) AS n, min(retention_due_at) AS oldest FROM recordings "
            "WHERE status IN ('stored', 'purging') AND NOT held AND retention_due_at <= %s",
            (now,),
        ).fetchone()
        assert row is not None
        return int(row["n"]), row["oldest"]

    def held_count(self) -> int:
        """Recordings kept by a hold (served by the small partial index on held rows)."""
        row = self._conn.execute(
            "SELECT count(*) AS n FROM recordings WHERE held AND status <> 'purged'"
        ).fetchone()
        return int(row["n"]) if row else 0

    def count_by_status(self) -> dict[str, int]:
        rows = self._conn.execute(
            "SELECT status, count(*) AS n FROM recordings GROUP BY status"
        ).fetchall()
        counts = {r["status"]: int(r["n"]) for r in rows}
        counts["held"] = self.held_count()
        return counts

    def count_wrapped_elsewhere(self, master_key_id: str) -> int:
        row = self._conn.execute(
            "SELECT count(*) AS n FROM recordings "
            "WHERE wrapped_key IS NOT NULL AND master_key_id IS DISTINCT FROM %s",
            (master_key_id,),
        ).fetchone()
        return int(row["n"]) if row else 0


class PostgresHolds:
    def __init__(self, conn: Connection, events: list[Event], sealer: TextSealer) -> None:
        self._conn = conn
        self._events = events
        self._sealer = sealer

    def _hold(self, row: dict[str, Any]) -> Hold:
        hold_id = row["hold_id"]
        digests = self._conn.execute(
            "SELECT digest FROM hold_subject_keys WHERE hold_id = %s", (hold_id,)
        ).fetchall()
        pairs = self._open(row.get("subject_sealed"), f"{hold_id}/subject")
        return Hold(
            hold_id=hold_id,
            reason=self._open(row["reason_sealed"], hold_id) or row["reason"] or "",
            case_ref=self._open(row["case_ref_sealed"], f"{hold_id}/case_ref") or row["case_ref"],
            scope_kind=HoldScopeKind(row["scope_kind"]),
            targets=tuple(row["targets"]),
            subject_digests=frozenset(bytes(d["digest"]) for d in digests),
            placed_at=row["placed_at"],
            released_at=row["released_at"],
            identifiers=frozenset((k, v) for k, v in json.loads(pairs)) if pairs else frozenset(),
        )

    def _sealed_pairs(self, hold: Hold) -> bytes | None:
        if not hold.identifiers:
            return None
        text = json.dumps(sorted(hold.identifiers), separators=(",", ":"))
        return self._sealer.seal(text, f"{hold.hold_id}/subject")

    def _open(self, sealed: bytes | None, context: str) -> str | None:
        return None if sealed is None else self._sealer.open(bytes(sealed), context)

    def get(self, hold_id: str, *, lock: bool = False) -> Hold | None:
        query = "SELECT * FROM holds WHERE hold_id = %s" + (" FOR UPDATE" if lock else "")  # noqa: S608
        row = self._conn.execute(query, (hold_id,)).fetchone()
        return self._hold(row) if row else None

    def add(self, hold: Hold) -> bool:
        _, events = hold.collect()
        case_ref = hold.case_ref
        cur = self._conn.execute(
            "INSERT INTO holds (hold_id, reason_sealed, case_ref_sealed, scope_kind, targets, "
            "placed_at, released_at, subject_sealed) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (hold_id) DO NOTHING",
            (
                hold.hold_id,
                self._sealer.seal(hold.reason, hold.hold_id),
                None
                if case_ref is None
                else self._sealer.seal(case_ref, f"{hold.hold_id}/case_ref"),
                hold.scope_kind.value,
                list(hold.targets),
                hold.placed_at,
                hold.released_at,
                self._sealed_pairs(hold),
            ),
        )
        if cur.rowcount != 1:
            return False
        self._add_digests(hold.hold_id, hold.subject_digests)
        self._events.extend(events)
        return True

    def _add_digests(self, hold_id: str, digests: frozenset[bytes]) -> None:
        if digests:
            with self._conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO hold_subject_keys (digest, hold_id) VALUES (%s, %s) "
                    "ON CONFLICT DO NOTHING",
                    [(d, hold_id) for d in sorted(digests)],
                )

    def update(self, hold: Hold) -> None:
        changed, events = hold.collect()
        if "placed_at" in changed or "released_at" in changed:
            self._conn.execute(
                "UPDATE holds SET placed_at = %s, released_at = %s WHERE hold_id = %s",
                (hold.placed_at, hold.released_at, hold.hold_id),
            )
        if "subject_digests" in changed:
            self._add_digests(hold.hold_id, hold.subject_digests)
        if "identifiers" in changed:
            self._conn.execute(
                "UPDATE holds SET subject_sealed = %s WHERE hold_id = %s",
                (self._sealed_pairs(hold), hold.hold_id),
            )
        self._events.extend(events)

    def active(self) -> list[Hold]:
        rows = self._conn.execute(
            "SELECT * FROM holds WHERE released_at IS NULL AND placed_at IS NOT NULL "
            "ORDER BY placed_at, hold_id"
        ).fetchall()
        return [self._hold(r) for r in rows]

    def covering(
        self, recording_id: str, call_digest: str, digests: frozenset[bytes]
    ) -> list[Hold]:
        rows = self._conn.execute(
            "SELECT * FROM holds WHERE released_at IS NULL AND placed_at IS NOT NULL AND ("
            "(scope_kind = 'recording_ids' AND %(rid)s = ANY(targets)) OR "
            "(scope_kind = 'call_ids' AND %(call)s = ANY(targets)) OR "
            "(scope_kind = 'subject' AND hold_id IN "
            " (SELECT hold_id FROM hold_subject_keys WHERE digest = ANY(%(digests)s)))) "
            "ORDER BY hold_id",
            {"rid": recording_id, "call": call_digest, "digests": list(digests)},
        ).fetchall()
        return [self._hold(r) for r in rows]

    def covered(self, recordings: list[Recording]) -> set[str]:
        if not recordings:
            return set()
        rows = self._conn.execute(
            "SELECT r.recording_id FROM recordings r "  # noqa: S608 - constant clause
            "WHERE r.recording_id = ANY(%s::uuid[]) AND r.collected_at BETWEEN %s AND %s "
            f"AND {_COVERED}",  # only the partitions of the recordings' months
            (
                [r.recording_id for r in recordings],
                min(r.collected_at for r in recordings),
                max(r.collected_at for r in recordings),
            ),
        ).fetchall()
        return {str(r["recording_id"]) for r in rows}

    def replace_subject_digests(self, hold_id: str, digests: frozenset[bytes]) -> None:
        self._conn.execute("DELETE FROM hold_subject_keys WHERE hold_id = %s", (hold_id,))
        self._add_digests(hold_id, digests)

    def replace_call_digests(self, hold_id: str, digests: tuple[str, ...]) -> None:
        self._conn.execute(
            "UPDATE holds SET targets = %s WHERE hold_id = %s", (list(digests), hold_id)
        )

    def reseal(self) -> int:
        rows = self._conn.execute(
            "SELECT hold_id, reason_sealed, case_ref_sealed, subject_sealed FROM holds "
            "ORDER BY hold_id FOR UPDATE"
        ).fetchall()
        for row in rows:
            hold_id = row["hold_id"]
            contexts = {
                "reason_sealed": hold_id,
                "case_ref_sealed": f"{hold_id}/case_ref",
                "subject_sealed": f"{hold_id}/subject",
            }
            sealed = {
                column: None
                if row[column] is None
                else self._sealer.seal(self._sealer.open(bytes(row[column]), context), context)
                for column, context in contexts.items()
            }
            self._conn.execute(
                "UPDATE holds SET reason_sealed = %(reason_sealed)s, "
                "case_ref_sealed = %(case_ref_sealed)s, subject_sealed = %(subject_sealed)s "
                "WHERE hold_id = %(hold_id)s",
                {**sealed, "hold_id": hold_id},
            )
        return len(rows)


class PostgresRequests:
    def __init__(self, conn: Connection, events: list[Event]) -> None:
        self._conn = conn
        self._events = events

    def get(self, request_id: str, *, lock: bool = False) -> RequestRecord | None:
        lock_clause = " FOR UPDATE" if lock else ""
        query = "SELECT * FROM dsr_requests WHERE request_id = %s" + lock_clause  # noqa: S608
        row = self._conn.execute(query, (request_id,)).fetchone()
        return request_record(row) if row else None

    def add(self, record: RequestRecord) -> bool:
        _, events = record.collect()
        cur = self._conn.execute(
            "INSERT INTO dsr_requests (request_id, dsr_type, status, received_at, due_at, "
            "completed_at, pending, result, matched, tenant, language) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (
                record.request_id,
                record.dsr_type,
                record.status,
                record.received_at,
                record.due_at,
                record.completed_at,
                list(record.pending),
                Jsonb(record.result),
                list(record.matched),
                record.tenant,
                record.language,
            ),
        )
        if cur.rowcount != 1:
            return False
        self._events.extend(events)
        return True

    def update(self, record: RequestRecord) -> None:
        changed, events = record.collect()
        columns = {"status", "completed_at", "pending", "result", "matched"}
        wanted = {k: v for k, v in changed.items() if k in columns}
        if wanted:
            params: dict[str, Any] = {}
            for name, value in wanted.items():
                params[name] = Jsonb(value) if name == "result" else _list_or(value)
            params["request_id"] = record.request_id
            assignments = sql.SQL(", ").join(
                sql.SQL("{} = {}").format(sql.Identifier(c), sql.Placeholder(c)) for c in wanted
            )
            query = sql.SQL("UPDATE dsr_requests SET {} WHERE request_id = %(request_id)s")
            self._conn.execute(query.format(assignments), params)
        self._events.extend(events)

    def open(self) -> list[RequestRecord]:
        rows = self._conn.execute(
            "SELECT * FROM dsr_requests WHERE cardinality(pending) > 0 OR status = 'processing' "
            "ORDER BY due_at, request_id"
        ).fetchall()
        return [request_record(r) for r in rows]

    def waiting_for(self, recording_ids: list[str]) -> list[str]:
        rows = self._conn.execute(
            "SELECT request_id FROM dsr_requests WHERE pending && %s::text[] "
            "AND status <> 'processing' ORDER BY request_id",
            (recording_ids,),
        ).fetchall()
        return [r["request_id"] for r in rows]

    def remember_erased(self, erased: ErasedSubject) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO erasure_subjects (request_id, digest, received_at, covers_later, "
                "forget_at) VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                [
                    (
                        erased.request_id,
                        d,
                        erased.received_at,
                        erased.covers_later,
                        erased.forget_at,
                    )
                    for d in sorted(erased.digests)
                ],
            )

    def erasures_covering(
        self, digests: frozenset[bytes], collected_at: datetime, now: datetime
    ) -> list[str]:
        rows = self._conn.execute(
            "SELECT DISTINCT request_id FROM erasure_subjects WHERE digest = ANY(%s) "
            "AND forget_at > %s AND (covers_later OR received_at >= %s) ORDER BY request_id",
            (list(digests), now, collected_at),
        ).fetchall()
        return [r["request_id"] for r in rows]

    def forget_erased(self, now: datetime) -> int:
        return self._conn.execute(
            "DELETE FROM erasure_subjects WHERE forget_at <= %s", (now,)
        ).rowcount

    def scrub_answer_urls(self, request_id: str) -> None:
        self._conn.execute(
            "UPDATE dsr_requests SET result = result #- '{export,url}' #- '{letter,url}' "
            "WHERE request_id = %s AND (result ? 'export' OR result ? 'letter')",
            (request_id,),
        )


def _list_or(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def request_record(row: dict[str, Any]) -> RequestRecord:
    return RequestRecord(
        request_id=row["request_id"],
        dsr_type=row["dsr_type"],
        status=row["status"],
        received_at=row["received_at"],
        due_at=row["due_at"],
        completed_at=row["completed_at"],
        matched=tuple(row["matched"]),
        pending=tuple(row["pending"]),
        result=row["result"],
        tenant=row["tenant"],
        language=row["language"],
    )


class PostgresExports:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add(self, export: ExportRecord) -> None:
        """A re-export of the same request replaces the object and gets a fresh expiry."""
        self._conn.execute(
            "INSERT INTO exports (object_key, request_id, expires_at, recording_ids) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (object_key) DO UPDATE SET "
            "expires_at = EXCLUDED.expires_at, recording_ids = EXCLUDED.recording_ids",
            (export.object_key, export.request_id, export.expires_at, list(export.recording_ids)),
        )

    def _all(self, where: str, params: Any) -> list[ExportRecord]:
        rows = self._conn.execute(
            "SELECT * FROM exports WHERE " + where + " ORDER BY object_key",  # noqa: S608 - constant clauses
            params,
        ).fetchall()
        return [
            ExportRecord(
                r["object_key"], r["request_id"], r["expires_at"], tuple(r["recording_ids"])
            )
            for r in rows
        ]

    def containing(self, recording_ids: list[str]) -> list[ExportRecord]:
        return self._all("recording_ids && %s::text[]", (recording_ids,))

    def expired(self, now: datetime) -> list[ExportRecord]:
        return self._all("expires_at <= %s", (now,))

    def remove(self, object_key: str) -> None:
        self._conn.execute("DELETE FROM exports WHERE object_key = %s", (object_key,))


class PostgresDiscards:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add(self, discard: Discard) -> bool:
        cur = self._conn.execute(
            "INSERT INTO discarded_calls (call_digest, tenant, discarded_at, landing_sha256) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (discard.call_digest, discard.tenant, discard.discarded_at, discard.landing_sha256),
        )
        return cur.rowcount == 1

    def get(self, call_digest: str) -> Discard | None:
        row = self._conn.execute(
            "SELECT * FROM discarded_calls WHERE call_digest = %s", (call_digest,)
        ).fetchone()
        if row is None:
            return None
        return Discard(
            row["call_digest"], row["tenant"], row["discarded_at"], row["landing_sha256"]
        )


class PostgresPolicies:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def current(self) -> dict[str, str]:
        rows = self._conn.execute("SELECT tenant, policy FROM retention_policies").fetchall()
        return {r["tenant"]: r["policy"] for r in rows}

    def set(self, tenant: str, policy: str, at: datetime) -> None:
        self._conn.execute(
            "INSERT INTO retention_policies (tenant, policy, applied_at) VALUES (%s, %s, %s) "
            "ON CONFLICT (tenant) DO UPDATE SET policy = EXCLUDED.policy, "
            "applied_at = EXCLUDED.applied_at",
            (tenant, policy, at),
        )

    def remove_others(self, tenants: list[str]) -> None:
        self._conn.execute(
            "DELETE FROM retention_policies WHERE NOT (tenant = ANY(%s))", (tenants,)
        )


class PostgresKeyChecks:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def all(self) -> list[StoredKeyCheck]:
        rows = self._conn.execute(
            "SELECT kind, key_id, value, retired_at FROM key_checks ORDER BY kind, key_id"
        ).fetchall()
        return [
            StoredKeyCheck(KeyCheck(r["kind"], r["key_id"], r["value"]), r["retired_at"])
            for r in rows
        ]

    def put(self, check: KeyCheck, at: datetime) -> None:
        self._conn.execute(
            "INSERT INTO key_checks (kind, key_id, value, created_at) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (kind, key_id) DO UPDATE SET value = EXCLUDED.value, "
            "created_at = EXCLUDED.created_at, retired_at = NULL",
            (check.kind, check.key_id, check.value, at),
        )

    def retire(self, kind: str, key_id: str, at: datetime) -> None:
        self._conn.execute(
            "UPDATE key_checks SET retired_at = %s "
            "WHERE kind = %s AND key_id = %s AND retired_at IS NULL",
            (at, kind, key_id),
        )

    def remove(self, kind: str, key_id: str) -> None:
        self._conn.execute("DELETE FROM key_checks WHERE kind = %s AND key_id = %s", (kind, key_id))
