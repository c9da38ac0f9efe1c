"""Access and portability exports: one ZIP streamed into the export bucket, holding every
matching recording's original audio (decrypted, byte-identical) and ``manifest.json`` with the
Art. 15 information. Nothing is buffered whole, in memory or on disk.

Each attempt writes its own object; the export is recorded with the recordings it holds, so an
erasure of any of them deletes it, and its URL lives in callvault's rows only until it expires.
"""

from __future__ import annotations

import json
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from stat import S_IFREG
from typing import Any

from stream_zip import ZIP_64, stream_zip

from ...domain.messages import DeleteExports, RemoveExpiredExports, SweepCopies
from ...domain.model import Recording
from ...domain.retention import rfc3339
from ...domain.streams import Measured
from ..context import Context
from ..letters import Letter
from ..ports.objects import VersionRef
from ..ports.unit_of_work import ExportRecord

EXPORT_MARGIN = timedelta(hours=1)  # an export is recorded a moment after it is written
_EXTENSIONS = {
    "audio/wav": "wav",
    "audio/mpeg": "mp3",
    "audio/ogg": "ogg",
    "audio/flac": "flac",
    "audio/mp4": "m4a",
    "audio/amr": "amr",
    "audio/basic": "au",
    "audio/pcmu": "ul",
    "audio/pcma": "al",
    "audio/gsm": "gsm",
}


@dataclass(frozen=True)
class Export:
    record: ExportRecord
    answer: dict[str, Any]  # the dsr.completed ``export`` block


def _deflate_fast() -> Any:
    # Audio barely compresses; level 1 keeps the export CPU-cheap.
    return zlib.compressobj(wbits=-zlib.MAX_WBITS, level=1)


Manifest = Callable[[list[Recording], datetime, dict[str, str], Context], dict[str, Any]]
Letters = Callable[[dict[str, Any]], Letter]  # the subject's letter, from the manifest
LETTERS_PREFIX = "letters/"  # erasure letters, in the export bucket beside the ZIPs
DISCLOSURE_PREFIX = "disclosure:"  # the "request id" of a disclosure's package


def build_export(
    request_id: str,
    recordings: list[Recording],
    ctx: Context,
    *,
    manifest: Manifest | None = None,
    letter: Letters | None = None,
) -> Export:
    """Stream the ZIP into the export bucket; recorded by the caller with its answer.
    ``manifest`` replaces the subject's manifest (a disclosure's names its recipient);
    ``letter`` adds the person's letter (``letter.html``, ``letter.pdf``) written from it."""
    now = ctx.clock()
    files = {r.recording_id: _audio_file(r) for r in recordings if _has_audio(r, ctx)}
    written = (manifest or subject_manifest)(recordings, now, files, ctx)
    papers = _papers(letter(written)) if letter is not None else []
    members = _members(recordings, files, now, written, papers, ctx)
    zipped = Measured(stream_zip(members, get_compressobj=_deflate_fast))
    return _stored(f"exports/{uuid.uuid4()}.zip", request_id, recordings, zipped, "zip", ctx)


def store_letter(request_id: str, recordings: list[Recording], pdf: bytes, ctx: Context) -> Export:
    """An erasure's letter as a PDF beside the exports: it names the person's calls, so it
    lives, expires and is deleted by a later erasure exactly as an export does."""
    measured = Measured(iter((pdf,)))
    key = f"{LETTERS_PREFIX}{uuid.uuid4()}.pdf"
    return _stored(key, request_id, recordings, measured, "pdf", ctx)


def is_letter(export: ExportRecord) -> bool:
    return export.object_key.startswith(LETTERS_PREFIX)


def for_the_subject(export: ExportRecord) -> bool:
    """An access or portability export (not a letter, not a disclosure's package)."""
    return not is_letter(export) and not export.request_id.startswith(DISCLOSURE_PREFIX)


