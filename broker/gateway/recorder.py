"""Asciicast v2 recordings, written while the session runs.

One JSON header line, then one ``[seconds, code, data]`` line per event: ``"o"`` output,
``"r"`` resize (``"COLSxROWS"``), ``"m"`` marker. Output bytes are decoded as UTF-8
incrementally, so a character split across two chunks is written whole. Writes go to a
buffered file that is flushed at most one second after the first unflushed event: a broker
crash loses at most the last second. Stock ``asciinema play``/``cat`` read the result.

Every line is byte for byte what ``json.dumps([elapsed, code, data], ensure_ascii=False)``
gives. A large chunk of valid UTF-8 (``cat`` of a log, a build's output) is escaped as
bytes: JSON only escapes ASCII bytes (UTF-8 never uses them inside a multi-byte character),
so a few ``bytes.replace`` passes do what decoding, ``json``'s escaping of every character
and encoding back would (a third of the CPU per MB, ``benchmarks/gateway_vs_ssh.py``).
Anything else (small chunks, invalid or split UTF-8, rare control characters) takes the
decoder and ``json``'s own C escaper.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["AsciicastRecorder"]

FLUSH_AFTER = 1.0
#: A JSON string literal, UTF-8 kept as is (the C encoder json.dumps itself uses).
_encode_string: Callable[[str], str] = json.encoder.encode_basestring
#: Below this many bytes the per-byte escaping passes cost more than they save.
_BYTES_PATH_MIN = 512
#: Control characters terminal output is full of, with json's escapes for them
#: (backslash first: the later escapes add backslashes that must stay single).
_COMMON_ESCAPES = (
    (b"\\", b"\\\\"),
    (b'"', b'\\"'),
    (b"\n", b"\\n"),
    (b"\r", b"\\r"),
    (b"\t", b"\\t"),
    (b"\x08", b"\\b"),
    (b"\x0c", b"\\f"),
    (b"\x1b", b"\\u001b"),
    (b"\x07", b"\\u0007"),
)
#: The other control characters: rare, so a chunk holding one takes the general path.
_RARE = tuple(bytes((c,)) for c in range(0x20) if bytes((c,)) not in b"\n\r\t\x08\x0c\x1b\x07")


def _escape_utf8(data: bytes) -> bytes | None:
    """The inside of the JSON string literal for ``data`` (valid UTF-8 not cut short), or
    None when it holds a rare control character."""
    for rare in _RARE:
        if rare in data:
            return None
    for raw, escaped in _COMMON_ESCAPES:
        data = data.replace(raw, escaped)  # the same object back when absent: no copy
    return data


class AsciicastRecorder:
    def __init__(
        self,
        path: Path,
        *,
        cols: int,
        rows: int,
        env: dict[str, str] | None = None,
        title: str = "",
        flush_after: float = FLUSH_AFTER,
    ) -> None:
        self.path = path
        self.flush_after = flush_after
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._file: IO[bytes] | None = path.open("wb", buffering=64 * 1024)
        path.chmod(0o600)
        self._started = time.monotonic_ns()
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._split = False  # the decoder holds the start of a character
        self._flush_handle: asyncio.TimerHandle | None = None
        header: dict[str, Any] = {
            "version": 2,
            "width": cols,
            "height": rows,
            "timestamp": int(time.time()),
            "env": {"TERM": "xterm-256color", "SHELL": "/bin/bash", **(env or {})},
        }
        if title:
            header["title"] = title
        self._write((json.dumps(header, ensure_ascii=False) + "\n").encode("utf-8"))
        self.flush()

    def output(self, data: bytes) -> None:
        if not self._split:
            if data.isascii():
                if len(data) < _BYTES_PATH_MIN:
                    self._text_event("o", data.decode("ascii"))
                    return
                body = _escape_utf8(data)
            elif len(data) >= _BYTES_PATH_MIN and _whole_utf8(data):
                body = _escape_utf8(data)
            else:
                body = None
            if body is not None:
                self._event(b"o", body)
                return
        text = self._decoder.decode(data)
        self._split = bool(self._decoder.getstate()[0])
        if text:
            self._text_event("o", text)

    def resize(self, cols: int, rows: int) -> None:
        self._text_event("r", f"{cols}x{rows}")

    def marker(self, label: str) -> None:
        self._text_event("m", label)

    def close(self) -> int:
        """Flush what is left and close; returns the file's size in bytes."""
        if self._file is not None:
            tail = self._decoder.decode(b"", final=True)
            if tail:
                self._text_event("o", tail)
            self._file.close()
            self._file = None
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        return self.path.stat().st_size

    def flush(self) -> None:
        self._flush_handle = None
        if self._file is not None:
            self._file.flush()

    def _text_event(self, code: str, data: str) -> None:
        elapsed = self._elapsed()
        line = f'[{elapsed!r}, "{code}", {_encode_string(data)}]\n'
        self._write(line.encode("utf-8", "replace"))
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(self.flush_after, self.flush)

    def _event(self, code: bytes, body: bytes) -> None:
        """One line, as json.dumps([elapsed, code, data], ensure_ascii=False) writes it;
        ``body`` is the escaped inside of the data string, UTF-8."""
        elapsed = self._elapsed()
        head = b'[%a, "%b", "' % (elapsed, code)
        if len(body) > _BYTES_PATH_MIN:
            self._write(head)
            self._write(body)  # not copied into one line first
            self._write(b'"]\n')
        else:
            self._write(head + body + b'"]\n')
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(self.flush_after, self.flush)

    def _elapsed(self) -> float:
        """Seconds since the start, to the microsecond: what ``round(seconds, 6)`` gives,
        from integer nanoseconds (``round`` with digits costs half an echo's line)."""
        return (time.monotonic_ns() - self._started + 500) // 1000 / 1e6

    def _write(self, data: bytes) -> None:
        if self._file is not None:
            self._file.write(data)


def _whole_utf8(data: bytes) -> bool:
    """Valid UTF-8 that does not end inside a character (the decoder handles the rest)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
