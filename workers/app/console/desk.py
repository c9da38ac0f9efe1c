"""Requests that arrive without a portal - an e-mail, a letter, a phone call: the DPO registers
them in the console, and they take the portal's path (a ``callvault.dsr.requested.v1`` on
``dsr.requests``), so they are carried out, answered and counted like any other. Each
registration goes into the audit trail first: who registered it, how the request came and how
and by whom the person's identity was checked - never the person's identifiers."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from ...domain.calendar import Localities
from ...domain.errors import SchemaViolation
from ...domain.identifiers import Subject
from ...domain.model import DSR_DEADLINE, DsrType
from ...domain.retention import parse_timestamp, rfc3339
from ...domain.text import N_
from ..messagebus import MessageBus
from ..ports.console import RequestPublisher
from .disclosures import require_dpo
from .errors import Invalid
from .messages import RegisterRequest
from .model import Principal

# how a request reached the controller
CHANNELS = {
    "email": N_("e-mail"),
    "letter": N_("letter"),
    "phone": N_("phone call"),
    "in_person": N_("in person"),
}
# how the person's identity was checked before the request is carried out (Art. 12(6))
VERIFICATIONS = {
    "customer_account": N_("details matched the customer account"),
    "call_back": N_("called back on the number the request is about"),
    "id_document": N_("identity document shown"),
    "electronic_signature": N_("qualified electronic signature or e-banking"),
    "not_verified": N_("not verified (the request will be refused)"),
}
REQUEST_ID = re.compile(r"dpo-[0-9a-f]{32}")
MAX_TEXT = 200


@dataclass(frozen=True)
class Registration:
    """A request as the DPO types it in."""

    request_id: str  # made with the form, so that sending it twice registers it once
    dsr_type: str
    subject: Subject
    received_on: date  # the local day it arrived: the deadline runs from it
    channel: str
    verification: str
    verified_by: str
    language: str
    tenant: str | None = None
    rectification: dict[str, str] = field(default_factory=dict)  # {name?, email?}
    lift_restriction: bool = False


class RequestDesk:
    def __init__(
        self,
        bus: MessageBus,
        publisher: RequestPublisher,
        *,
        clock: Callable[[], datetime],
        localities: Localities,
        languages: tuple[str, ...],
    ) -> None:
        self._bus, self._publisher, self._clock = bus, publisher, clock
        self._localities, self._languages = localities, languages

    def today(self, principal: Principal) -> date:
        """The default day of receipt: today, on the DPO's calendar."""
        return self._localities.calendar_for(principal.tenants).day_of(self._clock())

    def register(self, principal: Principal, registration: Registration) -> datetime:
        """Registers the request; returns its deadline."""
        require_dpo(principal)
        data = self._event_data(principal, registration)
        details = {
            "by": principal.username,
            "type": registration.dsr_type,
            "received_at": data["received_at"],
            "channel": registration.channel,
            "verification": registration.verification,
            "verified_by": registration.verified_by,
            "language": registration.language,
            "tenant": registration.tenant,
        }
        self._bus.handle(RegisterRequest(registration.request_id, details))
        try:
            self._publisher.submit(registration.request_id, data)  # a resend: still one request
        except SchemaViolation as problem:  # names the field and the rule, never the value
            raise Invalid("the request is not valid: %(problem)s", problem=problem) from None
        # as the worker counts it: on the calendar of the request's tenant
        calendar = self._localities.calendar_of(registration.tenant)
        return calendar.after(DSR_DEADLINE, parse_timestamp(data["received_at"]))

    def _event_data(self, principal: Principal, r: Registration) -> dict[str, Any]:
        """The request as the portal would send it; the day of receipt starts at midnight
        where the tenant named is, else where the DPO is."""
        _check(r, self._languages)
        calendar = (
            self._localities.calendar_of(r.tenant)
            if r.tenant
            else self._localities.calendar_for(principal.tenants)
        )
        if r.received_on > calendar.day_of(self._clock()):
            raise Invalid("the day a request was received cannot be in the future")
        data: dict[str, Any] = {
            "request_id": r.request_id,
            "type": r.dsr_type,
            "received_at": rfc3339(calendar.midnight(r.received_on)),
            "identity_verified": r.verification != "not_verified",
            "subject": r.subject.as_dict(),
            "language": r.language,
        }
        if r.tenant:
            data["tenant"] = r.tenant
        if r.dsr_type == DsrType.RECTIFICATION:
            data["rectification"] = r.rectification
        if r.dsr_type == DsrType.RESTRICTION:
            data["restriction"] = "lift" if r.lift_restriction else "apply"
        return data


def _check(r: Registration, languages: tuple[str, ...]) -> None:
    if not REQUEST_ID.fullmatch(r.request_id):
        raise Invalid("the form has expired; reload the page and try again")
    if r.dsr_type not in {t.value for t in DsrType}:
        raise Invalid("unknown type of request")
    if not any(r.subject.as_dict().values()):
        raise Invalid("give at least one identifier of the person")
    if r.channel not in CHANNELS or r.verification not in VERIFICATIONS:
        raise Invalid("say how the request came and how the identity was checked")
    if not r.verified_by.strip() or len(r.verified_by) > MAX_TEXT:
        raise Invalid("say who checked the identity (at most %(n)d characters)", n=MAX_TEXT)
    if r.language not in languages:
        raise Invalid("no such language")
    if r.dsr_type == DsrType.RECTIFICATION and not r.rectification:
        raise Invalid("a rectification needs the corrected name or e-mail")
