"""Renditions that every browser plays: the recording decoded with PyAV (FFmpeg's decoders) and
re-encoded as 16-bit PCM WAV while it streams, at the source's rate, mono or stereo.

The rendition's length is fixed before the first byte is sent (from the recording's duration),
so the player shows the right duration and seeks with HTTP ranges: a range is answered by
seeking the source (FFmpeg seeks a WAV, raw G.711 or GSM stream to the exact block) and
decoding from there. Nothing is held but one decoded frame; the source is read through a
seekable file object that opens a ranged read where FFmpeg asks for bytes.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterable, Iterator
from fractions import Fraction
from typing import Any

import av
import av.error

from ..app.ports.console import AudioForm
from ..domain.audio import GSM, PCMA, PCMU
from ..domain.errors import NotAudio

WAV_HEADER_BYTES = 44
SAMPLE_BYTES = 2  # 16-bit PCM
AV_TIME_BASE = 1_000_000
RAW_RATE = 8000  # headerless telephony audio is narrowband
MAX_RATE = 192_000  # samples per second of any real recording
MAX_SECONDS = 24 * 3600  # no call lasts longer: a header that says so is not believed
# Headerless audio has no header to probe: FFmpeg is told what it is.
_RAW_DEMUXERS = {PCMU: "mulaw", PCMA: "alaw", GSM: "gsm"}


class PcmWavRendition:
    """One rendition for one HTTP answer: :attr:`size` is known on opening, :meth:`read`
    streams one byte range of it once and closes the source."""

    content_type = "audio/wav"

    def __init__(self, source: io.RawIOBase, form: AudioForm) -> None:
        demuxer = _RAW_DEMUXERS.get(form.content_type)
        options = {"sample_rate": str(RAW_RATE), "channels": str(form.channels or 1)}
        try:
            self._container: Any = av.open(
                source, "r", format=demuxer, options=options if demuxer else {}
            )
            self._stream = self._container.streams.audio[0]
        except (av.error.FFmpegError, IndexError, ValueError) as error:
            raise NotAudio(f"the recording cannot be decoded for playback: {error}") from None
        codec = self._stream.codec_context
        self._time_base = Fraction(self._stream.time_base or Fraction(1, AV_TIME_BASE))
        self.rate = int(codec.sample_rate)
        self.channels = 1 if codec.channels == 1 else 2
        seconds = form.duration_seconds or _container_seconds(self._container)
        if not 0 < self.rate <= MAX_RATE or seconds is None or not 0 <= seconds <= MAX_SECONDS:
            self._container.close()  # a header from a stranger: no endless answer from it
            raise NotAudio("the recording's duration or sample rate is unknown or implausible")
        self.frames = round(seconds * self.rate)
        self._frame_bytes = self.channels * SAMPLE_BYTES
        self.size = WAV_HEADER_BYTES + self.frames * self._frame_bytes

    def header(self) -> bytes:
        data = self.frames * self._frame_bytes
        return (
            struct.pack("<4sI4s", b"RIFF", 36 + data, b"WAVE")
            + struct.pack(
                "<4sIHHIIHH",
                b"fmt ",
                16,
                1,  # PCM
                self.channels,
                self.rate,
                self.rate * self._frame_bytes,
                self._frame_bytes,
                SAMPLE_BYTES * 8,
            )
            + struct.pack("<4sI", b"data", data)
        )

    def read(self, first: int, last: int) -> Iterator[bytes]:
        """Bytes ``first``..``last`` (inclusive) of the rendition."""
        try:
            if first < WAV_HEADER_BYTES:
                yield self.header()[first : last + 1]
            start = max(first, WAV_HEADER_BYTES) - WAV_HEADER_BYTES
            end = last + 1 - WAV_HEADER_BYTES
            if end > start:
                frame = start // self._frame_bytes
                pcm = self._pcm_from(frame)
                yield from _window(pcm, start - frame * self._frame_bytes, end - start)
        finally:
            self._container.close()

    def _pcm_from(self, frame: int) -> Iterator[bytes]:
        """The PCM from sample frame ``frame`` on, exactly up to :attr:`frames` (cut where the
        decoder gives more, silence where it gives less or skips a damaged packet)."""
        width, total = self._frame_bytes, self.frames
        position: int | None = 0
        if frame:
            target = Fraction(frame, self.rate) / self._time_base
            self._container.seek(int(target), stream=self._stream)
            position = None  # where the seek landed: the first decoded frame's time says
        sent = frame
        for samples, pts in self._decoded():
            if position is None:
                position = frame if pts is None else round(pts * self._time_base * self.rate)
            count = len(samples) // width
            begin, stop = min(max(sent, position), total), min(position + count, total)
            yield from _silence(begin - sent, width)
            if stop > begin:
                yield samples[(begin - position) * width : (stop - position) * width]
            sent, position = max(begin, stop), position + count
            if sent >= total:
                return
        yield from _silence(total - sent, width)

    def _decoded(self) -> Iterator[tuple[bytes, int | None]]:
        """Interleaved 16-bit samples of each decoded frame, with its timestamp."""
        layout = "mono" if self.channels == 1 else "stereo"
        resampler = av.AudioResampler(format="s16", layout=layout, rate=self.rate)
        for packet in self._container.demux(self._stream):
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                continue  # a damaged or partial packet (a WAV's padding byte): silence
            for decoded in frames:
                pts = decoded.pts
                for out in resampler.resample(decoded):
                    yield _interleaved(out, self._frame_bytes), pts
                    pts = None
        for out in resampler.resample(None):
            yield _interleaved(out, self._frame_bytes), None


def _silence(frames: int, width: int, chunk: int = 8192) -> Iterator[bytes]:
    for at in range(0, max(frames, 0), chunk):
        yield bytes(min(chunk, frames - at) * width)


def _interleaved(frame: Any, frame_bytes: int) -> bytes:
    return bytes(frame.planes[0])[: frame.samples * frame_bytes]


def _container_seconds(container: Any) -> float | None:
    return None if container.duration is None else container.duration / AV_TIME_BASE


def _window(chunks: Iterable[bytes], skip: int, length: int) -> Iterator[bytes]:
    """``length`` bytes of the stream after its first ``skip``."""
    for chunk in chunks:
        if skip >= len(chunk):
            skip -= len(chunk)
            continue
        piece = chunk[skip : skip + length]
        skip = 0
        length -= len(piece)
        yield piece
        if length <= 0:
            return


class PyavRenditions:
    """The console's :class:`~workers.app.ports.console.Renditions`, with PyAV."""

    def playable(self, source: io.RawIOBase, form: AudioForm) -> PcmWavRendition:
        return PcmWavRendition(source, form)
