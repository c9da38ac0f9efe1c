"""The S3 adapter's stream reader: the SDK reads a multipart upload's parts from it, so any
chunking of a stream must come back as reads of exactly the size asked (the last shorter),
without loss, and a part read ahead can be put back - so that one part at a time is held."""

from __future__ import annotations

import random

import pytest

from workers.adapters.s3 import _Reader


def reads(chunks: list[bytes], size: int) -> list[bytes]:
    reader, found = _Reader(chunks), []
    while part := reader.read(size):
        found.append(part)
    return found


@pytest.mark.parametrize("seed", range(5))
def test_any_chunking_is_read_in_full_parts_without_loss(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(2000):
        size = rng.randint(1, 20)
        chunks = [bytes([rng.randrange(256)]) * rng.randint(0, 9) for _ in range(rng.randint(0, 8))]
        parts = reads(chunks, size)
        assert b"".join(parts) == b"".join(chunks)
        assert all(len(p) == size for p in parts[:-1])
        assert all(parts)


def test_a_part_read_ahead_is_read_again_first() -> None:
    reader = _Reader([b"abcd", b"efgh", b"ij"])
    first = reader.read(5)
    assert first == b"abcde"
    reader.push_back(first)
    assert reader.read(6) == b"abcdef"
    assert reader.read(-1) == b"ghij"
    assert reader.read(4) == b""


def test_a_chunk_of_exactly_the_size_is_handed_on_as_it_is() -> None:
    chunk = b"x" * 8
    assert reads([chunk, b"y"], 8)[0] is chunk  # no copy of a whole part
