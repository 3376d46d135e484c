"""A session's recent output, addressed by absolute byte offset.

Offsets count every output byte since the session started, so a client that held
``offset`` bytes gets exactly ``read(offset)`` onward: nothing lost, nothing doubled. Only
the last ``limit`` bytes are kept; a client further behind than that cannot be served.
"""

from __future__ import annotations

__all__ = ["OutputBuffer"]


class OutputBuffer:
    def __init__(self, limit: int = 1024 * 1024) -> None:
        if limit < 1:
            raise ValueError("limit must be positive")
        self.limit = limit
        self._data = bytearray()
        self.start = 0  # offset of self._data[0]

    @property
    def end(self) -> int:
        """Offset just past the newest byte (= total bytes ever appended)."""
        return self.start + len(self._data)

    def append(self, data: bytes) -> None:
        self._data += data
        excess = len(self._data) - self.limit
        if excess > 0:
            del self._data[:excess]
            self.start += excess

    def read(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes from ``offset`` (clamped to what is still held)."""
        index = max(offset, self.start) - self.start
        return bytes(self._data[index : index + size])
