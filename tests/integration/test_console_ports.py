"""One contract suite for the console's ports, run against the in-memory fake and PostgreSQL,
so that the console's unit tests say something true about production."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from testbed.stack import Instance
from tests.fakes.console import MemoryConsole
from tests.fakes.memory import MemoryDatabase
from tests.integration.test_port_contracts import NOW, postgres, recording
from workers.adapters.postgres.console import PostgresConsole
from workers.app.console.model import (
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
from workers.app.console.throttle import Rule, attempt
from workers.domain.audit import verify_chain
from workers.domain.calendar import LocalCalendar
from workers.domain.messages import PolicyApplied
from workers.domain.model import (
    DsrStatus,
    Hold,
    HoldScopeKind,
    PurgeReason,
    RecordingStatus,
    RequestRecord,
)


@pytest.fixture(params=["memory", "postgres"])
def pair(request: pytest.FixtureRequest) -> Iterator[tuple[Any, Any]]:
    """(the core database, the console's ports over it)."""
    if request.param == "memory":
        db = MemoryDatabase(clock=lambda: NOW)
        yield db, MemoryConsole(db)
        return
    instance: Instance = request.getfixturevalue("instance")
    real = postgres(instance)
    yield real, PostgresConsole(real)
    real.close()


def add(db: Any, *recordings: Any, digests: frozenset[bytes] = frozenset()) -> None:
    with db.unit_of_work() as uow:
        for rec in recordings:
            uow.recordings.add(rec, digests)
        uow.commit()


def audit_entries(db: Any) -> list[Any]:
    with db.unit_of_work() as uow:
        return uow.audit_entries(0, 100)


def test_users_and_tokens(pair: tuple[Any, Any]) -> None:
    _, ports = pair
    assert ports.add_user(User("ona", Role.QA, "$argon2id$x", created_at=NOW))
    assert not ports.add_user(User("ona", Role.DPO, None, created_at=NOW))
    assert ports.add_user(User("admin", Role.ADMIN, None, created_at=NOW))
    assert [u.username for u in ports.users()] == ["admin", "ona"]
    assert ports.set_disabled("ona", True)
    assert ports.set_role("ona", Role.COMPLAINTS)
    assert not ports.set_disabled("nobody", True)
    ona = ports.user("ona")
    assert (ona.role, ona.disabled, ona.password_hash) == (Role.COMPLAINTS, True, "$argon2id$x")
    assert ona.language is None  # the browser's
    assert ports.set_language("ona", "lt")
    assert ports.user("ona").language == "lt"
    ports.add_token(ApiToken("t1", "ona", b"h" * 32, NOW))
    ports.add_token(ApiToken("t2", "ona", b"i" * 32, NOW + timedelta(seconds=1)))
    assert ports.token("t1") == ApiToken("t1", "ona", b"h" * 32, NOW)
    assert ports.revoke_token("t1", NOW)
    assert not ports.revoke_token("t1", NOW)
    assert [(t.token_id, t.revoked_at) for t in ports.tokens_of("ona")] == [
        ("t1", NOW),
        ("t2", None),
    ]
    assert ports.token("nope") is None


def test_identities_bind_passwordless_accounts_only(pair: tuple[Any, Any]) -> None:
    _, ports = pair
    iss = "https://idp.example"
    assert ports.add_user(User("ona", Role.QA, "$argon2id$x", created_at=NOW))
    assert ports.add_user(User("old", Role.QA, None, created_at=NOW))
    assert not ports.add_federated_user(User("ona", Role.QA, None, created_at=NOW), iss, "s1", NOW)
    assert ports.user_for_identity(iss, "s1") is None  # nothing half-made
    assert ports.add_federated_user(User("rasa", Role.DPO, None, created_at=NOW), iss, "s1", NOW)
    assert ports.user_for_identity(iss, "s1").username == "rasa"
    assert not ports.add_federated_user(
        User("rasa2", Role.DPO, None, created_at=NOW), iss, "s1", NOW
    )
    assert ports.user("rasa2") is None  # the identity was bound: no account either
    assert not ports.bind_identity("ona", iss, "s2", NOW)  # a password account: never
    assert ports.bind_identity("old", iss, "s2", NOW)
    assert not ports.bind_identity("old", iss, "s3", NOW)  # bound once
    assert ports.user_for_identity(iss, "s2").username == "old"
    assert ports.user_for_identity("https://other.example", "s2") is None


def test_sign_in_tallies_count_one_attempt_at_a_time(pair: tuple[Any, Any]) -> None:
    """Twenty attempts at once on one key: exactly ``free`` are admitted (each tally update
    waits for the one before), the others are refused; other keys are apart."""
    _, ports = pair
    rule = Rule(5, timedelta(minutes=15), timedelta(seconds=30), timedelta(minutes=15))
    key, other = b"k" * 32, b"o" * 32
    with ThreadPoolExecutor(max_workers=20) as pool:
        verdicts = list(pool.map(lambda _: ports.update(key, attempt(rule, NOW)), range(20)))
    assert sorted(v.count for v in verdicts if v.admitted) == [1, 2, 3, 4, 5]
    assert sum(1 for v in verdicts if not v.admitted) == 15
    assert ports.update(other, attempt(rule, NOW)).count == 1
    assert ports.update(key, attempt(rule, NOW + timedelta(seconds=31))).count == 6
    ports.forget(key, NOW)
    assert ports.update(key, attempt(rule, NOW, count=False)).count == 0
    assert ports.update(other, attempt(rule, NOW, count=False)).count == 1
    ports.forget(b"x" * 32, NOW + timedelta(days=2))  # tallies quiet for a day go too
    assert ports.update(other, attempt(rule, NOW, count=False)).count == 0


def test_search_by_digest_call_dates_and_agent(pair: tuple[Any, Any]) -> None:
    store, ports = pair
    digest = b"\x05" * 32
    first = replace(
        recording("s-1"), started_at=NOW - timedelta(days=2), collected_at=NOW - timedelta(days=2)
    )
    second = replace(
        recording("s-2"),
        started_at=NOW - timedelta(days=1),
        collected_at=NOW - timedelta(days=1),
        agent_id="a-2",
    )
    purged = recording("s-3", status=RecordingStatus.PURGED)
    add(store, first, second, purged, digests=frozenset({digest}))

    def calls(**criteria: Any) -> list[str]:
        return [r.call_id for r in ports.search(SearchCriteria(**criteria))]

    assert calls(digests=frozenset({digest}), identifiers_given=True) == ["s-2", "s-1"]
    assert calls(digests=frozenset({b"\x06" * 32}), identifiers_given=True) == []
    assert calls(call_ids=("s-1", "s-3")) == ["s-1"]
    assert calls(digests=frozenset({digest}), call_ids=("s-1",), identifiers_given=True) == [
        "s-2",
        "s-1",
    ]
    assert calls(start=NOW - timedelta(days=1, hours=1)) == ["s-2"]
    assert calls(end=NOW - timedelta(days=1, hours=1)) == ["s-1"]
    assert calls(agent_id="a-2") == ["s-2"]
    assert calls(start=NOW - timedelta(days=30), limit=1) == ["s-2"]
    assert ports.recording(first.recording_id) == first


def access(at_minutes: int, **changes: Any) -> Access:
    base = Access(
        NOW + timedelta(minutes=at_minutes),
        "ona",
        Role.QA,
        Purpose.QUALITY,
        None,
        recording("a-1").recording_id,
        AccessKind.PLAYBACK,
    )
    return replace(base, **changes)


def test_accesses_are_chained_in_the_audit_trail(pair: tuple[Any, Any]) -> None:
    store, ports = pair
    other = recording("a-2").recording_id
    assert ports.record_access(access(0))
    # the same listening, seeking 5 minutes later: not a new entry
    assert not ports.record_access(access(5), unless_since=NOW)
    # another purpose, another case, another person: new entries
    assert ports.record_access(access(6, purpose=Purpose.TRAINING), unless_since=NOW)
    assert ports.record_access(
        access(7, case_ref="C-1", role=Role.COMPLAINTS, purpose=Purpose.COMPLAINT)
    )
    assert ports.record_access(access(8, recording_id=other, username="jonas"))
    entries = audit_entries(store)
    assert verify_chain(entries) == (4, None)
    assert [e.action for e in entries] == ["access"] * 4
    assert entries[2].details == {
        "user": "ona",
        "role": "complaints",
        "purpose": "complaint",
        "case_ref": "C-1",
        "kind": "playback",
    }
    mine = recording("a-1").recording_id
    assert [a.at for a in ports.accesses(recording_id=mine)] == [
        NOW + timedelta(minutes=m) for m in (7, 6, 0)
    ]
    assert len(ports.accesses(since=NOW + timedelta(minutes=6))) == 3
    assert len(ports.accesses(until=NOW + timedelta(minutes=6))) == 1
    assert len(ports.accesses(limit=2)) == 2
    assert [a.purpose for a in ports.accesses_of([mine])] == [
        Purpose.QUALITY,
        Purpose.TRAINING,
        Purpose.COMPLAINT,
    ]
    assert ports.accesses_of([]) == []
    counts = ports.access_counts(NOW, NOW + timedelta(minutes=8))
    assert counts == {"quality": 1, "training": 1, "complaint": 1}


def test_disclosures_are_registered_with_an_audit_entry(pair: tuple[Any, Any]) -> None:
    store, ports = pair
    one, two, three = (recording(c).recording_id for c in ("d-1", "d-2", "d-3"))
    early = Disclosure(
        "6a1c8a52-3c1e-4f53-9a57-2b9e4c1d0a11",
        "Telia",
        RecipientKind.TELECOM_PROVIDER,
        "Art. 28",
        "INC-1",
        tuple(sorted((one, two))),
        "dpo",
        NOW,
        NOW + timedelta(days=7),
    )
    late = replace(
        early,
        disclosure_id="7b1c8a52-3c1e-4f53-9a57-2b9e4c1d0a11",
        recipient="Police",
        recipient_kind=RecipientKind.LAW_ENFORCEMENT,
        recording_ids=(three,),
        disclosed_at=NOW + timedelta(hours=1),
        export_expires_at=None,
    )
    ports.register(early)
    ports.register(late)
    assert ports.disclosures() == [late, early]
    assert ports.disclosures(since=NOW + timedelta(minutes=1)) == [late]
    assert ports.disclosures(until=NOW + timedelta(minutes=1)) == [early]
    assert ports.disclosures_of([two]) == [early]
    assert ports.disclosures_of([one, three]) == [early, late]
    entry = audit_entries(store)[0]
    assert (entry.action, entry.entity_id) == ("disclosure", early.disclosure_id)
    assert entry.details["recipient_kind"] == "telecom_provider"
    assert "Telia" not in str(entry.details)  # the register names recipients, the trail ids


def test_compliance_facts(pair: tuple[Any, Any]) -> None:
    store, ports = pair
    day = NOW.date()
    stored = replace(recording("f-1", due=NOW + timedelta(days=300)), stored_at=NOW)
    purged = replace(
        recording("f-2", due=NOW - timedelta(seconds=30)),
        stored_at=NOW - timedelta(days=1),
        status=RecordingStatus.PURGED,
        purge_reason=PurgeReason.RETENTION,
        purged_at=NOW,
    )
    overdue = replace(recording("f-3", due=NOW - timedelta(days=1)), stored_at=NOW)
    add(store, stored, purged, overdue)
    open_request = RequestRecord("r-open", "erasure", "processing", NOW, NOW + timedelta(days=30))
    open_request.answer(DsrStatus.PARTIAL, {"recordings": []}, NOW, pending=("x",))
    done = RequestRecord(
        "r-done", "access", "processing", NOW - timedelta(days=40), NOW - timedelta(days=10)
    )
    done.answer(DsrStatus.COMPLETED, {"recordings": []}, NOW)
    with store.unit_of_work() as uow:
        hold = Hold("h-1", "dispute", None, HoldScopeKind.CALLS, ("digest-f-1",))
        hold.place(NOW, ())
        uow.holds.add(hold)
        uow.requests.add(open_request)
        uow.requests.add(done)
        uow.record(PolicyApplied("*", None, "P1Y", 0, NOW))
        uow.commit()
    counts = ports.day_counts(NOW - timedelta(days=2), NOW + timedelta(days=1), LocalCalendar())
    assert counts.stored == {day: 2, day - timedelta(days=1): 1}
    assert counts.purged == {day: {"retention": 1}}
    assert ports.retention_lags(NOW - timedelta(days=1), NOW + timedelta(seconds=1)) == [
        (NOW, 30.0)
    ]
    assert ports.overdue(NOW) == (1, NOW - timedelta(days=1))
    assert ports.recording_counts()["stored"] == 2
    assert [r.request_id for r in ports.requests(open_only=True)] == ["r-open"]
    assert [r.request_id for r in ports.requests(since=NOW - timedelta(days=1))] == ["r-open"]
    assert {r.request_id for r in ports.requests()} == {"r-open", "r-done"}
    holds = ports.holds()
    assert [(h.hold.hold_id, h.recordings) for h in holds] == [
        ("h-1", [(stored.recording_id, "f-1")])
    ]
    assert ports.audit_chain() == (len(audit_entries(store)), None)
    assert isinstance(day, date)


def test_day_counts_are_local_days(pair: tuple[Any, Any]) -> None:
    """A recording stored at 23:30 UTC on 6 December is one of 7 December in Vilnius."""
    store, ports = pair
    night = datetime(2026, 12, 6, 23, 30, tzinfo=UTC)
    add(store, replace(recording("n-1", due=night + timedelta(days=365)), stored_at=night))
    vilnius, utc = LocalCalendar(), LocalCalendar.named("UTC")
    since, until = vilnius.days(date(2026, 12, 6), 2)
    assert ports.day_counts(since, until, vilnius).stored == {date(2026, 12, 7): 1}
    assert ports.day_counts(since, until, utc).stored == {date(2026, 12, 6): 1}
