"""Disclosures: the DPO hands recordings to a recipient; the register remembers to whom, on
which basis and when, and the recipient gets an expiring ZIP with a manifest. A held recording
stays held: disclosing copies, it never releases or deletes."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from ...domain.model import Recording, RecordingStatus
from ...domain.retention import parse_timestamp
from ..ports.console import DisclosureRegister, Packager, RecordingFinder
from .errors import Invalid, NotAllowed, NotFound
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
    def __init__(
        self,
        register: DisclosureRegister,
        finder: RecordingFinder,
        packager: Packager,
        *,
        clock: Callable[[], datetime],
    ) -> None:
        self._register, self._finder, self._packager = register, finder, packager
        self._clock = clock

    def disclose(
        self, principal: Principal, request: DisclosureRequest
    ) -> tuple[Disclosure, dict[str, Any]]:
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
        recordings = self._stored(ids)
        if kind is not RecipientKind.LAW_ENFORCEMENT and any(r.restricted for r in recordings):
            raise NotAllowed(
                "a restricted recording (GDPR Art. 18) may be disclosed only for legal claims "
                "or an authority's inquiry (recipient_kind law_enforcement)"
            )
        disclosure = Disclosure(
            disclosure_id=str(uuid.uuid4()),
            recipient=request.recipient.strip(),
            recipient_kind=kind,
            legal_basis=request.legal_basis.strip(),
            reference=request.reference.strip(),
            recording_ids=ids,
            disclosed_by=principal.username,
            disclosed_at=self._clock(),
        )
        # The ZIP first: a failure leaves no register entry for something never handed over.
        export = self._packager.package(disclosure, recordings)
        disclosure = replace(disclosure, export_expires_at=parse_timestamp(export["expires_at"]))
        self._register.register(disclosure)
        return disclosure, export

    def _stored(self, ids: tuple[str, ...]) -> list[Recording]:
        found, missing = [], []
        for recording_id in ids:
            recording = self._finder.recording(recording_id) if _is_uuid(recording_id) else None
            if recording is None or recording.status is not RecordingStatus.STORED:
                missing.append(recording_id)
            else:
                found.append(recording)
        if missing:
            raise NotFound("unknown or purged recordings: %(ids)s", ids=", ".join(missing[:20]))
        return found

    def register(self, principal: Principal, *, limit: int = 500) -> list[Disclosure]:
        require_dpo(principal)
        return self._register.disclosures(limit=limit)


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
