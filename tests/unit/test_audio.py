"""Audio recognition and metadata, on files that sox, espeak-ng and opusenc make at run time
(deploy/ installs them): the formats telephony systems write, read while streaming."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.audio_formats import make_formats
from workers.domain.audio import AudioFacts, AudioProbe, recognise
from workers.domain.errors import NotAudio

SECONDS = 2.5


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One 2.5 s mono 8 kHz recording of a tone sweep, converted to every format under test."""
    return make_formats(tmp_path_factory.mktemp("audio"), SECONDS)


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    for at in range(0, len(data), size):
        yield data[at : at + size]


def probe(data: bytes, declared: str | None = None, chunk: int = 4096) -> AudioFacts:
    watcher = AudioProbe(declared)
    passed = b"".join(watcher.watch(_chunks(data, chunk)))
    assert passed == data  # the probe only looks: the bytes pass through unchanged
    return watcher.finish()


@pytest.mark.parametrize(
    ("name", "declared", "content_type", "codec", "channels", "tolerance"),
    [
        ("pcm.wav", None, "audio/wav", "pcm", 1, 0.01),
        ("ulaw.wav", "audio/x-wav", "audio/wav", "mulaw", 1, 0.01),
        ("alaw.wav", None, "audio/wav", "alaw", 1, 0.01),
        ("gsm.wav", None, "audio/wav", "gsm", 1, 0.03),
        ("stereo.wav", None, "audio/wav", "pcm", 2, 0.01),
        ("wideband.wav", None, "audio/wav", "pcm", 1, 0.01),
        ("raw.ul", "audio/basic", "audio/pcmu", "mulaw", 1, 0.01),
        ("raw.ul", "audio/PCMU", "audio/pcmu", "mulaw", 1, 0.01),
        ("raw.al", "audio/x-alaw-basic", "audio/pcma", "alaw", 1, 0.01),
        ("raw.gsm", "audio/gsm", "audio/gsm", "gsm", 1, 0.03),
        ("ulaw.au", None, "audio/basic", "mulaw", 1, 0.01),
        ("cbr.mp3", None, "audio/mpeg", "mp3", 1, 0.3),  # encoder delay and padding
        ("vbr.mp3", "audio/mp3", "audio/mpeg", "mp3", 2, 0.1),  # Xing header
        ("vorbis.ogg", None, "audio/ogg", "vorbis", 1, 0.01),
        ("voice.opus", "audio/opus", "audio/ogg", "opus", 1, 0.01),
        ("stereo.flac", None, "audio/flac", "flac", 2, 0.01),
    ],
)
def test_format_is_recognised_with_duration_and_channels(
    audio_dir: Path,
    name: str,
    declared: str | None,
    content_type: str,
    codec: str,
    channels: int,
    tolerance: float,
) -> None:
    facts = probe((audio_dir / name).read_bytes(), declared)
    assert (facts.content_type, facts.codec, facts.channels) == (content_type, codec, channels)
    assert facts.duration_seconds == pytest.approx(SECONDS, abs=tolerance)


@pytest.mark.parametrize("name", ["gsm.wav", "cbr.mp3", "vbr.mp3", "vorbis.ogg", "voice.opus"])
@pytest.mark.parametrize("chunk", [1, 33, 1000, 1 << 20])
def test_metadata_does_not_depend_on_how_the_stream_is_cut(
    audio_dir: Path, name: str, chunk: int
) -> None:
    data = (audio_dir / name).read_bytes()
    assert probe(data, chunk=chunk) == probe(data, chunk=len(data))


def test_wav_written_while_recording_has_its_duration_from_the_bytes(audio_dir: Path) -> None:
    """A WAV whose writer never came back to fill in the sizes (0 or 0xFFFFFFFF), and one cut
    short: the duration is that of the audio that actually arrived."""
    data = bytearray((audio_dir / "pcm.wav").read_bytes())
    at = data.index(b"data") + 4
    for unknown in (0, 0xFFFFFFFF):
        struct.pack_into("<I", data, at, unknown)
        assert probe(bytes(data)).duration_seconds == pytest.approx(SECONDS, abs=0.01)
    half = (audio_dir / "pcm.wav").read_bytes()[: 44 + 8000 * 2]
    assert probe(half).duration_seconds == pytest.approx(1.0, abs=0.01)


