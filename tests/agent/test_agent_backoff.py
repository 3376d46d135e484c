"""Reconnect backoff: full jitter, bounded, resets after a stable minute, obeys hints."""

from __future__ import annotations

import random

from agent.backoff import Backoff


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def upper(low: float, high: float) -> float:
    """A "random" source that always picks the top of the range."""
    return high


def test_first_retry_within_a_second() -> None:
    rng = random.Random(1)
    for _ in range(200):
        assert 0.0 <= Backoff(uniform=rng.uniform).next_delay() <= 1.0


def test_ceiling_doubles_then_caps_at_60() -> None:
    backoff = Backoff(uniform=upper)
    ceilings = [backoff.next_delay() for _ in range(10)]
    assert ceilings == [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]
    for _ in range(1000):  # no overflow however long the broker stays down
        assert backoff.next_delay() == 60


def test_full_jitter_spreads_over_whole_range() -> None:
    rng = random.Random(7)
    delays = []
    for _ in range(2000):
        backoff = Backoff(uniform=rng.uniform)
        for _ in range(8):
            delay = backoff.next_delay()
        delays.append(delay)
    assert min(delays) < 3
    assert max(delays) > 57
    assert all(0 <= d <= 60 for d in delays)
    assert 25 < sum(delays) / len(delays) < 35  # mean of U(0, 60)


def test_resets_only_after_stable_minute() -> None:
    clock = Clock()
    backoff = Backoff(uniform=upper, clock=clock)
    for _ in range(5):
        backoff.next_delay()
    backoff.connected()
    clock.now += 59
    assert backoff.next_delay() == 32  # dropped too soon: keep backing off
    backoff.connected()
    clock.now += 60
    assert backoff.next_delay() == 1  # was stable for a minute: start over


def test_retry_after_hint_honoured_with_small_jitter() -> None:
    rng = random.Random(3)
    backoff = Backoff(uniform=rng.uniform)
    for _ in range(100):
        delay = backoff.next_delay(retry_after=30)
        assert 30 <= delay <= 33
    assert 0 <= Backoff(uniform=rng.uniform).next_delay(retry_after=-5) <= 1
    assert Backoff(uniform=upper).next_delay(retry_after=10**9) <= 3600 + 5
