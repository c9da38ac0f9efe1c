"""The player's renditions: every accepted format that browsers cannot play is streamed as
16-bit PCM WAV, with its duration, seekable by ranges, one access on record; everything else,
and every download, is the original byte for byte."""

from __future__ import annotations

import array
import math
import struct
import subprocess
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.audio_formats import DECLARED, make_formats
from tests.contracts import covers
from tests.tools import tool
from tests.unit.conftest import World
from tests.unit.console_world import ConsoleWorld, build_console
from workers.adapters.rendition import PyavRenditions
from workers.app.console.playback import Original, SeekableAudio
from workers.app.ports.console import AudioForm, Rendition, Renditions

SECONDS = 3.0
RENDERED = ["ulaw.wav", "alaw.wav", "gsm.wav", "raw.ul", "raw.al", "raw.gsm", "ulaw.au"]
AS_IS = ["pcm.wav", "stereo.wav", "cbr.mp3", "vbr.mp3", "vorbis.ogg", "voice.opus", "stereo.flac"]
LOSSY_CODEC = {"gsm.wav", "raw.gsm"}  # GSM 6.10 at 13 kbit/s: the sweep, not its samples


@pytest.fixture(scope="module")
def formats(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_formats(tmp_path_factory.mktemp("formats"), SECONDS)


@pytest.fixture
def cw(world: World) -> ConsoleWorld:
    return build_console(world)


def store(cw: ConsoleWorld, formats: Path, name: str) -> tuple[str, bytes]:
    audio = (formats / name).read_bytes()
    declared = DECLARED.get(name, "audio/wav" if name.endswith(".wav") else None)
    recording = cw.world.store_call(f"call-{name}", audio, content_type=declared)
    return recording.recording_id, audio


def url(recording_id: str, rendition: str | None = "browser") -> str:
    query = f"&rendition={rendition}" if rendition else ""
    return f"/api/v1/recordings/{recording_id}/audio?purpose=quality{query}"


def pcm(wav: bytes) -> tuple[tuple[int, int, int, int], array.array[int]]:
    """(format tag, channels, rate, bits) and the samples of a canonical PCM WAV."""
    fmt = struct.unpack_from("<HHIIHH", wav, 20)
    assert wav[36:40] == b"data"
    assert struct.unpack_from("<I", wav, 40)[0] == len(wav) - 44
    return (fmt[0], fmt[1], fmt[2], fmt[5]), array.array("h", wav[44:])


def snr_db(heard: array.array[int], source: array.array[int]) -> float:
    noise = sum((a - b) ** 2 for a, b in zip(heard, source, strict=True))
    signal = sum(b * b for b in source)
    return 10 * math.log10(signal / max(noise, 1))


@pytest.mark.parametrize("name", RENDERED)
def test_formats_browsers_cannot_play_are_streamed_as_pcm_wav(
    cw: ConsoleWorld, formats: Path, name: str
) -> None:
    recording_id, _ = store(cw, formats, name)
    answer = cw.signed_in("qa1").get(url(recording_id))
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "audio/wav"
    assert answer.headers["content-length"] == str(len(answer.content))
    fmt, samples = pcm(answer.content)
    assert fmt == (1, 1, 8000, 16)
    assert len(samples) == SECONDS * 8000  # the duration the player shows
    _, source = pcm((formats / "source.wav").read_bytes())
    # what is heard is the call: the codec's own loss only
    assert snr_db(samples, source) > (3 if name in LOSSY_CODEC else 30)


@pytest.mark.parametrize("name", ["ulaw.wav", "raw.al", "raw.gsm"])
def test_the_player_seeks_a_rendition_by_ranges(cw: ConsoleWorld, formats: Path, name: str) -> None:
    recording_id, _ = store(cw, formats, name)
    browser = cw.signed_in("qa1")
    whole = browser.get(url(recording_id)).content
    for first, last in ((3, 99), (30_001, 39_999), (41_000, len(whole) - 1)):
        answer = browser.get(url(recording_id), headers={"range": f"bytes={first}-{last}"})
        assert answer.status_code == 206
        assert answer.headers["content-range"] == f"bytes {first}-{last}/{len(whole)}"
        assert len(answer.content) == last - first + 1
        if name not in LOSSY_CODEC or first < 44:
            assert answer.content == whole[first : last + 1]
        else:  # GSM decoded from a later block starts from a fresh state, then agrees
            heard, expected = array.array("h"), array.array("h")
            heard.frombytes(answer.content[-4000:])
            expected.frombytes(whole[last + 1 - 4000 : last + 1])
            assert snr_db(heard, expected) > 10
    assert len(cw.state.accesses) == 1  # one listening, however often it seeks


@pytest.mark.parametrize("name", AS_IS)
def test_formats_browsers_play_are_sent_as_they_are(
    cw: ConsoleWorld, formats: Path, name: str
) -> None:
    recording_id, audio = store(cw, formats, name)
    assert cw.signed_in("qa1").get(url(recording_id)).content == audio


@pytest.mark.parametrize("name", RENDERED)
def test_downloads_keep_the_original_bytes(cw: ConsoleWorld, formats: Path, name: str) -> None:
    recording_id, audio = store(cw, formats, name)
    for rendition in (None, "original"):
        answer = cw.api("qa1").get(url(recording_id, rendition))
        assert answer.content == audio
    kinds = [entry.details["kind"] for entry in cw.world.db.state.audit if entry.action == "access"]
    assert kinds == ["download", "download"]


def test_a_stereo_rendition_keeps_both_channels(cw: ConsoleWorld, formats: Path) -> None:
    _, source = pcm((formats / "stereo.wav").read_bytes())
    ulaw = formats / "stereo-ulaw.wav"
    subprocess.run([tool("sox"), str(formats / "stereo.wav"), "-e", "u-law", str(ulaw)], check=True)
    recording_id, _ = store(cw, formats, ulaw.name)
    fmt, samples = pcm(cw.signed_in("qa1").get(url(recording_id)).content)
    assert fmt == (1, 2, 8000, 16)
    assert snr_db(samples, source) > 30


@covers(Renditions.playable, Rendition.read)
def test_a_long_call_is_rendered_without_holding_it() -> None:
    """Half an hour of raw μ-law (14.4 MB) streams through the decoder chunk by chunk: the Python
    heap never holds more than a few decoded frames of it."""
    length, chunk = 8000 * 1800, 64 * 1024
    pattern = bytes(range(256)) * (chunk // 256)

    def plaintext(first: int, last: int) -> Iterator[bytes]:
        for at in range(first, last + 1, chunk):
            yield pattern[: min(chunk, last + 1 - at)]

    original = Original("audio/pcmu", length, plaintext)
    rendition = PyavRenditions().playable(SeekableAudio(original), AudioForm("audio/pcmu", 1, 1800))
    assert rendition.size == 44 + 2 * length
    tracemalloc.start()
    try:
        sent = sum(len(piece) for piece in rendition.read(0, rendition.size - 1))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sent == rendition.size
    assert peak < 2 * 1024 * 1024


@pytest.mark.parametrize(
    ("rate", "seconds"),
    [(10_000_000, 1.0), (8000, 30 * 24 * 3600.0)],
    ids=["a-rate-no-phone-has", "a-month-long-call"],
)
def test_a_header_that_lies_gets_the_original_not_an_endless_rendition(
    cw: ConsoleWorld, formats: Path, rate: int, seconds: float
) -> None:
    """μ-law whose header claims 10 MHz, or whose stored duration says a month: the player
    gets the original (the browser may refuse it) instead of gigabytes of decoded silence."""
    audio = bytearray((formats / "ulaw.wav").read_bytes())
    struct.pack_into("<II", audio, 24, rate, rate)  # sample rate, byte rate
    recording = cw.world.store_call("call-liar", bytes(audio), content_type="audio/wav")
    cw.world.db.state.recordings[recording.recording_id].duration_seconds = seconds
    answer = cw.signed_in("qa1").get(url(recording.recording_id))
    assert answer.status_code == 200
    assert answer.content == bytes(audio)