def _stored(
    key: str,
    request_id: str,
    recordings: list[Recording],
    content: Measured,
    kind: str,
    ctx: Context,
) -> Export:
    settings = ctx.settings
    media = {"zip": "application/zip", "pdf": "application/pdf"}[kind]
    ctx.objects.put_stream(settings.export_bucket, key, content, content_type=media)
    ttl = settings.export_ttl.as_timedelta()
    ids = tuple(r.recording_id for r in recordings)
    record = ExportRecord(key, request_id, ctx.clock() + ttl, ids)
    answer = {
        "url": ctx.objects.presigned_get(settings.export_bucket, key, ttl),
        "expires_at": rfc3339(record.expires_at),
        "sha256": content.sha256,
        "size_bytes": content.size,
        "format": kind,
    }
    return Export(record, answer)


def _papers(letter: Letter) -> list[tuple[str, bytes]]:
    return [("letter.html", letter.html.encode()), ("letter.pdf", letter.pdf)]


def _members(
    recordings: list[Recording],
    files: dict[str, str],
    now: datetime,
    manifest: dict[str, Any],
    papers: list[tuple[str, bytes]],
    ctx: Context,
) -> Iterator[tuple[str, datetime, int, Any, Iterable[bytes]]]:
    yield "manifest.json", now, S_IFREG | 0o600, ZIP_64, [json.dumps(manifest, indent=2).encode()]
    for name, content in papers:
        yield name, now, S_IFREG | 0o600, ZIP_64, [content]
    for recording in recordings:
        if recording.recording_id in files:
            yield (
                files[recording.recording_id],
                recording.collected_at,
                S_IFREG | 0o600,
                ZIP_64,
                _audio(recording, ctx),
            )


def _has_audio(recording: Recording, ctx: Context) -> bool:
    """Whether the vault still holds the audio (an object deleted behind callvault's back
    must not break the subject's export; `callvault reconcile` reports it)."""
    versions = ctx.objects.list_versions(ctx.vault, recording.object_key)
    if recording.object_version is not None:
        return any(v.version_id == recording.object_version for v in versions)
    return bool(versions) and not versions[0].is_delete_marker


def _data_key(recording: Recording, ctx: Context) -> bytes:
    assert recording.wrapped_key is not None
    return ctx.keys.unwrap(recording.wrapped_key, recording.master_key_id, recording.recording_id)


def _audio(recording: Recording, ctx: Context) -> Iterator[bytes]:
    ciphertext = ctx.objects.get_stream(
        ctx.vault, recording.object_key, version_id=recording.object_version
    )
    yield from ctx.keys.decrypt(_data_key(recording, ctx), recording.recording_id, ciphertext)


def subject_manifest(
    recordings: list[Recording], now: datetime, files: dict[str, str], ctx: Context
) -> dict[str, Any]:
    """The Art. 15 information: the notice's texts, each recording, who received it
    (Art. 15(1)(c): telecom providers and others by name, not law enforcement, Art. 4(9))
    and when and why it was consulted (never by whom)."""
    settings = ctx.settings
    ids = [r.recording_id for r in recordings]
    history = ctx.history.manifest_additions(ids) if ctx.history is not None else {}
    entries = [entry(r, files.get(r.recording_id), ctx) for r in recordings]
    if history:
        consulted = history.get("consultations", {})
        for listed in entries:
            listed["consultations"] = consulted.get(listed["recording_id"], [])
    tenants = sorted({r.tenant for r in recordings})
    manifest: dict[str, Any] = {
        "generated_at": rfc3339(now),
        "controllers": [asdict(settings.controller_of(t)) for t in tenants],
        "controller_notice": {
            "purposes": settings.notice_purposes,
            "legal_basis": settings.notice_legal_basis,
            "recipients": settings.notice_recipients,
            "retention_period": str(settings.retention),
            "categories": settings.notice_categories,
            "source": settings.notice_source,
            "rights": settings.notice_rights,
        },
        "recordings": entries,
    }
    if history:
        manifest["recipients"] = history.get("recipients", [])
    return manifest


