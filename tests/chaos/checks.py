"""What a chaos run must end with, checked from outside: the output topics, the database rows,
the vault's object versions and callvault's own ``audit verify`` and ``reconcile``.

Which hold covers which recording is the ledger's knowledge (what compliance asked for), not
callvault's; when each hold was in force is read from the database (``placed_at`` and
``released_at``), since holds travel on different partitions and their order of arrival is
not the order of sending."""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from kafka import KafkaConsumer, TopicPartition
from psycopg.rows import dict_row

from testbed.stack import Instance
from tests.chaos.faults import Injected
from tests.chaos.traffic import CallSent, HoldSent, Ledger
from tests.e2e.harness import CALLVAULT
from workers.bootstrap import object_store
from workers.settings import Settings

OUTPUTS = ("recordings_stored", "retention_due", "recordings_purged", "dsr_results", "deadletter")
FOREVER = datetime.max.replace(tzinfo=UTC)
HOLD_GRACE = timedelta(seconds=5)


@dataclass(frozen=True)
class Row:
    recording_id: str
    status: str
    held: bool
    readable: bool
    object_version: str | None
    due_at: datetime
    stored_at: datetime | None
    purged_at: datetime | None
    purge_reason: str | None


@dataclass
class Snapshot:
    """The database as the run left it."""

    rows: dict[str, Row]
    hold_times: dict[str, tuple[datetime | None, datetime | None]]
    hold_lists: dict[str, set[str]]  # hold id -> the recordings it held when placed (audit)
    requests: dict[str, tuple[str, tuple[str, ...]]]  # request id -> (status, pending)
    outbox: int
    followups: int
    followups_failed: int


def snapshot(instance: Instance) -> Snapshot:
    with psycopg.connect(instance.database_url) as conn:
        rows = {
            str(r[0]): Row(str(r[0]), *r[1:])
            for r in conn.execute(
                "SELECT recording_id, status, held, wrapped_key IS NOT NULL, object_version, "
                "retention_due_at, stored_at, purged_at, purge_reason FROM recordings"
            ).fetchall()
        }
        hold_times = {
            r[0]: (r[1], r[2])
            for r in conn.execute("SELECT hold_id, placed_at, released_at FROM holds").fetchall()
        }
        hold_lists = {
            r[0]: set(r[1] or ())
            for r in conn.execute(
                "SELECT entity_id, details->'recording_ids' FROM audit_log "
                "WHERE action = 'hold_placed'"
            ).fetchall()
        }
        requests = {
            r[0]: (r[1], tuple(r[2]))
            for r in conn.execute("SELECT request_id, status, pending FROM dsr_requests")
        }
        outbox = conn.execute("SELECT count(*) FROM outbox").fetchone()
        pending = conn.execute(
            "SELECT count(*) FILTER (WHERE failed_at IS NULL), "
            "count(*) FILTER (WHERE failed_at IS NOT NULL) FROM followups"
        ).fetchone()
    assert outbox is not None
    assert pending is not None
    return Snapshot(rows, hold_times, hold_lists, requests, outbox[0], pending[0], pending[1])


def dump_evidence(instance: Instance, outputs: dict[str, list[dict[str, Any]]], into: Path) -> None:
    """The rows and events a failed check is diagnosed from (ids, times and states only)."""
    tables = {
        "recordings": "SELECT recording_id, call_id, status, held, legal_hold, "
        "wrapped_key IS NOT NULL AS readable, object_version, retention_due_at, stored_at, "
        "due_announced_at, purged_at, purge_reason FROM recordings ORDER BY stored_at",
        "holds": "SELECT hold_id, scope_kind, targets, placed_at, released_at FROM holds",
        "requests": "SELECT request_id, dsr_type, status, received_at, completed_at, pending, "
        "matched FROM dsr_requests",
        "followups": "SELECT * FROM followups",
        "audit": "SELECT seq, at, action, entity_id, details FROM audit_log ORDER BY seq",
    }
    with psycopg.connect(instance.database_url, row_factory=dict_row) as conn:
        for name, query in tables.items():
            rows = conn.execute(query).fetchall()
            _json_lines(into / f"{name}.jsonl", rows)
    for logical, events in outputs.items():
        _json_lines(into / f"topic-{logical}.jsonl", events)


def _json_lines(path: Path, rows: list[Any]) -> None:
    path.write_text("".join(json.dumps(r, default=str) + "\n" for r in rows))


