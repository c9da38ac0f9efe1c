"""The console's command handlers: each loads what it changes through the unit of work,
records what happened as events, and commits - the audit entries come from those events in
the same transaction (:mod:`workers.app.effects`). A refusal is a console error (403, 404,
409, 422); nothing is written then."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from functools import partial
from typing import Any

from ...domain.model import Recording, RecordingStatus
from ...domain.retention import rfc3339
from ..context import Context
from ..handlers.exports import DISCLOSURE_PREFIX, build_export, entry
from ..ports.unit_of_work import UnitOfWork
from .errors import Conflict, NotAllowed, NotFound
from .messages import (
    AccountChanged,
    AddFederatedUser,
    AddUser,
    BindIdentity,
    ChangeAccount,
    ChooseLanguage,
    CreateToken,
    Disclose,
    RecordAccess,
    RecordingConsulted,
    RecordingsDisclosed,
    RegisterRequest,
    RequestRegistered,
    RevokeToken,
)
from .model import Disclosure, RecipientKind, User, sees


# --- consultations and disclosures ----------------------------------------------------------
def record_access(command: RecordAccess, ctx: Context) -> str:
    since = command.unless_since
    with ctx.uow() as uow:
        fresh = [
            a for a in command.accesses if since is None or not uow.accesses.seen_since(a, since)
        ]
        uow.record(*(RecordingConsulted(a) for a in fresh))
        uow.commit()
    return f"recorded:{len(fresh)}"


def disclose(command: Disclose, ctx: Context) -> str:
    """The ZIP first (an orphan ZIP expires with the export bucket's sweep); then the export's
    row, the register entry and the audit entry in one transaction: all of it or none."""
    disclosure = command.disclosure
    recordings = ctx.read(partial(_disclosable, disclosure, command.tenants))
    manifest = partial(_disclosure_manifest, disclosure)
    export = build_export(
        f"{DISCLOSURE_PREFIX}{disclosure.disclosure_id}", recordings, ctx, manifest=manifest
    )
    kept = replace(
        disclosure,
        export_expires_at=export.record.expires_at,
        export_key=export.record.object_key,
        export_sha256=export.answer["sha256"],
        export_size=export.answer["size_bytes"],
    )
    with ctx.uow() as uow:
        uow.exports.add(export.record)
        uow.disclosures.add(kept)
        uow.record(RecordingsDisclosed(kept))
        uow.commit()
    return "disclosed"


def _disclosable(
    disclosure: Disclosure, tenants: frozenset[str], uow: UnitOfWork
) -> list[Recording]:
    found = {r.recording_id: r for r in uow.recordings.get_many(list(disclosure.recording_ids))}
    missing = [
        rid
        for rid in disclosure.recording_ids
        if rid not in found
        or found[rid].status is not RecordingStatus.STORED
        or not sees(tenants, found[rid].tenant)
    ]
    if missing:
        raise NotFound("unknown or purged recordings: %(ids)s", ids=", ".join(missing[:20]))
    recordings = [found[rid] for rid in disclosure.recording_ids]
    if disclosure.recipient_kind is not RecipientKind.LAW_ENFORCEMENT and any(
        r.restricted for r in recordings
    ):
        raise NotAllowed(
            "a restricted recording (GDPR Art. 18) may be disclosed only for legal claims "
            "or an authority's inquiry (recipient_kind law_enforcement)"
        )
    return recordings


def _disclosure_manifest(
    disclosure: Disclosure,
    recordings: list[Recording],
    now: datetime,
    files: dict[str, str],
    ctx: Context,
) -> dict[str, Any]:
    """What the recipient reads: the disclosure and the recordings' facts - without the
    customer's name or e-mail, other recipients or consultations."""
    entries = [entry(r, files.get(r.recording_id), ctx, personal=False) for r in recordings]
    return {
        "generated_at": rfc3339(now),
        "disclosure": {
            "disclosure_id": disclosure.disclosure_id,
            "recipient": disclosure.recipient,
            "recipient_kind": disclosure.recipient_kind.value,
            "legal_basis": disclosure.legal_basis,
            "reference": disclosure.reference,
            "disclosed_at": rfc3339(disclosure.disclosed_at),
            "recording_ids": list(disclosure.recording_ids),
        },
        "recordings": entries,
    }


def register_request(command: RegisterRequest, ctx: Context) -> str:
    with ctx.uow() as uow:
        if uow.registrations.registered(command.request_id):
            return "duplicate"  # the same form sent twice: recorded once
        uow.record(RequestRegistered(command.request_id, command.details, ctx.clock()))
        uow.commit()
    return "registered"


# --- accounts -------------------------------------------------------------------------------
def add_user(command: AddUser, ctx: Context) -> str:
    user = command.user
    with ctx.uow() as uow:
        if not uow.accounts.add(user):
            raise Conflict("user %(user)s exists", user=user.username)
        uow.record(_added(user, command.by, ctx.clock()))
        uow.commit()
    return "added"


def add_federated_user(command: AddFederatedUser, ctx: Context) -> str:
    user, identity, now = command.user, command.identity, ctx.clock()
    with ctx.uow() as uow:
        if not uow.accounts.add(user) or not uow.accounts.bind(
            user.username, identity.issuer, identity.subject, now
        ):
            raise Conflict("the name %(user)s or this identity is taken", user=user.username)
        uow.record(_added(user, identity.issuer, now), _bound(user.username, identity.issuer, now))
        uow.commit()
    return "added"


def bind_identity(command: BindIdentity, ctx: Context) -> str:
    identity, now = command.identity, ctx.clock()
    with ctx.uow() as uow:
        if not uow.accounts.bind(command.username, identity.issuer, identity.subject, now):
            raise Conflict("the account %(user)s cannot take this identity", user=command.username)
        uow.record(_bound(command.username, identity.issuer, now))
        uow.commit()
    return "bound"


def change_account(command: ChangeAccount, ctx: Context) -> str:
    now = ctx.clock()
    with ctx.uow() as uow:
        user = uow.accounts.get(command.username, lock=True)
        if user is None:
            raise NotFound("no user %(user)s", user=command.username)
        changed, events = _changes(user, command, now)
        if command.disabled:
            revoked = _revoke_all(uow, user.username, now)
            events += [_revoked(t, user.username, command.by, now) for t in revoked]
        uow.accounts.update(changed)
        uow.record(*events)
        uow.commit()
    return f"changed:{len(events)}"


def _changes(user: User, c: ChangeAccount, now: datetime) -> tuple[User, list[Any]]:
    events: list[Any] = []
    details: dict[str, Any]
    if c.disabled is not None and c.disabled != user.disabled:
        action = "disabled" if c.disabled else "enabled"
        events.append(AccountChanged(action, user.username, c.by, now))
    if c.role is not None and c.role is not user.role:
        details = {"from": user.role.value, "to": c.role.value}
        events.append(AccountChanged("role_changed", user.username, c.by, now, details))
    if c.tenants is not None and c.tenants != user.tenants:
        details = {"from": sorted(user.tenants), "to": sorted(c.tenants)}
        events.append(AccountChanged("tenants_changed", user.username, c.by, now, details))
    changed = replace(
        user,
        disabled=user.disabled if c.disabled is None else c.disabled,
        role=c.role or user.role,
        tenants=user.tenants if c.tenants is None else c.tenants,
    )
    return changed, events


def _revoke_all(uow: UnitOfWork, username: str, now: datetime) -> list[str]:
    """Revoke the account's tokens in force; their ids."""
    ids = [t.token_id for t in uow.accounts.tokens_of(username) if t.revoked_at is None]
    return [i for i in ids if uow.accounts.revoke_token(i, now)]


def choose_language(command: ChooseLanguage, ctx: Context) -> str:
    """A preference of one's own, not an account operation: not audited."""
    with ctx.uow() as uow:
        user = uow.accounts.get(command.username, lock=True)
        if user is None:
            raise NotFound("no user %(user)s", user=command.username)
        uow.accounts.update(replace(user, language=command.language))
        uow.commit()
    return "chosen"


def create_token(command: CreateToken, ctx: Context) -> str:
    token = command.token
    with ctx.uow() as uow:
        owner = uow.accounts.get(token.username, lock=True)
        if owner is None:
            raise NotFound("no user %(user)s", user=token.username)
        if owner.disabled:
            raise Conflict("user %(user)s is disabled", user=token.username)
        uow.accounts.add_token(token)
        details = {"token_id": token.token_id}
        uow.record(
            AccountChanged("token_created", owner.username, command.by, token.created_at, details)
        )
        uow.commit()
    return "created"


def revoke_token(command: RevokeToken, ctx: Context) -> str:
    now = ctx.clock()
    with ctx.uow() as uow:
        token = uow.accounts.token(command.token_id)
        mine = token is not None and command.owner in (None, token.username)
        if token is None or not mine or not uow.accounts.revoke_token(token.token_id, now):
            raise NotFound("no active token %(token)s", token=command.token_id)
        uow.record(_revoked(token.token_id, token.username, command.by, now))
        uow.commit()
    return "revoked"


def _added(user: User, by: str, now: datetime) -> AccountChanged:
    details: dict[str, Any] = {
        "role": user.role.value,
        "tenants": sorted(user.tenants),
        "sign_in": "password" if user.password_hash else "oidc",
    }
    return AccountChanged("user_added", user.username, by, now, details)


def _bound(username: str, issuer: str, now: datetime) -> AccountChanged:
    return AccountChanged("identity_bound", username, issuer, now, {"issuer": issuer})


def _revoked(token_id: str, owner: str, by: str, now: datetime) -> AccountChanged:
    return AccountChanged("token_revoked", owner, by, now, {"token_id": token_id})