def personal_data(recording: Recording, ctx: Context) -> dict[str, Any]:
    if recording.customer_sealed is None:
        return {}
    return ctx.keys.open(
        _data_key(recording, ctx), recording.recording_id, recording.customer_sealed
    )


def entry(
    recording: Recording, audio_file: str | None, ctx: Context, *, personal: bool = True
) -> dict[str, Any]:
    """A recording's facts in a manifest; its personal data only when ``personal`` (a
    disclosure's recipient is not told the customer's name or e-mail)."""
    facts = {
        "recording_id": recording.recording_id,
        "call_id": recording.call_id,
        "tenant": recording.tenant,
        "direction": recording.direction,
        "started_at": rfc3339(recording.started_at),
        "ended_at": rfc3339(recording.collected_at),
        "duration_seconds": recording.duration_seconds,
        "sha256": recording.sha256,
        "size_bytes": recording.size_bytes,
        "content_type": recording.content_type,
        "retention_due_at": rfc3339(recording.retention_due_at),
        "retention_policy": recording.policy,
        "restricted": recording.restricted,
        "held": recording.held,
        "audio_file": audio_file,  # null: the audio is missing from the vault
    }
    return facts | {"personal_data": personal_data(recording, ctx)} if personal else facts


def _audio_file(recording: Recording) -> str:
    extension = _EXTENSIONS.get(recording.content_type or "", "bin")
    return f"recordings/{recording.recording_id}.{extension}"


def delete_export_objects(keys: list[str], ctx: Context) -> None:
    """Delete export objects, every version of each."""
    bucket, objects = ctx.settings.export_bucket, ctx.objects
    for key in keys:
        versions = objects.list_versions(bucket, key)
        refs = [VersionRef(key, v.version_id, v.is_delete_marker) for v in versions]
        if refs:
            objects.delete_versions(bucket, refs)
        else:
            objects.delete_object(bucket, key)


def delete_exports(command: DeleteExports, ctx: Context) -> str:
    delete_export_objects(list(command.object_keys), ctx)
    with ctx.uow() as uow:
        for key in command.object_keys:
            uow.exports.remove(key)
        uow.commit()
    return f"deleted:{len(command.object_keys)}"


def sweep_copies(command: SweepCopies, ctx: Context) -> str:
    """No copy outlives its purpose, even one callvault lost track of: a landing object older
    than the late-call window (its event can no longer be delivered or replayed: a landing copy
    of a dead letter goes when the dead letter expires) and an export object older than its
    URL are deleted, every version."""
    now = ctx.clock()
    settings = ctx.settings
    landing = _older(settings.landing_bucket, settings.late_call_window.before(now), ctx)
    exports = _older(settings.export_bucket, settings.export_ttl.before(now) - EXPORT_MARGIN, ctx)
    for bucket, stale in ((settings.landing_bucket, landing), (settings.export_bucket, exports)):
        if stale:
            ctx.objects.delete_versions(bucket, stale)
    return f"swept:{len(landing)}/{len(exports)}"


def _older(bucket: str, cutoff: datetime, ctx: Context) -> list[VersionRef]:
    listed = ctx.objects.all_versions(bucket)
    return [v for v in listed if v.last_modified is not None and v.last_modified < cutoff]


def remove_expired_exports(command: RemoveExpiredExports, ctx: Context) -> str:
    """Exports never outlive their URL, and the URL is scrubbed from the request's answer."""
    expired = ctx.read(lambda uow: uow.exports.expired(ctx.clock()))
    delete_export_objects([e.object_key for e in expired], ctx)
    with ctx.uow() as uow:
        for export in expired:
            uow.exports.remove(export.object_key)
            uow.requests.scrub_answer_urls(export.request_id)
        uow.commit()
    return f"expired:{len(expired)}"