def test_mp3_after_an_id3_tag_is_measured_from_its_frames(audio_dir: Path) -> None:
    body = b"TIT2" + struct.pack(">I", 5) + b"\x00\x00" + b"\x00call"
    body += b"\x00" * 3000  # padding, as tag writers leave
    size = bytes((len(body) >> shift) & 0x7F for shift in (21, 14, 7, 0))
    tagged = b"ID3\x04\x00\x00" + size + body + (audio_dir / "cbr.mp3").read_bytes()
    facts = probe(tagged, chunk=1000)
    assert facts.content_type == "audio/mpeg"
    assert facts.duration_seconds == pytest.approx(SECONDS, abs=0.3)


def test_raw_telephony_audio_needs_its_type_declared(audio_dir: Path) -> None:
    data = (audio_dir / "raw.ul").read_bytes()
    with pytest.raises(NotAudio, match="declared"):
        probe(data)
    with pytest.raises(NotAudio, match="content_type"):
        probe(data, "audio/wav")


@pytest.mark.parametrize(
    ("content", "declared"),
    [
        (b"Dear customer,\nyour order has shipped.\n" * 4, "audio/basic"),
        (b"%PDF-1.7\n" + bytes(range(256)), "audio/pcma"),
        (bytes(range(256)) * 4, "audio/gsm"),  # not 33-byte GSM 6.10 frames
    ],
    ids=["text-as-ulaw", "pdf-as-alaw", "noise-as-gsm"],
)
def test_declared_raw_audio_that_is_something_else_is_refused(
    content: bytes, declared: str
) -> None:
    with pytest.raises(NotAudio):
        probe(content, declared)


def test_a_wav_declared_as_raw_audio_is_refused(audio_dir: Path) -> None:
    with pytest.raises(NotAudio, match="content is audio/wav"):
        recognise((audio_dir / "ulaw.wav").read_bytes()[:64], "audio/pcmu")


def test_non_audio_is_refused_at_its_first_chunk_not_at_the_end() -> None:
    watcher = AudioProbe(None)
    stream = watcher.watch([b"<html>" + b" " * 100, b"never read"])
    with pytest.raises(NotAudio):
        next(stream)


def test_tiny_and_damaged_recordings_keep_their_type_without_metadata() -> None:
    header_only = b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00" + b"\x00" * 20
    assert probe(header_only) == AudioFacts("audio/wav")
    assert probe(b"fLaC\x00\x00\x00\x22" + b"\x00" * 60).content_type == "audio/flac"


def _wav_header(channels: int, rate: int) -> bytes:
    align = 2 * channels & 0xFFFF
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * align & 0xFFFFFFFF, align, 16)
    data = b"\x00" * 1600
    body = b"WAVEfmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data))
    return b"RIFF" + struct.pack("<I", len(body) + len(data)) + body + data


@pytest.mark.parametrize(("channels", "rate"), [(1000, 8000), (65535, 8000), (1, 1), (2, 999)])
def test_a_header_with_numbers_no_recording_has_says_nothing(channels: int, rate: int) -> None:
    assert probe(_wav_header(channels, rate)) == AudioFacts("audio/wav", "pcm")


def test_an_au_header_claiming_four_billion_channels_says_nothing() -> None:
    header = b".snd" + struct.pack(">5I", 24, 1600, 1, 8000, 0xFFFFFFFF)
    assert probe(header + b"\x00" * 1600) == AudioFacts("audio/basic", "mulaw")


def test_a_believable_header_is_read() -> None:
    facts = probe(_wav_header(2, 8000))
    assert (facts.channels, facts.sample_rate, facts.duration_seconds) == (2, 8000, 0.05)
