"""One suite, every implementation: the Polar and Casbin backends and the compiled path."""

from __future__ import annotations

import pytest

from policies import PolicyEngine, compile_engine, load_casbin, load_polar
from policies.engine import RuleEngine


@pytest.fixture(scope="session")
def polar_engine() -> RuleEngine:
    return load_polar()


@pytest.fixture(scope="session")
def casbin_engine() -> RuleEngine:
    return load_casbin()


@pytest.fixture(scope="session", params=["polar", "casbin", "compiled-polar", "compiled-casbin"])
def engine(request: pytest.FixtureRequest) -> PolicyEngine:
    base: RuleEngine = request.getfixturevalue(
        "casbin_engine" if "casbin" in request.param else "polar_engine"
    )
    return compile_engine(base) if request.param.startswith("compiled") else base
