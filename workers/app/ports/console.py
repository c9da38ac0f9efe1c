"""The console's ports. What the console writes goes through the unit of work (accounts,
tokens, identities, consultations and disclosures are its repositories), so that the audit
entries of those changes are written with them; what it reads comes through narrow read
models (search, the registers, the compliance facts), and sign-in attempts through the
throttle's tallies. PostgreSQL implementations: ``workers.adapters.postgres.console``; fakes:
``tests/fakes/console``; one contract suite (tests/integration/test_console_ports.py)."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

from ...domain.calendar import LocalCalendar
from ...domain.model import Hold, Recording, RequestRecord
from ..console.model import Access, ApiToken, Disclosure, SearchCriteria, User
from ..console.throttle import R, Tally


@dataclass(frozen=True)
class DsrRecord:
    """A data-subject request as the DPO's pages show it."""

    request_id: str
    dsr_type: str
    status: str
    received_at: datetime | None
    due_at: datetime | None
    completed_at: datetime | None = None
    pending_recording_ids: list[str] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)
    tenant: str | None = None
    language: str | None = None

    @classmethod
    def of(cls, record: RequestRecord) -> DsrRecord:
        return cls(
            record.request_id,
            record.dsr_type,
            record.status,
            record.received_at,
            record.due_at,
            record.completed_at,
            list(record.pending),
            dict(record.result),
            record.tenant,
            record.language,
        )


class AccountRepository(Protocol):
    """Staff accounts, their API tokens and their identity-provider bindings (in a unit of
    work: what a command changes is committed with its audit entries)."""

    def get(self, username: str, *, lock: bool = False) -> User | None: ...

    def all(self) -> list[User]: ...

    def add(self, user: User) -> bool:
        """False (and nothing written) when the name is taken."""
        ...

    def update(self, user: User) -> None:
        """Write the account's role, state and tenants."""
        ...

    def for_identity(self, issuer: str, subject: str) -> User | None:
        """The account bound to this identity provider's subject, if any."""
        ...

    def bind(self, username: str, issuer: str, subject: str, at: datetime) -> bool:
        """Bind the identity to an account without a password or an identity; else False."""
        ...

    def token(self, token_id: str) -> ApiToken | None: ...

    def tokens_of(self, username: str) -> list[ApiToken]: ...

    def add_token(self, token: ApiToken) -> None: ...

    def revoke_token(self, token_id: str, at: datetime) -> bool:
        """False when there is no such token in force."""
        ...


class AccessRepository(Protocol):
    def seen_since(self, access: Access, since: datetime) -> bool:
        """Whether the same person consulted the same recording for the same purpose and case
        since then; consultations of one recording by one person take turns from here to the
        commit (a player's parallel range requests are logged once)."""
        ...


class DisclosureRepository(Protocol):
    def add(self, disclosure: Disclosure) -> None: ...


class LoginThrottle(Protocol):
    """Sign-in tallies per key (a keyed digest of an account, an address or both), shared by
    every server process so that a load balancer cannot be used to multiply attempts."""

    def update(self, key: bytes, change: Callable[[Tally], tuple[R, Tally]]) -> R:
        """Replace the key's tally (a fresh one when absent) by ``change``'s, atomically:
        updates of one key take turns. Returns ``change``'s first value."""
        ...

    def forget(self, key: bytes, now: datetime) -> None:
        """Drop the key's tally (and any tally quiet for a day)."""
        ...


class RecordingSearch(Protocol):
    def search(self, criteria: SearchCriteria) -> list[Recording]:
        """Stored recordings (not purged) of the criteria's tenants matching them, newest
        call first."""
        ...


