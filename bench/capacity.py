"""What one call costs each service over its whole life - stored, announced due, purged -
measured on callvault's own code (``bootstrap``: the worker's handlers, relay and follow-up
dispatcher, in-process so that every request can be counted), plus the PostgreSQL bytes a
stored recording and a tombstone take on the largest bulk table. The input of
``docs/capacity.md``."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from . import bulk, common
from .common import Timed, log
from .ingest import AUDIO_BYTES

_DB_COUNTERS = (
    "xact_commit",
    "xact_rollback",
    "tup_returned",
    "tup_fetched",
    "tup_inserted",
    "tup_updated",
    "tup_deleted",
)
CACHED = ("is_versioned", "has_object_lock")  # answered from the adapter's cache, not the store
_TABLES = ("recordings", "subject_keys", "audit_log", "outbox", "followups")


class CountingBus:
    """The Kafka producer, counting what the relay publishes per topic."""

    def __init__(self, bus: Any) -> None:
        self._bus = bus
        self.messages: Counter[str] = Counter()
        self.bytes: Counter[str] = Counter()

    def publish(self, records: list[tuple[str, str | None, bytes]]) -> None:
        self._bus.publish(records)
        for topic, key, value in records:
            logical = topic.split(".", 1)[-1]  # the instance's prefix dropped
            self.messages[logical] += 1
            self.bytes[logical] += len(value) + len(key or "")

    def close(self) -> None:
        self._bus.close()


def _db_stats(url: str, name: str, *, ended: bool = True, timeout: float = 30) -> dict[str, int]:
    """The database's counters; with ``ended``, once every other backend has ended and
    reported them (a backend reports its statistics when it ends): read until no other backend
    is connected and two reads agree. Sizes include every partition."""
    deadline = time.monotonic() + timeout
    previous: tuple[Any, ...] | None = None
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            row = conn.execute(
                f"SELECT numbackends, {', '.join(_DB_COUNTERS)} FROM pg_stat_database "  # noqa: S608 - constant columns
                "WHERE datname = %s",
                (name,),
            ).fetchone()
            assert row is not None
            settled = row[0] <= 1 and row == previous
            if not ended or settled or time.monotonic() > deadline:
                break
            previous = row
            time.sleep(0.2)
        sizes = {f"bytes_{t}": bulk.relation_bytes(conn, t) for t in _TABLES}
    return dict(zip(_DB_COUNTERS, row[1:], strict=True)) | sizes


def _per(after: dict[str, int], before: dict[str, int], n: int) -> dict[str, float]:
    return {k: round((after[k] - before.get(k, 0)) / n, 2) for k in after}


def _settle(container: Any) -> None:
    """Publish the outbox and carry out every follow-up, as a worker's loops would."""
    while container.dispatcher.drain() or container.relay.publish_pending():
        pass


def life_of_calls(stack: dict[str, str], n: int) -> dict[str, Any]:
    from workers.bootstrap import bootstrap
    from workers.domain.messages import AnnounceDue
    from workers.domain.model import recording_id_for

    inst = common.new_instance(stack, "cap")
    try:
        common.migrate(inst)
        settings = inst.settings()
        url, name = settings.database_url.get_secret_value(), inst.name
        real = bootstrap(settings)
        objects = Timed(real.objects)
        kafka = CountingBus(real.bus)
        container = bootstrap(
            settings, objects=objects, bus=kafka, hold_commands=real.hold_commands
        )
        call_ids = [f"cap-{i}" for i in range(n)]
        sample = common.cloudevent(
            "callvault.call.ended.v1", common.call_data("cap-0", "s3://landing/incoming/x.wav")
        )
        before = _db_stats(url, name, ended=False)
        log(f"capacity: storing {n} calls")
        common.store_calls(container, call_ids, common.wav_bytes(AUDIO_BYTES), 4)
        _settle(container)
        container.close()  # a backend reports its statistics when it ends
        stored = _db_stats(url, name)
        ingest_s3 = objects.report(n)
        ingest_kafka = (dict(kafka.messages), dict(kafka.bytes))
        objects.reset()
        kafka.messages.clear()
        kafka.bytes.clear()
        log("capacity: purging them (clock moved past their due date)")
        later = datetime.now(UTC) + timedelta(days=400)
        purger = bootstrap(
            settings,
            objects=objects,
            bus=kafka,
            clock=lambda: later,
            hold_commands=real.hold_commands,
        )
        while purger.messagebus.handle(AnnounceDue()) != "announced:0":
            pass
        _settle(purger)
        purger.close()
        purged = _db_stats(url, name)
        hash_key = purger.keys.hasher
        ids = [recording_id_for(hash_key, c) for c in call_ids]
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE status = 'purged'), "
                "avg(pg_column_size(r.*)) FILTER (WHERE status = 'purged') "
                "FROM recordings r WHERE recording_id = ANY(%s::uuid[])",
                (ids,),
            ).fetchone()
            audit = conn.execute(
                "SELECT count(*), avg(pg_column_size(a.*)), "
                "pg_relation_size('audit_log_pkey') FROM audit_log a"
            ).fetchone()
        assert row is not None
        assert audit is not None
        kafka.close()
    finally:
        common.drop_instance(inst)
    return {
        "calls": n,
        "audio_bytes": AUDIO_BYTES,
        "ingest": {
            "call_ended_bytes": len(sample),
            "s3_requests": ingest_s3,
            "kafka_messages": {t: round(v / n, 2) for t, v in ingest_kafka[0].items()},
            "kafka_bytes": {t: round(v / n, 1) for t, v in ingest_kafka[1].items()},
            "postgres": _per(stored, before, n),
        },
        "retention": {
            "s3_requests": objects.report(n),
            "kafka_messages": {t: round(v / n, 2) for t, v in kafka.messages.items()},
            "kafka_bytes": {t: round(v / n, 1) for t, v in kafka.bytes.items()},
            "postgres": _per(purged, stored, n),
            "tombstones": row[0],
            "tombstone_row_bytes": round(float(row[1] or 0), 1),
        },
        "audit": {
            "entries_per_call": round(audit[0] / n, 2),
            "row_bytes": round(float(audit[1] or 0), 1),
            "index_bytes_per_entry": round(audit[2] / max(1, audit[0]), 1),
        },
    }


