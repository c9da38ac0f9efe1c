"""Staff, roles and purposes, and the records purpose-bound access keeps."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Role(StrEnum):
    QA = "qa"
    COMPLAINTS = "complaints"
    DPO = "dpo"
    ADMIN = "admin"


class Purpose(StrEnum):
    """The privacy notice's purposes, plus the controller's own legal claims and incidents."""

    QUALITY = "quality"
    TRAINING = "training"
    COMPLAINT = "complaint"
    LEGAL_CLAIM = "legal_claim"
    INCIDENT = "incident"


PURPOSES_OF: dict[Role, frozenset[Purpose]] = {
    Role.QA: frozenset({Purpose.QUALITY, Purpose.TRAINING}),
    Role.COMPLAINTS: frozenset({Purpose.COMPLAINT}),
    Role.DPO: frozenset(Purpose),
    Role.ADMIN: frozenset(),
}
# A case reference ties a listening to the file it serves.
CASE_REF_REQUIRED = frozenset({Purpose.COMPLAINT, Purpose.LEGAL_CLAIM})
# Roles whose purposes need to know who the customer is (names, e-mails).
SEES_CUSTOMER = frozenset({Role.COMPLAINTS, Role.DPO})
# Roles that may look recordings up at all.
SEARCHERS = frozenset({Role.QA, Role.COMPLAINTS, Role.DPO})

# Case references and names of things are codes, not prose: nothing personal fits in them.
_REFERENCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/#-]{0,63}$")
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


def valid_reference(text: str) -> bool:
    return bool(_REFERENCE.match(text))


def valid_username(text: str) -> bool:
    return bool(_USERNAME.match(text))


class RecipientKind(StrEnum):
    LAW_ENFORCEMENT = "law_enforcement"
    TELECOM_PROVIDER = "telecom_provider"
    OTHER = "other"

    @property
    def told_to_subject(self) -> bool:
        """Authorities receiving data for a particular inquiry are not 'recipients' (Art. 4(9)):
        the register keeps them, the person's access export does not list them."""
        return self is not RecipientKind.LAW_ENFORCEMENT


class AccessKind(StrEnum):
    PLAYBACK = "playback"  # the browser's player
    DOWNLOAD = "download"  # an API client fetching the file
    PERSONAL_DATA = "personal_data"  # the customer's name and e-mail shown


# A user's tenants: the recordings, disclosures and registers they may see. ``*`` is every
# tenant, and must be given explicitly; an account with no tenant sees nothing.
ALL_TENANTS = "*"


def valid_tenant(text: str) -> bool:
    return text == ALL_TENANTS or bool(_REFERENCE.match(text))


def sees(tenants: frozenset[str], tenant: str | None) -> bool:
    return ALL_TENANTS in tenants or (tenant is not None and tenant in tenants)


@dataclass(frozen=True)
class User:
    username: str
    role: Role
    password_hash: str | None  # None: signs in through the identity provider only
    disabled: bool = False
    created_at: datetime | None = None
    tenants: frozenset[str] = frozenset()
    language: str | None = None  # chosen in the console; None: the browser's


@dataclass(frozen=True)
class Identity:
    """A person as an OpenID provider vouches for them: ``subject`` is stable and unique at
    ``issuer``; ``username`` is only the name it shows (and may change)."""

    issuer: str
    subject: str
    username: str


@dataclass(frozen=True)
class ApiToken:
    token_id: str
    username: str
    secret_hash: bytes
    created_at: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True)
class Principal:
    """Who is asking: a signed-in person or an API client acting for a user."""

    username: str
    role: Role
    via: str  # session | token | oidc
    tenants: frozenset[str] = frozenset()  # whose recordings they may see (``*``: all)
    language: str | None = None  # the console's language the user chose

    def may_use(self, purpose: Purpose) -> bool:
        return purpose in PURPOSES_OF[self.role]

    def sees(self, tenant: str | None) -> bool:
        return sees(self.tenants, tenant)

    @property
    def every_tenant(self) -> bool:
        return ALL_TENANTS in self.tenants


@dataclass(frozen=True)
class Access:
    """One consultation of a recording: who, in which role, why, when."""

    at: datetime
    username: str
    role: Role
    purpose: Purpose
    case_ref: str | None
    recording_id: str
    kind: AccessKind


@dataclass(frozen=True)
class Disclosure:
    disclosure_id: str
    recipient: str
    recipient_kind: RecipientKind
    legal_basis: str
    reference: str
    recording_ids: tuple[str, ...]
    disclosed_by: str
    disclosed_at: datetime
    export_expires_at: datetime | None = None
    export_key: str | None = None  # the ZIP in the export bucket, while it is kept
    export_sha256: str | None = None  # what was handed over
    export_size: int | None = None


@dataclass(frozen=True)
class SearchCriteria:
    """Recordings matching any identifier digest or call id, within the dates and agent."""

    digests: frozenset[bytes] = frozenset()
    call_ids: tuple[str, ...] = ()
    start: datetime | None = None
    end: datetime | None = None
    agent_id: str | None = None
    limit: int = 200
    identifiers_given: bool = field(default=False)  # some identifier asked, usable or not
    tenants: frozenset[str] | None = None  # the searcher's tenants (None: every tenant)

    @property
    def by_identity(self) -> bool:
        return self.identifiers_given or bool(self.call_ids)
