"""In-process sliding-window rate limits for login and code verification.

Per broker process: behind several brokers the effective limit is N times the setting
(the per-user lockout in the database is shared, so the hard bound still holds). Memory is
bounded by ``max_keys``: the least recently used keys are dropped first.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

__all__ = ["RateLimiter"]


class RateLimiter:
    def __init__(
        self,
        limit: int,
        window_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        self.limit = limit
        self.window = window_seconds
        self.clock = clock
        self.max_keys = max_keys
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()

    def hit(self, key: str) -> float:
        """Record one attempt; 0 if allowed, else seconds until one would be."""
        now = self.clock()
        hits = self._hits.pop(key, None) or deque()
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        self._hits[key] = hits
        while len(self._hits) > self.max_keys:
            self._hits.popitem(last=False)
        if len(hits) >= self.limit:
            return hits[0] + self.window - now
        hits.append(now)
        return 0.0

    def wait(self, key: str) -> float:
        """Like :meth:`hit` but records nothing: 0 if an attempt would be allowed."""
        now = self.clock()
        hits = self._hits.get(key)
        if not hits:
            return 0.0
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if len(hits) >= self.limit:
            return hits[0] + self.window - now
        return 0.0

    def reset(self, key: str) -> None:
        self._hits.pop(key, None)
