"""A person's identifiers on a recording: read from its sealed personal data, corrected by a
rectification, and turned into the keyed digests every look-up uses."""

from __future__ import annotations

from typing import Any

from ...domain.identifiers import Subject, normalize_email, subject_keys
from ...domain.keyed import Mac
from ...domain.model import DsrRequest, Recording
from ..context import Context
from ..ports.unit_of_work import UnitOfWork


def rectify_recording(
    uow: UnitOfWork, recording: Recording, request: DsrRequest, ctx: Context
) -> None:
    """Correct the name/e-mail sealed with the recording, re-key its look-up digests, and
    carry subject holds over to the corrected identifiers (a hold follows the person)."""
    assert recording.wrapped_key is not None
    keys = ctx.keys
    data_key = keys.unwrap(recording.wrapped_key, recording.master_key_id, recording.recording_id)
    personal = (
        keys.open(data_key, recording.recording_id, recording.customer_sealed)
        if recording.customer_sealed
        else {}
    )
    if request.rectify_name is not None:
        personal["name"] = request.rectify_name
    if request.rectify_email is not None:
        personal["email"] = request.rectify_email
    digests = digests_of(keys.hasher, personal, ctx.settings.default_region)
    before = uow.recordings.digests_of(recording.recording_id)
    for hold in uow.holds.covering(recording.recording_id, recording.call_digest, before):
        hold.extend_subject(digests)
        uow.holds.update(hold)
    if uow.holds.covering(recording.recording_id, recording.call_digest, digests):
        recording.set_held(True)  # a hold naming a corrected identifier covers it now
    recording.reseal(keys.seal(data_key, recording.recording_id, personal))
    uow.recordings.update(recording)
    uow.recordings.replace_digests(recording.recording_id, digests)


def digests_of(key: Mac, personal: dict[str, Any], region: str) -> frozenset[bytes]:
    """The look-up digests of a recording's customer, from its (decrypted) personal data."""
    return subject_keys(key, identifiers_of(personal, region)).digests


def identifiers_of(personal: dict[str, Any], region: str) -> set[tuple[str, str]]:
    """The normalised identifiers (kind, value) in a recording's personal data."""
    subject = Subject(
        phone_numbers=tuple(p for p in [personal.get("phone")] if p and p != "withheld"),
        emails=tuple(e for e in [personal.get("email")] if e and normalize_email(e)),
        customer_ids=tuple(c for c in [personal.get("customer_id")] if c),
        order_ids=tuple(personal.get("order_ids") or ()),
    )
    return subject.normalized(region)
