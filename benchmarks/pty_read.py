"""How fast Python can read a pty, by way of reading: the ceiling under the agent's output path.

``cat`` of a large text file runs in a fresh pty (``pty.fork``, so the line discipline turns
``\\n`` into ``\\r\\n`` as in a terminal session); this process reads the master until the end
and prints MB/s (10^6 bytes of terminal output per second) for three readers, interleaved
per run so load hits them alike:

* ``select + read 1 MiB``: what ``gateway_vs_ssh.py``'s measuring script does for its
  "local bash (pty)" row (it must wait with a timeout between paths);
* ``blocking read 64 KiB``: ``os.read`` in a loop, no ``select``;
* ``blocking readv``: ``os.readv`` into one reused 64 KiB buffer (no new ``bytes`` per read),
  as the agent reads, but blocking instead of non-blocking under ``epoll``.

The agent's pipeline (read, frame, mask, encrypt, send on one thread) has to stay under the
fastest of these. Prints figures; asserts nothing. Usage::

    .venv/bin/python benchmarks/pty_read.py [--size-mb 200] [--runs 3]
"""

# Harness code: blocking calls are the point.

from __future__ import annotations

import argparse
import os
import pty
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

Reader = Callable[[int], int]


def select_read(fd: int) -> int:
    import select

    select.select([fd], [], [], None)
    return len(os.read(fd, 1 << 20))


def blocking_read(fd: int) -> int:
    return len(os.read(fd, 65536))


def make_readv() -> Reader:
    view = memoryview(bytearray(65536))

    def blocking_readv(fd: int) -> int:
        return os.readv(fd, (view,))

    return blocking_readv


def rate(reader: Reader, path: Path) -> float:
    """MB/s of ``cat path`` read through a pty master by ``reader``."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: cat on the pty's slave side
        os.execvp("cat", ["cat", str(path)])
    total = 0
    start = time.perf_counter()
    try:
        while True:
            try:
                count = reader(fd)
            except OSError:  # EIO: cat exited and the slave side closed
                break
            if not count:
                break
            total += count
    finally:
        took = time.perf_counter() - start
        os.close(fd)
        os.waitpid(pid, 0)
    return total / took / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size-mb", type=int, default=200, help="size of the file to cat")
    parser.add_argument("--runs", type=int, default=3, help="runs per reader")
    args = parser.parse_args()
    readers: dict[str, Reader] = {
        "select + read 1 MiB": select_read,
        "blocking read 64 KiB": blocking_read,
        "blocking readv 64 KiB": make_readv(),
    }
    with tempfile.TemporaryDirectory(prefix="corral-ptyread-") as tmp:
        path = Path(tmp) / "data.txt"
        line = (b"0123456789abcdefghijklmnopqrstuvwxyz" * 2)[:75] + b"\n"
        with path.open("wb") as out:
            out.write(line * (args.size_mb * 1_000_000 // len(line)))
        load = os.getloadavg()[0]
        print(
            f"pty_read: cat of a {args.size_mb} MB file through a pty, {args.runs} runs per "
            f"reader, interleaved; {os.cpu_count()} CPUs; load average {load:.2f}"
        )
        rates: dict[str, list[float]] = {name: [] for name in readers}
        for _ in range(args.runs):
            for name, reader in readers.items():
                rates[name].append(rate(reader, path))
        runs = " ".join(f"{'run ' + str(i + 1):>7}" for i in range(args.runs))
        print(f"{'reader':<24} {runs} {'median':>7}")
        for name, values in rates.items():
            print(
                f"{name:<24} "
                + " ".join(f"{v:>7.1f}" for v in values)
                + f" {statistics.median(values):>7.1f}"
            )


if __name__ == "__main__":
    main()
