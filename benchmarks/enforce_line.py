"""What the command gate costs: the output hot path and the line read at Enter.

``LineTracker.feed_output`` runs on every output chunk of every terminal, so it must stay
a mark scan and a bounded append; ``read_edit_line`` (pyte) runs once per Enter. This
times both on synthetic bash output (coloured 4 KiB chunks; a prompt with a title escape
and a one-line command, and a 600-character wrapped one).

Prints figures; asserts nothing. Usage::

    .venv/bin/python benchmarks/enforce_line.py
"""

from __future__ import annotations

import platform
import time

from broker.enforce.screen import read_edit_line
from broker.enforce.tracker import PROMPT_END, PROMPT_START, LineTracker

TITLE = b"\x1b]0;u@h: ~\x07"
PROMPT = PROMPT_START + TITLE + b"\x1b[01;32mu@h\x1b[00m:\x1b[01;34m~\x1b[00m$ " + PROMPT_END


def main() -> None:
    print(f"python {platform.python_version()} on {platform.machine()}, {platform.system()}")
    tracker = LineTracker(80)
    chunk = (b"\x1b[01;32mline of coloured output\x1b[0m " * 200)[:4096]
    n = 20000
    start = time.perf_counter()
    for _ in range(n):
        tracker.feed_output(chunk)
    took = time.perf_counter() - start
    print(
        f"feed_output: {n * len(chunk) / took / 1e6:.0f} MB/s, "
        f"{took / n * 1e6:.2f} us per 4 KiB chunk"
    )
    for label, line in (
        ("short line", b"rm -rf /tmp/corral-canary-1 && echo done"),
        ("600-char wrapped line", b"echo " + b"word " * 119),
    ):
        data = PROMPT + line
        runs = 200
        start = time.perf_counter()
        for _ in range(runs):
            read_edit_line(data, len(PROMPT), 80)
        took = (time.perf_counter() - start) / runs
        print(f"read_edit_line, {label}: {took * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
