"""What a player is sent: the original audio, byte for byte, where browsers play it; else a
rendition decoded from it as it streams. Downloads, disclosures and exports always get the
original."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import structlog

from ...domain.audio import HEAD_BYTES, NEEDS_CODEC, browsers_play, codec_of
from ...domain.errors import NotAudio
from ...domain.model import Recording
from ..ports.console import AudioForm, Rendition, Renditions

log = structlog.get_logger(__name__)
ReadRange = Callable[[int, int], Iterator[bytes]]  # first, last (inclusive) -> plaintext


@dataclass(frozen=True)
class Original:
    """The stored audio as it came, decrypted range by range."""

    content_type: str
    size: int
    ranges: ReadRange = field(repr=False)

    def read(self, first: int, last: int) -> Iterator[bytes]:
        return self.ranges(first, last) if self.size else iter(())


def for_browsers(recording: Recording, original: Original, renditions: Renditions) -> Rendition:
    """The original when every browser plays it, else a rendition; a recording that cannot be
    decoded is sent as it is (the browser may still know it)."""
    if not original.size or _played_as_is(original):
        return original
    form = AudioForm(original.content_type, recording.channels, recording.duration_seconds)
    try:
        return renditions.playable(SeekableAudio(original), form)
    except NotAudio as error:
        log.warning("rendition_failed", recording_id=recording.recording_id, error=str(error))
        return original


def _played_as_is(original: Original) -> bool:
    if original.content_type not in NEEDS_CODEC:
        return False
    head = b"".join(original.read(0, min(original.size, HEAD_BYTES) - 1))
    return browsers_play(original.content_type, codec_of(head, original.content_type))


class SeekableAudio(io.RawIOBase):
    """The original as a read-only file that a decoder may seek: a read opens one ranged read
    from where it is and follows on while reads are sequential; a seek only moves."""

    def __init__(self, original: Original) -> None:
        super().__init__()
        self._original = original
        self._position = 0
        self._chunks: Iterator[bytes] | None = None
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._original.size}
        position = max(0, base[whence] + offset)
        if position != self._position:
            self._stop()
            self._position = position
        return position

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._position >= self._original.size:
            return 0
        if self._chunks is None:
            self._chunks = self._original.read(self._position, self._original.size - 1)
        while not self._pending:
            chunk = next(self._chunks, b"")
            if not chunk:
                return 0
            self._pending = memoryview(chunk)
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        self._position += count
        return count

    def close(self) -> None:
        self._stop()
        super().close()

    def _stop(self) -> None:
        if self._chunks is not None:
            close = getattr(self._chunks, "close", None)
            if close is not None:
                close()
        self._chunks, self._pending = None, memoryview(b"")
