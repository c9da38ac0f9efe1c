"""The console's ports. Each method is one unit of work: it commits everything it writes
(an access and its audit entry, a disclosure and its audit entry) together or not at all.
PostgreSQL implementations: ``workers.adapters.postgres.console``; fakes: ``tests/fakes/console``;
one contract suite (tests/integration/test_console_ports.py) keeps both honest."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

from ...domain.calendar import LocalCalendar
from ...domain.model import Hold, Recording, RequestRecord
from ..console.model import Access, ApiToken, Disclosure, Role, SearchCriteria, User
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


class UserDirectory(Protocol):
    def add_user(self, user: User) -> bool:
        """False when the name is taken."""
        ...

    def user(self, username: str) -> User | None: ...

    def users(self) -> list[User]: ...

    def set_disabled(self, username: str, disabled: bool) -> bool: ...

    def set_role(self, username: str, role: Role) -> bool: ...

    def set_language(self, username: str, language: str | None) -> bool: ...

    def user_for_identity(self, issuer: str, subject: str) -> User | None:
        """The account bound to this identity provider's subject, if any."""
        ...

    def add_federated_user(self, user: User, issuer: str, subject: str, at: datetime) -> bool:
        """Create a passwordless account bound to the identity; False when the name is taken
        or the identity is bound already."""
        ...

    def bind_identity(self, username: str, issuer: str, subject: str, at: datetime) -> bool:
        """Bind an existing account that has no password and no identity yet; else False."""
        ...


class ApiTokens(Protocol):
    def add_token(self, token: ApiToken) -> None: ...

    def token(self, token_id: str) -> ApiToken | None: ...

    def tokens_of(self, username: str) -> list[ApiToken]: ...

    def revoke_token(self, token_id: str, at: datetime) -> bool: ...


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


class RecordingFinder(Protocol):
    def search(self, criteria: SearchCriteria) -> list[Recording]:
        """Stored recordings (not purged) matching the criteria, newest call first."""
        ...

    def recording(self, recording_id: str) -> Recording | None: ...


class AccessLog(Protocol):
    def record_access(self, access: Access, *, unless_since: datetime | None = None) -> bool:
        """Append the access to the hash-chained audit trail and the access index, unless the
        same person consulted the same recording for the same purpose and case since
        ``unless_since`` (a player seeking in one playback). True when an entry was written."""
        ...

    def accesses(
        self,
        *,
        recording_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 500,
    ) -> list[Access]:
        """Newest first."""
        ...

    def accesses_of(self, recording_ids: list[str]) -> list[Access]:
        """Every consultation of these recordings, oldest first."""
        ...

    def access_counts(self, since: datetime, until: datetime) -> dict[str, int]:
        """Consultations in the period, per purpose."""
        ...


class DisclosureRegister(Protocol):
    def register(self, disclosure: Disclosure) -> None:
        """Keep the disclosure and chain an audit entry for it."""
        ...

    def disclosures(
        self, *, since: datetime | None = None, until: datetime | None = None, limit: int = 500
    ) -> list[Disclosure]:
        """Newest first."""
        ...

    def disclosures_of(self, recording_ids: list[str]) -> list[Disclosure]:
        """Disclosures that included any of these recordings, oldest first."""
        ...


class RangedObjects(Protocol):
    def get_range(self, bucket: str, key: str, offset: int, length: int) -> Iterator[bytes]:
        """``length`` bytes of the object from ``offset``; ObjectMissing when absent."""
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


class HoldCommands(Protocol):
    """Publishes the contract's hold commands; the holds worker applies them."""

    def place(
        self, hold_id: str, reason: str, case_ref: str | None, scope: dict[str, Any]
    ) -> None: ...

    def release(self, hold_id: str) -> None: ...


class Packager(Protocol):
    def package(self, disclosure: Disclosure, recordings: list[Recording]) -> dict[str, Any]:
        """A ZIP for the recipient (audio + manifest) in the export bucket; the contract's
        ``export`` object: url, expires_at, sha256, size_bytes, format."""
        ...


@dataclass(frozen=True)
class HoldView:
    hold: Hold
    recordings: list[tuple[str, str]] = field(default_factory=list)  # (recording_id, call_id)


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


class RegistrationLog(Protocol):
    def request_registered(self, request_id: str, details: dict[str, Any], at: datetime) -> bool:
        """Appends a request the DPO registered to the audit trail; False when it is there
        already (the same form sent twice)."""
        ...


class RequestPublisher(Protocol):
    def submit(self, request_id: str, data: dict[str, Any]) -> None:
        """Publishes the request's ``callvault.dsr.requested.v1`` data on ``dsr.requests``."""
        ...


class ConsoleStore(
    UserDirectory,
    ApiTokens,
    LoginThrottle,
    RecordingFinder,
    AccessLog,
    DisclosureRegister,
    ComplianceFacts,
    RegistrationLog,
    Protocol,
):
    """Every database port of the console, as one store implements them."""
