"""The session output buffer against the obvious model: keep every byte, serve the last
``limit`` of them by absolute offset."""

from __future__ import annotations

import random

import pytest

from broker.gateway.buffer import OutputBuffer


@pytest.mark.parametrize("limit", [1, 7, 64, 1000, 20000])
def test_matches_a_keep_everything_model(limit: int) -> None:
    rng = random.Random(limit)
    buffer = OutputBuffer(limit)
    everything = bytearray()
    for _ in range(500):
        sizes = [0, 1, 3, 4095, 4096, 5000, limit // 2 + 1, limit, 2 * limit + 5]
        chunk = rng.randbytes(rng.choice(sizes))
        buffer.append(chunk if rng.random() < 0.8 else bytearray(chunk))
        everything += chunk
        assert buffer.end == len(everything)
        assert buffer.start == max(0, len(everything) - limit)
        assert buffer.held <= max(limit + limit // 2, 2 * 4096)
        for offset in (0, buffer.start - 1, buffer.start, rng.randint(0, buffer.end), buffer.end):
            size = rng.randint(1, 2 * limit)
            begin = max(offset, buffer.start)
            assert buffer.read(offset, size) == bytes(everything[begin : begin + size])


def test_holds_at_most_one_and_a_half_limits() -> None:
    buffer = OutputBuffer(1000)
    for _ in range(100):
        buffer.append(b"x" * 333)
        assert buffer.held <= 1500
    assert buffer.read(buffer.start, 5000) == b"x" * 1000


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        OutputBuffer(0)


def test_a_whole_chunk_is_served_without_a_copy() -> None:
    buffer = OutputBuffer(1 << 20)
    chunk = b"y" * 65536
    buffer.append(b"x" * 10)
    buffer.append(chunk)
    assert buffer.read(10, 65536) is chunk
