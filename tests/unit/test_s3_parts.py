"""The part cutter of the S3 adapter: a stream of any chunking becomes parts of exactly the
part size (the last shorter), joined without loss, and the first part says whether it is the
only one - so a multipart upload holds one part at a time."""

from __future__ import annotations

import random

import pytest

from workers.adapters.s3 import _parts


def cut(chunks: list[bytes], size: int) -> tuple[bool, list[bytes]]:
    parts = _parts(chunks, size)
    single = parts.single()
    return single, list(parts)


@pytest.mark.parametrize("seed", range(5))
def test_any_chunking_is_cut_into_full_parts_without_loss(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(2000):
        size = rng.randint(1, 20)
        chunks = [bytes([rng.randrange(256)]) * rng.randint(0, 9) for _ in range(rng.randint(0, 8))]
        single, parts = cut(chunks, size)
        assert b"".join(parts) == b"".join(chunks)
        assert all(len(p) == size for p in parts[:-1])
        assert parts
        assert len(parts) == 1 or parts[-1]  # no empty part after a full one
        assert single == (len(parts) == 1)


def test_an_empty_stream_is_one_empty_part() -> None:
    assert cut([], 8) == (True, [b""])
    assert cut([b"", b""], 8) == (True, [b""])


def test_a_stream_of_exactly_one_part_is_single() -> None:
    assert cut([b"abcd", b"efgh", b""], 8) == (True, [b"abcdefgh"])
    assert cut([b"abcdefgh", b"i"], 8) == (False, [b"abcdefgh", b"i"])
