"""Request inflation (rest/v2_codec.inflate): exact across its bounded pieces, and bounded by the limit."""

from __future__ import annotations

import gzip
import random
import zlib

import pytest

from pixelserve.service.errors import InvalidInput, PayloadTooLarge
from pixelserve.service.rest.v2_codec import inflate


def body() -> bytes:
    """Incompressible and highly compressible stretches, so pieces end both on input and on output."""
    rng = random.Random(7)
    return rng.randbytes(700_000) + bytes(3_000_000) + rng.randbytes(300_001)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_inflated_body_is_exactly_the_original(encoding: str) -> None:
    original = body()
    compressed = gzip.compress(original) if encoding == "gzip" else zlib.compress(original)
    assert inflate(compressed, encoding, len(original)) == original


def test_body_inflating_past_the_limit_is_refused() -> None:
    bomb = gzip.compress(bytes(8 * 1024 * 1024))
    with pytest.raises(PayloadTooLarge, match="larger than the limit"):
        inflate(bomb, "gzip", 8 * 1024 * 1024 - 1)


def test_corrupt_gzip_is_invalid_input() -> None:
    compressed = bytearray(gzip.compress(body()))
    compressed[len(compressed) // 2 : len(compressed) // 2 + 64] = bytes(64)
    with pytest.raises(InvalidInput, match="not valid gzip"):
        inflate(bytes(compressed), "gzip", 10 * 1024 * 1024)


def test_identity_is_the_body_itself() -> None:
    original = body()
    assert inflate(original, "identity", len(original)) is original
