"""Recognising audio by its content, and reading its duration and channel count on the way.

The type comes from the first bytes, never from a name; a declared type is checked against it.
Raw telephony audio (G.711 μ-law/A-law, GSM 6.10) has no header to recognise, so it is
accepted only when the event declares it. Duration and channels are read from the few places
that carry them - a WAV or AU header and its data size, FLAC's STREAMINFO, the last Ogg page's
granule position, an MP3's Xing/VBRI header or its frame headers - while the bytes stream past
(:class:`AudioProbe`), without decoding any audio and without holding more than ~200 KiB.
"""

from __future__ import annotations

import io
import re
import struct
import wave
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .errors import NotAudio, UnsupportedAudio

SNIFF_BYTES = 64
HEAD_BYTES = 64 * 1024  # headers we read lie in the first 64 KiB (longer ones: no metadata)
TAIL_BYTES = 65_307 + 1024  # the largest Ogg page, so the last page is always whole

WAV, MPEG, OGG, FLAC, MP4, AMR = (
    "audio/wav",
    "audio/mpeg",
    "audio/ogg",
    "audio/flac",
    "audio/mp4",
    "audio/amr",
)
AU, PCMU, PCMA, GSM = "audio/basic", "audio/pcmu", "audio/pcma", "audio/gsm"

_ALIASES = {
    WAV: {"audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave"},
    MPEG: {"audio/mpeg", "audio/mp3", "audio/mpeg3", "audio/x-mpeg"},
    OGG: {"audio/ogg", "audio/opus", "application/ogg", "audio/x-ogg"},
    FLAC: {"audio/flac", "audio/x-flac"},
    MP4: {"audio/mp4", "audio/m4a", "audio/x-m4a", "audio/aac"},
    AMR: {"audio/amr", "audio/3gpp"},
    AU: {"audio/basic", "audio/au", "audio/x-au"},
}
# Headerless telephony audio: accepted only as declared (RFC 4856 names, and common aliases).
_RAW_ALIASES = {
    PCMU: {
        "audio/pcmu",
        "audio/basic",
        "audio/x-mulaw",
        "audio/mulaw",
        "audio/x-ulaw",
        "audio/ulaw",
    },
    PCMA: {"audio/pcma", "audio/x-alaw", "audio/alaw", "audio/x-alaw-basic"},
    GSM: {"audio/gsm", "audio/x-gsm"},
}
_NOT_AUDIO_MAGIC = (b"%PDF", b"PK\x03\x04", b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"\x1f\x8b")
_TEXT_BYTES = frozenset(range(0x20, 0x7F)) | {0x09, 0x0A, 0x0D}
GSM_FRAME_BYTES, GSM_FRAME_SAMPLES = 33, 160
# What a declared ``rate``/``channels`` parameter may say (telephony 8 kHz mono up to studio audio).
RATES, CHANNELS = range(1_000, 384_001), range(1, 17)
HEADER_CHANNELS = range(1, 256)  # what a header may say and be believed (the event's bound)
_WHOLE = re.compile(r"^[0-9]{1,6}$")


@dataclass(frozen=True)
class AudioFacts:
    """What callvault knows about a recording without decoding it."""

    content_type: str
    codec: str | None = None
    channels: int | None = None
    sample_rate: int | None = None
    duration_seconds: float | None = None

    def __post_init__(self) -> None:
        # a header of zeros, or of numbers no recording has, says nothing: no channels, no
        # rate, no duration
        if self.channels not in HEADER_CHANNELS or self.sample_rate not in RATES:
            for name in ("channels", "sample_rate", "duration_seconds"):
                object.__setattr__(self, name, None)
        elif self.duration_seconds is not None:  # milliseconds are all a recording's length needs
            object.__setattr__(self, "duration_seconds", round(self.duration_seconds, 3))


def sniff(head: bytes) -> str | None:
    """The audio media type that the leading bytes reveal, or ``None``."""
    if len(head) >= 12 and head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return WAV
    if head.startswith(b"fLaC"):
        return FLAC
    if head.startswith(b"OggS"):
        return OGG
    if head.startswith(b"ID3") or _mpeg_frame(head) is not None:
        return MPEG
    if len(head) >= 12 and head[4:8] == b"ftyp" and head[8:11] in (b"M4A", b"mp4", b"isom"):
        return MP4
    if head.startswith(b"#!AMR"):
        return AMR
    if head.startswith(b".snd"):
        return AU
    return None


