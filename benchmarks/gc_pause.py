"""How long a full garbage collection stops a started broker, with and without the
start-up heap frozen (``broker.serving.freeze_startup_heap``, which ``corral up`` calls).

A full collection walks every object the collector tracks; while it runs the broker serves
nothing (no keystroke, echo or agent message). Starts a real broker in this process
(SQLite, no agents), then times ``gc.collect()`` three times, freezes, and times it again.
Prints figures; asserts nothing. Usage::

    .venv/bin/python benchmarks/gc_pause.py
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import tempfile
import time
from pathlib import Path

from _broker import running_broker

from broker.serving import freeze_startup_heap


def full_collections(count: int = 3) -> tuple[float, int]:
    """Median milliseconds of ``count`` full collections, and the objects tracked."""
    took = []
    for _ in range(count):
        start = time.perf_counter()
        gc.collect()
        took.append((time.perf_counter() - start) * 1000)
    return statistics.median(took), len(gc.get_objects())


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
        async with running_broker(Path(tmp) / "broker"):
            gc.collect()  # start-up's own garbage first
            before, tracked = full_collections()
            freeze_startup_heap()
            after, left = full_collections()
    print(f"{'full collection of a started broker':<40} {'median':>10} {'tracked':>10}")
    print(f"{'as started':<40} {before:>7.1f} ms {tracked:>10}")
    print(f"{'start-up heap frozen':<40} {after:>7.1f} ms {left:>10}")


if __name__ == "__main__":
    asyncio.run(main())
