"""Data-subject requests: find the person's recordings by keyed digests of their identifiers,
carry the request out on audio and metadata, answer with ``dsr.completed``.

Idempotent per request_id: the first delivery records the matched recordings before acting,
so a redelivery after a crash finishes the same set; a finished request is never redone.
Erasure of held recordings waits: they stay pending on the request and are erased when their
last hold is released (see :meth:`DsrService.resume`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from ..adapters import crypto
from ..adapters.crypto import IntegrityError
from ..app.console.ports import AccessHistory
from ..domain import events
from ..domain.identifiers import Subject, normalize_email, subject_keys
from ..domain.model import (
    DsrRequest,
    DsrStatus,
    DsrType,
    HoldScopeKind,
    Outcome,
    PurgeReason,
    Recording,
    RecordingOutcome,
    RecordingStatus,
)
from ..domain.retention import rfc3339
from ..ports import DsrRecord, ObjectMissing
from .context import Context
from .export import ExportService
from .purge import PurgeService, Verdict

HELD_REASON = (
    "some recordings are kept under a legal hold for the establishment, exercise or defence "
    "of legal claims (GDPR Art. 17(3)(e)); they will be erased when the hold is released"
)
PROCESSING = "processing"
EXPORT_ATTEMPTS = 3


class DsrService:
    def __init__(
        self,
        ctx: Context,
        purge: PurgeService,
        export: ExportService,
        history: AccessHistory | None = None,
    ) -> None:
        self._ctx = ctx
        self._purge = purge
        self._export = export
        self._history = history  # console: recipients an erasure or rectification must reach

    def _recipients_to_notify(self, recording_ids: list[str]) -> dict[str, Any]:
        """Art. 19: recipients of these recordings to be told of an erasure or rectification;
        kept with the answer (the v1 result event has no field for it)."""
        # console: listed on the DPO's requests page and by `callvault dsr status`
        if self._history is None:
            return {}
        return {"recipients_to_notify": self._history.recipients_to_notify(recording_ids)}

    def handle(self, request: DsrRequest) -> str:
        """Carry a request out; returns the status answered (or ``duplicate``). One request
        is carried out by one worker at a time, however often the portal sends it."""
        with self._ctx.store.exclusive(f"dsr:{request.request_id}"):
            return self._handle(request)

    def reject_malformed(self, request_id: str, dsr_type: str | None, reason: str) -> str:
        with self._ctx.store.exclusive(f"dsr:{request_id}"):
            return self.reject(request_id, dsr_type, reason, None, None)

    def _handle(self, request: DsrRequest) -> str:
        if not request.identity_verified:
            return self.reject(
                request.request_id,
                request.type.value,
                "identity_not_verified",
                request.received_at,
                request.due_at,
            )
        pairs = request.subject.normalized(self._ctx.settings.default_region)
        if not pairs:
            return self.reject(
                request.request_id,
                request.type.value,
                "no_usable_identifier",
                request.received_at,
                request.due_at,
            )
        digests = subject_keys(self._ctx.hash_key, pairs).digests
        matched = self._begin(request, digests)
        if matched is None:
            return "duplicate"
        handler: dict[DsrType, Callable[[DsrRequest, list[Recording]], DsrStatus]] = {
            DsrType.ERASURE: self._erase,
            DsrType.OBJECTION: self._erase,
            DsrType.ACCESS: self._give_access,
            DsrType.PORTABILITY: self._give_access,
            DsrType.RECTIFICATION: self._rectify,
            DsrType.RESTRICTION: self._restrict,
        }
        return handler[request.type](request, matched).value

    def _begin(self, request: DsrRequest, digests: frozenset[bytes]) -> list[Recording] | None:
        """Record the request and its matches, or ``None`` when it was already answered."""
        with self._ctx.store.transaction() as tx:
            record = tx.dsr_request(request.request_id, for_update=True)
            if record is not None and record.status != PROCESSING:
                return None
            found = {r.recording_id: r for r in tx.recordings_matching(digests)}
            if record is not None:  # a redelivery after a crash: finish the same set
                for recording_id in record.pending_recording_ids:
                    again = tx.recording(recording_id)
                    if again is not None:
                        found.setdefault(recording_id, again)
            tx.save_dsr_request(
                DsrRecord(
                    request.request_id,
                    request.type.value,
                    PROCESSING,
                    request.received_at,
                    request.due_at,
                    pending_recording_ids=sorted(found),
                )
            )
        return [found[k] for k in sorted(found, key=lambda k: (found[k].collected_at, k))]

    # erasure / objection -------------------------------------------------------------------
    def _erase(self, request: DsrRequest, matched: list[Recording]) -> DsrStatus:
        reason = PurgeReason.ERASURE if request.type is DsrType.ERASURE else PurgeReason.OBJECTION
        outcomes, receipts, held = [], [], []
        for recording in matched:
            result = self._purge.purge(recording.recording_id, reason)
            if result.verdict is Verdict.HELD:
                outcomes.append(
                    RecordingOutcome(recording.recording_id, recording.call_id, Outcome.HELD)
                )
                held.append(recording.recording_id)
            elif result.recording is not None and result.recording.purged_at is not None:
                outcomes.append(
                    RecordingOutcome(recording.recording_id, recording.call_id, Outcome.ERASED)
                )
                receipts.append(events.receipt(result.recording))
        status = DsrStatus.PARTIAL if held else DsrStatus.COMPLETED
        extra = {"certificate": self.certificate(receipts)}
        self._finish(
            request.request_id,
            request.type.value,
            status,
            HELD_REASON if held else None,
            request.received_at,
            request.due_at,
            outcomes,
            extra,
            pending=held,
            notes=self._recipients_to_notify([r.recording_id for r in matched]),
        )
        return status

    def certificate(self, receipts: list[dict[str, Any]]) -> dict[str, Any]:
        """A signed deletion receipt; it names recordings and hashes, never a person."""
        body = {
            "recordings": receipts,
            "issued_at": rfc3339(self._ctx.clock()),
            "key_id": self._ctx.signer.key_id,
            "algorithm": "Ed25519",
        }
        return body | {"signature": self._ctx.signer.sign(body)}

    def resume(self, recording_ids: tuple[str, ...]) -> int:
        """Erase recordings whose erasure waited for a hold that has now been released;
        returns how many requests were answered again."""
        released = set(recording_ids)
        with self._ctx.store.transaction() as tx:
            waiting = [
                r.request_id
                for r in tx.open_dsr_requests()
                if r.status != PROCESSING and released & set(r.pending_recording_ids)
            ]
        answered = 0
        for request_id in waiting:
            with self._ctx.store.exclusive(f"dsr:{request_id}"):
                answered += self._resume_one(request_id)
        return answered

    def _resume_one(self, request_id: str) -> int:
        with self._ctx.store.transaction() as tx:
            record = tx.dsr_request(request_id)
        if record is None or not record.pending_recording_ids or record.status == PROCESSING:
            return 0  # another worker finished it meanwhile
        reason = PurgeReason.OBJECTION if record.dsr_type == "objection" else PurgeReason.ERASURE
        still_held, receipts, erased = [], [], []
        for recording_id in record.pending_recording_ids:
            result = self._purge.purge(recording_id, reason)
            if result.verdict is Verdict.HELD:
                still_held.append(recording_id)
            elif result.recording is not None and result.recording.purged_at is not None:
                receipts.append(events.receipt(result.recording))
                erased.append(recording_id)
        if not erased:
            return 0  # another hold still keeps them: nothing new to tell the portal
        outcomes = [
            RecordingOutcome(o["recording_id"], o["call_id"], _after_resume(o, erased))
            for o in record.result.get("recordings", [])
        ]
        erased_in_all = sum(o.outcome is Outcome.ERASED for o in outcomes)
        prior_receipts = record.result.get("certificate", {}).get("recordings", [])
        self._finish(
            record.request_id,
            record.dsr_type,
            DsrStatus.PARTIAL if still_held else DsrStatus.COMPLETED,
            HELD_REASON if still_held else None,
            record.received_at,
            record.due_at,
            outcomes,
            {"certificate": self.certificate(prior_receipts + receipts)},
            pending=still_held,
            revision=f"/erased/{erased_in_all}",  # a new answer, a new event id
            notes=self._recipients_to_notify(record.pending_recording_ids),
        )
        return 1

    # access / portability ------------------------------------------------------------------
    def _give_access(self, request: DsrRequest, matched: list[Recording]) -> DsrStatus:
        ids = [r.recording_id for r in matched]
        for attempt in range(1, EXPORT_ATTEMPTS + 1):
            stored = self._still_stored(ids)
            try:
                export = self._export.export(request.request_id, stored)
            except (ObjectMissing, IntegrityError):
                # A purge (retention, or an erasure handled at the same moment) took a
                # recording while it was being exported: export what is left.
                if attempt == EXPORT_ATTEMPTS:
                    raise
                continue
            outcomes = [
                RecordingOutcome(r.recording_id, r.call_id, Outcome.EXPORTED) for r in stored
            ]
            return self._completed(request, outcomes, {"export": export})
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _still_stored(self, recording_ids: list[str]) -> list[Recording]:
        with self._ctx.store.transaction() as tx:
            current = [tx.recording(recording_id) for recording_id in recording_ids]
        return [r for r in current if r is not None and r.status is RecordingStatus.STORED]

    # rectification -------------------------------------------------------------------------
    def _rectify(self, request: DsrRequest, matched: list[Recording]) -> DsrStatus:
        outcomes = []
        for recording in matched:
            if self._rectify_one(recording.recording_id, request):
                outcomes.append(
                    RecordingOutcome(recording.recording_id, recording.call_id, Outcome.RECTIFIED)
                )
        notes = self._recipients_to_notify([o.recording_id for o in outcomes])
        return self._completed(request, outcomes, notes=notes)

    def _rectify_one(self, recording_id: str, request: DsrRequest) -> bool:
        master, region = self._ctx.master_key, self._ctx.settings.default_region
        with self._ctx.store.transaction() as tx:
            recording = tx.recording(recording_id, for_update=True)
            if recording is None or recording.status is not RecordingStatus.STORED:
                return False
            assert recording.wrapped_key is not None
            dek = crypto.unwrap_key(master, recording.wrapped_key, recording_id)
            personal = (
                crypto.open_json(dek, recording_id, recording.customer_sealed)
                if recording.customer_sealed
                else {}
            )
            if request.rectify_name is not None:
                personal["name"] = request.rectify_name
            if request.rectify_email is not None:
                personal["email"] = request.rectify_email
            digests = _digests_of(self._ctx.hash_key, personal, region)
            # A subject hold follows the person, not a superseded identifier: extend the holds
            # that cover this recording to the corrected identifiers, or releasing them could
            # no longer find (and free) it; and a hold naming a corrected identifier covers it.
            for hold in tx.holds_covering(recording, tx.subject_keys_of(recording_id)):
                if hold.scope_kind is HoldScopeKind.SUBJECT:
                    tx.save_hold(replace(hold, subject_digests=hold.subject_digests | digests))
            held = recording.held or bool(tx.holds_covering(recording, digests))
            tx.save_recording(
                replace(
                    recording,
                    customer_sealed=crypto.seal_json(dek, recording_id, personal),
                    held=held,
                )
            )
            tx.set_subject_keys(recording_id, digests)
        return True

    # restriction ---------------------------------------------------------------------------
    def _restrict(self, request: DsrRequest, matched: list[Recording]) -> DsrStatus:
        restricted = not request.lift_restriction
        outcome = Outcome.RESTRICTED if restricted else Outcome.UNRESTRICTED
        outcomes = []
        with self._ctx.store.transaction() as tx:
            for recording in matched:
                current = tx.recording(recording.recording_id, for_update=True)
                if current is None or current.status is not RecordingStatus.STORED:
                    continue
                tx.save_recording(replace(current, restricted=restricted))
                outcomes.append(RecordingOutcome(current.recording_id, current.call_id, outcome))
        return self._completed(request, outcomes)

    # answers -------------------------------------------------------------------------------
    def _completed(
        self,
        request: DsrRequest,
        outcomes: list[RecordingOutcome],
        extra: dict[str, Any] | None = None,
        *,
        notes: dict[str, Any] | None = None,
    ) -> DsrStatus:
        self._finish(
            request.request_id,
            request.type.value,
            DsrStatus.COMPLETED,
            None,
            request.received_at,
            request.due_at,
            outcomes,
            extra,
            notes=notes,
        )
        return DsrStatus.COMPLETED

    def reject(
        self,
        request_id: str,
        dsr_type: str | None,
        reason: str,
        received_at: datetime | None,
        due_at: datetime | None,
    ) -> str:
        with self._ctx.store.transaction() as tx:
            if tx.dsr_request(request_id, for_update=True) is not None:
                return "duplicate"
        self._finish(request_id, dsr_type, DsrStatus.REJECTED, reason, received_at, due_at, [])
        return DsrStatus.REJECTED.value

    def _finish(
        self,
        request_id: str,
        dsr_type: str | None,
        status: DsrStatus,
        reason: str | None,
        received_at: datetime | None,
        due_at: datetime | None,
        outcomes: list[RecordingOutcome],
        extra: dict[str, Any] | None = None,
        *,
        pending: list[str] | None = None,
        revision: str = "",
        notes: dict[str, Any] | None = None,
    ) -> None:
        now = self._ctx.clock()
        known_type = dsr_type or "unknown"  # a malformed request may not name its type
        data = events.dsr_completed_data(
            request_id=request_id,
            dsr_type=dsr_type,
            status=status.value,
            reason=reason,
            received_at=received_at,
            due_at=due_at,
            completed_at=now,
            outcomes=outcomes,
            extra=extra,
        )
        with self._ctx.store.transaction() as tx:
            tx.save_dsr_request(
                DsrRecord(
                    request_id,
                    known_type,
                    status.value,
                    received_at,
                    due_at,
                    completed_at=now,
                    pending_recording_ids=pending or [],
                    result=data | (notes or {}),  # console: notes stay out of the event
                )
            )
            tx.append_audit(
                "dsr",
                request_id,
                {
                    "type": known_type,
                    "status": status.value,
                    "recordings": [o.as_dict() for o in outcomes],
                },
                now,
            )
            tx.enqueue(
                events.OutboundEvent(
                    "dsr_results",
                    request_id,
                    events.cloudevent(
                        events.DSR_COMPLETED, self._ctx.source, f"{request_id}{revision}", now, data
                    ),
                )
            )
        self._ctx.metrics.dsr_requests.labels(type=known_type, status=status.value).inc()
        if received_at is not None:
            self._ctx.metrics.dsr_duration.labels(type=known_type).observe(
                max(0.0, (now - received_at).total_seconds())
            )


def _after_resume(outcome: dict[str, str], erased: list[str]) -> Outcome:
    """A recording's outcome once a hold on it was lifted: erased now, or as it was."""
    return Outcome.ERASED if outcome["recording_id"] in erased else Outcome(outcome["outcome"])


def _digests_of(key: bytes, personal: dict[str, Any], region: str) -> frozenset[bytes]:
    """The look-up digests of a recording's customer, from its (decrypted) personal data."""
    subject = Subject(
        phone_numbers=tuple(p for p in [personal.get("phone")] if p),
        emails=tuple(e for e in [personal.get("email")] if e and normalize_email(e)),
        customer_ids=tuple(c for c in [personal.get("customer_id")] if c),
        order_ids=tuple(personal.get("order_ids") or ()),
    )
    return subject_keys(key, subject.normalized(region)).digests
