"""Two database roles: the schema owner runs migrations; the workers, the console and the CLI
connect as a role that may read and write callvault's tables but only append to the audit
trail - no UPDATE, DELETE or TRUNCATE, and nothing on its partitions - so that a compromised
worker cannot rewrite history (and a DBA who can is caught by the signed checkpoints). It may
make the partitions ahead through one function that runs as the owner. The role may read
which migrations were applied (yoyo's ``_yoyo_migration``), so that a process started on a
schema behind its code says so (``schema.check_schema``); the rest of yoyo's tables stay the
owner's."""

from __future__ import annotations

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

APP_GRANTS = """
GRANT USAGE ON SCHEMA public TO {role};
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {role};
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM {role};
REVOKE ALL ON _yoyo_migration, _yoyo_log, _yoyo_version, yoyo_lock FROM {role};
GRANT SELECT ON _yoyo_migration TO {role};
GRANT EXECUTE ON FUNCTION callvault_ensure_partitions(timestamptz, bigint) TO {role};
GRANT EXECUTE ON FUNCTION callvault_stray_rows() TO {role};
"""
# The trail's partitions are reached through audit_log only; the grant on all tables above
# reached them too.
AUDIT_PARTITIONS = (
    "SELECT c.oid::regclass::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
    "WHERE i.inhparent = 'public.audit_log'::regclass"
)


def grant_app_role(owner_dsn: str, app_dsn: str) -> str:
    owner = conninfo_to_dict(owner_dsn).get("user")
    role = conninfo_to_dict(app_dsn).get("user")
    if not role or role == owner:
        return "single role"
    with psycopg.connect(owner_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL(APP_GRANTS).format(role=sql.Identifier(str(role))))
        for (partition,) in conn.execute(AUDIT_PARTITIONS).fetchall():
            conn.execute(
                sql.SQL("REVOKE ALL ON {} FROM {}").format(
                    sql.Identifier(partition), sql.Identifier(str(role))
                )
            )
    return f"{role}: reads and writes, appends to the audit trail only"
