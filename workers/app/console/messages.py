"""The console's commands and the events they record. Every staff action that changes
anything - listening, seeing a customer's details, disclosing, accounts and tokens - is a
command on the console's message bus; its handler records events, and the unit of work turns
them into audit entries in the same transaction as the change (:mod:`workers.app.effects`).
Holds placed from the console are the core's own ``PlaceHold``/``ReleaseHold`` commands.

Commands carry ids, codes and staff names only: never a password, a token's secret, a phone
number or a customer's name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ...domain.messages import Command, Event
from .model import Access, ApiToken, Disclosure, Identity, Role, User

# --- commands -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordAccess(Command):
    """A consultation (a playback, a download, a view of the customer's details), on record
    before anything is shown; not again when the same person consulted the same recording
    for the same purpose and case since ``unless_since`` (a player seeking)."""

    accesses: tuple[Access, ...]
    unless_since: datetime | None = None


@dataclass(frozen=True)
class Disclose(Command):
    """Package the recordings for the recipient and register the disclosure, at once."""

    disclosure: Disclosure
    tenants: frozenset[str]  # the DPO's: a recording outside them is unknown


@dataclass(frozen=True)
class AddUser(Command):
    user: User
    by: str


@dataclass(frozen=True)
class AddFederatedUser(Command):
    """An identity provider's first sign-in of a person: a passwordless account bound to
    its (issuer, subject)."""

    user: User
    identity: Identity


@dataclass(frozen=True)
class BindIdentity(Command):
    """Bind a passwordless, unbound account to an identity (an account made before)."""

    username: str
    identity: Identity


@dataclass(frozen=True)
class ChangeAccount(Command):
    """Disable or enable an account, change its role (the provider's mapping) or its
    tenants; disabling also revokes its API tokens."""

    username: str
    by: str
    disabled: bool | None = None
    role: Role | None = None
    tenants: frozenset[str] | None = None


@dataclass(frozen=True)
class ChooseLanguage(Command):
    """The console's language a person chose for themselves (None: their browser's)."""

    username: str
    language: str | None


@dataclass(frozen=True)
class CreateToken(Command):
    token: ApiToken  # its secret's hash only
    by: str


@dataclass(frozen=True)
class RevokeToken(Command):
    token_id: str
    by: str
    owner: str | None = None  # revoke only a token of this user (None: an administrator's)


@dataclass(frozen=True)
class RegisterRequest(Command):
    """A request the DPO registered (details: who, how it came, how the identity was checked
    - never the person's identifiers); once per request id (a form sent twice)."""

    request_id: str
    details: dict[str, Any]


# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordingConsulted(Event):
    access: Access


@dataclass(frozen=True)
class RecordingsDisclosed(Event):
    disclosure: Disclosure


@dataclass(frozen=True)
class RequestRegistered(Event):
    request_id: str
    details: dict[str, Any]
    at: datetime


@dataclass(frozen=True)
class AccountChanged(Event):
    """An account operation: what was done to which account, by whom (a staff name, or
    ``cli`` or the identity provider); details never hold a password or a secret."""

    action: str  # user_added, identity_bound, disabled, enabled, role_changed, ...
    username: str
    by: str
    at: datetime
    details: dict[str, Any] = field(default_factory=dict)
