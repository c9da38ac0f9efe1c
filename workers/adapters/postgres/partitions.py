"""The partitioned layout (docs/partitions.md): ``recordings`` by month of collection,
``audit_log`` by ranges of sequence numbers, each with a DEFAULT partition that only ever
catches what the scheduler did not make ahead.

``partition_tables`` turns a table that is still one heap into that layout:

* empty (a fresh install): in one short transaction, the heap is replaced;
* populated (an upgrade), **online**: the heap becomes the first partition, with no row
  copied. Beforehand, while ingest and purges go on, the partitioned keys are built on it
  (``CREATE UNIQUE INDEX CONCURRENTLY``) and a bound on the partition key is validated
  (``CHECK ... NOT VALID`` then ``VALIDATE``, which takes no lock writes wait on). The switch
  itself is a catalogue change of milliseconds under ``ACCESS EXCLUSIVE``, taken with a short
  lock timeout and tried again, so that ingest never waits more than that timeout at a time.
  Afterwards the heap's superseded keys are dropped.

Every step finds out from the catalogue whether it is done, so an interrupted conversion is
resumed by running ``callvault migrate`` again."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from .database import translated
from .schema import check_schema, expected_migrations

Connection = psycopg.Connection[Any]
Log = Callable[[str], None]

LOCK_TIMEOUT = "2s"  # the longest one attempt of a switch may make writers wait
SWITCH_ATTEMPTS = 30


@dataclass(frozen=True)
class Layout:
    """How one table is partitioned."""

    table: str
    key: str  # the partition key
    keys: tuple[tuple[str, str], ...]  # the partitioned table's constraints: (name, definition)
    built: tuple[str, ...]  # keys the heap lacks: built on it (concurrently) before the switch
    superseded: tuple[str, ...]  # the heap's constraints and unique indexes the keys replace
    bound: str  # SQL: the upper bound of the heap once it is the first partition
    extra_triggers: tuple[str, ...] = ()  # ``CREATE TRIGGER`` statements ({table} is the table)

    @property
    def legacy(self) -> str:
        return f"{self.table}_legacy"

    @property
    def fallback(self) -> str:
        return f"{self.table}_default"


RECORDINGS = Layout(
    table="recordings",
    key="collected_at",
    keys=(
        ("recordings_pkey", "PRIMARY KEY (recording_id, collected_at)"),
        ("recordings_call_key", "UNIQUE (call_digest, collected_at)"),
    ),
    built=("recordings_pkey", "recordings_call_key"),
    superseded=("recordings_pkey", "recordings_call_id_key", "recordings_call_digest_key"),
    # the month after next: no call collected before the switch falls beyond it
    bound="SELECT (date_trunc('month', now() AT TIME ZONE 'UTC') + interval '2 months')"
    " AT TIME ZONE 'UTC'",
    extra_triggers=(
        "CREATE TRIGGER recordings_one_per_call BEFORE INSERT ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION recordings_one_per_call()",
    ),
)
AUDIT_RANGE = 10_000_000  # entries per audit partition (the ensure function's default)
AUDIT = Layout(
    table="audit_log",
    key="seq",
    keys=(("audit_log_pkey", "PRIMARY KEY (seq)"),),
    built=(),  # the heap's own primary key is the partitioned one
    superseded=(),
    # the range after the head's: the chain does not reach it before the switch
    bound=f"SELECT (coalesce(max(seq), 0) / {AUDIT_RANGE} + 2) * {AUDIT_RANGE} FROM audit_log",  # noqa: S608 - a constant
)
LAYOUTS = (RECORDINGS, AUDIT)


def partition_tables(owner_dsn: str, *, online: bool, log: Log = lambda _: None) -> list[str]:
    """Partition every table still in one heap (a populated one only when ``online``; a
    worker's start leaves that to ``callvault migrate``), then make the partitions ahead.
    Returns what was done, one line each."""
    done: list[str] = []
    with psycopg.connect(owner_dsn, autocommit=True) as conn:
        for layout in LAYOUTS:
            if _partitioned(conn, layout.table):
                continue
            if not _owned(conn, layout.table):
                done.append(f"{layout.table}: one heap still (its owner's `callvault migrate`)")
                continue
            if _empty(conn, layout.table) and _replaced(conn, layout, log):
                done.append(f"{layout.table}: partitioned (it was empty)")
            elif online:
                _convert_online(conn, layout, log)
                done.append(f"{layout.table}: partitioned online (the heap is {layout.legacy})")
            else:
                done.append(f"{layout.table}: one heap still (`callvault migrate` partitions it)")
        if all(_owned(conn, layout.table) for layout in LAYOUTS):
            _retry_locked(conn, lambda: ensure_partitions(conn), log)
    return done


class NotEmpty(Exception):
    """A row arrived between finding the table empty and locking it."""


def _replaced(conn: Connection, layout: Layout, log: Log) -> bool:
    try:
        _retry_locked(conn, lambda: _switch(conn, layout, attach=False), log)
    except NotEmpty:
        return False
    return True


def ensure_partitions(conn: Connection) -> list[str]:
    """The partitions the next months and the audit trail's next range need (the scheduler's
    hourly call, as any role granted the function)."""
    row = conn.execute("SELECT callvault_ensure_partitions(now())").fetchone()
    return list(row[0]) if row else []


def _partitioned(conn: Connection, table: str) -> bool:
    row = conn.execute(
        "SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass(%s)", (f"public.{table}",)
    ).fetchone()
    return bool(row and row[0])


def _owned(conn: Connection, table: str) -> bool:
    row = conn.execute(
        "SELECT pg_has_role(relowner, 'USAGE') FROM pg_class WHERE oid = to_regclass(%s)",
        (f"public.{table}",),
    ).fetchone()
    return bool(row and row[0])


def _empty(conn: Connection, table: str) -> bool:
    query = sql.SQL("SELECT NOT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(table))
    row = conn.execute(query).fetchone()
    return bool(row and row[0])


# ------------------------------------------------------------------------------- online
def _convert_online(conn: Connection, layout: Layout, log: Log) -> None:
    table = sql.Identifier(layout.table)
    for name, definition in layout.keys:
        columns = definition[definition.index("(") :]
        if name in layout.built and not _valid_index(conn, _part(name)):
            log(f"{layout.table}: building {_part(name)} {columns} concurrently")
            conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(_ident(name)))
            conn.execute(
                sql.SQL("CREATE UNIQUE INDEX CONCURRENTLY {} ON {} {}").format(
                    _ident(name), table, sql.SQL(columns)
                )
            )
    bound_name = f"{layout.table}_legacy_bound"
    if not _constraint_named(conn, layout.table, bound_name):
        bound = conn.execute(layout.bound).fetchone()
        assert bound is not None
        log(f"{layout.table}: bounding the heap below {bound[0]} (validated online)")
        check = sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK ({} < {}) NOT VALID").format(
            table, sql.Identifier(bound_name), sql.Identifier(layout.key), sql.Literal(bound[0])
        )
        _retry_locked(conn, lambda: conn.execute(check), log)
    conn.execute(
        sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(table, sql.Identifier(bound_name))
    )
    log(f"{layout.table}: switching (a catalogue change under a {LOCK_TIMEOUT} lock timeout)")
    _retry_locked(conn, lambda: _switch(conn, layout, attach=True), log)
    for name in layout.superseded:
        legacy_name = _legacy_name(layout, name)
        log(f"{layout.table}: dropping the heap's superseded key {legacy_name}")
        _retry_locked(conn, lambda n=legacy_name: _drop_key(conn, layout.legacy, n), log)  # type: ignore[misc]
    for fk in _not_validated(conn):
        conn.execute(sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(*fk))


def _part(name: str) -> str:
    return f"{name}_part"


def _ident(name: str) -> sql.Identifier:
    return sql.Identifier(_part(name))


def _valid_index(conn: Connection, name: str) -> bool:
    row = conn.execute(
        "SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass(%s)",
        (f"public.{name}",),
    ).fetchone()
    return bool(row and row[0])


def _constraint_named(conn: Connection, table: str | None, name: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM pg_constraint WHERE conname = %s "
        "AND (%s::text IS NULL OR conrelid = to_regclass(%s))",
        (name, table, f"public.{table}"),
    ).fetchone()
    return row is not None


def _drop_key(conn: Connection, table: str, name: str) -> None:
    if _constraint_named(conn, table, name):
        statement = sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
            sql.Identifier(table), sql.Identifier(name)
        )
    else:
        statement = sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(name))
    conn.execute(statement)


def _not_validated(conn: Connection) -> list[tuple[sql.Identifier, sql.Identifier]]:
    rows = conn.execute(
        "SELECT conrelid::regclass::text, conname FROM pg_constraint "
        "WHERE contype = 'f' AND NOT convalidated AND connamespace = 'public'::regnamespace"
    ).fetchall()
    return [(sql.Identifier(t), sql.Identifier(n)) for t, n in rows]


def _retry_locked(conn: Connection, step: Callable[[], object], log: Log) -> None:
    """``step`` under a short lock timeout, tried again while it times out: waiting in the
    lock queue makes every later query on the table wait too, so never for long."""
    conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
    try:
        for attempt in range(1, SWITCH_ATTEMPTS + 1):
            try:
                step()
                return
            except psycopg.errors.LockNotAvailable:
                log(f"lock not granted within {LOCK_TIMEOUT} (attempt {attempt}); trying again")
                time.sleep(min(5.0, 0.5 * attempt))
        raise psycopg.errors.LockNotAvailable(
            f"the lock was not granted in {SWITCH_ATTEMPTS} attempts"
        )
    finally:
        conn.execute("RESET lock_timeout")


# ------------------------------------------------------------------------------- switch
def _legacy_name(layout: Layout, name: str) -> str:
    if name.startswith(layout.table):
        return layout.legacy + name[len(layout.table) :]
    return f"{layout.legacy}_{name}"


def _switch(conn: Connection, layout: Layout, *, attach: bool) -> None:
    """In one transaction: the heap renamed (with its keys, indexes and triggers), the
    partitioned table made in its place with the same names, grants and triggers, and the
    heap attached as its first partition (``attach``) or dropped (it was empty)."""
    table, legacy = layout.table, layout.legacy
    with conn.transaction():
        conn.execute(
            sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(table))
        )
        if attach:
            bound = _bound_of(conn, layout)
        elif not _empty(conn, table):
            raise NotEmpty(table)
        indexes = _plain_indexes(conn, table)
        triggers = _triggers(conn, table)
        grants = _grants(conn, table)
        foreign = _referencing(conn, table)
        for referencing, name, _ in foreign:
            conn.execute(
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                    sql.Identifier(referencing), sql.Identifier(name)
                )
            )
        for name, _ in triggers:
            conn.execute(
                sql.SQL("DROP TRIGGER {} ON {}").format(sql.Identifier(name), sql.Identifier(table))
            )
        _rename_keys(conn, layout)
        conn.execute(
            sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                sql.Identifier(table), sql.Identifier(legacy)
            )
        )
        _create_parent(conn, layout, indexes, triggers, grants)
        if attach:
            for name in layout.built:
                conn.execute(
                    sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} UNIQUE USING INDEX {}").format(
                        sql.Identifier(legacy), _ident(name), _ident(name)
                    )
                )
            conn.execute(
                sql.SQL(
                    "ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM (MINVALUE) TO ({})"
                ).format(sql.Identifier(table), sql.Identifier(legacy), sql.Literal(bound))
            )
            conn.execute(
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                    sql.Identifier(legacy), sql.Identifier(f"{table}_legacy_bound")
                )
            )
        else:
            conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(legacy)))
        for referencing, name, definition in foreign:
            if table == RECORDINGS.table:
                continue  # subject_keys: no key to refer to (see docs/partitions.md)
            conn.execute(
                sql.SQL(
                    "ALTER TABLE {} ADD CONSTRAINT {} {}" + (" NOT VALID" if attach else "")
                ).format(sql.Identifier(referencing), sql.Identifier(name), sql.SQL(definition))
            )


def _bound_of(conn: Connection, layout: Layout) -> str:
    row = conn.execute(
        "SELECT substring(pg_get_constraintdef(oid) from '< ''?([^'')]+)') FROM pg_constraint "
        "WHERE conrelid = to_regclass(%s) AND conname = %s",
        (f"public.{layout.table}", f"{layout.table}_legacy_bound"),
    ).fetchone()
    assert row is not None
    return str(row[0])


def _plain_indexes(conn: Connection, table: str) -> list[tuple[str, str]]:
    """(name, definition) of the indexes that back no constraint and are not unique."""
    rows = conn.execute(
        "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE i.indrelid = to_regclass(%s) AND NOT i.indisunique "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) "
        "ORDER BY c.relname",
        (f"public.{table}",),
    ).fetchall()
    return [(str(n), str(d)) for n, d in rows]


def _triggers(conn: Connection, table: str) -> list[tuple[str, str]]:
    rows = conn.execute(
        "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger "
        "WHERE tgrelid = to_regclass(%s) AND NOT tgisinternal ORDER BY tgname",
        (f"public.{table}",),
    ).fetchall()
    return [(str(n), str(d)) for n, d in rows]


def _grants(conn: Connection, table: str) -> list[tuple[str, str]]:
    rows = conn.execute(
        "SELECT a.privilege_type, r.rolname FROM pg_class c, aclexplode(c.relacl) a "
        "JOIN pg_roles r ON r.oid = a.grantee "
        "WHERE c.oid = to_regclass(%s) AND a.grantee <> c.relowner",
        (f"public.{table}",),
    ).fetchall()
    return [(str(p), str(r)) for p, r in rows]


def _referencing(conn: Connection, table: str) -> list[tuple[str, str, str]]:
    rows = conn.execute(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE contype = 'f' AND confrelid = to_regclass(%s) ORDER BY conname",
        (f"public.{table}",),
    ).fetchall()
    return [(str(t), str(n), str(d)) for t, n, d in rows]


def _rename_keys(conn: Connection, layout: Layout) -> None:
    """Every constraint and index of the heap gets its legacy name, freeing the names for
    the partitioned table."""
    table = layout.table
    constraints = conn.execute(
        "SELECT conname FROM pg_constraint WHERE conrelid = to_regclass(%s) "
        "AND contype IN ('p', 'u') AND conname <> %s",
        (f"public.{table}", f"{table}_legacy_bound"),
    ).fetchall()
    for (name,) in constraints:
        if name.endswith("_part"):
            continue
        conn.execute(
            sql.SQL("ALTER TABLE {} RENAME CONSTRAINT {} TO {}").format(
                sql.Identifier(table),
                sql.Identifier(name),
                sql.Identifier(_legacy_name(layout, name)),
            )
        )
    others = conn.execute(
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE i.indrelid = to_regclass(%s) "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)",
        (f"public.{table}",),
    ).fetchall()
    for (name,) in others:
        if name.endswith("_part"):
            continue
        conn.execute(
            sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                sql.Identifier(name), sql.Identifier(_legacy_name(layout, name))
            )
        )


def _create_parent(
    conn: Connection,
    layout: Layout,
    indexes: list[tuple[str, str]],
    triggers: list[tuple[str, str]],
    grants: list[tuple[str, str]],
) -> None:
    table, legacy = sql.Identifier(layout.table), sql.Identifier(layout.legacy)
    conn.execute(
        sql.SQL(
            "CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
            "INCLUDING STORAGE INCLUDING COMMENTS) PARTITION BY RANGE ({})"
        ).format(table, legacy, sql.Identifier(layout.key))
    )
    bound = sql.Identifier(f"{layout.table}_legacy_bound")
    conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}").format(table, bound))
    for name, definition in layout.keys:
        conn.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                table, sql.Identifier(name), sql.SQL(definition)
            )
        )
    for name, definition in indexes:
        if name in layout.superseded:
            continue
        conn.execute(definition)
    for _, definition in triggers:
        conn.execute(definition)
    for statement in layout.extra_triggers:
        conn.execute(sql.SQL(statement).format(table=table))
    for privilege, role in grants:
        conn.execute(
            sql.SQL("GRANT {} ON {} TO {}").format(sql.SQL(privilege), table, sql.Identifier(role))
        )
    conn.execute(
        sql.SQL("CREATE TABLE {} PARTITION OF {} DEFAULT").format(
            sql.Identifier(layout.fallback), table
        )
    )


# ------------------------------------------------------------------------------ archive
ARCHIVE_SCHEMA = "callvault_archive"


@dataclass(frozen=True)
class PartitionInfo:
    table: str
    partition: str
    lower: str | None
    upper: str | None
    rows: int  # the planner's estimate (pg_class.reltuples; -1 before the first ANALYZE)
    bytes: int  # with its indexes and TOAST
    alive: bool | None  # recordings: holds a row not yet purged (None for the audit trail)


def partitions(conn: Connection) -> list[PartitionInfo]:
    """Every partition of the partitioned tables, oldest first."""
    found = []
    for layout in LAYOUTS:
        if not _partitioned(conn, layout.table):
            continue
        rows = conn.execute(
            "SELECT b.partition::text, b.is_default, b.lower_bound, b.upper_bound, "
            "c.reltuples::bigint, pg_total_relation_size(b.partition) "
            "FROM callvault_partition_bounds(%s) b JOIN pg_class c ON c.oid = b.partition",
            (layout.table,),
        ).fetchall()
        for name, fallback, lower, upper, tuples, size in rows:
            alive = _alive(conn, name) if layout is RECORDINGS else None
            lower = "DEFAULT" if fallback else lower
            found.append(PartitionInfo(layout.table, name, lower, upper, tuples, size, alive))
    return sorted(found, key=_oldest_first)


def _oldest_first(info: PartitionInfo) -> tuple[str, int, str]:
    if info.lower == "DEFAULT":
        return info.table, 2, ""
    if info.lower is None:
        return info.table, 0, ""
    return info.table, 1, info.lower.rjust(32)


def _alive(conn: Connection, partition: str) -> bool:
    """Whether a row of the partition is not yet purged (read from the small partial indexes
    of stored and held rows, not the whole partition)."""
    query = sql.SQL(
        "SELECT EXISTS (SELECT 1 FROM {0} WHERE status IN ('stored', 'purging') AND NOT held) "
        "OR EXISTS (SELECT 1 FROM {0} WHERE held AND status <> 'purged')"
    ).format(sql.Identifier(partition))
    row = conn.execute(query).fetchone()
    return bool(row and row[0])


def archivable(conn: Connection, kept_days: int) -> list[PartitionInfo]:
    """Months of recordings that hold only tombstones and ended more than ``kept_days`` ago
    (the longest policy and a margin: no recording of them can still be due, held or
    arriving late)."""
    row = conn.execute("SELECT now() - make_interval(days => %s)", (kept_days,)).fetchone()
    assert row is not None
    cutoff = row[0]
    return [
        p
        for p in partitions(conn)
        if p.table == RECORDINGS.table
        and p.upper is not None
        and p.lower != "DEFAULT"
        and not p.alive
        and _before(conn, p.upper, cutoff)
    ]


def _before(conn: Connection, bound: str, cutoff: Any) -> bool:
    row = conn.execute("SELECT %s::timestamptz <= %s", (bound, cutoff)).fetchone()
    return bool(row and row[0])


def archive(conn: Connection, partition: str, log: Log = lambda _: None) -> bool:
    """Detach a tombstone-only month of recordings and move it to the ``callvault_archive``
    schema (to be dumped and dropped, or kept as evidence outside the live table): under its
    lock, checked again to hold only tombstones; the parent is locked for the catalogue change
    only (a 2 s lock timeout, tried again)."""
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(ARCHIVE_SCHEMA)))

    def detach() -> None:
        with conn.transaction():
            conn.execute(
                sql.SQL("LOCK TABLE {}, {} IN ACCESS EXCLUSIVE MODE").format(
                    sql.Identifier(RECORDINGS.table), sql.Identifier(partition)
                )
            )
            if _alive(conn, partition):
                raise _StillAlive(partition)
            conn.execute(
                sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(
                    sql.Identifier(RECORDINGS.table), sql.Identifier(partition)
                )
            )
            conn.execute(
                sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(
                    sql.Identifier(partition), sql.Identifier(ARCHIVE_SCHEMA)
                )
            )

    try:
        _retry_locked(conn, detach, log)
    except _StillAlive:
        return False  # a late call arrived in it: it stays
    return True


class _StillAlive(Exception):
    """The partition received a recording not yet purged."""


def list_partitions(owner_dsn: str) -> list[PartitionInfo]:
    with translated(), psycopg.connect(owner_dsn, autocommit=True) as conn:
        check_schema(conn, expected_migrations())
        return partitions(conn)


def archive_partitions(
    owner_dsn: str, kept_days: int, *, dry_run: bool, log: Log = lambda _: None
) -> list[str]:
    """Archive every month of recordings that may go (``dry_run``: only name them)."""
    with translated(), psycopg.connect(owner_dsn, autocommit=True) as conn:
        check_schema(conn, expected_migrations())
        names = [p.partition for p in archivable(conn, kept_days)]
        if dry_run:
            return names
        return [name for name in names if archive(conn, name, log)]
