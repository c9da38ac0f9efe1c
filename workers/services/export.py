"""Access and portability exports: one ZIP, streamed into the export bucket, holding every
matching recording's original audio (decrypted, byte-identical) and ``manifest.json`` with
the Art. 15 information. Nothing is buffered whole, in memory or on disk."""

from __future__ import annotations

import json
import uuid
import zlib
from collections.abc import Iterable, Iterator
from datetime import datetime
from stat import S_IFREG
from typing import Any

from stream_zip import ZIP_64, stream_zip

from ..adapters import crypto
from ..adapters.streams import Measured
from ..app.console.ports import AccessHistory
from ..domain.model import Recording
from ..domain.retention import rfc3339
from .context import Context

EXPORT_NAMESPACE = uuid.UUID("a3c1f7a0-8d2b-4a7e-9c55-0e7b8d3f2c10")
_EXTENSIONS = {
    "audio/wav": "wav",
    "audio/mpeg": "mp3",
    "audio/ogg": "ogg",
    "audio/flac": "flac",
    "audio/mp4": "m4a",
    "audio/amr": "amr",
}


def _deflate_fast() -> Any:
    # Audio barely compresses; level 1 keeps the export CPU-cheap.
    return zlib.compressobj(wbits=-zlib.MAX_WBITS, level=1)


class ExportService:
    def __init__(self, ctx: Context, history: AccessHistory | None = None) -> None:
        self._ctx = ctx
        # console: recipients of disclosures and consultations, listed for the subject
        self._history = history

    def export(self, request_id: str, recordings: list[Recording]) -> dict[str, Any]:
        settings = self._ctx.settings
        now = self._ctx.clock()
        key = f"exports/{uuid.uuid5(EXPORT_NAMESPACE, request_id)}.zip"
        zipped = Measured(stream_zip(self._members(recordings, now), get_compressobj=_deflate_fast))
        self._ctx.objects.put_stream(
            settings.export_bucket, key, zipped, content_type="application/zip"
        )
        ttl = settings.export_ttl.as_timedelta()
        expires_at = now + ttl
        with self._ctx.store.transaction() as tx:
            tx.add_export(key, request_id, expires_at)
        return {
            "url": self._ctx.objects.presigned_get(settings.export_bucket, key, ttl),
            "expires_at": rfc3339(expires_at),
            "sha256": zipped.sha256,
            "size_bytes": zipped.size,
            "format": "zip",
        }

    def _members(
        self, recordings: list[Recording], now: datetime
    ) -> Iterator[tuple[str, datetime, int, Any, Iterable[bytes]]]:
        files = {r.recording_id: _audio_file(r) for r in recordings if self._has_audio(r)}
        manifest = self.manifest(recordings, now, files)
        yield (
            "manifest.json",
            now,
            S_IFREG | 0o600,
            ZIP_64,
            [json.dumps(manifest, indent=2).encode()],
        )
        for recording in recordings:
            if recording.recording_id in files:
                yield (
                    files[recording.recording_id],
                    recording.collected_at,
                    S_IFREG | 0o600,
                    ZIP_64,
                    self._audio(recording),
                )

    def _has_audio(self, recording: Recording) -> bool:
        """Whether the vault still holds the audio (an object deleted behind callvault's back
        must not break the subject's export; `callvault reconcile` reports it)."""
        versions = self._ctx.objects.list_versions(
            self._ctx.settings.vault_bucket, recording.object_key
        )
        return bool(versions) and not versions[0].is_delete_marker

    def _dek(self, recording: Recording) -> bytes:
        assert recording.wrapped_key is not None
        return crypto.unwrap_key(
            self._ctx.master_key, recording.wrapped_key, recording.recording_id
        )

    def _audio(self, recording: Recording) -> Iterator[bytes]:
        ciphertext = self._ctx.objects.get_stream(
            self._ctx.settings.vault_bucket, recording.object_key
        )
        yield from crypto.decrypt_stream(self._dek(recording), recording.recording_id, ciphertext)

    def manifest(
        self, recordings: list[Recording], now: datetime, files: dict[str, str]
    ) -> dict[str, Any]:
        settings = self._ctx.settings
        # console: who received the recordings (Art. 15(1)(c)); when and why they were consulted
        history = (
            self._history.manifest_additions([r.recording_id for r in recordings])
            if self._history is not None
            else {}
        )
        consulted = history.get("consultations", {})
        entries = [self._entry(r, files.get(r.recording_id)) for r in recordings]
        if history:
            for entry in entries:
                entry["consultations"] = consulted.get(entry["recording_id"], [])
        manifest = {
            "generated_at": rfc3339(now),
            "controller_notice": {
                "purposes": settings.notice_purposes,
                "legal_basis": settings.notice_legal_basis,
                "recipients": settings.notice_recipients,
                "retention_period": str(settings.retention),
                "source": settings.notice_source,
                "rights": settings.notice_rights,
            },
            "recordings": entries,
        }
        if history:
            manifest["recipients"] = history.get("recipients", [])
        return manifest

    def _entry(self, recording: Recording, audio_file: str | None) -> dict[str, Any]:
        personal = (
            crypto.open_json(
                self._dek(recording), recording.recording_id, recording.customer_sealed
            )
            if recording.customer_sealed
            else {}
        )
        return {
            "recording_id": recording.recording_id,
            "call_id": recording.call_id,
            "tenant": recording.tenant,
            "direction": recording.direction,
            "started_at": rfc3339(recording.started_at),
            "ended_at": rfc3339(recording.collected_at),
            "sha256": recording.sha256,
            "size_bytes": recording.size_bytes,
            "content_type": recording.content_type,
            "retention_due_at": rfc3339(recording.retention_due_at),
            "retention_policy": recording.policy,
            "restricted": recording.restricted,
            "held": recording.held,
            "personal_data": personal,
            "audio_file": audio_file,  # null: the audio is missing from the vault
        }


def _audio_file(recording: Recording) -> str:
    extension = _EXTENSIONS.get(recording.content_type or "", "bin")
    return f"recordings/{recording.recording_id}.{extension}"
