"""A session's recent output, addressed by absolute byte offset.

Offsets count every output byte since the session started, so a client that held
``offset`` bytes gets exactly ``read(offset)`` onward: nothing lost, nothing doubled. Only
the last ``limit`` bytes are served; a client further behind than that cannot be.

The buffer keeps the chunks it was given, not a copy: a terminal streaming ``cat`` hands
it 64 KiB chunks the pump has already received, and copying each into one ``bytearray``
(and moving that along as old output is dropped) cost about a fifth of the broker's CPU
per MB (``benchmarks/gateway_vs_ssh.py``). Small chunks (keystroke echoes) are gathered
into a tail that becomes one chunk once it is a few KiB, so a megabyte of echoes is not a
million objects. Dropping old output drops whole chunks; a chunk mostly older than
``start`` is cut down to its live part, so at most about one and a half ``limit`` is held.
Nothing before ``start`` is ever readable, whatever is still held.
"""

from __future__ import annotations

from bisect import bisect_right

__all__ = ["OutputBuffer"]

#: Chunks at least this big are kept as they are; smaller ones are gathered.
SEAL = 4096


class OutputBuffer:
    def __init__(self, limit: int = 1024 * 1024) -> None:
        if limit < 1:
            raise ValueError("limit must be positive")
        self.limit = limit
        self._slack = max(1, limit // 2)
        self._seal = max(1, min(SEAL, limit // 2))
        #: Offset just past the newest byte (= total bytes ever appended).
        self.end = 0
        self._chunks: list[bytes] = []  # oldest first
        self._starts: list[int] = []  # the offset of each chunk
        self._tail = bytearray()  # small appends not yet made a chunk
        self._tail_start = 0
        self._trim_at = _NEVER  # the end - limit at which the oldest chunk must go or shrink

    @property
    def start(self) -> int:
        """Offset of the oldest byte still served."""
        first = self._starts[0] if self._starts else self._tail_start
        return max(first, self.end - self.limit)

    @property
    def held(self) -> int:
        """Bytes held (served or not yet dropped)."""
        return (
            self._tail_start
            - (self._starts[0] if self._starts else self._tail_start)
            + len(self._tail)
        )

    def append(self, data: bytes) -> None:
        size = len(data)
        if size >= self._seal:
            if self._tail:
                self._seal_tail()
            self._add_chunk(data if type(data) is bytes else bytes(data))
            self._tail_start += size
        elif size:
            tail = self._tail
            tail += data
            if len(tail) >= self._seal:
                self._seal_tail()
        self.end += size
        if self.end - self.limit >= self._trim_at:
            self._trim()

    def read(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes from ``offset`` (clamped to what is still held)."""
        offset = max(offset, self.start)
        stop = min(offset + size, self.end)
        if stop <= offset:
            return b""
        tail_start = self._tail_start
        if offset >= tail_start:
            with memoryview(self._tail) as view:  # one copy, not a slice and then bytes
                return bytes(view[offset - tail_start : stop - tail_start])
        starts, chunks = self._starts, self._chunks
        index = bisect_right(starts, offset) - 1
        at = starts[index]
        first = chunks[index]
        if stop <= at + len(first):
            return first[offset - at : stop - at]  # the chunk itself when it is all of it
        pieces = [first[offset - at :]]
        got = len(pieces[0])
        for chunk in chunks[index + 1 :]:
            if got >= stop - offset:
                break
            pieces.append(chunk[: stop - offset - got])
            got += len(pieces[-1])
        if got < stop - offset:
            pieces.append(bytes(self._tail[: stop - offset - got]))
        return b"".join(pieces)

    def _seal_tail(self) -> None:
        tail = bytes(self._tail)
        self._tail.clear()
        self._add_chunk(tail)
        self._tail_start += len(tail)

    def _add_chunk(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._starts.append(self._tail_start)
        if len(self._chunks) == 1:
            self._plan_trim()

    def _trim(self) -> None:
        """Drop chunks wholly before ``start``; cut the oldest down to its live part when
        most of it is dead (at most ``limit // 2`` dead bytes stay held)."""
        low = self.end - self.limit
        chunks, starts = self._chunks, self._starts
        drop = 0
        while drop < len(chunks) and starts[drop] + len(chunks[drop]) <= low:
            drop += 1
        if drop:
            del chunks[:drop]
            del starts[:drop]
        if chunks and low - starts[0] > self._slack:
            chunks[0] = chunks[0][low - starts[0] :]
            starts[0] = low
        self._plan_trim()

    def _plan_trim(self) -> None:
        if not self._chunks:
            self._trim_at = _NEVER
            return
        first = self._starts[0]
        self._trim_at = min(first + len(self._chunks[0]), first + self._slack + 1)


_NEVER = 1 << 62
