"""One contract suite for the console's ports, run against the in-memory fake and PostgreSQL,
so that the console's unit tests say something true about production."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from testbed.stack import Instance
from tests.contracts import covers
from tests.fakes.console import memory_console_reads
from tests.fakes.memory import MemoryDatabase
from tests.integration.test_port_contracts import NOW, postgres, recording
from workers.adapters.postgres.console import console_reads
from workers.app.console.messages import RecordingConsulted, RecordingsDisclosed, RequestRegistered
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
from workers.app.console.service import ConsoleReads
from workers.app.console.throttle import Rule, attempt
from workers.app.ports.console import (
    AccessRepository,
    AccountRepository,
    ComplianceFacts,
    DisclosureRepository,
    LoginThrottle,
    RecordingSearch,
    Registers,
    RegistrationRepository,
)
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
def pair(request: pytest.FixtureRequest) -> Iterator[tuple[Any, ConsoleReads]]:
    """(the core database, whose unit of work holds the console's repositories; the
    console's read models and tallies over it)."""
    if request.param == "memory":
        db = MemoryDatabase(clock=lambda: NOW)
        yield db, memory_console_reads(db)
        return
    instance: Instance = request.getfixturevalue("instance")
    real = postgres(instance)
    yield real, console_reads(real)
    real.close()


def commit(db: Any, change: Callable[[Any], Any]) -> Any:
    """``change(uow)`` in one unit of work, committed."""
    with db.unit_of_work() as uow:
        result = change(uow)
        uow.commit()
    return result


def read(db: Any, query: Callable[[Any], Any]) -> Any:
    with db.unit_of_work() as uow:
        return query(uow)


def add(db: Any, *recordings: Any, digests: frozenset[bytes] = frozenset()) -> None:
    with db.unit_of_work() as uow:
        for rec in recordings:
            uow.recordings.add(rec, digests)
        uow.commit()


def audit_entries(db: Any) -> list[Any]:
    with db.unit_of_work() as uow:
        return uow.audit_entries(0, 100)


@covers(
    AccountRepository.add,
    AccountRepository.all,
    AccountRepository.get,
    AccountRepository.update,
    AccountRepository.add_token,
    AccountRepository.token,
    AccountRepository.revoke_token,
    AccountRepository.tokens_of,
)
def test_accounts_and_tokens_in_the_unit_of_work(pair: tuple[Any, ConsoleReads]) -> None:
    db, _ = pair
    ona = User("ona", Role.QA, "$argon2id$x", created_at=NOW, tenants=frozenset({"default"}))
    assert commit(db, lambda uow: uow.accounts.add(ona))
    assert not commit(db, lambda uow: uow.accounts.add(replace(ona, role=Role.DPO)))
    assert commit(db, lambda uow: uow.accounts.add(User("admin", Role.ADMIN, None, created_at=NOW)))
    with db.unit_of_work() as uow:  # not committed: nothing stays
        uow.accounts.add(User("ghost", Role.QA, None, created_at=NOW))
    assert [u.username for u in read(db, lambda uow: uow.accounts.all())] == ["admin", "ona"]
    assert read(db, lambda uow: uow.accounts.get("ona")).language is None  # the browser's
    changed = replace(
        ona, role=Role.COMPLAINTS, disabled=True, tenants=frozenset({"*", "b"}), language="lt"
    )
    commit(db, lambda uow: uow.accounts.update(changed))
    assert read(db, lambda uow: uow.accounts.get("ona", lock=True)) == changed
    assert read(db, lambda uow: uow.accounts.get("nobody")) is None

    def tokens(uow: Any) -> None:
        uow.accounts.add_token(ApiToken("t1", "ona", b"h" * 32, NOW))
        uow.accounts.add_token(ApiToken("t2", "ona", b"i" * 32, NOW + timedelta(seconds=1)))

    commit(db, tokens)
    assert read(db, lambda uow: uow.accounts.token("t1")) == ApiToken("t1", "ona", b"h" * 32, NOW)
    assert commit(db, lambda uow: uow.accounts.revoke_token("t1", NOW))
    assert not commit(db, lambda uow: uow.accounts.revoke_token("t1", NOW))
    assert [
        (t.token_id, t.revoked_at) for t in read(db, lambda u: u.accounts.tokens_of("ona"))
    ] == [
        ("t1", NOW),
        ("t2", None),
    ]
    assert read(db, lambda uow: uow.accounts.token("nope")) is None


@covers(AccountRepository.bind, AccountRepository.for_identity)
def test_identities_bind_passwordless_accounts_only(pair: tuple[Any, ConsoleReads]) -> None:
    db, _ = pair
    iss = "https://idp.example"
    commit(db, lambda uow: uow.accounts.add(User("ona", Role.QA, "$argon2id$x", created_at=NOW)))
    commit(db, lambda uow: uow.accounts.add(User("old", Role.QA, None, created_at=NOW)))
    assert not commit(db, lambda uow: uow.accounts.bind("ona", iss, "s1", NOW))  # a password
    assert not commit(db, lambda uow: uow.accounts.bind("nobody", iss, "s1", NOW))
    assert commit(db, lambda uow: uow.accounts.bind("old", iss, "s2", NOW))
    assert not commit(db, lambda uow: uow.accounts.bind("old", iss, "s3", NOW))  # bound once
    commit(db, lambda uow: uow.accounts.add(User("new", Role.QA, None, created_at=NOW)))
    assert not commit(db, lambda uow: uow.accounts.bind("new", iss, "s2", NOW))  # taken
    assert read(db, lambda uow: uow.accounts.for_identity(iss, "s2")).username == "old"
    assert read(db, lambda uow: uow.accounts.for_identity("https://other", "s2")) is None


@covers(LoginThrottle.update, LoginThrottle.forget)
def test_sign_in_tallies_count_one_attempt_at_a_time(pair: tuple[Any, ConsoleReads]) -> None:
    """Twenty attempts at once on one key: exactly ``free`` are admitted (each tally update
    waits for the one before), the others are refused; other keys are apart."""
    _, reads = pair
    ports = reads.tallies
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


@covers(RecordingSearch.search)
def test_search_by_digest_call_dates_agent_and_tenant(pair: tuple[Any, ConsoleReads]) -> None:
    store, reads = pair
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
        return [r.call_id for r in reads.search.search(SearchCriteria(**criteria))]

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
    assert calls(call_ids=("s-1", "s-2"), tenants=frozenset({"default"})) == ["s-2", "s-1"]
    assert calls(call_ids=("s-1", "s-2"), tenants=frozenset({"shop-lv"})) == []


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


def consulted(db: Any, *accesses: Access, unless_since: Any = None) -> int:
    """Record these consultations as the console's handler does; how many were new."""

    def record(uow: Any) -> int:
        fresh = [
            a
            for a in accesses
            if unless_since is None or not uow.accesses.seen_since(a, unless_since)
        ]
        uow.record(*(RecordingConsulted(a) for a in fresh))
        return len(fresh)

    return int(commit(db, record))


@covers(
    AccessRepository.seen_since,
    Registers.accesses,
    Registers.accesses_of,
    Registers.access_counts,
)
def test_consultations_are_audit_entries_and_the_access_log_indexes_them(
    pair: tuple[Any, ConsoleReads],
) -> None:
    store, reads = pair
    ports = reads.registers
    mine, other = recording("a-1"), replace(recording("a-2"), tenant="shop-lv")
    add(store, mine, other)
    assert consulted(store, access(0)) == 1
    # the same listening, seeking 5 minutes later: not a new entry
    assert consulted(store, access(5), unless_since=NOW) == 0
    # another purpose, another kind, another case, another person: new entries
    assert consulted(store, access(6, purpose=Purpose.TRAINING), unless_since=NOW) == 1
    assert consulted(store, access(6, kind=AccessKind.PERSONAL_DATA), unless_since=NOW) == 1
    assert (
        consulted(store, access(7, case_ref="C-1", role=Role.COMPLAINTS, purpose=Purpose.COMPLAINT))
        == 1
    )
    assert consulted(store, access(8, recording_id=other.recording_id, username="jonas")) == 1
    entries = audit_entries(store)
    assert verify_chain(entries) == (5, None)
    assert [e.action for e in entries] == ["access"] * 5
    assert entries[3].details == {
        "user": "ona",
        "role": "complaints",
        "purpose": "complaint",
        "case_ref": "C-1",
        "kind": "playback",
    }
    assert [a.at for a in ports.accesses(recording_id=mine.recording_id)] == [
        NOW + timedelta(minutes=m) for m in (7, 6, 6, 0)
    ]
    assert len(ports.accesses(since=NOW + timedelta(minutes=6))) == 4
    assert len(ports.accesses(until=NOW + timedelta(minutes=6))) == 1
    assert len(ports.accesses(limit=2)) == 2
    assert {a.username for a in ports.accesses(tenants=frozenset({"shop-lv"}))} == {"jonas"}
    assert len(ports.accesses(tenants=frozenset({"default"}))) == 4
    assert [a.purpose for a in ports.accesses_of([mine.recording_id])] == [
        Purpose.QUALITY,
        Purpose.TRAINING,
        Purpose.QUALITY,
        Purpose.COMPLAINT,
    ]
    assert ports.accesses_of([]) == []
    counts = ports.access_counts(NOW, NOW + timedelta(minutes=8))
    assert counts == {"quality": 2, "training": 1, "complaint": 1}


@covers(DisclosureRepository.add, Registers.disclosures, Registers.disclosures_of)
def test_disclosures_are_registered_with_an_audit_entry(pair: tuple[Any, ConsoleReads]) -> None:
    store, reads = pair
    ports = reads.registers
    d1, d2, d3 = recording("d-1"), recording("d-2"), replace(recording("d-3"), tenant="shop-lv")
    add(store, d1, d2, d3)
    one, two, three = d1.recording_id, d2.recording_id, d3.recording_id
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
        "exports/a.zip",
        "ab" * 32,
        1234,
    )
    late = replace(
        early,
        disclosure_id="7b1c8a52-3c1e-4f53-9a57-2b9e4c1d0a11",
        recipient="Police",
        recipient_kind=RecipientKind.LAW_ENFORCEMENT,
        recording_ids=(three,),
        disclosed_at=NOW + timedelta(hours=1),
        export_expires_at=None,
        export_key=None,
        export_sha256=None,
        export_size=None,
    )

    def register(disclosure: Disclosure) -> Callable[[Any], None]:
        def change(uow: Any) -> None:
            uow.disclosures.add(disclosure)
            uow.record(RecordingsDisclosed(disclosure))

        return change

    commit(store, register(early))
    commit(store, register(late))
    assert ports.disclosures() == [late, early]
    assert ports.disclosures(since=NOW + timedelta(minutes=1)) == [late]
    assert ports.disclosures(until=NOW + timedelta(minutes=1)) == [early]
    assert ports.disclosures_of([two]) == [early]
    assert ports.disclosures_of([one, three]) == [early, late]
    assert ports.disclosures(tenants=frozenset({"default"})) == [early]
    assert ports.disclosures(tenants=frozenset({"default", "shop-lv"})) == [late, early]
    entry = audit_entries(store)[0]
    assert (entry.action, entry.entity_id) == ("disclosure", early.disclosure_id)
    assert entry.details["recipient_kind"] == "telecom_provider"
    assert entry.details["sha256"] == "ab" * 32
    assert "Telia" not in str(entry.details)  # the register names recipients, the trail ids


