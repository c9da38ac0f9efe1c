"""The console's repositories in the unit of work: accounts (with their tokens and identity
bindings), consultations and disclosures. What they write commits with the audit entries of
the events the handler recorded, and the access log (an index of the ``access`` entries) is
written from those entries at the commit."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from ...app.console.model import Access, ApiToken, Disclosure, Role, User
from ...app.effects import ACCESS
from ...domain.audit import AuditEntry

Connection = psycopg.Connection[dict[str, Any]]
_USER = "SELECT * FROM console_users WHERE username = %s"
_LOCKED_USER = _USER + " FOR UPDATE"


class PostgresAccounts:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def get(self, username: str, *, lock: bool = False) -> User | None:
        query = _LOCKED_USER if lock else _USER
        row = self._conn.execute(query, (username,)).fetchone()
        return user_of(row) if row else None

    def all(self) -> list[User]:
        rows = self._conn.execute("SELECT * FROM console_users ORDER BY username").fetchall()
        return [user_of(r) for r in rows]

    def add(self, user: User) -> bool:
        cur = self._conn.execute(
            "INSERT INTO console_users (username, role, password_hash, disabled, created_at, "
            "tenants) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (
                user.username,
                user.role.value,
                user.password_hash,
                user.disabled,
                user.created_at,
                sorted(user.tenants),
            ),
        )
        return cur.rowcount == 1

    def update(self, user: User) -> None:
        """The columns an account's commands change: role, state, tenants, language."""
        self._conn.execute(
            "UPDATE console_users SET role = %s, disabled = %s, tenants = %s, language = %s "
            "WHERE username = %s",
            (user.role.value, user.disabled, sorted(user.tenants), user.language, user.username),
        )

    def for_identity(self, issuer: str, subject: str) -> User | None:
        row = self._conn.execute(
            "SELECT u.* FROM console_identities i JOIN console_users u USING (username) "
            "WHERE i.issuer = %s AND i.subject = %s",
            (issuer, subject),
        ).fetchone()
        return user_of(row) if row else None

    def bind(self, username: str, issuer: str, subject: str, at: datetime) -> bool:
        cur = self._conn.execute(
            "INSERT INTO console_identities (issuer, subject, username, bound_at) "
            "SELECT %s, %s, username, %s FROM console_users "
            "WHERE username = %s AND password_hash IS NULL ON CONFLICT DO NOTHING",
            (issuer, subject, at, username),
        )
        return cur.rowcount == 1

    def token(self, token_id: str) -> ApiToken | None:
        row = self._conn.execute(
            "SELECT * FROM console_tokens WHERE token_id = %s", (token_id,)
        ).fetchone()
        return _token(row) if row else None

    def tokens_of(self, username: str) -> list[ApiToken]:
        rows = self._conn.execute(
            "SELECT * FROM console_tokens WHERE username = %s ORDER BY created_at, token_id",
            (username,),
        ).fetchall()
        return [_token(r) for r in rows]

    def add_token(self, token: ApiToken) -> None:
        self._conn.execute(
            "INSERT INTO console_tokens (token_id, username, secret_hash, created_at) "
            "VALUES (%s, %s, %s, %s)",
            (token.token_id, token.username, token.secret_hash, token.created_at),
        )

    def revoke_token(self, token_id: str, at: datetime) -> bool:
        cur = self._conn.execute(
            "UPDATE console_tokens SET revoked_at = %s WHERE token_id = %s AND revoked_at IS NULL",
            (at, token_id),
        )
        return cur.rowcount == 1


class PostgresAccesses:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def seen_since(self, access: Access, since: datetime) -> bool:
        self._conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
            (f"access:{access.username}:{access.recording_id}",),
        )
        seen = self._conn.execute(
            "SELECT 1 FROM access_log WHERE recording_id = %s AND username = %s "
            "AND purpose = %s AND kind = %s AND case_ref IS NOT DISTINCT FROM %s AND at >= %s "
            "LIMIT 1",
            (
                access.recording_id,
                access.username,
                access.purpose.value,
                access.kind.value,
                access.case_ref,
                since,
            ),
        ).fetchone()
        return seen is not None


class PostgresDisclosures:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add(self, disclosure: Disclosure) -> None:
        d = disclosure
        self._conn.execute(
            "INSERT INTO disclosures (disclosure_id, recipient, recipient_kind, legal_basis, "
            "reference, disclosed_by, disclosed_at, export_expires_at, export_key, "
            "export_sha256, export_size) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                d.disclosure_id,
                d.recipient,
                d.recipient_kind.value,
                d.legal_basis,
                d.reference,
                d.disclosed_by,
                d.disclosed_at,
                d.export_expires_at,
                d.export_key,
                d.export_sha256,
                d.export_size,
            ),
        )
        with self._conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO disclosure_recordings (disclosure_id, recording_id) VALUES (%s, %s)",
                [(d.disclosure_id, r) for r in d.recording_ids],
            )


class PostgresRegistrations:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def registered(self, request_id: str) -> bool:
        self._conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"registered:{request_id}",)
        )
        seen = self._conn.execute(
            "SELECT 1 FROM audit_log WHERE action = 'request_registered' AND entity_id = %s",
            (request_id,),
        ).fetchone()
        return seen is not None


def insert_accesses(conn: Connection, entries: list[AuditEntry]) -> None:
    """The access log's rows for the ``access`` entries just chained (same transaction)."""
    rows = [
        (
            e.seq,
            e.at,
            e.details["user"],
            e.details["role"],
            e.details["purpose"],
            e.details["case_ref"],
            e.entity_id,
            e.details["kind"],
        )
        for e in entries
        if e.action == ACCESS
    ]
    if rows:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO access_log (audit_seq, at, username, role, purpose, case_ref, "
                "recording_id, kind) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                rows,
            )


def user_of(row: dict[str, Any]) -> User:
    return User(
        row["username"],
        Role(row["role"]),
        row["password_hash"],
        row["disabled"],
        row["created_at"],
        language=row["language"],
        tenants=frozenset(row["tenants"]),
    )


def _token(row: dict[str, Any]) -> ApiToken:
    return ApiToken(
        row["token_id"],
        row["username"],
        bytes(row["secret_hash"]),
        row["created_at"],
        row["revoked_at"],
    )
