"""The command decision on the hot path, measured with pytest-benchmark (issue #5's target:
p99 <= 50 us with 1,000 grants and 100 command rules, cold cache).

Same synthetic policy and requests as ``policy_decide.py``; every round decides one fresh
request (a new subject, server and line), so nothing is answered from a cache. Run with

    .venv/bin/pytest benchmarks/test_policy_decide.py -p no:cacheprovider

(not part of the test suite: `testpaths` is `tests`). The p99 is printed from the rounds'
own timings, since pytest-benchmark's table stops at the median and IQR.
"""

from __future__ import annotations

import itertools
import random
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from policy_decide import requests, session_requests, synthetic_policy

from policies import compile_engine
from policies.polar_backend import polar_from_text
from policies.render import render_polar

ROUNDS = 20_000


def _engine_and_requests(hot: bool) -> tuple[Any, list[Any]]:
    rng = random.Random(7)
    data = synthetic_policy(rng)
    engine = compile_engine(polar_from_text(render_polar(data), "<synthetic>"))
    reqs = session_requests(rng, ROUNDS) if hot else requests(rng, ROUNDS)
    return engine, reqs


def _run(benchmark: Any, hot: bool) -> None:
    engine, reqs = _engine_and_requests(hot)
    fresh = itertools.cycle(reqs)
    benchmark.pedantic(
        engine.decide, setup=lambda: ((next(fresh),), {}), rounds=ROUNDS, iterations=1
    )
    data = sorted(benchmark.stats.stats.data)
    p99 = statistics.quantiles(data, n=100, method="inclusive")[98] * 1e6
    median = statistics.median(data) * 1e6
    benchmark.extra_info.update({"median_us": round(median, 1), "p99_us": round(p99, 1)})
    print(f"\n{'hot' if hot else 'cold'}: median {median:.1f} us, p99 {p99:.1f} us")


def test_decide_fresh_subject_server_and_line(benchmark: Any) -> None:
    _run(benchmark, hot=False)


def test_decide_inside_open_sessions(benchmark: Any) -> None:
    _run(benchmark, hot=True)
