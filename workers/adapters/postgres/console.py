"""The console's read models and sign-in tallies over PostgreSQL: search, the access log and
the disclosure register, the compliance facts of the DPO's pages, and the throttle's tallies.
What the console writes goes through the unit of work (``console_repositories``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from typing import Any

import psycopg

from ...app.console.model import (
    Access,
    AccessKind,
    Disclosure,
    Purpose,
    RecipientKind,
    Role,
    SearchCriteria,
)
from ...app.console.service import ConsoleReads
from ...app.console.throttle import R, Tally
from ...app.ports.console import DayCounts, DsrRecord, HoldView, hold_view
from ...domain.audit import verify_chain
from ...domain.calendar import LocalCalendar
from ...domain.model import Recording
from . import PostgresDatabase, PostgresUnitOfWork
from .repositories import request_record

AUDIT_PAGE = 5000


class _Reads:
    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    @contextmanager
    def _tx(self) -> Iterator[tuple[PostgresUnitOfWork, psycopg.Connection[dict[str, Any]]]]:
        """A read in its own short transaction (or a tally's update, committed)."""
        with self._db.unit_of_work() as uow:
            yield uow, uow.conn
            uow.commit()


class PostgresLoginTallies(_Reads):
    def update(self, key: bytes, change: Callable[[Tally], tuple[R, Tally]]) -> R:
        with self._tx() as (_, conn):
            conn.execute(
                "INSERT INTO console_login_tallies (key, count) VALUES (%s, 0) "
                "ON CONFLICT DO NOTHING",
                (key,),
            )
            row = conn.execute(
                "SELECT count, last_at, paused_until FROM console_login_tallies "
                "WHERE key = %s FOR UPDATE",
                (key,),
            ).fetchone()
            assert row is not None
            result, tally = change(Tally(row["count"], row["last_at"], row["paused_until"]))
            if tally == Tally():  # nothing to remember: keep no row
                conn.execute("DELETE FROM console_login_tallies WHERE key = %s", (key,))
            else:
                conn.execute(
                    "UPDATE console_login_tallies SET count = %s, last_at = %s, "
                    "paused_until = %s WHERE key = %s",
                    (tally.count, tally.last_at, tally.paused_until, key),
                )
        return result

    def forget(self, key: bytes, now: datetime) -> None:
        with self._tx() as (_, conn):
            conn.execute(
                "DELETE FROM console_login_tallies WHERE key = %s OR last_at < %s",
                (key, now - timedelta(days=1)),
            )


class PostgresRecordingSearch(_Reads):
    def search(self, criteria: SearchCriteria) -> list[Recording]:
        where: list[str] = ["status = 'stored'"]
        params: dict[str, Any] = {}
        if criteria.by_identity:
            where.append(
                "(recording_id IN (SELECT recording_id FROM subject_keys "
                "WHERE digest = ANY(%(digests)s)) OR call_id = ANY(%(calls)s))"
            )
            params.update(digests=list(criteria.digests), calls=list(criteria.call_ids))
        if criteria.start is not None:
            where.append("collected_at >= %(start)s")
            params["start"] = criteria.start
        if criteria.end is not None:
            where.append("started_at <= %(end)s")
            params["end"] = criteria.end
        if criteria.tenants is not None:
            where.append("tenant = ANY(%(tenants)s)")
            params["tenants"] = sorted(criteria.tenants)
        if criteria.agent_id is not None:
            where.append("agent_id = %(agent)s")
            params["agent"] = criteria.agent_id
        params["limit"] = criteria.limit
        sql = (
            "SELECT recording_id FROM recordings WHERE "  # noqa: S608 - constant fragments
            + " AND ".join(where)
            + " ORDER BY started_at DESC, recording_id LIMIT %(limit)s"
        )
        with self._tx() as (tx, conn):
            ids = [str(r["recording_id"]) for r in conn.execute(sql, params).fetchall()]
            found = [tx.recordings.get(recording_id) for recording_id in ids]
        return [r for r in found if r is not None]


class PostgresRegisters(_Reads):
    """The access log and the disclosure register."""

    def accesses(
        self,
        *,
        recording_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 500,
        tenants: frozenset[str] | None = None,
    ) -> list[Access]:
        where: list[str] = ["true"]
        params: dict[str, Any] = {"limit": limit}
        if tenants is not None:
            where.append(
                "recording_id IN (SELECT recording_id FROM recordings "
                "WHERE tenant = ANY(%(tenants)s))"
            )
            params["tenants"] = sorted(tenants)
        if recording_id is not None:
            where.append("recording_id = %(rid)s::uuid")
            params["rid"] = recording_id
        if since is not None:
            where.append("at >= %(since)s")
            params["since"] = since
        if until is not None:
            where.append("at < %(until)s")
            params["until"] = until
        sql = (
            "SELECT * FROM access_log WHERE "  # noqa: S608 - constant fragments
            + " AND ".join(where)
            + " ORDER BY at DESC, audit_seq DESC LIMIT %(limit)s"
        )
        with self._tx() as (_, conn):
            rows = conn.execute(sql, params).fetchall()
        return [_access(r) for r in rows]

    def accesses_of(self, recording_ids: list[str]) -> list[Access]:
        with self._tx() as (_, conn):
            rows = conn.execute(
                "SELECT * FROM access_log WHERE recording_id = ANY(%s::uuid[]) "
                "ORDER BY at, audit_seq",
                (recording_ids,),
            ).fetchall()
        return [_access(r) for r in rows]

    def access_counts(self, since: datetime, until: datetime) -> dict[str, int]:
        with self._tx() as (_, conn):
            rows = conn.execute(
                "SELECT purpose, count(*) AS n FROM access_log WHERE at >= %s AND at < %s "
                "GROUP BY purpose",
                (since, until),
            ).fetchall()
        return {r["purpose"]: int(r["n"]) for r in rows}

    def disclosures(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 500,
        tenants: frozenset[str] | None = None,
    ) -> list[Disclosure]:
        sql = (
            "SELECT d.*, array_agg(r.recording_id::text ORDER BY r.recording_id) AS ids "
            "FROM disclosures d JOIN disclosure_recordings r USING (disclosure_id) "
            "WHERE (%(since)s::timestamptz IS NULL OR d.disclosed_at >= %(since)s) "
            "AND (%(until)s::timestamptz IS NULL OR d.disclosed_at < %(until)s) "
            "AND (%(tenants)s::text[] IS NULL OR NOT EXISTS (SELECT 1 FROM disclosure_recordings "
            "o JOIN recordings x USING (recording_id) WHERE o.disclosure_id = d.disclosure_id "
            "AND x.tenant <> ALL(%(tenants)s::text[]))) "
            "GROUP BY d.disclosure_id ORDER BY d.disclosed_at DESC LIMIT %(limit)s"
        )
        window = {"since": since, "until": until, "limit": limit}
        chosen = {"tenants": sorted(tenants) if tenants is not None else None}
        with self._tx() as (_, conn):
            rows = conn.execute(sql, window | chosen).fetchall()
        return [_disclosure(r) for r in rows]

    def disclosures_of(self, recording_ids: list[str]) -> list[Disclosure]:
        with self._tx() as (_, conn):
            rows = conn.execute(
                "SELECT d.*, array_agg(r.recording_id::text ORDER BY r.recording_id) AS ids "
                "FROM disclosures d JOIN disclosure_recordings r USING (disclosure_id) "
                "WHERE d.disclosure_id IN (SELECT disclosure_id FROM disclosure_recordings "
                "WHERE recording_id = ANY(%s::uuid[])) "
                "GROUP BY d.disclosure_id ORDER BY d.disclosed_at",
                (recording_ids,),
            ).fetchall()
        return [_disclosure(r) for r in rows]


class PostgresComplianceFacts(_Reads):
    def day_counts(self, since: datetime, until: datetime, calendar: LocalCalendar) -> DayCounts:
        period = {"since": since, "until": until, "zone": calendar.name}
        with self._tx() as (_, conn):
            stored = conn.execute(
                "SELECT (stored_at AT TIME ZONE %(zone)s)::date AS day, count(*) AS n "
                "FROM recordings WHERE stored_at >= %(since)s AND stored_at < %(until)s "
                "GROUP BY day",
                period,
            ).fetchall()
            purged = conn.execute(
                "SELECT (purged_at AT TIME ZONE %(zone)s)::date AS day, purge_reason, "
                "count(*) AS n FROM recordings WHERE purged_at >= %(since)s "
                "AND purged_at < %(until)s GROUP BY day, purge_reason",
                period,
            ).fetchall()
        by_day: dict[date, dict[str, int]] = {}
        for row in purged:
            by_day.setdefault(row["day"], {})[row["purge_reason"]] = int(row["n"])
        return DayCounts({r["day"]: int(r["n"]) for r in stored}, by_day)

    def retention_lags(self, since: datetime, until: datetime) -> list[tuple[datetime, float]]:
        with self._tx() as (_, conn):
            rows = conn.execute(
                "SELECT purged_at, extract(epoch FROM purged_at - retention_due_at) AS lag "
                "FROM recordings WHERE purge_reason = 'retention' AND purged_at >= %s "
                "AND purged_at < %s ORDER BY purged_at",
                (since, until),
            ).fetchall()
        return [(r["purged_at"], max(0.0, float(r["lag"]))) for r in rows]

    def overdue(self, now: datetime) -> tuple[int, datetime | None]:
        with self._tx() as (tx, _):
            return tx.counts.overdue_summary(now)

    def recording_counts(self) -> dict[str, int]:
        with self._tx() as (tx, _):
            return tx.counts.count_by_status()

    def requests(
        self,
        *,
        open_only: bool = False,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[DsrRecord]:
        sql = (
            "SELECT * FROM dsr_requests WHERE "
            "(NOT %(open)s OR status = 'processing' OR cardinality(pending) > 0) "
            "AND (%(since)s::timestamptz IS NULL OR received_at >= %(since)s) "
            "AND (%(until)s::timestamptz IS NULL OR received_at < %(until)s) "
            "ORDER BY due_at NULLS LAST, request_id LIMIT 1000"
        )
        with self._tx() as (_, conn):
            rows = conn.execute(sql, {"open": open_only, "since": since, "until": until}).fetchall()
        return [DsrRecord.of(request_record(r)) for r in rows]

    def holds(self) -> list[HoldView]:
        with self._tx() as (tx, _):
            return [hold_view(h, tx.recordings.in_scope(h, lock=False)) for h in tx.holds.active()]

    def audit_chain(self) -> tuple[int, int | None]:
        return verify_chain(self._audit_entries())

    def _audit_entries(self) -> Iterator[Any]:
        after = 0
        while True:
            with self._tx() as (tx, _):
                page = tx.audit_entries(after, AUDIT_PAGE)
            if not page:
                return
            yield from page
            after = page[-1].seq


def _access(row: dict[str, Any]) -> Access:
    return Access(
        row["at"],
        row["username"],
        Role(row["role"]),
        Purpose(row["purpose"]),
        row["case_ref"],
        str(row["recording_id"]),
        AccessKind(row["kind"]),
    )


def _disclosure(row: dict[str, Any]) -> Disclosure:
    return Disclosure(
        disclosure_id=str(row["disclosure_id"]),
        recipient=row["recipient"],
        recipient_kind=RecipientKind(row["recipient_kind"]),
        legal_basis=row["legal_basis"],
        reference=row["reference"],
        recording_ids=tuple(row["ids"]),
        disclosed_by=row["disclosed_by"],
        disclosed_at=row["disclosed_at"],
        export_expires_at=row["export_expires_at"],
        export_key=row["export_key"],
        export_sha256=row["export_sha256"],
        export_size=row["export_size"],
    )


def console_reads(db: PostgresDatabase) -> ConsoleReads:
    return ConsoleReads(
        PostgresRecordingSearch(db),
        PostgresRegisters(db),
        PostgresComplianceFacts(db),
        PostgresLoginTallies(db),
    )
