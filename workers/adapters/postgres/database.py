"""The PostgreSQL database: a connection pool, error translation, the unit of work, the
outbox and the follow-up queue.

psycopg's errors are translated here and nowhere else: a database that is away, restarting,
out of connections, or that aborted a transaction to break a deadlock or a serialisation
conflict is :class:`TransientError`; anything else is a bug met with this input
(:class:`InternalError`, dead-lettered so the partition moves on).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from datetime import datetime
from types import TracebackType
from typing import Any, Self

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from ...app import followups
from ...app.effects import effects_of
from ...app.ports.unit_of_work import FollowUp, Outbound, ParkedFollowUp
from ...domain.audit import AuditEntry
from ...domain.errors import InternalError, SchemaMissing, TransientError
from ...domain.events import OutboundEvent
from ...domain.messages import Command, Event
from ..crypto import TextSealer
from ..kafka import codec
from .audit import (
    audit_entries,
    audit_head,
    audit_marks,
    audit_ranges,
    chained,
    insert_entries,
    lock_head,
    mark_verified,
    prepare,
)
from .channels import notify
from .console_repositories import (
    PostgresAccesses,
    PostgresAccounts,
    PostgresDisclosures,
    PostgresRegistrations,
    insert_accesses,
)
from .repositories import (
    PostgresDiscards,
    PostgresExports,
    PostgresHolds,
    PostgresKeyChecks,
    PostgresPolicies,
    PostgresRecordingCounts,
    PostgresRecordings,
    PostgresRecordingScans,
    PostgresRequests,
)
from .schema import RoleReport, check_schema

Connection = psycopg.Connection[dict[str, Any]]
# One advisory key serialises hold changes (exclusive) against commits that must see every
# hold committed before them (shared): ingest commits and purges.
HOLDS_LOCK = 0x686F_6C64_7321
# A commit is acted on at once outside the database (its outbox rows published, the landing
# copy deleted, the Kafka offset committed), so it must survive a crash of the server: never
# asynchronous, whatever the server's default (the local stack runs with it off, for speed).
DURABLE_COMMITS = "-c synchronous_commit=on"


def translate(error: BaseException) -> Exception:
    if isinstance(error, psycopg.errors.UndefinedTable | psycopg.errors.UndefinedColumn):
        return SchemaMissing("the database has no callvault schema: run `callvault migrate`")
    if isinstance(error, PoolTimeout | psycopg.OperationalError | psycopg.InterfaceError):
        return TransientError(f"database unavailable: {type(error).__name__}")
    if isinstance(error, psycopg.errors.InsufficientPrivilege):
        return InternalError(
            f"the database refused callvault's role: {error.diag.message_primary} (run "
            "`callvault migrate` with CALLVAULT_DATABASE_ADMIN_URL, the schema owner, to grant "
            "what the role needs)"
        )
    if isinstance(error, psycopg.errors.UniqueViolation):
        return TransientError("a concurrent transaction wrote the same row; trying again")
    if isinstance(error, psycopg.Error):
        return InternalError(f"database refused the statement: {type(error).__name__}")
    return error if isinstance(error, Exception) else RuntimeError(str(error))


@contextmanager
def translated() -> Iterator[None]:
    try:
        yield
    except (psycopg.Error, PoolTimeout) as exc:
        raise translate(exc) from exc


class PostgresDatabase:
    def __init__(
        self,
        dsn: str,
        *,
        sealer: TextSealer,
        source: str,
        clock: Callable[[], datetime],
        min_size: int = 1,
        max_size: int = 8,
        timeout: float = 10.0,
    ) -> None:
        self._pool: ConnectionPool[Connection] = ConnectionPool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            kwargs={"row_factory": dict_row, "autocommit": False, "options": DURABLE_COMMITS},
            open=False,
            check=ConnectionPool.check_connection,
        )
        self.sealer = sealer
        self.source = source
        self.clock = clock

    def open(self, wait_seconds: float = 30) -> None:
        with translated():
            self._pool.open(wait=True, timeout=wait_seconds)

    def close(self) -> None:
        self._pool.close()

    def check_schema(self, expected: list[str]) -> RoleReport:
        """The schema is there and current and this role holds its grants (else a
        :class:`SchemaMissing` or :class:`AccessRefused` that says which); who the role is."""
        with self.connection() as conn:
            return check_schema(conn, expected)

    def unit_of_work(self) -> PostgresUnitOfWork:
        return PostgresUnitOfWork(self)

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A pooled connection in a transaction, committed when the block ends normally."""
        with translated(), self._pool.connection() as conn, conn.transaction():
            yield conn

    # the outbox -----------------------------------------------------------------------------
    @contextmanager
    def pending(self, limit: int) -> Iterator[list[Outbound]]:
        with self.connection() as conn:
            rows = conn.execute(
                "SELECT id, topic, key, event FROM outbox ORDER BY id LIMIT %s "
                "FOR UPDATE SKIP LOCKED",
                (limit,),
            ).fetchall()
            yield [Outbound(r["id"], r["topic"], r["key"], r["event"]) for r in rows]
            if rows:
                conn.execute("DELETE FROM outbox WHERE id = ANY(%s)", ([r["id"] for r in rows],))

    def outbox_backlog(self) -> tuple[int, datetime | None]:
        with self.connection() as conn:
            row = conn.execute(
                "SELECT count(*) AS n, min(created_at) AS oldest FROM outbox"
            ).fetchone()
        assert row is not None
        return int(row["n"]), row["oldest"]

    # the partitioned tables -----------------------------------------------------------------
    def ensure_partitions(self) -> list[str]:
        with self.connection() as conn:
            row = conn.execute("SELECT callvault_ensure_partitions(now()) AS made").fetchone()
        return list(row["made"]) if row else []

    def stray_rows(self) -> dict[str, int]:
        with self.connection() as conn:
            rows = conn.execute("SELECT parent, stray FROM callvault_stray_rows()").fetchall()
        return {r["parent"]: int(r["stray"]) for r in rows}

    # the follow-up queue --------------------------------------------------------------------
    @contextmanager
    def claim(self) -> Iterator[FollowUp | None]:
        with self.connection() as conn:
            row = conn.execute(
                "SELECT id, kind, payload, attempts FROM followups "
                "WHERE failed_at IS NULL AND not_before <= now() "
                "ORDER BY kind = %s, not_before, id LIMIT 1 FOR UPDATE SKIP LOCKED",
                (followups.LAST,),
            ).fetchone()
            if row is None:
                yield None
                return
            yield FollowUp(
                row["id"], followups.decode(row["kind"], row["payload"]), row["attempts"]
            )
            conn.execute("DELETE FROM followups WHERE id = %s", (row["id"],))

    def postpone(self, follow_up_id: int, seconds: float, error: str) -> None:
        with self.connection() as conn:
            conn.execute(
                "UPDATE followups SET attempts = attempts + 1, last_error = %s, "
                "not_before = now() + make_interval(secs => %s) WHERE id = %s",
                (error, seconds, follow_up_id),
            )

    def give_up(self, follow_up_id: int, error: str) -> None:
        with self.connection() as conn:
            conn.execute(
                "UPDATE followups SET attempts = attempts + 1, last_error = %s, failed_at = now() "
                "WHERE id = %s",
                (error, follow_up_id),
            )

    def follow_up_backlog(self) -> int:
        with self.connection() as conn:
            row = conn.execute(
                "SELECT count(*) AS n FROM followups WHERE failed_at IS NULL"
            ).fetchone()
        return int(row["n"]) if row else 0

    def parked_follow_ups(self, limit: int) -> list[ParkedFollowUp]:
        with self.connection() as conn:
            rows = conn.execute(
                "SELECT id, kind, attempts, last_error, failed_at FROM followups "
                "WHERE failed_at IS NOT NULL ORDER BY failed_at, id LIMIT %s",
                (limit,),
            ).fetchall()
        return [
            ParkedFollowUp(r["id"], r["kind"], r["attempts"], r["last_error"] or "", r["failed_at"])
            for r in rows
        ]

    def parked_count(self) -> int:
        with self.connection() as conn:
            row = conn.execute(
                "SELECT count(*) AS n FROM followups WHERE failed_at IS NOT NULL"
            ).fetchone()
        return int(row["n"]) if row else 0

    def retry_parked(self, ids: Collection[int] | None) -> int:
        with self.connection() as conn:
            done = conn.execute(
                "UPDATE followups SET failed_at = NULL, not_before = now() "
                "WHERE failed_at IS NOT NULL AND (%s::bigint[] IS NULL OR id = ANY(%s::bigint[]))",
                (None if ids is None else list(ids),) * 2,
            )
            return done.rowcount

    # dead letters an operator gave up on ----------------------------------------------------
    def discarded_dead_letters(self, topic: str) -> set[tuple[int, int]]:
        with self.connection() as conn:
            rows = conn.execute(
                'SELECT partition, "offset" FROM deadletters_discarded WHERE topic = %s', (topic,)
            ).fetchall()
        return {(r["partition"], r["offset"]) for r in rows}

    def discard_dead_letter(self, topic: str, partition: int, offset: int, at: datetime) -> None:
        with self.connection() as conn:
            conn.execute(
                'INSERT INTO deadletters_discarded (topic, partition, "offset", discarded_at) '
                "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (topic, partition, offset, at),
            )