def table_sizes(url: str) -> dict[str, Any]:
    """Bytes per row of each table and index of the bulk database (heap + TOAST + indexes)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT c.relname, c.relkind, pg_total_relation_size(c.oid) AS total, "
            "pg_relation_size(c.oid) AS main, c.reltuples::bigint AS tuples "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i') "
            "AND (c.relname LIKE 'recordings%%' OR c.relname LIKE 'subject_keys%%') "
            "ORDER BY c.relname"
        ).fetchall()
    return {
        name: {"kind": "table" if kind == "r" else "index", "bytes": main, "total": total}
        for name, kind, total, main, _ in rows
    }


def run(quick: bool, rebuild: bool = False) -> dict[str, Any]:
    stack = common.ensure_stack()
    n = 100 if quick else 400
    rows = 200_000 if quick else 10_000_000
    result: dict[str, Any] = {"params": {"quick": quick, "calls": n, "bulk_rows": rows}}
    result["per_call"] = life_of_calls(stack, n)
    base_url = stack["CALLVAULT_PG_ADMIN_URL"].rsplit("/", 1)[0]  # the owner: the bulk tables
    url, made = bulk.cached_database(stack["CALLVAULT_PG_ADMIN_URL"], base_url, rows, rebuild)
    result["bulk"] = {"database": made, "counts": bulk.counts(url), "relations": table_sizes(url)}
    return result


def rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    ingest, retention = result["per_call"]["ingest"], result["per_call"]["retention"]

    def s3(part: dict[str, Any]) -> str:
        return ", ".join(
            f"{k} {v['calls_per_item']}" for k, v in part["s3_requests"].items() if k not in CACHED
        )

    def kafka(part: dict[str, Any]) -> str:
        return ", ".join(
            f"{t} {m} msg/{part['kafka_bytes'][t]:.0f} B" for t, m in part["kafka_messages"].items()
        )

    def pg(part: dict[str, Any]) -> str:
        p = part["postgres"]
        return (
            f"{p['xact_commit']} commits, ins {p['tup_inserted']} upd {p['tup_updated']} "
            f"del {p['tup_deleted']}"
        )

    counts = result["bulk"]["counts"]
    return [
        ("capacity", "ingest: S3 requests per call", s3(ingest)),
        ("capacity", "ingest: Kafka per call", kafka(ingest)),
        ("capacity", "ingest: PostgreSQL per call", pg(ingest)),
        ("capacity", "retention: S3 requests per call", s3(retention)),
        ("capacity", "retention: Kafka per call", kafka(retention)),
        ("capacity", "retention: PostgreSQL per call", pg(retention)),
        (
            "capacity",
            f"bulk table ({counts['total']:,} rows)",
            f"recordings {counts['recordings_size']}, subject_keys {counts['subject_keys_size']}",
        ),
    ]
