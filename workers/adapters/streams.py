"""Small stream helpers: turning chunk iterators into file objects and back."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator


class IterReader:
    """A read-only file object over an iterator of byte chunks (for SDKs that want ``read``)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buffer = bytearray()

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            size = len(self._buffer)
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        return out


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
