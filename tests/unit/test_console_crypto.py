"""Random access into the segmented AES-GCM format: any byte range decrypts to exactly the
plaintext's bytes while fetching only the segments that hold it, and tampering is caught."""

from __future__ import annotations

import os
import random

import pytest

from workers.adapters import crypto
from workers.adapters.crypto import SEGMENT, IntegrityError

RID = "6f1c8a52-3c1e-4f53-9a57-2b9e4c1d0a11"


def sealed(plain: bytes) -> tuple[bytes, bytes]:
    dek = crypto.new_data_key()
    return dek, b"".join(crypto.encrypt_stream(dek, RID, [plain]))


def read(dek: bytes, cipher: bytes, size: int, start: int, end: int) -> bytes:
    span = crypto.segment_span(size, start, end)
    header = cipher[: crypto.HEADER_SIZE]
    window = cipher[span.cipher_offset : span.cipher_offset + span.cipher_length]
    assert len(window) == span.cipher_length  # never past the end of the object
    chunks = [window[i : i + 7000] for i in range(0, len(window), 7000)]
    return b"".join(crypto.decrypt_range(dek, RID, header, chunks, span))


@pytest.mark.parametrize("size", [1, 100, SEGMENT - 1, SEGMENT, SEGMENT + 1, 3 * SEGMENT, 200_000])
def test_every_range_reads_the_plaintext_bytes(size: int) -> None:
    plain = os.urandom(size)
    dek, cipher = sealed(plain)
    assert len(cipher) == crypto.ciphertext_size(size)
    chooser = random.Random(size)
    ranges = [(0, size - 1), (size - 1, size - 1), (0, 0)]
    for _ in range(20):
        start = chooser.randrange(size)
        ranges.append((start, chooser.randrange(start, size)))
    for start, end in ranges:
        assert read(dek, cipher, size, start, end) == plain[start : end + 1], (start, end)


def test_only_the_segments_of_the_range_are_fetched() -> None:
    span = crypto.segment_span(10 * SEGMENT, 5 * SEGMENT + 10, 5 * SEGMENT + 20)
    assert span.first == 5
    assert span.cipher_length == SEGMENT + crypto.TAG


def test_a_tampered_or_swapped_segment_is_refused() -> None:
    plain = os.urandom(3 * SEGMENT)
    dek, cipher = sealed(plain)
    span = crypto.segment_span(len(plain), SEGMENT, SEGMENT + 5)
    flipped = bytearray(cipher)
    flipped[span.cipher_offset + 3] ^= 1
    with pytest.raises(IntegrityError):
        read(dek, bytes(flipped), len(plain), SEGMENT, SEGMENT + 5)
    # segment 2 served where segment 1 was asked for (its counter is in the nonce)
    shifted = cipher[: span.cipher_offset] + cipher[span.cipher_offset + span.cipher_length :]
    with pytest.raises(IntegrityError):
        read(dek, shifted + b"\0" * span.cipher_length, len(plain), SEGMENT, SEGMENT + 5)


def test_a_range_outside_the_plaintext_is_an_error() -> None:
    with pytest.raises(ValueError, match="outside"):
        crypto.segment_span(100, 50, 100)
