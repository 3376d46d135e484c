"""Turn ``MetricsSampler`` readings into the websh ``metrics`` message.

The sampler reports percentages for humans; the wire message carries absolute bytes
(memory and the root filesystem) so the broker can chart and alert on its own terms.
This module must never raise because a source is missing: a host that hides ``/proc``
details reports zeros rather than no heartbeat.
"""

from __future__ import annotations

import os
import time

from agent.sysinfo import MetricsSampler
from websh import Metrics

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

__all__ = ["MetricsSource"]


def _meminfo(proc: str) -> dict[str, int]:
    values: dict[str, int] = {}
    try:
        with open(os.path.join(proc, "meminfo"), encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, rest = line.partition(":")
                parts = rest.split()
                if parts and parts[0].isdigit():
                    values[key] = int(parts[0]) * 1024
    except OSError:
        pass
    return values


def _clamp(value: object, low: float, high: float) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
        return float(min(max(value, low), high))
    return low


class MetricsSource:
    """Callable producing one ``Metrics`` message per call (CPU measured between calls)."""

    def __init__(
        self,
        proc: str = "/proc",
        root: str = "/",
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._proc = proc
        self._root = root
        self._sampler = MetricsSampler(proc)
        self._wall_clock = wall_clock

    def __call__(self) -> Metrics:
        sample = self._sampler.sample()
        memory = _meminfo(self._proc)
        mem_total = memory.get("MemTotal", 0)
        mem_used = max(0, mem_total - memory.get("MemAvailable", mem_total))
        try:
            stat = os.statvfs(self._root)
            disk_total = stat.f_blocks * stat.f_frsize
            disk_used = disk_total - stat.f_bfree * stat.f_frsize
        except OSError:
            disk_total = disk_used = 0
        load = tuple(_clamp(sample.get(key), 0.0, 1e6) for key in ("load1", "load5", "load15"))
        return Metrics(
            ts=self._wall_clock(),
            cpu=_clamp(sample.get("cpu_percent"), 0.0, 100.0),
            mem_used=mem_used,
            mem_total=mem_total,
            disk_used=max(0, disk_used),
            disk_total=max(0, disk_total),
            load=(load[0], load[1], load[2]),
        )
