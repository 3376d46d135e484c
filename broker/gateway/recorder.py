"""Asciicast v2 recordings, written while the session runs.

One JSON header line, then one ``[seconds, code, data]`` line per event: ``"o"`` output,
``"r"`` resize (``"COLSxROWS"``), ``"m"`` marker. Output bytes are decoded as UTF-8
incrementally, so a character split across two chunks is written whole. Writes go to a
buffered file that is flushed at most one second after the first unflushed event: a broker
crash loses at most the last second. Stock ``asciinema play``/``cat`` read the result.
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
        self._file: IO[str] | None = path.open("w", encoding="utf-8", buffering=64 * 1024)
        path.chmod(0o600)
        self._started = time.monotonic()
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
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
        self._write(json.dumps(header, ensure_ascii=False) + "\n")
        self.flush()

    def output(self, data: bytes) -> None:
        text = self._decoder.decode(data)
        if text:
            self._event("o", text)

    def resize(self, cols: int, rows: int) -> None:
        self._event("r", f"{cols}x{rows}")

    def marker(self, label: str) -> None:
        self._event("m", label)

    def close(self) -> int:
        """Flush what is left and close; returns the file's size in bytes."""
        if self._file is not None:
            tail = self._decoder.decode(b"", final=True)
            if tail:
                self._event("o", tail)
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

    def _event(self, code: str, data: str) -> None:
        # The same line json.dumps([elapsed, code, data], ensure_ascii=False) writes, without
        # building an encoder per event: this runs for every chunk a terminal prints.
        elapsed = round(time.monotonic() - self._started, 6)
        self._write(f'[{elapsed!r}, "{code}", {_encode_string(data)}]\n')
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(self.flush_after, self.flush)

    def _write(self, line: str) -> None:
        if self._file is not None:
            self._file.write(line)
