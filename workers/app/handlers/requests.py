"""Data-subject requests: find the person's recordings by keyed digests of their identifiers,
carry the request out on audio and metadata, answer with ``dsr.completed``.

The first delivery records the matched recordings (and their call ids, kept only while the
request is open) before acting, so a redelivery after a crash finishes the same set; a request
is answered once - the first answer wins, whoever computes it. An erasure of held recordings
waits: they stay pending on the request and are erased when their last hold is released
(:func:`resume_erasures`, a follow-up of the release).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from ...domain import events
from ...domain.errors import IntegrityError, TransientError
from ...domain.identifiers import subject_keys
from ...domain.messages import (
    CarryOutRequest,
    EraseLateRecordings,
    ForgetErasedSubjects,
    RecordingsFreed,
    RejectRequest,
    ResumeErasures,
)
from ...domain.model import (
    DsrRequest,
    DsrStatus,
    DsrType,
    Outcome,
    Recording,
    RecordingStatus,
    RequestRecord,
    purge_reason_for,
)
from ...domain.retention import rfc3339
from ...domain.text import N_
from ..context import Context
from ..letters import Erasure
from ..ports.objects import ObjectMissing
from ..ports.unit_of_work import ErasedSubject, UnitOfWork
from .exports import (
    build_export,
    delete_export_objects,
    for_the_subject,
    store_letter,
)
from .purge import purge
from .subjects import rectify_recording

HELD_REASON = N_(  # the answer's reason; the console shows it in the DPO's language
    "some recordings are kept under a legal hold for the establishment, exercise or defence "
    "of legal claims (GDPR Art. 17(3)(e)); they will be erased when the hold is released"
)
EXPORT_ATTEMPTS = 3
Perform = Callable[[RequestRecord, DsrRequest, Context], str]


def carry_out_request(command: CarryOutRequest, ctx: Context) -> str:
    request = command.request
    refusal = _refusal(request, ctx)
    if refusal is not None:
        rejection = RejectRequest(
            request.request_id, request.type.value, refusal, request.received_at
        )
        return reject_request(rejection, ctx)
    record = _begin(request, ctx)
    if record is None:
        return "duplicate"
    return PERFORM[request.type](record, request, ctx)


def _refusal(request: DsrRequest, ctx: Context) -> str | None:
    if not request.identity_verified:
        return "identity_not_verified"
    if not request.subject.normalized(ctx.settings.default_region):
        return "no_usable_identifier"
    return None


def _begin(request: DsrRequest, ctx: Context) -> RequestRecord | None:
    """The request's record with its matched recordings, or ``None`` once answered."""
    pairs = request.subject.normalized(ctx.settings.default_region)
    digests = subject_keys(ctx.keys.hasher, pairs).digests
    with ctx.uow() as uow:
        record = uow.requests.get(request.request_id, lock=True)
        if record is not None:
            return None if record.answered else record
        matched = uow.recordings.matching(digests, request.tenant)
        calendar = ctx.settings.localities.calendar_of(request.tenant)
        matches = {r.recording_id: r.call_id or "" for r in matched}
        record = RequestRecord.begin(request, matches, calendar)
        if not uow.requests.add(record):
            raise TransientError("the request is being recorded by another worker")
        if request.type in (DsrType.ERASURE, DsrType.OBJECTION):
            uow.requests.remember_erased(_erased_subject(request, digests, ctx))
        uow.commit()
    return record


def _erased_subject(request: DsrRequest, digests: frozenset[bytes], ctx: Context) -> ErasedSubject:
    """What an erasure keeps to catch late calls: digests only, for as long as a call that
    ended before the request can still arrive (or, for an objection, which also covers the
    person's later calls, for ``CALLVAULT_OBJECTION_MEMORY``)."""
    objection = request.type is DsrType.OBJECTION
    now = ctx.clock()
    forget_at = ctx.settings.late_call_window.after(now)
    if objection:  # never shorter than the window in which an earlier call can still arrive
        forget_at = max(forget_at, ctx.settings.objection_memory.after(now))
    return ErasedSubject(request.request_id, digests, request.received_at, objection, forget_at)


def reject_request(command: RejectRequest, ctx: Context) -> str:
    now = ctx.clock()
    with ctx.uow() as uow:
        if uow.requests.get(command.request_id, lock=True) is not None:
            return "duplicate"
        record = RequestRecord.rejected(command, ctx.settings.localities.calendar)
        record.answer(
            DsrStatus.REJECTED, _data(record, DsrStatus.REJECTED, [], now, command.reason), now
        )
        uow.requests.add(record)
        uow.commit()
    ctx.metrics.dsr_requests.labels(type=command.dsr_type or "unknown", status="rejected").inc()
    return "rejected"


