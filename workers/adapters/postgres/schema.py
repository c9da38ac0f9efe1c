"""What a process that connects as callvault's role checks before it starts: the schema is
there and current, and the role holds every grant it needs - so that a worker started before
``callvault migrate``, or with a role the migration never granted, stops with one line that
says which, instead of failing on its first event.

The check needs no more than the role itself may do: ``to_regclass`` and the privilege
functions answer for any role, and ``callvault migrate`` grants the role SELECT on yoyo's
table of applied migrations (nothing else of yoyo's)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from ...domain.errors import AccessRefused, SchemaMissing

Connection = psycopg.Connection[Any]  # any row factory: the checks read rows by name

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
APPLIED = "_yoyo_migration"
YOYO_TABLES = (APPLIED, "_yoyo_log", "_yoyo_version", "yoyo_lock")
APPEND_ONLY = {"audit_log": ("SELECT", "INSERT")}  # the trail: no UPDATE, DELETE, TRUNCATE
# functions that run as the schema owner, which the workers' role calls
FUNCTIONS = ("callvault_ensure_partitions(timestamptz,bigint)", "callvault_stray_rows()")
TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")
GRANT_FIX = (
    "run `callvault migrate` with CALLVAULT_DATABASE_ADMIN_URL (the schema owner), which "
    "grants them"
)


def expected_migrations() -> list[str]:
    """The ids of the migrations this version of callvault ships (yoyo's ids: file stems)."""
    return sorted(p.stem for p in MIGRATIONS.glob("*.sql") if not p.name.endswith(".rollback.sql"))


@dataclass(frozen=True)
class RoleReport:
    """Who the process connected as, and whether that role can do more than it should."""

    role: str
    superuser: bool
    owns_schema: bool

    @property
    def too_powerful(self) -> bool:
        return self.superuser or self.owns_schema


def check_schema(conn: Connection, expected: list[str]) -> RoleReport:
    """Raise :class:`SchemaMissing` when the schema is absent or behind, :class:`AccessRefused`
    naming every grant the connected role lacks; otherwise say who the role is."""
    found = _one(
        conn,
        "SELECT current_user AS role, r.rolsuper AS superuser, "
        "to_regclass('public.audit_log') IS NOT NULL AS has_trail, "
        "to_regclass('public._yoyo_migration') IS NOT NULL AS has_yoyo "
        "FROM pg_roles r WHERE r.rolname = current_user",
    )
    role = found["role"]
    if not (found["has_trail"] and found["has_yoyo"]):
        raise SchemaMissing("the database has no callvault schema: run `callvault migrate`")
    if not _one(conn, "SELECT has_table_privilege('public._yoyo_migration', 'SELECT') AS ok")["ok"]:
        raise AccessRefused(
            f"the database role {role} lacks SELECT on {APPLIED}, so it cannot tell whether "
            f"the schema is current: {GRANT_FIX}"
        )
    applied = {r["migration_id"] for r in _rows(conn, "SELECT migration_id FROM _yoyo_migration")}
    pending = [m for m in expected if m not in applied]
    if pending:
        raise SchemaMissing(
            f"the database schema is behind this callvault ({len(pending)} migration(s) not "
            f"applied: {', '.join(pending)}): run `callvault migrate`"
        )
    missing = missing_grants(conn)
    if missing:
        raise AccessRefused(f"the database role {role} lacks {'; '.join(missing)}: {GRANT_FIX}")
    owns = _one(
        conn,
        "SELECT pg_get_userbyid(relowner) = current_user AS owns FROM pg_class "
        "WHERE oid = 'public.audit_log'::regclass",
    )["owns"]
    return RoleReport(str(role), bool(found["superuser"]), bool(owns))


def missing_grants(conn: Connection) -> list[str]:
    """``PRIVILEGE, ... on NAME`` for every table and sequence of the schema that the connected
    role may not use as callvault needs (yoyo's own tables excluded)."""
    rows = _rows(
        conn,
        "SELECT c.relname AS name, c.relkind = 'S' AS sequence, "
        "has_table_privilege(c.oid, 'SELECT') AS \"SELECT\", "
        "has_table_privilege(c.oid, 'INSERT') AS \"INSERT\", "
        "has_table_privilege(c.oid, 'UPDATE') AS \"UPDATE\", "
        "has_table_privilege(c.oid, 'DELETE') AS \"DELETE\", "
        "CASE WHEN c.relkind = 'S' THEN has_sequence_privilege(c.oid, 'USAGE') END AS \"USAGE\" "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'S') AND NOT c.relispartition "
        "ORDER BY c.relname",
    )
    missing = []
    for row in rows:
        if row["name"] in YOYO_TABLES:
            continue
        if row["sequence"]:
            wanted: tuple[str, ...] = ("USAGE",)
        else:
            wanted = APPEND_ONLY.get(row["name"], TABLE_PRIVILEGES)
        lacking = [p for p in wanted if not row[p]]
        if lacking:
            missing.append(f"{', '.join(lacking)} on {row['name']}")
    for function in FUNCTIONS:
        found = _one(
            conn,
            "SELECT to_regprocedure(%s) IS NULL OR has_function_privilege(to_regprocedure(%s), "
            "'EXECUTE') AS ok",
            (function, function),
        )
        if not found["ok"]:
            missing.append(f"EXECUTE on {function}")
    return missing


def _rows(conn: Connection, query: str) -> list[dict[str, Any]]:
    """Rows by column name, whatever row factory the connection was opened with."""
    return conn.cursor(row_factory=dict_row).execute(query).fetchall()


def _one(conn: Connection, query: str, params: tuple[Any, ...] = ()) -> dict[str, Any]:
    row = conn.cursor(row_factory=dict_row).execute(query, params).fetchone()
    assert row is not None
    return row