def _insert_outbox(conn: Connection, outbound: list[OutboundEvent], source: str) -> None:
    """One statement; ids follow the events' order (the relay publishes by id). A row keeps
    the event as the relay sends it: its CloudEvent."""
    if outbound:
        conn.execute(
            "INSERT INTO outbox (topic, key, event) SELECT t, k, e FROM unnest("
            "%b::text[], %b::text[], %b::jsonb[]) WITH ORDINALITY AS u(t, k, e, n) ORDER BY n",
            (
                [e.topic for e in outbound],
                [e.key for e in outbound],
                [Jsonb(codec.outbound(e, source)) for e in outbound],
            ),
        )  # %b: arrays sent in binary, so the JSON texts need no per-character escaping


def _insert_follow_ups(conn: Connection, commands: list[Command]) -> None:
    if commands:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO followups (kind, payload) VALUES (%s, %s)",
                [(kind, Jsonb(payload)) for kind, payload in map(followups.encode, commands)],
            )


class PostgresUnitOfWork:
    """One transaction on one pooled connection; see :mod:`workers.app.ports.unit_of_work`."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db
        self._events: list[Event] = []
        self._conn: Connection | None = None
        self._context: Any = None
        self._holds_locked: bool | None = None  # this transaction's holds lock: exclusive?

    def __enter__(self) -> Self:
        self._context = self._db._pool.connection()
        with translated():
            conn: Connection = self._context.__enter__()
        self._conn = conn
        self._events = []
        self._holds_locked = None
        self.recordings = PostgresRecordings(conn, self._events)
        self.scans = PostgresRecordingScans(conn)
        self.counts = PostgresRecordingCounts(conn)
        self.holds = PostgresHolds(conn, self._events, self._db.sealer)
        self.requests = PostgresRequests(conn, self._events)
        self.exports = PostgresExports(conn)
        self.discards = PostgresDiscards(conn)
        self.policies = PostgresPolicies(conn)
        self.key_checks = PostgresKeyChecks(conn)
        self.accounts = PostgresAccounts(conn)
        self.accesses = PostgresAccesses(conn)
        self.disclosures = PostgresDisclosures(conn)
        self.registrations = PostgresRegistrations(conn)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn, context = self._conn, self._context
        self._conn = self._context = None
        try:
            if conn is not None and not conn.closed:
                conn.rollback()  # whatever was not committed
        except psycopg.Error:
            pass  # a broken connection: the pool discards it
        finally:
            context.__exit__(exc_type, exc, tb)
        if isinstance(exc, psycopg.Error | PoolTimeout):
            raise translate(exc) from exc

    @property
    def conn(self) -> Connection:
        if self._conn is None:
            raise RuntimeError("the unit of work is not open")
        return self._conn

    def lock_holds(self, *, exclusive: bool) -> None:
        """Held until the transaction ends: asked again (the units of work of a group
        commit), a lock as strong is not taken twice."""
        if self._holds_locked is not None and self._holds_locked >= exclusive:
            return
        function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        with translated():
            self.conn.execute(f"SELECT {function}(%s)", (HOLDS_LOCK,))
        self._holds_locked = exclusive

    def record(self, *events: Event) -> None:
        self._events.extend(events)

    def commit(self) -> None:
        """The effects and the commit in two round trips: outbox, follow-ups and the audit
        chain's head in one pipeline, the chained entries and COMMIT in another - so the
        chain's lock is held for about one round trip."""
        conn = self.conn
        with translated():
            effects = effects_of(self._events, self._db.clock())
            records = prepare([(a.action, a.entity_id, a.details, a.at) for a in effects.audit])
            with conn.pipeline():
                _insert_outbox(conn, effects.outbound, self._db.source)
                _insert_follow_ups(conn, effects.follow_ups)
                notify(conn, outbox=bool(effects.outbound), followups=bool(effects.follow_ups))
                head = lock_head(conn) if records else None
            with conn.pipeline():
                if head is not None:
                    entries = chained(head.fetchone(), records)
                    insert_entries(conn, entries)
                    insert_accesses(conn, entries)
                conn.commit()
        self._events.clear()
        self._holds_locked = None

    def audit_entries(self, after_seq: int, limit: int) -> list[AuditEntry]:
        with translated():
            return audit_entries(self.conn, after_seq, limit)

    def audit_head(self) -> AuditEntry | None:
        with translated():
            return audit_head(self.conn)

    def audit_ranges(self) -> list[tuple[str, int | None, int | None]]:
        with translated():
            return audit_ranges(self.conn)

    def audit_marks(self) -> list[dict[str, Any]]:
        with translated():
            return audit_marks(self.conn)

    def mark_verified(self, partition: str, entry: AuditEntry, signed: dict[str, Any]) -> None:
        with translated():
            mark_verified(self.conn, partition, entry, signed, self._db.clock())
