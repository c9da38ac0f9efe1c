"""Recognising audio by its first bytes, never by a name or a declared type."""

from __future__ import annotations

from .errors import NotAudio

SNIFF_BYTES = 64

_ALIASES = {
    "audio/wav": {"audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave"},
    "audio/mpeg": {"audio/mpeg", "audio/mp3", "audio/mpeg3", "audio/x-mpeg"},
    "audio/ogg": {"audio/ogg", "audio/opus", "application/ogg", "audio/x-ogg"},
    "audio/flac": {"audio/flac", "audio/x-flac"},
    "audio/mp4": {"audio/mp4", "audio/m4a", "audio/x-m4a", "audio/aac"},
    "audio/amr": {"audio/amr", "audio/3gpp"},
}


def sniff(head: bytes) -> str | None:
    """The audio media type that the leading bytes reveal, or ``None``."""
    if len(head) >= 12 and head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return "audio/wav"
    if head.startswith(b"fLaC"):
        return "audio/flac"
    if head.startswith(b"OggS"):
        return "audio/ogg"
    if head.startswith(b"ID3") or _is_mpeg_frame(head):
        return "audio/mpeg"
    if len(head) >= 12 and head[4:8] == b"ftyp" and head[8:11] in (b"M4A", b"mp4", b"isom"):
        return "audio/mp4"
    if head.startswith(b"#!AMR"):
        return "audio/amr"
    return None


def _is_mpeg_frame(head: bytes) -> bool:
    """An MPEG audio frame header: 11 sync bits, a valid version, a valid layer, a valid rate."""
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    version, layer = (head[1] >> 3) & 0x3, (head[1] >> 1) & 0x3
    bitrate, sample_rate = head[2] >> 4, (head[2] >> 2) & 0x3
    return version != 1 and layer != 0 and bitrate not in (0, 0xF) and sample_rate != 3


def check_audio(head: bytes, declared: str | None) -> str:
    """The media type of the audio, or :class:`NotAudio` when it is not audio we can keep."""
    found = sniff(head)
    if found is None:
        raise NotAudio("the recording's content is not WAV, MP3, Ogg/Opus, FLAC, M4A or AMR audio")
    if declared is not None:
        base = declared.split(";", 1)[0].strip().lower()
        if base not in _ALIASES[found]:
            raise NotAudio(f"content_type says {base!r} but the content is {found}")
    return found
