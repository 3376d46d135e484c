"""Listings for people (aligned columns) and for scripts (``--json``: the broker's own
objects, one JSON document on stdout).

Broker text goes through :func:`cell` before it reaches a terminal: control characters
(escape sequences a hostile server name or command could carry) are shown escaped.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["Column", "cell", "print_json", "print_table", "write_all"]

MAX_CELL = 60


def cell(value: Any, limit: int = MAX_CELL) -> str:
    """One table cell: printable, one line, at most ``limit`` characters."""
    if value is None:
        text = "-"
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, dict):
        text = ",".join(f"{k}={v}" for k, v in sorted(value.items())) or "-"
    elif isinstance(value, list):
        text = ",".join(str(v) for v in value) or "-"
    else:
        text = str(value)
    text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


Column = tuple[str, Callable[[dict[str, Any]], Any]]


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[Column], empty: str) -> None:
    """Aligned columns with a header; ``empty`` (on stderr) when there is nothing."""
    if not rows:
        print(empty, file=sys.stderr)
        return
    table = [[title for title, _ in columns]]
    table += [[cell(get(row)) for _, get in columns] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    for line in table:
        print(
            "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip()
        )


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is out (a terminal may take a chunk at a time)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
