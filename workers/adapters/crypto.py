"""Envelope encryption of audio at rest, and signatures on deletion certificates.

Each recording gets a fresh 256-bit data key (DEK). Audio is sealed with AES-256-GCM in
64 KiB segments (the STREAM construction: a random nonce prefix, a segment counter and a
last-segment flag in every nonce, the header and recording id as associated data), so it is
encrypted and authenticated while streaming, and truncation, reordering or a swap between
recordings is detected. The DEK is stored only wrapped by the master key; destroying the
wrapped DEK makes every surviving copy of the ciphertext unreadable (crypto-shredding).
"""

from __future__ import annotations

import base64
import json
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..domain.errors import IntegrityError

MAGIC = b"CVA1"
SEGMENT = 64 * 1024
TAG = 16
_PREFIX = 7
_HEADER = struct.Struct(">4sI7s")
_WRAP_VERSION = b"\x01"


class Aead(Protocol):
    """AES-256-GCM under a key: :class:`AESGCM` over bytes in this process, or a key object in a
    PKCS#11 token. ``decrypt`` raises ``InvalidTag`` or :class:`IntegrityError` when the
    ciphertext does not authenticate."""

    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes: ...

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes: ...


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def wrap_key(master: Aead, dek: bytes, recording_id: str) -> bytes:
    nonce = os.urandom(12)
    sealed = master.encrypt(nonce, dek, b"dek:" + recording_id.encode())
    return _WRAP_VERSION + nonce + sealed


def unwrap_key(master: Aead, wrapped: bytes, recording_id: str) -> bytes:
    if not wrapped.startswith(_WRAP_VERSION):
        raise IntegrityError("unknown wrapped-key version")
    nonce, sealed = wrapped[1:13], wrapped[13:]
    try:
        return master.decrypt(nonce, sealed, b"dek:" + recording_id.encode())
    except InvalidTag as exc:
        raise IntegrityError("wrapped data key failed authentication") from exc


class TextSealer:
    """Seals staff's free text (a hold's reason and case reference) at rest under the current
    master key's text AEAD; ``context`` (the row's id) binds a sealed value to its row. Text
    sealed under another configured master key still opens (until ``callvault keys rotate``
    seals it anew)."""

    def __init__(self, current: Aead, *others: Aead) -> None:
        self._aead = current
        self._all = (current, *others)

    def seal(self, text: str, context: str) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, text.encode(), b"text:" + context.encode())

    def open(self, sealed: bytes, context: str) -> str:
        for aead in self._all:
            try:
                plain = aead.decrypt(sealed[:12], sealed[12:], b"text:" + context.encode())
            except (InvalidTag, IntegrityError):
                continue
            return plain.decode()
        raise IntegrityError("sealed text failed authentication")


def seal_json(dek: bytes, recording_id: str, value: dict[str, Any]) -> bytes:
    nonce = os.urandom(12)
    plain = json.dumps(value, separators=(",", ":")).encode()
    return nonce + AESGCM(dek).encrypt(nonce, plain, b"customer:" + recording_id.encode())


def open_json(dek: bytes, recording_id: str, sealed: bytes) -> dict[str, Any]:
    try:
        plain = AESGCM(dek).decrypt(sealed[:12], sealed[12:], b"customer:" + recording_id.encode())
    except InvalidTag as exc:
        raise IntegrityError("sealed customer data failed authentication") from exc
    value: dict[str, Any] = json.loads(plain)
    return value


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    return prefix + struct.pack(">IB", counter, 1 if last else 0)


def _segments(chunks: Iterable[bytes], size: int) -> Iterator[tuple[bytes, bool]]:
    """Re-cut a stream into fixed-size segments, flagging the last (possibly empty) one."""
    buffer = bytearray()
    pending: bytes | None = None
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= size:
            if pending is not None:
                yield pending, False
            pending = bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        if pending is not None:
            yield pending, False
        yield bytes(buffer), True
    else:
        yield (pending if pending is not None else b""), True


def encrypt_stream(dek: bytes, recording_id: str, chunks: Iterable[bytes]) -> Iterator[bytes]:
    prefix = os.urandom(_PREFIX)
    header = _HEADER.pack(MAGIC, SEGMENT, prefix)
    aad = header + recording_id.encode()
    aead = AESGCM(dek)
    yield header
    for counter, (segment, last) in enumerate(_segments(chunks, SEGMENT)):
        yield aead.encrypt(_nonce(prefix, counter, last), segment, aad)


