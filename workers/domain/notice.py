"""Who a data subject's letter names: the controller of a tenant's recordings and its data
protection officer (Art. 13(1)(a)-(b), 15), and the supervisory authority a person may
complain to (Art. 77). Set per deployment (``CALLVAULT_CONTROLLER``), per tenant where tenants
are different controllers (``CALLVAULT_CONTROLLER_TENANTS``), and ``CALLVAULT_AUTHORITY``."""

from __future__ import annotations

from dataclasses import dataclass

from .text import N_


@dataclass(frozen=True)
class Controller:
    """The controller as its privacy notice introduces it; every field is text a person reads
    as written."""

    name: str = ""
    code: str = ""  # the company (register) code
    address: str = ""
    phone: str = ""
    email: str = ""
    requests_email: str = ""  # where people ask for access, erasure, ... (else ``email``)
    dpo_phone: str = ""
    dpo_email: str = ""
    lines: tuple[str, ...] = ()  # the recorded phone lines the notice names

    @property
    def requests_to(self) -> str:
        return self.requests_email or self.email


@dataclass(frozen=True)
class Authority:
    """A supervisory authority's contacts, as a person would use them."""

    name: str
    address: str
    phone: str = ""
    fax: str = ""
    email: str = ""
    e_delivery: str = ""  # the Lithuanian e-delivery box (E. pristatymas)
    web: str = ""


# The State Data Protection Inspectorate of the Republic of Lithuania. The name is a catalogue
# text (each language's own name); the rest is written as the inspectorate publishes it.
VDAI = Authority(
    name=N_("State Data Protection Inspectorate"),
    address="L. Sapiegos g. 17, 10312 Vilnius",
    phone="(8 5) 271 2804, 279 1445",
    fax="(8 5) 261 9494",
    email="ada@ada.lt",
    e_delivery="188607912",
    web="https://vdai.lrv.lt",
)