# --- erasure and objection ---------------------------------------------------------------


def _erase(record: RequestRecord, request: DsrRequest, ctx: Context) -> str:
    purge(list(record.matched), purge_reason_for(record.dsr_type), ctx)
    return _answer_erasure(record.request_id, ctx, resumed=False)


def erase_late_recordings(command: EraseLateRecordings, ctx: Context) -> str:
    """Recordings stored after an erasure that covers them are erased on arrival, and the
    request is answered again with them."""
    with ctx.uow() as uow:
        record = uow.requests.get(command.request_id, lock=True)
        if record is None:
            return "unknown"
        late = uow.recordings.get_many(list(command.recording_ids))
        record.attach({r.recording_id: r.call_id or "" for r in late if r.call_id})
        uow.requests.update(record)
        uow.commit()
    purge(list(command.recording_ids), purge_reason_for(record.dsr_type), ctx)
    if not record.answered:
        return "attached"  # the request's own answer, still to come, includes them
    return _answer_erasure(command.request_id, ctx, resumed=True, news=True)


def forget_erased_subjects(command: ForgetErasedSubjects, ctx: Context) -> str:
    with ctx.uow() as uow:
        forgotten = uow.requests.forget_erased(ctx.clock())
        uow.commit()
    return f"forgotten:{forgotten}"


def resume_erasures(command: ResumeErasures, ctx: Context) -> str:
    """Erase what waited for a hold that has been released; answer each request again."""
    waiting = ctx.read(lambda uow: uow.requests.waiting_for(list(command.recording_ids)))
    answered = 0
    for request_id in waiting:
        record = _request(ctx, request_id)
        if record is not None and record.pending:
            purge(list(record.pending), purge_reason_for(record.dsr_type), ctx)
            answer = _answer_erasure(request_id, ctx, resumed=True)
            answered += answer in (DsrStatus.COMPLETED.value, DsrStatus.PARTIAL.value)
    return f"answered:{answered}"


def _request(ctx: Context, request_id: str) -> RequestRecord | None:
    with ctx.uow() as uow:
        return uow.requests.get(request_id)


ANSWER_ATTEMPTS = 5  # late calls attached while an answer was written: each makes it again


def _answer_erasure(request_id: str, ctx: Context, *, resumed: bool, news: bool = False) -> str:
    """Answer with what is erased and what is held, with the person's letter; exports (and
    earlier letters) holding erased recordings are deleted first, so that ``completed`` means
    no copy is left. An answer written while a late call was attached to the request is
    written again, with it: no answer leaves out a recording that joined before it."""
    for _ in range(ANSWER_ATTEMPTS):
        answered = _write_answer(request_id, ctx, resumed=resumed, news=news)
        if answered is not None:
            return answered
    raise TransientError("late calls keep arriving while the answer is written")


def _write_answer(request_id: str, ctx: Context, *, resumed: bool, news: bool) -> str | None:
    """The answer's outcome; ``None`` when the request matched more meanwhile."""
    seen = _request(ctx, request_id)
    matched = ctx.read(lambda uow: _recordings(uow, seen.matched)) if seen is not None else []
    held = tuple(r.recording_id for r in matched if r.status is not RecordingStatus.PURGED)
    told = _told(seen, held, resumed=resumed, news=news)
    if told is not None or seen is None:
        return told or "duplicate"
    erased = [r for r in matched if r.status is RecordingStatus.PURGED]
    doomed = ctx.read(lambda uow: uow.exports.containing([r.recording_id for r in erased]))
    delete_export_objects([e.object_key for e in doomed], ctx)
    now = ctx.clock()
    certificate = _certificate(seen, erased, bool(held), now, ctx)
    notes = _recipients_to_notify([r.recording_id for r in matched], ctx)
    exports = sorted({e.request_id for e in doomed if for_the_subject(e)})
    copies = sum(1 for e in doomed if for_the_subject(e))
    paper = Erasure(matched, held, certificate, copies, notes.get("recipients_to_notify", []))
    letter = store_letter(request_id, matched, ctx.letters.erasure(seen, paper, now).pdf, ctx)
    with ctx.uow() as uow:
        record = uow.requests.get(request_id, lock=True)
        told = _told(record, held, resumed=resumed, news=news)
        stale = record is not None and record.matched != seen.matched
        if told is not None or record is None or stale:
            delete_export_objects([letter.record.object_key], ctx)  # answered or grown meanwhile
            return None if stale and told is None else told or "duplicate"
        for export in doomed:
            uow.exports.remove(export.object_key)
        uow.exports.add(letter.record)
        _resume_if_released(held, uow)
        status = DsrStatus.PARTIAL if held else DsrStatus.COMPLETED
        outcomes = _named(
            _outcome(record, r, Outcome.HELD if r.recording_id in held else Outcome.ERASED)
            for r in matched
        )
        extra = {"certificate": certificate, "letter": letter.answer, "exports_deleted": exports}
        data = _data(record, status, outcomes, now, HELD_REASON if held else None, extra)
        revision = f"/{len(matched)}/{len(erased)}" if resumed else ""
        record.answer(status, data, now, pending=held, revision=revision, notes=notes)
        uow.requests.update(record)
        uow.commit()
    _count(record, status, ctx)
    return status.value


