"""Words for the codes people see (purposes, roles, request types, ...): the ``label`` filter
of every template, ``{{ item.purpose|label }}``. A code without a word here is shown as is
(translated, when it is a text of the catalogues)."""

from __future__ import annotations

from ..domain.text import N_

LABELS = {
    # purposes of the processing
    "quality": N_("quality"),
    "training": N_("training"),
    "complaint": N_("complaint"),
    "legal_claim": N_("legal claim"),
    "incident": N_("incident"),
    # call directions
    "inbound": N_("inbound"),
    "outbound": N_("outbound"),
    # console roles
    "qa": N_("quality assurance"),
    "complaints": N_("complaints"),
    "dpo": N_("data protection officer"),
    "admin": N_("administrator"),
    # how a recording was consulted
    "playback": N_("playback"),
    "download": N_("download"),
    # data-subject requests: types, states and outcomes
    "access": N_("access"),
    "erasure": N_("erasure"),
    "rectification": N_("rectification"),
    "restriction": N_("restriction"),
    "objection": N_("objection"),
    "portability": N_("portability"),
    "processing": N_("in progress"),
    "completed": N_("completed"),
    "partial": N_("partly completed"),
    "rejected": N_("rejected"),
    "erased": N_("erased"),
    "exported": N_("exported"),
    "restricted": N_("restricted"),
    "unrestricted": N_("restriction lifted"),
    "rectified": N_("rectified"),
    "held": N_("kept (legal hold)"),
    # why a request was refused
    "identity_not_verified": N_("the person's identity was not verified"),
    "no_usable_identifier": N_("no identifier of the person could be used"),
    # recipients of disclosures
    "law_enforcement": N_("law enforcement"),
    "telecom_provider": N_("telecom provider"),
    "other": N_("other"),
    # what a legal hold covers
    "recording_ids": N_("recording ids"),
    "call_ids": N_("call ids"),
    "subject": N_("a person"),
}
