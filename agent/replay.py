"""A bounded buffer of a terminal's recent output, addressed by absolute byte offset.

When the broker's data connection drops and comes back, the broker says "I have
everything up to offset X" and the agent sends exactly the bytes after X: nothing lost,
nothing doubled. Offsets count every byte the terminal ever produced, so they stay valid
while the buffer slides. When the broker is so far behind that the bytes were already
evicted, the replay says so with an explicit ``gap`` instead of pretending.

This module must never grow beyond its capacity: a chatty terminal with no broker
attached would otherwise eat the agent's memory budget.
"""

from __future__ import annotations

from collections import namedtuple

from agent.errors import ReplayError

__all__ = ["OutputBuffer", "Replay"]


TYPE_CHECKING = False
if TYPE_CHECKING:  # typing.NamedTuple for mypy; collections.namedtuple (no typing) at run time
    from typing import NamedTuple

    class Replay(NamedTuple):
        """Bytes from ``offset`` to the end; ``gap`` bytes before ``offset`` are lost."""

        offset: int
        data: bytes
        gap: int

else:
    Replay = namedtuple("Replay", "offset data gap")
    Replay.__doc__ = "Bytes from ``offset`` to the end; ``gap`` bytes before ``offset`` are lost."


class OutputBuffer:
    """Keeps the last ``capacity`` bytes and the running total of bytes appended.

    Until ``capacity`` bytes have arrived they sit in a growing ``bytearray`` (a quiet
    terminal costs only what it printed). From then on they live in a ring of exactly
    ``capacity`` bytes, overwritten in place. Sliding a ``bytearray`` instead (delete the
    oldest bytes, append the newest) reallocated it on almost every append, one-eighth
    over-allocated: 288 KiB blocks churning through malloc for every streaming terminal,
    which left the busy agent's heap larger than the bytes it held.
    """

    def __init__(self, capacity: int = 256 * 1024) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self._capacity = capacity
        self._data = bytearray()
        #: Once ``_data`` is the full ring: a view of it to write through (assigning to a
        #: ``bytearray`` slice copies the bytes into a temporary first), and the index of
        #: its oldest byte.
        self._ring: memoryview | None = None
        self._head = 0
        self._end = 0

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def end_offset(self) -> int:
        """Total bytes ever appended: the offset just past the newest byte."""
        return self._end

    @property
    def start_offset(self) -> int:
        """Offset of the oldest byte still held."""
        return self._end - len(self._data)

    def append(self, data: bytes) -> int:
        """Add ``data``; return the offset of its first byte."""
        start = self._end
        size = len(data)
        self._end += size
        capacity = self._capacity
        view = memoryview(data)
        ring = self._ring
        if ring is None:
            held = len(self._data)
            if held + size < capacity:
                self._data += data
                return start
            # The first fill: the newest ``capacity`` bytes, oldest first, in an exact ring.
            kept = capacity - min(size, capacity)  # older bytes that stay (<= held here)
            full = bytearray(capacity)
            ring = memoryview(full)
            ring[:kept] = memoryview(self._data)[held - kept :]
            ring[kept:] = view[size - (capacity - kept) :]
            self._data, self._ring, self._head = full, ring, 0
            return start
        if size >= capacity:
            ring[:] = view[size - capacity :]
            self._head = 0
            return start
        head = self._head
        first = min(size, capacity - head)
        ring[head : head + first] = view[:first]
        if first < size:
            ring[: size - first] = view[first:]
        self._head = (head + size) % capacity
        return start

    def _newest(self, count: int) -> bytes:
        """The newest ``count`` bytes held (``count <= len(self._data)``), oldest first."""
        data = self._ring
        if data is None:
            return bytes(self._data[len(self._data) - count :])
        held = len(data)
        first = (self._head + held - count) % held
        if first + count <= held:
            return bytes(data[first : first + count])
        return b"".join((data[first:], data[: count - (held - first)]))

    def since(self, offset: int) -> Replay:
        """Everything after ``offset``, or everything held plus a ``gap`` if evicted.

        Raises ``ReplayError`` when ``offset`` is negative or beyond ``end_offset``: the
        peer claims bytes that were never produced, so its state cannot be trusted.
        """
        if offset < 0 or offset > self._end:
            raise ReplayError(f"replay offset {offset} outside [0, {self._end}]")
        start = self.start_offset
        if offset < start:
            return Replay(start, self._newest(len(self._data)), start - offset)
        return Replay(offset, self._newest(self._end - offset), 0)