def _told(
    record: RequestRecord | None, held: tuple[str, ...], *, resumed: bool, news: bool
) -> str | None:
    """Why there is nothing to answer: ``duplicate`` (answered already) or ``still_held``
    (a resumption that would tell the portal nothing new); ``None`` to answer."""
    if record is None or record.answered != resumed:
        return "duplicate"
    if resumed and held == record.pending and not news:
        return "still_held"
    return None


def _resume_if_released(held: tuple[str, ...], uow: UnitOfWork) -> None:
    """A hold released after the purge skipped its recordings, but before this answer is
    committed, found no request waiting: resume for it. Under the holds lock, a release is
    either seen here or commits later and finds this request waiting."""
    if not held:
        return
    uow.lock_holds(exclusive=False)
    freed = tuple(r.recording_id for r in uow.recordings.lock(list(held)) if not r.held)
    if freed:
        uow.record(RecordingsFreed(freed))


def _recordings(uow: UnitOfWork, ids: tuple[str, ...]) -> list[Recording]:
    found = {r.recording_id: r for r in uow.recordings.get_many(list(ids))}
    return [found[i] for i in ids if i in found]


def _certificate(
    record: RequestRecord, erased: list[Recording], held: bool, at: datetime, ctx: Context
) -> dict[str, Any]:
    """A signed deletion certificate: it names the request (id, type, reason, received and
    completed times) and each recording's receipt, never a person, and is signed over its
    RFC 8785 canonical form with the key it names, so it cannot be replayed for another
    request."""
    now = rfc3339(at)
    body = {
        "request_id": record.request_id,
        "type": record.dsr_type,
        "reason": purge_reason_for(record.dsr_type).value,
        "status": DsrStatus.PARTIAL.value if held else DsrStatus.COMPLETED.value,
        "received_at": rfc3339(record.received_at) if record.received_at else None,
        "completed_at": now,
        "issued_at": now,
        "recordings": [events.receipt(r) for r in erased],
    }
    return ctx.keys.sign(body)


# --- access and portability --------------------------------------------------------------


def _give_access(record: RequestRecord, request: DsrRequest, ctx: Context) -> str:
    """Export what is stored; a recording purged mid-export (an erasure or a retention purge
    at the same moment) makes the export start again with what is left."""
    for _ in range(EXPORT_ATTEMPTS):
        stored = [r for r in ctx.read(lambda uow: _recordings(uow, record.matched)) if r.alive]
        try:
            export = build_export(
                record.request_id,
                stored,
                ctx,
                letter=lambda manifest: ctx.letters.access(record, manifest, ctx.clock()),
            )
        except (ObjectMissing, IntegrityError):
            continue
        outcome = _answer_access(record, stored, export, ctx)
        if outcome != "retry":
            return outcome
    raise TransientError("recordings kept disappearing while the export was written")


def _answer_access(
    record: RequestRecord, stored: list[Recording], export: Any, ctx: Context
) -> str:
    now = ctx.clock()
    with ctx.uow() as uow:
        current = uow.requests.get(record.request_id, lock=True)
        still = uow.recordings.lock([r.recording_id for r in stored])
        if current is None or current.answered or len([r for r in still if r.alive]) != len(stored):
            delete_export_objects([export.record.object_key], ctx)
            return "retry" if current is not None and not current.answered else "duplicate"
        uow.exports.add(export.record)
        outcomes = [_outcome(current, r, Outcome.EXPORTED) for r in stored]
        data = _data(current, DsrStatus.COMPLETED, outcomes, now, None, {"export": export.answer})
        current.answer(DsrStatus.COMPLETED, data, now)
        uow.requests.update(current)
        uow.commit()
    _count(current, DsrStatus.COMPLETED, ctx)
    return DsrStatus.COMPLETED.value