@covers(
    ComplianceFacts.day_counts,
    ComplianceFacts.retention_lags,
    ComplianceFacts.overdue,
    ComplianceFacts.recording_counts,
    ComplianceFacts.requests,
    ComplianceFacts.holds,
    ComplianceFacts.audit_chain,
)
def test_compliance_facts(pair: tuple[Any, ConsoleReads]) -> None:
    store, reads = pair
    ports = reads.facts
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
    assert [(h.hold.hold_id, h.recordings, h.tenants) for h in holds] == [
        ("h-1", [(stored.recording_id, "f-1")], frozenset({"default"}))
    ]
    assert ports.audit_chain() == (len(audit_entries(store)), None)
    assert isinstance(day, date)


def test_day_counts_are_local_days(pair: tuple[Any, ConsoleReads]) -> None:
    """A recording stored at 23:30 UTC on 6 December is one of 7 December in Vilnius."""
    store, reads = pair
    ports = reads.facts
    night = datetime(2026, 12, 6, 23, 30, tzinfo=UTC)
    add(store, replace(recording("n-1", due=night + timedelta(days=365)), stored_at=night))
    vilnius, utc = LocalCalendar(), LocalCalendar.named("UTC")
    since, until = vilnius.days(date(2026, 12, 6), 2)
    assert ports.day_counts(since, until, vilnius).stored == {date(2026, 12, 7): 1}
    assert ports.day_counts(since, until, utc).stored == {date(2026, 12, 6): 1}


@covers(RegistrationRepository.registered)
def test_a_registered_request_is_known_by_its_audit_entry(pair: tuple[Any, ConsoleReads]) -> None:
    db, _ = pair

    def register(uow: Any) -> bool:
        if uow.registrations.registered("R-9"):
            return False
        uow.record(RequestRegistered("R-9", {"type": "access"}, NOW))
        return True

    assert commit(db, register)
    assert not commit(db, register)  # the same form sent twice: registered once
    assert not read(db, lambda uow: uow.registrations.registered("R-10"))
    assert [e.entity_id for e in audit_entries(db)] == ["R-9"]
