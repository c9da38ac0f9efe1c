"""Search and listen: identifiers become keyed digests at once (as for requests), every
playback or download is tied to a purpose the role may use and written to the audit trail."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ...domain.identifiers import Subject, subject_keys
from ...domain.model import Recording, RecordingStatus
from ..context import Context
from ..messagebus import MessageBus
from ..ports.console import RecordingSearch, Rendition, Renditions
from ..ports.keys import Keys
from ..ports.objects import ObjectMissing, ObjectStore
from . import playback
from .errors import Invalid, NotAllowed, NotFound, RangeNotSatisfiable
from .messages import RecordAccess
from .model import (
    CASE_REF_REQUIRED,
    SEARCHERS,
    SEES_CUSTOMER,
    Access,
    AccessKind,
    Principal,
    Purpose,
    SearchCriteria,
    valid_reference,
)

MAX_RESULTS = 500
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass(frozen=True)
class SearchQuery:
    """What staff typed, in any notation; it never leaves this object except as digests."""

    phone_numbers: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    customer_ids: tuple[str, ...] = ()
    order_ids: tuple[str, ...] = ()
    call_ids: tuple[str, ...] = ()
    start: datetime | None = None
    end: datetime | None = None
    agent_id: str | None = None
    limit: int = 200

    @property
    def subject(self) -> Subject:
        return Subject(self.phone_numbers, self.emails, self.customer_ids, self.order_ids)

    @property
    def empty(self) -> bool:
        return not (
            any(self.subject.as_dict().values())
            or self.call_ids
            or self.start
            or self.end
            or self.agent_id
        )


@dataclass(frozen=True)
class Audio:
    """An HTTP answer for audio: whole (200) or one range (206), streamed as it decrypts."""

    status: int
    content_type: str
    size: int
    first: int
    last: int
    body: Iterator[bytes] = field(repr=False)

    @property
    def length(self) -> int:
        return self.last - self.first + 1 if self.size else 0


class Recordings:
    def __init__(
        self,
        bus: MessageBus,
        ctx: Context,
        finder: RecordingSearch,
        objects: ObjectStore,
        *,
        keys: Keys,
        region: str,
        seek_window: timedelta = timedelta(minutes=30),
        renditions: Renditions | None = None,
    ) -> None:
        self._bus, self._ctx, self._finder, self._objects = bus, ctx, finder, objects
        self._bucket, self._keys, self._clock = ctx.vault, keys, ctx.clock
        self._region = region  # where phone numbers without a country code are dialled
        self._seek_window = seek_window
        self._renditions = renditions

    # search --------------------------------------------------------------------------------
    def search(self, principal: Principal, query: SearchQuery) -> list[Recording]:
        """Recordings of the searcher's tenants only."""
        _require_searcher(principal)
        if query.empty:
            raise Invalid("give at least one identifier, call id, date or agent")
        if query.start and query.end and query.start > query.end:
            raise Invalid("'from' is after 'to'")
        pairs = query.subject.normalized(self._region)
        criteria = SearchCriteria(
            digests=subject_keys(self._keys.hasher, pairs).digests,
            call_ids=query.call_ids,
            start=query.start,
            end=query.end,
            agent_id=query.agent_id or None,
            limit=max(1, min(query.limit, MAX_RESULTS)),
            identifiers_given=any(query.subject.as_dict().values()),
            tenants=None if principal.every_tenant else principal.tenants,
        )
        if criteria.identifiers_given and not criteria.digests and not criteria.call_ids:
            return []  # only unusable identifiers: nobody matches
        return self._finder.search(criteria)

    def customers(
        self,
        principal: Principal,
        recordings: list[Recording],
        purpose: str | None,
        case_ref: str | None,
    ) -> dict[str, dict[str, Any]]:
        """The customer's name and e-mail per recording id, only for a role whose purposes
        need them, only for a purpose given, and on a restricted recording only for a legal
        claim; each shown on record (an access of kind ``personal_data``) before it is shown.
        """
        if principal.role not in SEES_CUSTOMER or purpose is None:
            return {}
        chosen = self.check_purpose(principal, purpose, case_ref)
        shown = [
            r
            for r in recordings
            if r.wrapped_key is not None and (not r.restricted or chosen is Purpose.LEGAL_CLAIM)
        ]
        now = self._clock()
        self._record(
            Access(
                now,
                principal.username,
                principal.role,
                chosen,
                case_ref,
                r.recording_id,
                AccessKind.PERSONAL_DATA,
            )
            for r in shown
        )
        return {r.recording_id: self._customer(r) for r in shown}

    def _customer(self, recording: Recording) -> dict[str, Any]:
        assert recording.wrapped_key is not None
        if recording.customer_sealed is None:
            return {"name": None, "email": None}
        dek = self._keys.unwrap(
            recording.wrapped_key, recording.master_key_id, recording.recording_id
        )
        personal = self._keys.open(dek, recording.recording_id, recording.customer_sealed)
        return {"name": personal.get("name"), "email": personal.get("email")}

    def _record(self, accesses: Iterable[Access], unless_since: datetime | None = None) -> None:
        chosen = tuple(accesses)
        if chosen:
            self._bus.handle(RecordAccess(chosen, unless_since))

    def recording(self, principal: Principal, recording_id: str) -> Recording:
        _require_searcher(principal)
        return self._stored(principal, recording_id)

    def _stored(self, principal: Principal, recording_id: str) -> Recording:
        """A stored recording of the principal's tenants; any other is unknown (404)."""
        if not _is_uuid(recording_id):
            raise NotFound("no such recording")
        found = self._ctx.read(lambda uow: uow.recordings.get(recording_id))
        if (
            found is None
            or found.status is not RecordingStatus.STORED
            or not found.wrapped_key
            or not principal.sees(found.tenant)
        ):
            raise NotFound("no such recording (unknown or purged)")
        return found

    # listen --------------------------------------------------------------------------------
    def check_purpose(self, principal: Principal, purpose: str, case_ref: str | None) -> Purpose:
        """The purpose as the role may use it; complaints and legal claims name their case
        (``case_ref``), everywhere."""
        _require_searcher(principal)
        try:
            chosen = Purpose(purpose)
        except ValueError:
            raise NotAllowed(
                "%(purpose)r is not a purpose of this processing", purpose=purpose
            ) from None
        if not principal.may_use(chosen):
            raise NotAllowed(
                "the role %(role)s may not listen for %(purpose)s",
                role=principal.role,
                purpose=chosen,
            )
        if chosen in CASE_REF_REQUIRED and not case_ref:
            raise Invalid("a case reference is needed for %(purpose)s", purpose=chosen)
        if case_ref and not valid_reference(case_ref):
            raise Invalid("a case reference is a code: letters, digits and . _ : / # -")
        return chosen

    def may_play(self, principal: Principal, recording: Recording, purpose: Purpose) -> None:
        if recording.restricted and purpose is not Purpose.LEGAL_CLAIM:
            raise NotAllowed(
                "processing of this recording is restricted (GDPR Art. 18): "
                "it may be consulted only for legal claims"
            )

    def audio(
        self,
        principal: Principal,
        recording_id: str,
        purpose: str,
        case_ref: str | None,
        range_header: str | None,
        kind: AccessKind,
        *,
        for_browsers: bool = False,
    ) -> Audio:
        """The original audio, or with ``for_browsers`` what a browser's player can play (the
        original where it can, else a rendition); one access on record either way."""
        chosen = self.check_purpose(principal, purpose, case_ref)
        recording = self._stored(principal, recording_id)
        self.may_play(principal, recording, chosen)
        original = self._original(recording)
        audio: Rendition = original
        if for_browsers and self._renditions is not None:
            audio = playback.for_browsers(recording, original, self._renditions)
        size = audio.size
        wanted = parse_range(range_header, size)
        first, last = wanted if wanted else (0, size - 1)
        now = self._clock()
        # A request from the start is a new playback or download and always goes on record;
        # a later range of the same listening (the player seeking) is not logged again.
        continuing = wanted is not None and first > 0
        self._record(
            [Access(now, principal.username, principal.role, chosen, case_ref, recording_id, kind)],
            now - self._seek_window if continuing else None,
        )
        return Audio(
            status=206 if wanted else 200,
            content_type=audio.content_type,
            size=size,
            first=first,
            last=last,
            body=audio.read(first, last) if size else iter(()),
        )

    def _original(self, recording: Recording) -> playback.Original:
        assert recording.wrapped_key is not None
        dek = self._keys.unwrap(
            recording.wrapped_key, recording.master_key_id, recording.recording_id
        )

        def ciphertext(offset: int, length: int) -> Iterator[bytes]:
            return self._objects.get_range(self._bucket, recording.object_key, offset, length)

        size = recording.size_bytes or 0
        try:
            ranges = self._keys.ranges(dek, recording.recording_id, size, ciphertext)
        except ObjectMissing:
            raise NotFound("the recording's audio is missing from the vault") from None
        return playback.Original(recording.content_type or "application/octet-stream", size, ranges)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The one byte range asked for (inclusive), or None for the whole file. Several ranges
    are answered with the whole file, as RFC 9110 allows; an impossible one is refused."""
    if not header or "," in header:
        return None
    match = _RANGE.match(header.strip().replace(" ", ""))
    if match is None or match.group(1) == match.group(2) == "":
        return None
    start_text, end_text = match.groups()
    if start_text == "":  # the last N bytes
        suffix = int(end_text)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(size)
        return max(0, size - suffix), size - 1
    start = int(start_text)
    end = min(int(end_text), size - 1) if end_text else size - 1
    if start >= size or end < start:
        raise RangeNotSatisfiable(size)
    return start, end


def _require_searcher(principal: Principal) -> None:
    if principal.role not in SEARCHERS:
        raise NotAllowed("the role %(role)s does not consult recordings", role=principal.role)


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
