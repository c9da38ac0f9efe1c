"""PostgreSQL implementation of the console's ports, in the core store's transactions (an
access and its audit entry, a disclosure and its audit entry, commit together)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from typing import Any

import psycopg

from ...app.console.history import SubjectHistory
from ...app.console.model import (
    Access,
    AccessKind,
    ApiToken,
    Disclosure,
    Purpose,
    RecipientKind,
    Role,
    SearchCriteria,
    User,
)
from ...app.console.throttle import R, Tally
from ...app.ports.console import DayCounts, DsrRecord, HoldView
from ...domain.audit import verify_chain
from ...domain.calendar import LocalCalendar
from ...domain.model import Recording
from . import PostgresDatabase, PostgresUnitOfWork
from .audit import append_audit, lock_head
from .repositories import request_record

AUDIT_PAGE = 5000


class _Taken(Exception):
    """A name or an identity is taken: the transaction is rolled back."""


class PostgresConsole:
    """Every console port over the core's database: each method one unit of work."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    @contextmanager
    def _tx(self) -> Iterator[tuple[PostgresUnitOfWork, psycopg.Connection[dict[str, Any]]]]:
        with self._db.unit_of_work() as uow:
            yield uow, uow.conn
            uow.commit()

    # users ---------------------------------------------------------------------------------
    def add_user(self, user: User) -> bool:
        with self._tx() as (_, conn):
            cur = conn.execute(
                "INSERT INTO console_users (username, role, password_hash, disabled, created_at) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (
                    user.username,
                    user.role.value,
                    user.password_hash,
                    user.disabled,
                    user.created_at,
                ),
            )
            return cur.rowcount == 1

    def user(self, username: str) -> User | None:
        with self._tx() as (_, conn):
            row = conn.execute(
                "SELECT * FROM console_users WHERE username = %s", (username,)
            ).fetchone()
        return _user(row) if row else None

    def users(self) -> list[User]:
        with self._tx() as (_, conn):
            rows = conn.execute("SELECT * FROM console_users ORDER BY username").fetchall()
        return [_user(r) for r in rows]

    def set_disabled(self, username: str, disabled: bool) -> bool:
        with self._tx() as (_, conn):
            cur = conn.execute(
                "UPDATE console_users SET disabled = %s WHERE username = %s", (disabled, username)
            )
            return cur.rowcount == 1

    def set_role(self, username: str, role: Role) -> bool:
        with self._tx() as (_, conn):
            cur = conn.execute(
                "UPDATE console_users SET role = %s WHERE username = %s", (role.value, username)
            )
            return cur.rowcount == 1

    def set_language(self, username: str, language: str | None) -> bool:
        with self._tx() as (_, conn):
            cur = conn.execute(
                "UPDATE console_users SET language = %s WHERE username = %s", (language, username)
            )
            return cur.rowcount == 1

    def user_for_identity(self, issuer: str, subject: str) -> User | None:
        with self._tx() as (_, conn):
            row = conn.execute(
                "SELECT u.* FROM console_identities i JOIN console_users u USING (username) "
                "WHERE i.issuer = %s AND i.subject = %s",
                (issuer, subject),
            ).fetchone()
        return _user(row) if row else None

    def add_federated_user(self, user: User, issuer: str, subject: str, at: datetime) -> bool:
        try:
            with self._tx() as (_, conn):
                for sql, values in (
                    (
                        "INSERT INTO console_users (username, role, password_hash, disabled, "
                        "created_at) VALUES (%s, %s, NULL, %s, %s) ON CONFLICT DO NOTHING",
                        (user.username, user.role.value, user.disabled, user.created_at),
                    ),
                    (
                        "INSERT INTO console_identities (issuer, subject, username, bound_at) "
                        "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                        (issuer, subject, user.username, at),
                    ),
                ):
                    if conn.execute(sql, values).rowcount != 1:
                        raise _Taken  # the name or the identity: nothing is written
        except _Taken:
            return False
        return True

    def bind_identity(self, username: str, issuer: str, subject: str, at: datetime) -> bool:
        with self._tx() as (_, conn):
            bound = conn.execute(
                "INSERT INTO console_identities (issuer, subject, username, bound_at) "
                "SELECT %s, %s, username, %s FROM console_users "
                "WHERE username = %s AND password_hash IS NULL "
                "ON CONFLICT DO NOTHING",
                (issuer, subject, at, username),
            )
            return bound.rowcount == 1

    # tokens --------------------------------------------------------------------------------
    def add_token(self, token: ApiToken) -> None:
        with self._tx() as (_, conn):
            conn.execute(
                "INSERT INTO console_tokens (token_id, username, secret_hash, created_at) "
                "VALUES (%s, %s, %s, %s)",
                (token.token_id, token.username, token.secret_hash, token.created_at),
            )

    def token(self, token_id: str) -> ApiToken | None:
        with self._tx() as (_, conn):
            row = conn.execute(
                "SELECT * FROM console_tokens WHERE token_id = %s", (token_id,)
            ).fetchone()
        return _token(row) if row else None

    def tokens_of(self, username: str) -> list[ApiToken]:
        with self._tx() as (_, conn):
            rows = conn.execute(
                "SELECT * FROM console_tokens WHERE username = %s ORDER BY created_at", (username,)
            ).fetchall()
        return [_token(r) for r in rows]

    def revoke_token(self, token_id: str, at: datetime) -> bool:
        with self._tx() as (_, conn):
            cur = conn.execute(
                "UPDATE console_tokens SET revoked_at = %s "
                "WHERE token_id = %s AND revoked_at IS NULL",
                (at, token_id),
            )
            return cur.rowcount == 1

    # sign-in throttle ----------------------------------------------------------------------
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

    # recordings ----------------------------------------------------------------------------
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

    def recording(self, recording_id: str) -> Recording | None:
        with self._tx() as (tx, _):
            return tx.recordings.get(recording_id)

    # access log ----------------------------------------------------------------------------
    def record_access(self, access: Access, *, unless_since: datetime | None = None) -> bool:
        with self._tx() as (_, conn):
            if unless_since is not None:
                conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                    (f"access:{access.username}:{access.recording_id}",),
                )
                seen = conn.execute(
                    "SELECT 1 FROM access_log WHERE recording_id = %s AND username = %s "
                    "AND purpose = %s AND case_ref IS NOT DISTINCT FROM %s AND at >= %s LIMIT 1",
                    (
                        access.recording_id,
                        access.username,
                        access.purpose.value,
                        access.case_ref,
                        unless_since,
                    ),
                ).fetchone()
                if seen:
                    return False
            entry = append_audit(
                conn, "access", access.recording_id, _audit_details(access), access.at
            )
            conn.execute(
                "INSERT INTO access_log (audit_seq, at, username, role, purpose, case_ref, "
                "recording_id, kind) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    entry.seq,
                    access.at,
                    access.username,
                    access.role.value,
                    access.purpose.value,
                    access.case_ref,
                    access.recording_id,
                    access.kind.value,
                ),
            )
        return True

    def accesses(
        self,
        *,
        recording_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 500,
    ) -> list[Access]:
        where: list[str] = ["true"]
        params: dict[str, Any] = {"limit": limit}
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

    # requests registered by the DPO -----------------------------------------------------------
    def request_registered(self, request_id: str, details: dict[str, Any], at: datetime) -> bool:
        with self._tx() as (_, conn):
            lock_head(conn)  # under the chain's lock: a form sent twice is recorded once
            seen = conn.execute(
                "SELECT 1 FROM audit_log WHERE action = 'request_registered' AND entity_id = %s",
                (request_id,),
            ).fetchone()
            if seen:
                return False
            append_audit(conn, "request_registered", request_id, details, at)
            return True

    # disclosures ---------------------------------------------------------------------------
    def register(self, disclosure: Disclosure) -> None:
        with self._tx() as (_, conn):
            conn.execute(
                "INSERT INTO disclosures (disclosure_id, recipient, recipient_kind, legal_basis, "
                "reference, disclosed_by, disclosed_at, export_expires_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    disclosure.disclosure_id,
                    disclosure.recipient,
                    disclosure.recipient_kind.value,
                    disclosure.legal_basis,
                    disclosure.reference,
                    disclosure.disclosed_by,
                    disclosure.disclosed_at,
                    disclosure.export_expires_at,
                ),
            )
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO disclosure_recordings (disclosure_id, recording_id) "
                    "VALUES (%s, %s)",
                    [(disclosure.disclosure_id, r) for r in disclosure.recording_ids],
                )
            append_audit(
                conn,
                "disclosure",
                disclosure.disclosure_id,
                {
                    "recipient_kind": disclosure.recipient_kind.value,
                    "by": disclosure.disclosed_by,
                    "recording_ids": list(disclosure.recording_ids),
                },
                disclosure.disclosed_at,
            )

    def disclosures(
        self, *, since: datetime | None = None, until: datetime | None = None, limit: int = 500
    ) -> list[Disclosure]:
        sql = (
            "SELECT d.*, array_agg(r.recording_id::text ORDER BY r.recording_id) AS ids "
            "FROM disclosures d JOIN disclosure_recordings r USING (disclosure_id) "
            "WHERE (%(since)s::timestamptz IS NULL OR d.disclosed_at >= %(since)s) "
            "AND (%(until)s::timestamptz IS NULL OR d.disclosed_at < %(until)s) "
            "GROUP BY d.disclosure_id ORDER BY d.disclosed_at DESC LIMIT %(limit)s"
        )
        with self._tx() as (_, conn):
            rows = conn.execute(sql, {"since": since, "until": until, "limit": limit}).fetchall()
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

    # compliance facts ----------------------------------------------------------------------
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
            return tx.recordings.overdue_summary(now)

    def recording_counts(self) -> dict[str, int]:
        with self._tx() as (tx, _):
            return tx.recordings.count_by_status()

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
            return [
                HoldView(
                    h,
                    [
                        (r.recording_id, r.call_id or "")
                        for r in tx.recordings.in_scope(h, lock=False)
                    ],
                )
                for h in tx.holds.active()
            ]

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


def _covered(recordings: list[Recording]) -> list[tuple[str, str]]:
    return [(r.recording_id, r.call_id or "") for r in recordings]


def _audit_details(access: Access) -> dict[str, Any]:
    """Who consulted which recording, in which role, for what: no customer data."""
    return {
        "user": access.username,
        "role": access.role.value,
        "purpose": access.purpose.value,
        "case_ref": access.case_ref,
        "kind": access.kind.value,
    }


def _user(row: dict[str, Any]) -> User:
    return User(
        row["username"],
        Role(row["role"]),
        row["password_hash"],
        row["disabled"],
        row["created_at"],
        row["language"],
    )


def _token(row: dict[str, Any]) -> ApiToken:
    return ApiToken(
        row["token_id"],
        row["username"],
        bytes(row["secret_hash"]),
        row["created_at"],
        row["revoked_at"],
    )


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
    )


def subject_history(db: PostgresDatabase) -> SubjectHistory:
    """The access-export and Art. 19 hook of the core handlers, over this database."""
    console = PostgresConsole(db)
    return SubjectHistory(console, console)
