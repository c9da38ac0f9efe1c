"""Disclosures: the DPO hands recordings to a recipient; the register remembers to whom, on
which basis and when, and the recipient gets an expiring ZIP with a manifest. A held recording
stays held: disclosing copies, it never releases or deletes. The export's row, the register
entry and the audit entry are written in one transaction (the ``Disclose`` command)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from ...domain.model import canonical_recording_id
from ...domain.retention import rfc3339
from ..context import Context
from ..messagebus import MessageBus
from ..ports.console import Registers
from .errors import Invalid, NotAllowed, NotFound
from .messages import Disclose
from .model import Disclosure, Principal, RecipientKind, Role

MAX_RECORDINGS = 500


@dataclass(frozen=True)
class DisclosureRequest:
    recipient: str
    recipient_kind: str
    legal_basis: str
    reference: str
    recording_ids: tuple[str, ...]


class Disclosures:
    def __init__(self, bus: MessageBus, ctx: Context, registers: Registers) -> None:
        self._bus, self._ctx, self._registers = bus, ctx, registers

    def disclose(
        self, principal: Principal, request: DisclosureRequest
    ) -> tuple[Disclosure, dict[str, Any]]:
        """Package the recordings and register the disclosure (one command); the contract's
        ``export`` answer: url, expires_at, sha256, size_bytes, format."""
        require_dpo(principal)
        kind = _kind(request.recipient_kind)
        for name, value, limit in (
            ("recipient", request.recipient, 200),
            ("legal_basis", request.legal_basis, 500),
            ("reference", request.reference, 200),
        ):
            if not value.strip() or len(value) > limit:
                raise Invalid(
                    "%(field)s is required (at most %(n)d characters)", field=name, n=limit
                )
        ids = tuple(dict.fromkeys(request.recording_ids))
        if not 1 <= len(ids) <= MAX_RECORDINGS:
            raise Invalid("recording_ids lists 1 to %(n)d recordings", n=MAX_RECORDINGS)
        unknown = [i for i in ids if not _is_uuid(i)]
        if unknown:
            raise NotFound("unknown or purged recordings: %(ids)s", ids=", ".join(unknown[:20]))
        disclosure = Disclosure(
            disclosure_id=str(uuid.uuid4()),
            recipient=request.recipient.strip(),
            recipient_kind=kind,
            legal_basis=request.legal_basis.strip(),
            reference=request.reference.strip(),
            recording_ids=tuple(canonical_recording_id(i) for i in ids),
            disclosed_by=principal.username,
            disclosed_at=self._ctx.clock(),
        )
        self._bus.handle(Disclose(disclosure, principal.tenants))
        (kept,) = [
            d
            for d in self._registers.disclosures_of(list(disclosure.recording_ids))
            if d.disclosure_id == disclosure.disclosure_id
        ]
        return kept, self._answer(kept)

    def _answer(self, disclosure: Disclosure) -> dict[str, Any]:
        assert disclosure.export_key is not None
        assert disclosure.export_expires_at is not None
        ttl = disclosure.export_expires_at - self._ctx.clock()
        bucket = self._ctx.settings.export_bucket
        return {
            "url": self._ctx.objects.presigned_get(bucket, disclosure.export_key, ttl),
            "expires_at": rfc3339(disclosure.export_expires_at),
            "sha256": disclosure.export_sha256,
            "size_bytes": disclosure.export_size,
            "format": "zip",
        }

    def register(self, principal: Principal, *, limit: int = 500) -> list[Disclosure]:
        """The register, as far as the DPO's tenants go."""
        require_dpo(principal)
        return self._registers.disclosures(limit=limit, tenants=tenants_of(principal))


def tenants_of(principal: Principal) -> frozenset[str] | None:
    """What a read model is limited to for this principal (None: every tenant)."""
    return None if principal.every_tenant else principal.tenants


def require_dpo(principal: Principal) -> None:
    if principal.role is not Role.DPO:
        raise NotAllowed("only the data protection officer may do this")


def _kind(text: str) -> RecipientKind:
    try:
        return RecipientKind(text)
    except ValueError:
        raise Invalid("recipient_kind is law_enforcement, telecom_provider or other") from None


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