class Registers(Protocol):
    """The access log and the disclosure register, as the DPO and the subject read them.
    ``tenants`` (None: all) keeps what concerns recordings of those tenants only."""

    def accesses(
        self,
        *,
        recording_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 500,
        tenants: frozenset[str] | None = None,
    ) -> list[Access]:
        """Newest first."""
        ...

    def accesses_of(self, recording_ids: list[str]) -> list[Access]:
        """Every consultation of these recordings, oldest first."""
        ...

    def access_counts(self, since: datetime, until: datetime) -> dict[str, int]:
        """Consultations in the period, per purpose."""
        ...

    def disclosures(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 500,
        tenants: frozenset[str] | None = None,
    ) -> list[Disclosure]:
        """Newest first; with ``tenants``, those whose every recording is of them."""
        ...

    def disclosures_of(self, recording_ids: list[str]) -> list[Disclosure]:
        """Disclosures that included any of these recordings, oldest first."""
        ...


@dataclass(frozen=True)
class AudioForm:
    """What callvault knows of a recording's audio before decoding it."""

    content_type: str
    channels: int | None = None
    duration_seconds: float | None = None


class Rendition(Protocol):
    """Audio as one HTTP answer sends it: its length is known before any byte is read."""

    @property
    def content_type(self) -> str: ...

    @property
    def size(self) -> int: ...

    def read(self, first: int, last: int) -> Iterator[bytes]:
        """Bytes ``first``..``last`` (inclusive), streamed; called once."""
        ...


class Renditions(Protocol):
    def playable(self, source: io.RawIOBase, form: AudioForm) -> Rendition:
        """A rendition every browser plays, decoded from ``source`` (a seekable file of the
        original) as it is read; NotAudio when the source cannot be decoded."""
        ...


@dataclass(frozen=True)
class HoldView:
    hold: Hold
    recordings: list[tuple[str, str]] = field(default_factory=list)  # (recording_id, call_id)
    tenants: frozenset[str] = frozenset()  # of the recordings it covers


def hold_view(hold: Hold, covered: list[Recording]) -> HoldView:
    return HoldView(
        hold,
        [(r.recording_id, r.call_id or "") for r in covered],
        frozenset(r.tenant for r in covered),
    )


@dataclass(frozen=True)
class DayCounts:
    stored: dict[date, int]
    purged: dict[date, dict[str, int]]  # reason -> count


class ComplianceFacts(Protocol):
    """What the DPO's pages and the monthly report are made of: counts, never people."""

    def day_counts(self, since: datetime, until: datetime, calendar: LocalCalendar) -> DayCounts:
        """Recordings stored and purged per local day of ``calendar`` in [since, until)."""
        ...

    def retention_lags(self, since: datetime, until: datetime) -> list[tuple[datetime, float]]:
        """(purged_at, purged_at - due_at in seconds) of the retention purges in the period."""
        ...

    def overdue(self, now: datetime) -> tuple[int, datetime | None]: ...

    def recording_counts(self) -> dict[str, int]: ...

    def requests(
        self,
        *,
        open_only: bool = False,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[DsrRecord]: ...

    def holds(self) -> list[HoldView]:
        """Holds in force, with the recordings each covers."""
        ...

    def audit_chain(self) -> tuple[int, int | None]:
        """(entries verified, seq of the first broken entry or None)."""
        ...


class AccessHistory(Protocol):
    """What access exports and erasure/rectification answers add for the person (see
    :class:`workers.app.console.history.SubjectHistory`)."""

    def manifest_additions(self, recording_ids: list[str]) -> dict[str, Any]:
        """``recipients`` (list) and ``consultations`` (recording id -> list)."""
        ...

    def recipients_to_notify(self, recording_ids: list[str]) -> list[dict[str, Any]]: ...


class RegistrationRepository(Protocol):
    def registered(self, request_id: str) -> bool:
        """Whether the DPO registered this request already (the same form sent twice);
        registrations of one request take turns from here to the commit."""
        ...


class RequestPublisher(Protocol):
    def submit(self, request_id: str, data: dict[str, Any]) -> None:
        """Publishes the request's ``callvault.dsr.requested.v1`` data on ``dsr.requests``."""
        ...