# What every current browser plays as it is (Chromium, Firefox, Safari): anything else is
# played from a rendition (PCM WAV) and kept, downloaded and exported as it came.
_BROWSERS_PLAY = {
    WAV: {"pcm", "float"},
    MPEG: {"mp3"},
    OGG: {"opus", "vorbis"},
    FLAC: {"flac"},
}
NEEDS_CODEC = frozenset(_BROWSERS_PLAY)  # types whose codec decides; others need no look


def browsers_play(content_type: str | None, codec: str | None) -> bool:
    """Whether browsers play audio of this type and codec without a rendition."""
    return codec in _BROWSERS_PLAY.get(content_type or "", ())


def codec_of(head: bytes, content_type: str) -> str | None:
    """The codec that a recording's first bytes name (a WAV's format tag, an Ogg stream's
    first packet, an MPEG frame's layer); ``None`` when the head does not say."""
    probe = AudioProbe(content_type)
    probe.feed(head)
    try:
        return probe.finish().codec
    except NotAudio:
        return None


def check_audio(head: bytes, declared: str | None) -> str:
    """The media type of the audio, or :class:`NotAudio` when it is not audio we can keep."""
    return recognise(head, declared)


def recognise(head: bytes, declared: str | None) -> str:
    """The media type of audio starting with ``head`` (at least :data:`SNIFF_BYTES` unless the
    whole recording is shorter), checked against the declared type when there is one."""
    base, params = _media_type(declared)
    _check_parameters(params)
    found = sniff(head)
    if found is None:
        raw = _raw_type(base)
        if raw is None:
            raise NotAudio(
                "the recording's content is not WAV, MP3, Ogg/Opus, FLAC, M4A, AMR or AU audio "
                "(raw G.711 or GSM audio needs its content_type declared)"
            )
        _check_raw(head, raw)
        return raw
    if base is not None and base not in _ALIASES[found]:
        raise NotAudio(f"content_type says {base!r} but the content is {found}")
    return found


def _media_type(declared: str | None) -> tuple[str | None, dict[str, str]]:
    if declared is None:
        return None, {}
    base, *params = declared.split(";")
    values = {}
    for param in params:
        name, _, value = param.partition("=")
        values[name.strip().lower()] = value.strip().strip('"')
    return base.strip().lower(), values


def _check_parameters(params: dict[str, str]) -> None:
    """A declared rate or channel count is a whole number in :data:`RATES`/:data:`CHANNELS`,
    so nothing computed from it divides by zero or runs away."""
    for name, allowed in (("rate", RATES), ("channels", CHANNELS)):
        value = params.get(name)
        if value is not None and not (_WHOLE.match(value) and int(value) in allowed):
            raise UnsupportedAudio(
                f"content_type declares {name}={value[:16]!r}; callvault accepts "
                f"{allowed.start}-{allowed.stop - 1}"
            )


def _raw_type(base: str | None) -> str | None:
    return next((raw for raw, names in _RAW_ALIASES.items() if base in names), None)


def _check_raw(head: bytes, raw: str) -> None:
    if head.startswith(_NOT_AUDIO_MAGIC) or (head and set(head) <= _TEXT_BYTES):
        raise NotAudio(f"content_type says {raw} but the content is text or another format")
    if raw == GSM:
        frames = range(0, len(head) - len(head) % GSM_FRAME_BYTES, GSM_FRAME_BYTES)
        if not head or any(head[i] >> 4 != 0xD for i in frames):
            raise NotAudio("content_type says audio/gsm but the content is not GSM 6.10 frames")


