"""The shipped example decision table (policies.test.yaml) passes on every engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.policy.cases import Case, check_case, load_cases
from policies import PolicyEngine

CASES = load_cases(Path(__file__).resolve().parents[2] / "policies.test.yaml")


def test_the_example_covers_every_effect_and_request_kind() -> None:
    assert len(CASES) >= 25
    assert len({c.effect for c in CASES}) == 4
    assert len({type(c.request) for c in CASES}) == 3


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_example_case(engine: PolicyEngine, case: Case) -> None:
    assert check_case(case, engine.decide(case.request)) is None
