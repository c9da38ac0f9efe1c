"""Small stream helpers for audio passing through: measure it, peek at its head, cap it."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

from .errors import FetchFailed


class Measured:
    """Passes chunks through while counting bytes and hashing them with SHA-256."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks
        self.size = 0
        self._sha = hashlib.sha256()

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self.size += len(chunk)
            self._sha.update(chunk)
            yield chunk

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()


def peek(chunks: Iterable[bytes], size: int) -> tuple[bytes, Iterator[bytes]]:
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


def limited(chunks: Iterable[bytes], limit: int) -> Iterator[bytes]:
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > limit:
            raise FetchFailed(f"the recording exceeds CALLVAULT_MAX_AUDIO_BYTES ({limit} bytes)")
        yield chunk


def sha256_of(chunks: Iterable[bytes]) -> str:
    sha = hashlib.sha256()
    for chunk in chunks:
        sha.update(chunk)
    return sha.hexdigest()
