"""Replay buffer: exact bytes after an offset, explicit gaps, bounded memory."""

from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.errors import ReplayError
from agent.replay import OutputBuffer, Replay


def test_replay_exact_missed_bytes() -> None:
    buffer = OutputBuffer(capacity=10)
    assert buffer.append(b"abc") == 0
    assert buffer.append(b"def") == 3
    assert buffer.since(3) == Replay(3, b"def", 0)
    assert buffer.since(6) == Replay(6, b"", 0)
    assert buffer.since(0) == Replay(0, b"abcdef", 0)


def test_gap_when_evicted() -> None:
    buffer = OutputBuffer(capacity=4)
    buffer.append(b"abcdef")
    assert buffer.start_offset == 2
    assert buffer.end_offset == 6
    assert buffer.since(1) == Replay(2, b"cdef", 1)
    with pytest.raises(ReplayError):
        buffer.since(7)
    with pytest.raises(ReplayError):
        buffer.since(-1)


@given(
    chunks=st.lists(st.binary(max_size=40), max_size=30),
    capacity=st.integers(1, 64),
    data=st.data(),
)
def test_property_no_loss_no_duplication(
    chunks: list[bytes], capacity: int, data: st.DataObject
) -> None:
    buffer = OutputBuffer(capacity)
    for chunk in chunks:
        buffer.append(chunk)
    everything = b"".join(chunks)
    offset = data.draw(st.integers(0, len(everything)))
    replay = buffer.since(offset)
    assert len(buffer.since(0).data) <= capacity
    assert replay.offset == offset + replay.gap
    assert everything[replay.offset :] == replay.data
    assert replay.gap == max(0, len(everything) - capacity - offset)


def test_full_buffer_is_overwritten_in_place() -> None:
    """Once full, appends write into the ring: no reallocation per append, no
    over-allocation; and the bytes held are still exactly the newest ``capacity``."""
    capacity = 256 * 1024
    buffer = OutputBuffer(capacity)
    chunks = [bytes([i % 251]) * (4096 + 997 * i) for i in range(40)]  # 4..43 KiB
    everything = bytearray()
    for chunk in chunks[:20]:
        buffer.append(chunk)
        everything += chunk
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for chunk in chunks[20:]:
            buffer.append(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    for chunk in chunks[20:]:
        everything += chunk
    assert peak - before < 4096  # sliding a bytearray reallocated ~288 KiB per append
    assert buffer.since(0) == Replay(len(everything) - capacity, bytes(everything[-capacity:]),
                                     len(everything) - capacity)  # fmt: skip
    middle = len(everything) - 1000
    assert buffer.since(middle) == Replay(middle, bytes(everything[middle:]), 0)
    assert buffer.append(b"x" * (capacity + 5)) == len(everything)  # larger than the ring
    assert buffer.since(0).data == b"x" * capacity