def decrypt_stream(dek: bytes, recording_id: str, chunks: Iterable[bytes]) -> Iterator[bytes]:
    stream = iter(_segments_with_header(chunks))
    header = next(stream, (b"", True))[0]
    if len(header) != _HEADER.size:
        raise IntegrityError("ciphertext too short")
    magic, size, prefix = _HEADER.unpack(header)
    if magic != MAGIC:
        raise IntegrityError("not a callvault ciphertext")
    aad = header + recording_id.encode()
    aead = AESGCM(dek)
    for counter, (segment, last) in enumerate(_segments(_rest(stream), size + TAG)):
        try:
            yield aead.decrypt(_nonce(prefix, counter, last), segment, aad)
        except InvalidTag as exc:
            raise IntegrityError(f"segment {counter} failed authentication") from exc


def _segments_with_header(chunks: Iterable[bytes]) -> Iterator[tuple[bytes, bool]]:
    """The header as the first item, then the remaining bytes as they come."""
    buffer = bytearray()
    source = iter(chunks)
    for chunk in source:
        buffer += chunk
        if len(buffer) >= _HEADER.size:
            break
    yield bytes(buffer[: _HEADER.size]), False
    if len(buffer) > _HEADER.size:
        yield bytes(buffer[_HEADER.size :]), False
    for chunk in source:
        yield chunk, False


def _rest(stream: Iterator[tuple[bytes, bool]]) -> Iterator[bytes]:
    for chunk, _ in stream:
        yield chunk


def ciphertext_size(plain_size: int) -> int:
    segments = max(1, -(-plain_size // SEGMENT))
    return _HEADER.size + plain_size + segments * TAG


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


# console: random access to a byte range of the plaintext, so a player can seek in a one-hour
# call while only the segments holding the range are fetched and decrypted.
HEADER_SIZE = _HEADER.size


@dataclass(frozen=True)
class SegmentSpan:
    """Which ciphertext bytes hold plaintext bytes ``start..end`` (inclusive)."""

    first: int  # first segment holding the range
    total: int  # segments in the whole ciphertext (the last one is flagged in its nonce)
    cipher_offset: int  # where segment ``first`` starts in the ciphertext
    cipher_length: int  # ciphertext bytes from segment ``first`` to the last one needed
    skip: int  # plaintext bytes of segment ``first`` before the range starts
    length: int  # plaintext bytes in the range


def segment_span(plain_size: int, start: int, end: int) -> SegmentSpan:
    if not 0 <= start <= end < plain_size:
        raise ValueError("range outside the plaintext")
    total = max(1, -(-plain_size // SEGMENT))
    first, last = start // SEGMENT, end // SEGMENT
    last_length = min(SEGMENT, plain_size - last * SEGMENT) + TAG
    return SegmentSpan(
        first=first,
        total=total,
        cipher_offset=_HEADER.size + first * (SEGMENT + TAG),
        cipher_length=(last - first) * (SEGMENT + TAG) + last_length,
        skip=start - first * SEGMENT,
        length=end - start + 1,
    )


def decrypt_range(
    dek: bytes, recording_id: str, header: bytes, chunks: Iterable[bytes], span: SegmentSpan
) -> Iterator[bytes]:
    """The plaintext of ``span`` from the ciphertext of its segments (``chunks``, starting at
    ``span.cipher_offset``); each segment is authenticated before a byte of it is returned."""
    if len(header) != _HEADER.size:
        raise IntegrityError("ciphertext too short")
    magic, size, prefix = _HEADER.unpack(header)
    if magic != MAGIC or size != SEGMENT:
        raise IntegrityError("not a callvault ciphertext")
    aad = header + recording_id.encode()
    aead = AESGCM(dek)
    skip, remaining = span.skip, span.length
    for counter, (segment, _) in enumerate(_segments(chunks, size + TAG), start=span.first):
        try:
            plain = aead.decrypt(_nonce(prefix, counter, counter == span.total - 1), segment, aad)
        except InvalidTag as exc:
            raise IntegrityError(f"segment {counter} failed authentication") from exc
        piece = plain[skip : skip + remaining]
        skip, remaining = 0, remaining - len(piece)
        if piece:
            yield piece
        if remaining <= 0:
            return
    if remaining > 0:
        raise IntegrityError("ciphertext ended before the range")