def read_outputs(settings: Settings, instance: Instance) -> dict[str, list[dict[str, Any]]]:
    """Every event on each output topic, read from the start to the current end."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka, enable_auto_commit=False)
    try:
        found: dict[str, list[dict[str, Any]]] = {}
        for logical in OUTPUTS:
            topic = instance.topic(logical)
            partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
            consumer.assign(partitions)
            consumer.seek_to_beginning()
            end = consumer.end_offsets(partitions)
            events: list[dict[str, Any]] = []
            deadline = time.monotonic() + 120
            while any(consumer.position(p) < end[p] for p in partitions):
                if time.monotonic() > deadline:
                    raise AssertionError(f"could not read {topic} to its end")
                for batch in consumer.poll(timeout_ms=1000).values():
                    events.extend(json.loads(m.value) for m in batch)
            found[logical] = events
        return found
    finally:
        consumer.close()


def landing_left(settings: Settings) -> int:
    objects = object_store(settings)
    return sum(1 for _ in objects.list_keys(settings.landing_bucket))


def vault_versions(settings: Settings) -> dict[str, list[str | None]]:
    """Object key -> its version ids (delete markers included) in the vault."""
    versions: dict[str, list[str | None]] = defaultdict(list)
    for ref in object_store(settings).all_versions(settings.vault_bucket, "recordings/"):
        versions[ref.key].append(ref.version_id)
    return versions


def cli(env: dict[str, str], *args: str) -> tuple[int, Any]:
    done = subprocess.run(
        [CALLVAULT, *args], env=env, capture_output=True, timeout=600, check=False
    )
    try:
        return done.returncode, json.loads(done.stdout or b"null")
    except json.JSONDecodeError:
        return done.returncode, done.stdout.decode(errors="replace") + done.stderr.decode()


# the verdicts ---------------------------------------------------------------------------------


@dataclass
class Verdicts:
    calls_sent: int = 0
    calls_with_notice: int = 0
    recordings_stored: int = 0
    recordings_purged: Counter[str] = field(default_factory=Counter)
    held_at_end: int = 0
    lost: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    duplicated: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    duplicate_deliveries: dict[str, int] = field(default_factory=dict)
    events: dict[str, int] = field(default_factory=dict)
    held_purged: list[str] = field(default_factory=list)
    purging_when_held: int = 0  # a hold placed while the recording was being purged already
    purged_between_holds: int = 0  # purged in the gap of a "release old, place renewed" pair
    past_due: list[str] = field(default_factory=list)
    late: list[str] = field(default_factory=list)
    worst_lag: float = 0.0
    slowest: str | None = None
    lags: list[float] = field(default_factory=list)
    held_unreadable: list[str] = field(default_factory=list)
    held_flag_wrong: list[str] = field(default_factory=list)
    unanswered: list[str] = field(default_factory=list)
    erasures_stuck: list[str] = field(default_factory=list)
    deadletters: Counter[str] = field(default_factory=Counter)
    due_events_per_recording: Counter[int] = field(default_factory=Counter)
    holds_unprocessed: list[str] = field(default_factory=list)
    backlog: dict[str, int] = field(default_factory=dict)

    def failures(self) -> dict[str, int]:
        """What must be zero."""
        return {
            "lost": sum(len(v) for v in self.lost.values()),
            "duplicated": sum(len(v) for v in self.duplicated.values()),
            "held_purged": len(self.held_purged),
            "past_due": len(self.past_due),
            "late": len(self.late),
            "held_unreadable": len(self.held_unreadable),
            "held_flag_wrong": len(self.held_flag_wrong),
            "unanswered": len(self.unanswered),
            "erasures_stuck": len(self.erasures_stuck),
            "deadletters": sum(self.deadletters.values()),
            "holds_unprocessed": len(self.holds_unprocessed),
            "backlog": sum(self.backlog.values()),
        }


class Judge:
    def __init__(
        self,
        ledger: Ledger,
        snap: Snapshot,
        outputs: dict[str, list[dict[str, Any]]],
        faults: list[Injected],
        purge_within: float,
        now: datetime,
    ) -> None:
        self.ledger = ledger
        self.snap = snap
        self.outputs = outputs
        self.faults = faults
        self.purge_within = purge_within
        self.now = now
        self.v = Verdicts()

    def judge(self) -> Verdicts:
        self._deliveries()
        for call in self.ledger.calls.values():
            self._call(call)
        self._requests()
        self._holds()
        self.v.deadletters = Counter(e["data"]["error_code"] for e in self.outputs["deadletter"])
        self.v.backlog = {
            k: n
            for k, n in (
                ("outbox", self.snap.outbox),
                ("followups", self.snap.followups),
                ("followups_failed", self.snap.followups_failed),
            )
            if n
        }
        known = {c.recording_id for c in self.ledger.calls.values()}
        for recording_id in set(self.snap.rows) - known:
            self.v.duplicated["recording_of_no_call"].append(recording_id)
        return self.v

    # output events --------------------------------------------------------------------------
    def _deliveries(self) -> None:
        for logical, events in self.outputs.items():
            ids = Counter(e["id"] for e in events)
            self.v.events[logical] = len(events)
            self.v.duplicate_deliveries[logical] = len(events) - len(ids)

    def _by(self, logical: str, kind: str | None = None) -> dict[str, list[dict[str, Any]]]:
        grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for event in self.outputs[logical]:
            if kind is None or event["type"] == kind:
                data = event["data"]
                grouped[data.get("recording_id") or data.get("call_id")].append(event)
        return grouped

    # calls and recordings -------------------------------------------------------------------
    def _call(self, call: CallSent) -> None:
        v = self.v
        v.calls_sent += 1
        row = self.snap.rows.get(call.recording_id)
        if not call.notice:
            discarded = self._discarded().get(call.call_id, [])
            if row is not None:
                v.duplicated["stored_without_notice"].append(call.call_id)
            if not discarded:
                v.lost["discard_event"].append(call.call_id)
            return
        v.calls_with_notice += 1
        if row is None:
            v.lost["recording"].append(call.call_id)
            return
        v.recordings_stored += 1
        self._events_of(call, row)
        covering = self._intervals(call)
        if row.status == "purged":
            v.recordings_purged[row.purge_reason or "?"] += 1
            self._purged(call, row, covering)
        else:
            self._alive(call, row, covering)

    def _events_of(self, call: CallSent, row: Row) -> None:
        v = self.v
        stored = self._stored().get(call.recording_id, [])
        if not stored:
            v.lost["stored_event"].append(call.call_id)
        effects = {(e["id"], e["data"]["stored_at"]) for e in stored}
        if len(effects) > 1:
            v.duplicated["stored_event"].append(call.call_id)
        dues = self._due().get(call.recording_id, [])
        announcements = {(e["id"], e["time"]) for e in dues}
        v.due_events_per_recording[len(announcements)] += 1
        if len(announcements) > 1:
            v.duplicated["retention_due"].append(call.call_id)
        if row.status == "purged":
            if row.purge_reason == "retention" and not dues:
                v.lost["retention_due_event"].append(call.call_id)
            purged = self._purged_events().get(call.recording_id, [])
            if not purged:
                v.lost["purged_event"].append(call.call_id)
            if len({(e["id"], e["data"]["purged_at"]) for e in purged}) > 1:
                v.duplicated["purged_event"].append(call.call_id)

    def _intervals(self, call: CallSent) -> list[tuple[str, datetime, datetime]]:
        """The holds in force over this recording: (hold id, placed_at, released_at)."""
        found = []
        for hold in self.ledger.holds.values():
            if not self._covers(hold, call):
                continue
            placed, released = self.snap.hold_times.get(hold.hold_id, (None, None))
            if placed is not None:
                found.append((hold.hold_id, placed, released or FOREVER))
        return found

    def _covers(self, hold: HoldSent, call: CallSent) -> bool:
        if hold.kind == "subject":
            return hold.subject == call.subject
        return call.call_id in hold.calls

    def _purged(
        self, call: CallSent, row: Row, covering: list[tuple[str, datetime, datetime]]
    ) -> None:
        v = self.v
        assert row.purged_at is not None
        active = [(h, p, r) for h, p, r in covering if p <= row.purged_at < r]
        for hold_id, placed, _ in active:
            listed = call.recording_id in self.snap.hold_lists.get(hold_id, set())
            if not listed and row.stored_at is not None and row.stored_at < placed:
                v.purging_when_held += 1  # the data key was gone before the hold came
            else:
                v.held_purged.append(f"{call.call_id} (hold {hold_id})")
        if not active and any(r <= row.purged_at for _, _, r in covering):
            later = [p for _, p, _ in covering if p > row.purged_at]
            v.purged_between_holds += bool(later)
        if row.purge_reason == "retention":
            start = self._effective_due(call, row, covering)
            lag = max(0.0, (row.purged_at - start).total_seconds())  # 0: gone on time
            v.lags.append(lag)
            if lag > v.worst_lag:
                v.worst_lag, v.slowest = lag, f"{call.call_id} ({row.recording_id})"
            if lag > self.purge_within:
                v.late.append(f"{call.call_id} ({lag:.0f}s)")

    def _alive(
        self, call: CallSent, row: Row, covering: list[tuple[str, datetime, datetime]]
    ) -> None:
        v = self.v
        held = any(r == FOREVER for _, _, r in covering)
        if held:
            v.held_at_end += 1
            if not row.readable or row.object_version is None or row.status != "stored":
                v.held_unreadable.append(f"{call.call_id} ({row.status})")
        if row.held != held and row.status == "stored":
            v.held_flag_wrong.append(f"{call.call_id} (held={row.held}, holds say {held})")
        if not held:
            start = self._effective_due(call, row, covering)
            if (self.now - start).total_seconds() > self.purge_within:
                v.past_due.append(f"{call.call_id} ({row.status}, due {row.due_at:%H:%M:%S})")

    def _effective_due(
        self, call: CallSent, row: Row, covering: list[tuple[str, datetime, datetime]]
    ) -> datetime:
        """When the recording should have gone: its due time, or its arrival when it came
        past due, moved past every hold over it and every outage it fell into before it went
        (a purge during a broker outage, say, was on time)."""
        start = max(row.due_at, call.sent_at)
        # a hold that came before the recording was stored covers it from its arrival
        stored = row.stored_at or FOREVER
        windows = [(min(p, start) if p <= stored else p, r) for _, p, r in covering]
        windows += [(f.began, f.back) for f in self.faults if f.back is not None]
        windows = [(b, e) for b, e in windows if b <= (row.purged_at or FOREVER)]
        moved = True
        while moved:
            moved = False
            for began, ended in windows:
                # a hold that came within a scheduler round or two (the renewed hold of a
                # "release the old, place the renewed" pair, say) is not a chance missed
                if began - HOLD_GRACE <= start < ended:
                    start, moved = ended, True
        return start

    # requests and holds ---------------------------------------------------------------------
    def _requests(self) -> None:
        answers = defaultdict(list)
        for event in self.outputs["dsr_results"]:
            answers[event["data"]["request_id"]].append(event)
        held_now = {
            c.recording_id
            for c in self.ledger.calls.values()
            if any(r == FOREVER for _, _, r in self._intervals(c))
        }
        for request_id in self.ledger.requests:
            if not answers.get(request_id):
                self.v.unanswered.append(request_id)
            _, pending = self.snap.requests.get(request_id, ("", ()))
            if set(pending) - held_now:
                self.v.erasures_stuck.append(request_id)

    def _holds(self) -> None:
        for hold_id in self.ledger.holds:
            placed, _ = self.snap.hold_times.get(hold_id, (None, None))
            if placed is None:
                self.v.holds_unprocessed.append(hold_id)

    # cached groupings -----------------------------------------------------------------------
    def _stored(self) -> dict[str, list[dict[str, Any]]]:
        return self._cached("stored", lambda: self._by("recordings_stored"))

    def _due(self) -> dict[str, list[dict[str, Any]]]:
        return self._cached("due", lambda: self._by("retention_due"))

    def _purged_events(self) -> dict[str, list[dict[str, Any]]]:
        kind = "callvault.recording.purged.v1"
        return self._cached("purged", lambda: self._by("recordings_purged", kind))

    def _discarded(self) -> dict[str, list[dict[str, Any]]]:
        kind = "callvault.recording.discarded.v1"
        return self._cached("discarded", lambda: self._by("recordings_purged", kind))

    def _cached(self, name: str, build: Any) -> dict[str, list[dict[str, Any]]]:
        cache: dict[str, Any] = self.__dict__.setdefault("_cache", {})
        if name not in cache:
            cache[name] = build()
        return cache[name]  # type: ignore[no-any-return]


def settled(snap: Snapshot, ledger: Ledger, now: datetime) -> bool:
    """Nothing left to do: every call has its row, nothing unheld is past due, every request
    is answered, the outbox and the follow-up queue are empty."""
    with ledger.lock:
        calls = [c for c in ledger.calls.values() if c.notice]
    if any(c.recording_id not in snap.rows for c in calls):
        return False
    grace = now - timedelta(seconds=5)
    if any(r.status != "purged" and not r.held and r.due_at < grace for r in snap.rows.values()):
        return False
    if any(status == "processing" for status, _ in snap.requests.values()):
        return False
    if len(snap.requests) < len(ledger.requests):
        return False
    return snap.outbox == 0 and snap.followups == 0
