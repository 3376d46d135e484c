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
    """Keeps the last ``capacity`` bytes and the running total of bytes appended."""

    def __init__(self, capacity: int = 256 * 1024) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self._capacity = capacity
        self._data = bytearray()
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
        self._end += len(data)
        if len(data) >= self._capacity:
            self._data = bytearray(data[-self._capacity :])
        else:
            # make room first, so the buffer never grows past its capacity (a pty burst
            # of 64 KiB would otherwise take the allocation to capacity + 64 KiB)
            excess = len(self._data) + len(data) - self._capacity
            if excess > 0:
                del self._data[:excess]
            self._data += data
        return start

    def since(self, offset: int) -> Replay:
        """Everything after ``offset``, or everything held plus a ``gap`` if evicted.

        Raises ``ReplayError`` when ``offset`` is negative or beyond ``end_offset``: the
        peer claims bytes that were never produced, so its state cannot be trusted.
        """
        if offset < 0 or offset > self._end:
            raise ReplayError(f"replay offset {offset} outside [0, {self._end}]")
        start = self.start_offset
        if offset < start:
            return Replay(start, bytes(self._data), start - offset)
        return Replay(offset, bytes(self._data[offset - start :]), 0)