# --- rectification and restriction ---------------------------------------------------------


def _rectify(record: RequestRecord, request: DsrRequest, ctx: Context) -> str:
    with ctx.uow() as uow:
        uow.lock_holds(exclusive=True)  # subject holds follow the corrected identifiers
        rectified = [r for r in uow.recordings.lock(list(record.matched)) if r.alive]
        for recording in rectified:
            rectify_recording(uow, recording, request, ctx)
        notes = _recipients_to_notify([r.recording_id for r in rectified], ctx)
        return _finish(uow, record, [(r, Outcome.RECTIFIED) for r in rectified], ctx, notes)


def _restrict(record: RequestRecord, request: DsrRequest, ctx: Context) -> str:
    outcome = Outcome.UNRESTRICTED if request.lift_restriction else Outcome.RESTRICTED
    with ctx.uow() as uow:
        changed = [r for r in uow.recordings.lock(list(record.matched)) if r.alive]
        for recording in changed:
            recording.restrict(not request.lift_restriction)
            uow.recordings.update(recording)
        return _finish(uow, record, [(r, outcome) for r in changed], ctx)


def _finish(
    uow: UnitOfWork,
    record: RequestRecord,
    outcomes: list[tuple[Recording, Outcome]],
    ctx: Context,
    notes: dict[str, Any] | None = None,
) -> str:
    """Answer ``completed`` within the caller's unit of work (first answer wins)."""
    current = uow.requests.get(record.request_id, lock=True)
    if current is None or current.answered:
        return "duplicate"
    now = ctx.clock()
    listed = [_outcome(current, r, o) for r, o in outcomes]
    data = _data(current, DsrStatus.COMPLETED, listed, now, None)
    current.answer(DsrStatus.COMPLETED, data, now, notes=notes)
    uow.requests.update(current)
    uow.commit()
    _count(current, DsrStatus.COMPLETED, ctx)
    return DsrStatus.COMPLETED.value


# --- answers -------------------------------------------------------------------------------


def _recipients_to_notify(recording_ids: list[str], ctx: Context) -> dict[str, Any]:
    """Art. 19: the recipients of these recordings to be told of an erasure or rectification."""
    if ctx.history is None:
        return {}
    return {"recipients_to_notify": ctx.history.recipients_to_notify(recording_ids)}


def _named(outcomes: Iterable[dict[str, str]]) -> list[dict[str, str]]:
    """The outcomes a further answer can name: an erasure answered before forgot its call ids
    (they may hold phone numbers), so a late call's answer names the late call, and its
    certificate, by recording id, every recording of the request."""
    return [o for o in outcomes if o["call_id"]]


def _outcome(record: RequestRecord, recording: Recording, outcome: Outcome) -> dict[str, str]:
    call_id = recording.call_id or record.call_ids.get(recording.recording_id, "")
    return {"recording_id": recording.recording_id, "call_id": call_id, "outcome": outcome.value}


def _data(
    record: RequestRecord,
    status: DsrStatus,
    outcomes: list[dict[str, str]],
    now: Any,
    reason: str | None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "request_id": record.request_id,
        "type": record.dsr_type if record.dsr_type != "unknown" else None,
        "status": status.value,
        "received_at": rfc3339(record.received_at) if record.received_at else None,
        "due_at": rfc3339(record.due_at) if record.due_at else None,
        "completed_at": rfc3339(now),
        "recordings": outcomes,
    }
    if reason:
        data["reason"] = reason
    return data | (extra or {})


def _count(record: RequestRecord, status: DsrStatus, ctx: Context) -> None:
    metrics = ctx.metrics
    metrics.dsr_requests.labels(type=record.dsr_type, status=status.value).inc()
    if record.received_at is not None:
        waited = (ctx.clock() - record.received_at).total_seconds()
        metrics.dsr_duration.labels(type=record.dsr_type).observe(max(0.0, waited))


PERFORM: dict[DsrType, Perform] = {
    DsrType.ERASURE: _erase,
    DsrType.OBJECTION: _erase,
    DsrType.ACCESS: _give_access,
    DsrType.PORTABILITY: _give_access,
    DsrType.RECTIFICATION: _rectify,
    DsrType.RESTRICTION: _restrict,
}
