"""Ingest: a call-ended event becomes one encrypted recording in the vault, its metadata in
PostgreSQL and a ``recording.stored`` event - exactly once per call_id, whatever is redelivered.

Crash safety: the recording row is claimed (status ``storing``) before any upload; the vault key
is derived from the recording id, so a restarted attempt first deletes whatever a killed one
left under that key, then uploads again. Only the final transaction makes the recording
``stored`` and enqueues its event, together.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from ..adapters import crypto
from ..adapters.fetch import AudioFetcher
from ..adapters.streams import Measured
from ..domain import events
from ..domain.audio import SNIFF_BYTES, AudioProbe
from ..domain.errors import ChecksumMismatch, FetchFailed, PermanentError
from ..domain.identifiers import WITHHELD, is_withheld, subject_keys
from ..domain.model import CallEnded, Recording, RecordingStatus, new_recording
from ..domain.retention import rfc3339
from ..domain.uris import AudioLocation, locate
from .context import Context

LOCK_MARGIN = timedelta(seconds=60)
IngestOutcome = Literal["stored", "duplicate", "discarded"]


@dataclass(frozen=True)
class Upload:
    size: int
    sha256: str
    content_type: str
    duration_seconds: float | None = None  # telephony: audio metadata from the probe
    channels: int | None = None


class IngestService:
    def __init__(self, ctx: Context, fetcher: AudioFetcher) -> None:
        self._ctx = ctx
        self._fetcher = fetcher
        self._settings = ctx.settings

    def handle(self, call: CallEnded) -> IngestOutcome:
        where = locate(
            call.audio.uri,
            landing_bucket=self._settings.landing_bucket,
            allowed_hosts=self._settings.fetch_allowed_hosts,
        )
        if not call.notice_played and self._settings.require_notice:
            self._discard(call)
            self._remove_landing_copy(where)
            return "discarded"
        with self._ctx.store.exclusive(f"call:{call.call_id}"):
            claim = self._claim(call)
            if claim is None:
                self._remove_landing_copy(where)
                return "duplicate"
            recording, resumed = claim
            if resumed:  # a killed attempt may have left object versions under our key
                self._remove_all_versions(self._settings.vault_bucket, recording.object_key)
            self._store(call, recording, where)
        self._remove_landing_copy(where)
        return "stored"

    def _claim(self, call: CallEnded) -> tuple[Recording, bool] | None:
        """The recording row to fill and whether an earlier attempt claimed it already, or
        ``None`` when this call is stored (or purged) already."""
        policy = self._settings.policy.for_tenant(call.tenant)
        with self._ctx.store.transaction() as tx:
            existing = tx.recording_by_call(call.call_id, for_update=True)
            if existing is not None:
                return (existing, True) if existing.status is RecordingStatus.STORING else None
            recording = new_recording(call, policy.after(call.collected_at), policy)
            tx.insert_recording(recording)
            return recording, False

    def _store(self, call: CallEnded, recording: Recording, where: AudioLocation) -> None:
        vault = self._settings.vault_bucket
        dek = crypto.new_data_key()
        try:
            upload = self._upload(call, recording, dek, where)
        except PermanentError:
            self._remove_all_versions(vault, recording.object_key)
            with self._ctx.store.transaction() as tx:
                tx.delete_recording(recording.recording_id)
            raise
        self._commit(call, recording, dek, upload)

    def _upload(
        self, call: CallEnded, recording: Recording, dek: bytes, where: AudioLocation
    ) -> Upload:
        head, chunks = _peek(self._fetcher.open(where), SNIFF_BYTES)
        # telephony: the probe recognises the head before any upload, then reads duration and
        # channels from the bytes as they stream into the vault
        probe = AudioProbe(call.audio.content_type)
        probe.feed(head)
        if len(head) < SNIFF_BYTES:
            probe.finish()  # the whole recording is this head: refuse non-audio before uploading
        measured = Measured(
            _limited(_after(chunks, len(head), probe), self._settings.max_audio_bytes)
        )
        self._ctx.objects.put_stream(
            self._settings.vault_bucket,
            recording.object_key,
            crypto.encrypt_stream(dek, recording.recording_id, measured),
            content_type="application/octet-stream",
            retain_until=self._lock_until(recording),
        )
        if call.audio.size_bytes is not None and call.audio.size_bytes != measured.size:
            raise ChecksumMismatch(
                f"size_bytes says {call.audio.size_bytes} but {measured.size} bytes arrived"
            )
        if call.audio.sha256 is not None and call.audio.sha256 != measured.sha256:
            raise ChecksumMismatch("sha256 of the audio differs from the declared one")
        facts = probe.finish()  # telephony
        return Upload(
            measured.size,
            measured.sha256,
            facts.content_type,
            facts.duration_seconds,
            facts.channels,
        )

    def _lock_until(self, recording: Recording) -> datetime | None:
        """Object-lock the ciphertext until its due date; a call that arrives already past
        due (a late replay, a short policy) is stored unlocked and purged at the next tick."""
        due = recording.retention_due_at
        return due if due > self._ctx.clock() + LOCK_MARGIN else None

    def _commit(self, call: CallEnded, claimed: Recording, dek: bytes, upload: Upload) -> None:
        now = self._ctx.clock()
        pairs = call.subject_pairs(self._settings.default_region)
        digests = subject_keys(self._ctx.hash_key, pairs).digests
        phone = next((v for k, v in pairs if k == "phone"), None)
        if phone is None and is_withheld(call.customer_number):  # telephony: withheld numbers
            phone = WITHHELD
        personal = (call.customer.as_dict() if call.customer else {}) | {"phone": phone}
        recording = replace(
            claimed,
            status=RecordingStatus.STORED,
            stored_at=now,
            size_bytes=upload.size,
            sha256=upload.sha256,
            content_type=upload.content_type,
            duration_seconds=upload.duration_seconds,  # telephony
            channels=upload.channels,  # telephony
            wrapped_key=crypto.wrap_key(self._ctx.master_key, dek, claimed.recording_id),
            customer_sealed=crypto.seal_json(dek, claimed.recording_id, personal),
        )
        with self._ctx.store.transaction() as tx:
            recording.held = bool(tx.holds_covering(recording, digests))
            tx.save_recording(recording)
            tx.set_subject_keys(recording.recording_id, digests)
            tx.append_audit(
                "store",
                recording.recording_id,
                {
                    "call_id": recording.call_id,
                    "sha256": upload.sha256,
                    "size_bytes": upload.size,
                    "retention_due_at": rfc3339(recording.retention_due_at),
                    "policy": recording.policy,
                },
                now,
            )
            tx.enqueue(
                events.OutboundEvent(
                    "recordings_stored",
                    recording.recording_id,
                    events.cloudevent(
                        events.STORED,
                        self._ctx.source,
                        recording.recording_id,
                        now,
                        events.stored_data(recording),
                    ),
                )
            )
        metrics = self._ctx.metrics
        metrics.recordings_stored.inc()
        metrics.bytes_stored.inc(upload.size)

    def _discard(self, call: CallEnded) -> None:
        now = self._ctx.clock()
        with self._ctx.store.transaction() as tx:
            if not tx.record_discard(call.call_id, call.tenant, now):
                return
            tx.append_audit("discard", call.call_id, {"reason": "notice_not_played"}, now)
            tx.enqueue(
                events.OutboundEvent(
                    "recordings_purged",
                    call.call_id,
                    events.cloudevent(
                        events.DISCARDED,
                        self._ctx.source,
                        call.call_id,
                        now,
                        events.discarded_data(call.call_id, call.tenant),
                    ),
                )
            )
        self._ctx.metrics.discarded.labels(reason="notice_not_played").inc()

    def _remove_landing_copy(self, where: AudioLocation) -> None:
        """No copy outlives its purpose: the landing object goes once the vault holds the audio
        (every version of it, should the landing bucket be versioned)."""
        if where.scheme != "s3":
            return
        if self._ctx.objects.is_versioned(where.host):
            self._remove_all_versions(where.host, where.path)
        else:
            self._ctx.objects.delete_object(where.host, where.path)

    def _remove_all_versions(self, bucket: str, key: str) -> None:
        objects = self._ctx.objects
        objects.delete_versions(bucket, key, objects.list_versions(bucket, key))


def _peek(chunks: Iterable[bytes], size: int) -> tuple[bytes, Iterator[bytes]]:
    """The first ``size`` bytes (fewer if the stream is shorter) and the whole stream again."""
    source = iter(chunks)
    head = b""
    taken: list[bytes] = []
    for chunk in source:
        taken.append(chunk)
        head += chunk
        if len(head) >= size:
            break

    def replay() -> Iterator[bytes]:
        yield from taken
        yield from source

    return head[:size], replay()


def _after(chunks: Iterable[bytes], skip: int, probe: AudioProbe) -> Iterator[bytes]:
    """telephony: feed the probe every byte after the ``skip`` it has already seen."""
    for chunk in chunks:
        if skip >= len(chunk):
            skip -= len(chunk)
        else:
            probe.feed(chunk[skip:])
            skip = 0
        yield chunk


def _limited(chunks: Iterable[bytes], limit: int) -> Iterator[bytes]:
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > limit:
            raise FetchFailed(f"the recording exceeds CALLVAULT_MAX_AUDIO_BYTES ({limit} bytes)")
        yield chunk
