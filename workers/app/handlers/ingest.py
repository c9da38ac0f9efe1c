"""Ingest: a call-ended event becomes one encrypted recording in the vault, its metadata in
PostgreSQL and a ``recording.stored`` event - one recording per call, whatever is redelivered.

The audio is uploaded first, under a key derived from the recording id; one transaction then
records it (with the object version it got) together with its audit entry and output event.
Two workers storing the same call race only to that insert: the loser deletes the version it
uploaded. A worker killed between upload and commit leaves an unreferenced version, which the
redelivered event does not reuse and reconciliation deletes. The landing copy goes last: the
Kafka offset is committed only after the handler returns, so a crash before that redelivers
the event, and the repeat finds the recording and removes the copy then.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from ...domain.audio import SNIFF_BYTES, AudioProbe, recognise
from ...domain.errors import ChecksumMismatch, DuplicateCallId, FetchFailed, PermanentError
from ...domain.identifiers import WITHHELD, is_withheld, subject_keys
from ...domain.messages import CallDiscarded, LateRecordingFound, StoreCall
from ...domain.model import (
    CallEnded,
    Recording,
    Sealed,
    StoredAudio,
    call_digest,
    object_key_for,
    recording_id_for,
)
from ...domain.streams import Measured, limited, peek, sha256_of
from ...domain.uris import AudioLocation, locate
from ..context import Context
from ..ports.audio import AudioSource
from ..ports.objects import ObjectMissing, VersionRef
from ..ports.unit_of_work import Discard, UnitOfWork

LOCK_MARGIN = timedelta(seconds=60)


@dataclass(frozen=True)
class CallIds:
    """The call's keyed digest, its recording id and its customer's normalised identifiers,
    each computed once per delivery (with the keys in a token, each digest is a call to the
    token; a phone number is parsed once)."""

    digest: str
    recording_id: str
    subject: frozenset[tuple[str, str]]


def store_call(command: StoreCall, ctx: Context, source: AudioSource) -> str:
    started = time.monotonic()
    call = command.call
    ids = CallIds(
        call_digest(ctx.keys.hasher, call.call_id),
        recording_id_for(ctx.keys.hasher, call.call_id),
        frozenset(call.subject_pairs(ctx.settings.default_region)),
    )
    with ctx.locks.hold(ids.digest):
        outcome = _store(call, ids, ctx, source)
    if outcome == "stored":
        ctx.metrics.ingest_duration.observe(time.monotonic() - started)
    return outcome


def _store(call: CallEnded, ids: CallIds, ctx: Context, source: AudioSource) -> str:
    """Upload first, then one transaction: a first delivery - the common case - reads nothing
    before it uploads. A repeat shows itself either by its landing copy being gone (deleted
    by the store it repeats) or by the unique call digest at the commit (and the version it
    uploaded is deleted again); either way its audio is compared with the stored one. While a
    retired hash key is configured (a rotation), a call may be known only by its digest under
    that key, which the commit cannot see: then the recording is looked up first."""
    where, digest = _locate(call, ctx), ids.digest
    if ctx.keys.retired_hashers or (not call.notice_played and ctx.settings.require_notice):
        existing = ctx.read(lambda uow: _known_call(uow, call, digest, ctx))
        if existing is not None:
            return _repeat(call, where, existing.sha256, ctx)
    if not call.notice_played and ctx.settings.require_notice:
        return _discard(call, digest, where, ctx)
    try:
        audio, sealed = _upload(call, ids, where, ctx, source)
    except FetchFailed:
        existing = ctx.read(lambda uow: _known_call(uow, call, digest, ctx))
        if existing is None:
            raise
        return _repeat(call, where, existing.sha256, ctx)
    outcome = _commit_or_clean_up(call, ids, audio, sealed, ctx)
    if isinstance(outcome, Repeat):
        landing = audio.sha256 if where.scheme == "s3" else None  # read while uploading
        return _repeat(call, where, outcome.sha256, ctx, landing=landing)
    remove_landing_copy(where, ctx)
    return outcome


@dataclass(frozen=True)
class Repeat:
    """The call was stored (or purged) before: the sha256 of the audio it was stored with."""

    sha256: str | None


def _known_call(uow: UnitOfWork, call: CallEnded, digest: str, ctx: Context) -> Recording | None:
    """The recording of this call; a tombstone from before a hash-key rotation keeps the
    digest under the retired key (recognised while that key is configured)."""
    found = uow.recordings.by_call(digest)
    for key in ctx.keys.retired_hashers if found is None else ():
        found = found or uow.recordings.by_call(call_digest(key, call.call_id))
    return found


def _discarded_before_rotation(uow: UnitOfWork, call: CallEnded, ctx: Context) -> Discard | None:
    for key in ctx.keys.retired_hashers:
        if (found := uow.discards.get(call_digest(key, call.call_id))) is not None:
            return found
    return None


def _locate(call: CallEnded, ctx: Context) -> AudioLocation:
    settings = ctx.settings
    return locate(
        call.audio.uri,
        landing_bucket=settings.landing_bucket,
        allowed_hosts=settings.fetch_allowed_hosts,
    )


def _upload(
    call: CallEnded, ids: CallIds, where: AudioLocation, ctx: Context, source: AudioSource
) -> tuple[StoredAudio, Sealed]:
    recording_id = ids.recording_id
    data_key = ctx.keys.new_data_key()
    head, chunks = peek(source.open(where), SNIFF_BYTES)
    recognise(head, call.audio.content_type)  # what is not audio is refused before any upload
    probe = AudioProbe(call.audio.content_type)  # duration and channels, read in passing
    measured = Measured(limited(probe.watch(chunks), ctx.settings.max_audio_bytes))
    key = object_key_for(recording_id)
    version = ctx.objects.put_stream(
        ctx.vault,
        key,
        ctx.keys.encrypt(data_key, recording_id, measured),
        content_type="application/octet-stream",
        retain_until=_lock_until(call, ctx),
    )
    try:
        _check_declared(call, measured)
        facts = probe.finish()
    except PermanentError:
        _delete_version(key, version, ctx)
        raise
    audio = StoredAudio(
        measured.size,
        measured.sha256,
        facts.content_type,
        version,
        facts.duration_seconds,
        facts.channels,
    )
    wrapped, master_key_id = ctx.keys.wrap(data_key, recording_id)
    personal = ctx.keys.seal(data_key, recording_id, _personal_data(call, ids.subject))
    return audio, Sealed(wrapped, master_key_id, personal)


def _lock_until(call: CallEnded, ctx: Context) -> datetime | None:
    """Object-lock the ciphertext until its due date; a call that arrives already past due
    (a late replay, a short policy) is stored unlocked and purged at the next tick."""
    due = ctx.settings.policy.due_at(call.tenant, call.collected_at)
    return due if due > ctx.clock() + LOCK_MARGIN else None


def _check_declared(call: CallEnded, audio: Measured) -> None:
    declared = call.audio
    if declared.size_bytes is not None and declared.size_bytes != audio.size:
        raise ChecksumMismatch(
            f"size_bytes says {declared.size_bytes} but {audio.size} bytes arrived"
        )
    if declared.sha256 is not None and declared.sha256 != audio.sha256:
        raise ChecksumMismatch("sha256 of the audio differs from the declared one")


def _personal_data(call: CallEnded, subject: frozenset[tuple[str, str]]) -> dict[str, object]:
    """What is sealed with the recording: the customer's data and number ("withheld" when the
    caller hid it: such a call is found by no number)."""
    phone = next((value for kind, value in subject if kind == "phone"), None)
    if phone is None and is_withheld(call.customer_number):
        phone = WITHHELD
    return (call.customer.as_dict() if call.customer else {}) | {"phone": phone}


def _commit_or_clean_up(
    call: CallEnded, ids: CallIds, audio: StoredAudio, sealed: Sealed, ctx: Context
) -> str | Repeat:
    key = object_key_for(ids.recording_id)
    try:
        outcome = ctx.retry.call(lambda: _commit(call, ids, audio, sealed, ctx), "commit")
    except PermanentError:
        _delete_version(key, audio.object_version, ctx)
        raise
    if isinstance(outcome, Repeat):
        _delete_version(key, audio.object_version, ctx)  # another attempt won the race
    return outcome


def _commit(
    call: CallEnded, ids: CallIds, audio: StoredAudio, sealed: Sealed, ctx: Context
) -> str | Repeat:
    """One transaction, shared with the other calls committing at the same moment."""
    outcome = ctx.commits.run(
        lambda uow: _record(call, ids, audio, sealed, ctx, uow), order=ids.recording_id
    )
    if outcome == "stored":
        ctx.metrics.recordings_stored.inc()
        ctx.metrics.bytes_stored.inc(audio.size_bytes)
    return outcome


def _record(
    call: CallEnded, ids: CallIds, audio: StoredAudio, sealed: Sealed, ctx: Context, uow: UnitOfWork
) -> str | Repeat:
    keys, settings = ctx.keys, ctx.settings
    digest, recording_id = ids.digest, ids.recording_id
    digests = subject_keys(keys.hasher, ids.subject).digests
    uow.lock_holds(exclusive=False)  # a hold committed before this commit covers it
    recording = Recording.store(
        call,
        recording_id=recording_id,
        call_digest=digest,
        policy=settings.policy.for_tenant(call.tenant),
        audio=audio,
        sealed=sealed,
        held=bool(uow.holds.covering(recording_id, digest, digests)),
        now=ctx.clock(),
    )
    if not uow.recordings.add(recording, digests):
        winner = uow.recordings.by_call(digest)
        if winner is not None and winner.object_version == audio.object_version:
            return "stored"  # our commit had succeeded before its answer was lost
        if winner is None and (discard := uow.discards.get(digest)) is not None:
            return Repeat(discard.landing_sha256)  # discarded before: never stored now
        return Repeat(winner.sha256 if winner is not None else None)
    for request_id in uow.requests.erasures_covering(digests, recording.collected_at, ctx.clock()):
        uow.record(LateRecordingFound(request_id, recording_id))  # erased on arrival
    return "stored"


def _repeat(
    call: CallEnded,
    where: AudioLocation,
    stored: str | None,
    ctx: Context,
    *,
    landing: str | None = None,
) -> str:
    """A call that callvault has stored (or purged, or discarded) already. Its landing copy
    goes only when it is that same audio: a reused call id must never delete another call's
    audio."""
    landing = landing or _landing_sha256(where, ctx) or call.audio.sha256
    if landing is not None and landing != stored:
        raise DuplicateCallId("the call id names a call stored or discarded before, other audio")
    remove_landing_copy(where, ctx)
    return "duplicate"


def _discard(call: CallEnded, digest: str, where: AudioLocation, ctx: Context) -> str:
    """The caller did not hear the notice: the audio is not kept, and the discard is
    remembered by a keyed digest of the call id only."""
    landing = _landing_sha256(where, ctx)
    now = ctx.clock()
    with ctx.uow() as uow:
        earlier = uow.discards.get(digest) or _discarded_before_rotation(uow, call, ctx)
        if earlier is not None and landing is not None and landing != earlier.landing_sha256:
            raise DuplicateCallId("the call id names a discarded call with other audio")
        if earlier is None:
            uow.discards.add(Discard(digest, call.tenant, now, landing))
            uow.record(CallDiscarded(call.call_id, digest, call.tenant, now))
            uow.commit()
    remove_landing_copy(where, ctx)
    if earlier is not None:
        return "duplicate"
    ctx.metrics.discarded.labels(reason="notice_not_played").inc()
    return "discarded"


def _landing_sha256(where: AudioLocation, ctx: Context) -> str | None:
    """The checksum of the landing object, or ``None`` when there is none (gone already, or
    the audio was not in the landing bucket)."""
    if where.scheme != "s3":
        return None
    try:
        return sha256_of(ctx.objects.get_stream(where.host, where.path))
    except ObjectMissing:
        return None


def remove_landing_copy(where: AudioLocation, ctx: Context) -> None:
    """No copy outlives its purpose: the landing object goes once the vault holds the audio
    (every version of it, should the landing bucket be versioned)."""
    if where.scheme != "s3":
        return
    objects = ctx.objects
    if objects.is_versioned(where.host):
        versions = objects.list_versions(where.host, where.path)
        refs = [VersionRef(where.path, v.version_id, v.is_delete_marker) for v in versions]
        objects.delete_versions(where.host, refs)
    else:
        objects.delete_object(where.host, where.path)


def _delete_version(key: str, version: str | None, ctx: Context) -> None:
    """Delete the version this attempt uploaded. The vault is always versioned (``migrate``
    makes it so); without a version id nothing is deleted, since the key may hold the audio of
    the attempt that won."""
    if version is not None:
        ctx.objects.delete_versions(ctx.vault, [VersionRef(key, version)])