class AudioProbe:
    """Watches a recording stream past once: recognises it, then reads its metadata.

    ``feed`` every chunk in order (or wrap the stream with :meth:`watch`), then ask
    :meth:`finish`. Only the first and last few KiB are kept; MP3 frame headers are counted
    as they pass.
    """

    def __init__(self, declared: str | None) -> None:
        self._declared = declared
        self._head = bytearray()
        self._tail = bytearray()
        self._size = 0
        self._type: str | None = None
        self._mpeg: _MpegFrames | None = None

    @property
    def size(self) -> int:
        return self._size

    def watch(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self.feed(chunk)
            yield chunk

    def feed(self, chunk: bytes) -> None:
        """Take the next chunk; raises :class:`NotAudio` as soon as the head shows it is none."""
        offset = self._size
        self._size += len(chunk)
        if len(self._head) < HEAD_BYTES:
            self._head += chunk[: HEAD_BYTES - len(self._head)]
        self._tail += chunk[-TAIL_BYTES:]
        del self._tail[:-TAIL_BYTES]
        if self._type is None and len(self._head) >= SNIFF_BYTES:
            self._recognise(seen=offset)
        if self._mpeg is not None:
            self._mpeg.feed(chunk, offset)

    def _recognise(self, seen: int) -> str:
        """Recognise the head; MP3 frame counting starts over the ``seen`` bytes before it."""
        self._type = kind = recognise(bytes(self._head), self._declared)
        if kind == MPEG:
            self._mpeg = _MpegFrames(_id3_end(self._head))
            self._mpeg.feed(bytes(self._head[:seen]), 0)
        return kind

    def finish(self) -> AudioFacts:
        """The recording's type and whatever metadata its format carries."""
        # shorter than SNIFF_BYTES, it is not recognised yet: all of it is the head
        kind = self._type or self._recognise(seen=self._size)
        head, tail = bytes(self._head), bytes(self._tail)
        readers = {
            WAV: lambda: _wav(head, self._size),
            FLAC: lambda: _flac(head),
            OGG: lambda: _ogg(head, tail),
            MPEG: lambda: _mpeg(head, self._mpeg),
            AU: lambda: _au(head, self._size),
        }
        reader = readers.get(kind)
        facts: AudioFacts | None
        if reader is None:
            _, params = _media_type(self._declared)
            facts = _raw(kind, self._size, params)
        else:
            try:
                facts = reader()
            except (struct.error, IndexError, ValueError, ZeroDivisionError):
                facts = None  # a damaged header: the audio is still kept as it came
        return facts or AudioFacts(kind)


# --- WAV ------------------------------------------------------------------------------------
_WAV_CODECS = {
    0x0001: "pcm",
    0x0003: "float",
    0x0006: "alaw",
    0x0007: "mulaw",
    0x0031: "gsm",
    0x0011: "ima_adpcm",
    0x0002: "ms_adpcm",
    0x0055: "mp3",
}
_WAV_EXTENSIBLE = 0xFFFE
_UNKNOWN_SIZE = (0, 0xFFFFFFFF)


def _wav(head: bytes, total: int) -> AudioFacts | None:
    fmt: tuple[int, int, int, int, int] | None = None
    fact_samples = ds64_data = None
    pos = 12
    while pos + 8 <= len(head):
        chunk_id, size = head[pos : pos + 4], struct.unpack_from("<I", head, pos + 4)[0]
        body = pos + 8
        if chunk_id == b"fmt ":
            tag, channels, rate, byte_rate, align = struct.unpack_from("<HHIIH", head, body)
            if tag == _WAV_EXTENSIBLE and size >= 26:
                tag = struct.unpack_from("<H", head, body + 24)[0]
            fmt = (tag, channels, rate, byte_rate, align)
        elif chunk_id == b"fact" and size >= 4:
            fact_samples = struct.unpack_from("<I", head, body)[0]
        elif chunk_id == b"ds64" and size >= 24:
            ds64_data = struct.unpack_from("<Q", head, body + 8)[0]
        elif chunk_id == b"data":
            if fmt is None:
                return None
            declared = ds64_data if size == 0xFFFFFFFF and ds64_data else size
            arrived = total - body
            data = arrived if declared in _UNKNOWN_SIZE else min(declared, arrived)
            return _wav_facts(fmt, data, fact_samples)
        pos = body + size + (size & 1)
    return None


def _wav_facts(
    fmt: tuple[int, int, int, int, int], data: int, fact_samples: int | None
) -> AudioFacts:
    tag, channels, rate, byte_rate, align = fmt
    codec = _WAV_CODECS.get(tag, f"wav-0x{tag:04x}")
    if tag in (0x0001, 0x0003, 0x0006, 0x0007) and align:
        duration = (data // align) / rate
    elif fact_samples is not None and tag != 0x0001:
        duration = fact_samples / rate
    else:
        duration = data / byte_rate
    return AudioFacts(WAV, codec, channels, rate, duration)


# --- Sun/NeXT AU ----------------------------------------------------------------------------
_AU_CODECS = {1: ("mulaw", 1), 2: ("pcm", 1), 3: ("pcm", 2), 4: ("pcm", 3), 5: ("pcm", 4)}
_AU_CODECS[27] = ("alaw", 1)


def _au(head: bytes, total: int) -> AudioFacts | None:
    offset, size, encoding, rate, channels = struct.unpack_from(">5I", head, 4)
    codec, width = _AU_CODECS.get(encoding, (f"au-{encoding}", 0))
    data = total - offset if size == 0xFFFFFFFF else min(size, total - offset)
    duration = data / (width * channels * rate) if width else None
    return AudioFacts(AU, codec, channels, rate, duration)


# --- raw telephony audio --------------------------------------------------------------------
def _raw(content_type: str, total: int, params: dict[str, str]) -> AudioFacts:
    rate = int(params.get("rate", "8000"))
    channels = int(params.get("channels", "1"))
    if content_type == GSM:
        duration = (total // GSM_FRAME_BYTES) * GSM_FRAME_SAMPLES / rate
        return AudioFacts(GSM, "gsm", channels, rate, duration)
    if content_type in (PCMU, PCMA):
        codec = "mulaw" if content_type == PCMU else "alaw"
        return AudioFacts(content_type, codec, channels, rate, total / (rate * channels))
    return AudioFacts(content_type)


# --- FLAC -----------------------------------------------------------------------------------
def _flac(head: bytes) -> AudioFacts | None:
    if head[4] & 0x7F != 0:  # the first metadata block must be STREAMINFO
        return None
    return _streaminfo(head, 8)


def _streaminfo(head: bytes, at: int) -> AudioFacts:
    bits = int.from_bytes(head[at + 10 : at + 18], "big")
    rate = bits >> 44
    channels = ((bits >> 41) & 0x7) + 1
    samples = bits & ((1 << 36) - 1)
    return AudioFacts(FLAC, "flac", channels, rate, samples / rate if samples else None)


# --- Ogg (Opus, Vorbis, FLAC) ---------------------------------------------------------------
_NO_GRANULE = 0xFFFFFFFFFFFFFFFF


def _ogg(head: bytes, tail: bytes) -> AudioFacts | None:
    serial = struct.unpack_from("<I", head, 14)[0]
    packet = head[27 + head[26] :]
    if packet.startswith(b"OpusHead"):
        channels, pre_skip = packet[9], struct.unpack_from("<H", packet, 10)[0]
        codec, rate, skip, clock = "opus", 48_000, pre_skip, 48_000
    elif packet.startswith(b"\x01vorbis"):
        channels, rate = packet[11], struct.unpack_from("<I", packet, 12)[0]
        codec, skip, clock = "vorbis", 0, rate
    elif packet.startswith(b"\x7fFLAC") and packet[9:13] == b"fLaC":
        info = _streaminfo(packet, 17)
        channels, rate = info.channels or 0, info.sample_rate or 0
        codec, skip, clock = "flac", 0, rate
    else:
        return AudioFacts(OGG)
    granule = _last_granule(tail, serial)
    # granule 0: only header pages arrived, so nothing says how long the audio is
    duration = max(granule - skip, 0) / clock if granule and clock else None
    return AudioFacts(OGG, codec, channels, rate, duration)


def _last_granule(tail: bytes, serial: int) -> int | None:
    """The granule position of the stream's last page that has one."""
    end = len(tail)
    while (at := tail.rfind(b"OggS", 0, end)) >= 0:
        end = at
        if at + 27 > len(tail) or tail[at + 4] != 0:
            continue
        granule, page_serial = struct.unpack_from("<QI", tail, at + 6)
        if page_serial == serial and granule != _NO_GRANULE:
            return int(granule)
    return None


# --- MPEG audio (MP3) -----------------------------------------------------------------------
_BITRATES = {
    (1, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (1, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (1, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (2, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (2, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (2, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_RATES = {1: (44_100, 48_000, 32_000), 2: (22_050, 24_000, 16_000), 25: (11_025, 12_000, 8_000)}


@dataclass(frozen=True)
class _Frame:
    version: int  # 1, 2 or 25 (MPEG 2.5)
    layer: int
    rate: int
    channels: int
    length: int
    samples: int


def _mpeg_frame(head: bytes, at: int = 0) -> _Frame | None:
    """The MPEG audio frame header at ``at``, or ``None`` where there is none."""
    if len(head) < at + 4 or head[at] != 0xFF or head[at + 1] & 0xE0 != 0xE0:
        return None
    version_bits, layer_bits = (head[at + 1] >> 3) & 0x3, (head[at + 1] >> 1) & 0x3
    bitrate_index, rate_index = head[at + 2] >> 4, (head[at + 2] >> 2) & 0x3
    if version_bits == 1 or layer_bits == 0 or bitrate_index in (0, 0xF) or rate_index == 3:
        return None
    version = {3: 1, 2: 2, 0: 25}[version_bits]
    layer = 4 - layer_bits
    bitrate = _BITRATES[(min(version, 2), layer)][bitrate_index] * 1000
    rate = _RATES[version][rate_index]
    padding = (head[at + 2] >> 1) & 0x1
    channels = 1 if head[at + 3] >> 6 == 3 else 2
    if layer == 1:
        return _Frame(version, 1, rate, channels, (12 * bitrate // rate + padding) * 4, 384)
    samples = 576 if layer == 3 and version != 1 else 1152
    return _Frame(version, layer, rate, channels, samples // 8 * bitrate // rate + padding, samples)


def _id3_end(head: bytes | bytearray) -> int:
    """Where the audio starts: after an ID3v2 tag (and its footer), if any."""
    if not head.startswith(b"ID3") or len(head) < 10:
        return 0
    size = 0
    for byte in head[6:10]:
        size = (size << 7) | (byte & 0x7F)
    return 10 + size + (10 if head[5] & 0x10 else 0)


class _MpegFrames:
    """Counts MPEG audio frames as the stream passes, following their lengths (a few bytes
    are kept between chunks); stops at the first thing that is not a frame (ID3v1, APE)."""

    def __init__(self, start: int) -> None:
        self.next_at = start
        self.frames = 0
        self.samples = 0
        self.first: _Frame | None = None
        self.first_at = start
        self._carry = b""
        self._stopped = False

    def feed(self, chunk: bytes, offset: int) -> None:
        if self._stopped:
            return
        base = offset - len(self._carry)
        data = self._carry + chunk
        pos = self.next_at - base
        while pos >= 0 and pos + 4 <= len(data):
            frame = _mpeg_frame(data, pos)
            if frame is None:
                self._stopped = True
                return
            if self.first is None:
                self.first, self.first_at = frame, base + pos
            self.frames += 1
            self.samples += frame.samples
            pos += frame.length
        self.next_at = base + pos
        self._carry = data[pos:] if 0 <= pos < len(data) else b""


def _mpeg(head: bytes, counted: _MpegFrames | None) -> AudioFacts | None:
    if counted is None or counted.first is None:
        return AudioFacts(MPEG)
    first = counted.first
    duration = counted.samples / first.rate
    at = counted.first_at
    vbr_frames = _xing_frames(head, at, first) if at + 200 <= len(head) else None
    if vbr_frames is not None:
        duration = vbr_frames * first.samples / first.rate
    return AudioFacts(MPEG, f"mp{first.layer}", first.channels, first.rate, duration)


def _xing_frames(head: bytes, at: int, frame: _Frame) -> int | None:
    """Frame count from a Xing/Info or VBRI header in the first frame, if it has one."""
    side = (
        (32 if frame.channels == 2 else 17)
        if frame.version == 1
        else (17 if frame.channels == 2 else 9)
    )
    xing = at + 4 + side
    if head[xing : xing + 4] in (b"Xing", b"Info"):
        flags = struct.unpack_from(">I", head, xing + 4)[0]
        return int(struct.unpack_from(">I", head, xing + 8)[0]) if flags & 0x1 else None
    vbri = at + 4 + 32
    if head[vbri : vbri + 4] == b"VBRI":
        return int(struct.unpack_from(">I", head, vbri + 14)[0])
    return None


def pcm_wav(frames: bytes, rate: int = 8000, channels: int = 1) -> bytes:
    """16-bit little-endian PCM samples (interleaved when stereo) as a WAV file."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(frames)
    return out.getvalue()
