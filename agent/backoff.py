"""Reconnect delays for the agent's outbound connection.

When a broker restarts, thousands of agents lose their connection in the same second. If
they all retry on the same schedule they arrive as a thundering herd, again and again.
So delays use exponential backoff with FULL jitter (uniform over ``[0, min(cap, base *
2**attempt)]``), the first retry comes within a second, the ceiling is one minute, the
attempt count resets once a connection has stayed up for a minute, and a broker that says
"retry after N seconds" is obeyed (N plus a little jitter).

This module must never sleep or read the real clock directly: the randomness and the
clock are constructor parameters so that tests and the event loop stay deterministic.
"""

from __future__ import annotations

import random
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

__all__ = ["Backoff"]


class Backoff:
    """State machine that answers "how long until the next connection attempt?".

    Call ``connected()`` when a connection is established, and ``next_delay()`` each time
    a connection attempt fails or an established connection drops.
    """

    def __init__(
        self,
        *,
        base: float = 1.0,
        cap: float = 60.0,
        stable_after: float = 60.0,
        max_hint: float = 3600.0,
        uniform: Callable[[float, float], float] = random.uniform,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if base <= 0 or cap < base:
            raise ValueError("need 0 < base <= cap")
        self._base = base
        self._cap = cap
        self._stable_after = stable_after
        self._max_hint = max_hint
        self._uniform = uniform
        self._clock = clock
        self._attempt = 0
        self._connected_at: float | None = None

    @property
    def attempt(self) -> int:
        """Consecutive failures since the last reset."""
        return self._attempt

    def connected(self) -> None:
        """Record that a connection is up; it counts as stable after ``stable_after``."""
        self._connected_at = self._clock()

    def reset(self) -> None:
        """Forget past failures (the next delay is again at most ``base`` seconds)."""
        self._attempt = 0

    def next_delay(self, retry_after: float | None = None) -> float:
        """Seconds to wait before the next attempt.

        ``retry_after`` is the broker's hint (for example from an overload close reason);
        it is honoured, clamped to ``[0, max_hint]``, plus up to 10 % jitter (at least
        one second's worth, at most five) so hinted agents still spread out.
        """
        if self._connected_at is not None:
            if self._clock() - self._connected_at >= self._stable_after:
                self._attempt = 0
            self._connected_at = None
        attempt = self._attempt
        self._attempt += 1
        if retry_after is not None and retry_after == retry_after:  # NaN is no hint
            hint = min(max(float(retry_after), 0.0), self._max_hint)
            spread = min(5.0, max(1.0, hint * 0.1))
            return hint + self._uniform(0.0, spread)
        ceiling = min(self._cap, self._base * 2.0 ** min(attempt, 62))
        return self._uniform(0.0, ceiling)
