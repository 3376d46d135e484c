"""The roles matrix of the REST API (docs/api.md, "Roles") is what the shipped policy
decides, on both backends: every action ``api/authz.py`` asks about, for each role, with a
fresh MFA. A policy edit that changes who may do what fails here until the docs follow."""

from __future__ import annotations

import pytest

from api.authz import ACTIONS
from policies import ActionRequest, Effect, Role, Subject, load_casbin, load_polar

U, S, SU = "user", "staff", "superuser"

#: action -> the roles allowed (docs/api.md's table).
MATRIX: dict[str, set[str]] = {
    "workspace.read": {S, SU},
    "workspace.settings.update": {SU},
    "workspace.security.update": {SU},
    "workspace.delete": {SU},
    "users.read": {S, SU},
    "users.invite": {S, SU},
    "users.update": {S, SU},
    "users.promote": {SU},
    "groups.read": {S, SU},
    "groups.update": {S, SU},
    "servers.read": {U, S, SU},
    "servers.groups.read": {S, SU},
    "servers.update": {S, SU},
    "grants.read": {S, SU},
    "grants.update": {S, SU},
    "tokens.own.read": {U, S, SU},
    "tokens.own.create": {U, S, SU},
    "tokens.own.revoke": {U, S, SU},
    "tokens.read": {S, SU},
    "tokens.revoke": {S, SU},
    "service_accounts.read": {S, SU},
    "service_accounts.update": {S, SU},
    "service_accounts.tokens": {S, SU},
    "audit.read": {S, SU},
    "sso.read": {S, SU},
    "sso.update": {SU},
    "servers.register": {S, SU},
    "servers.connect": {U, S, SU},
    "users.mfa_reset": {SU},
    "users.sessions.read": {S, SU},
    "users.own.password": {U, S, SU},
    "users.own.sessions.read": {U, S, SU},
    "users.own.sessions.revoke": {U, S, SU},
    "sessions.own.read": {U, S, SU},
    "sessions.own.attach": {U, S, SU},
    "sessions.own.terminate": {U, S, SU},
    "sessions.own.share": {U, S, SU},
    "sessions.own.recordings.read": {U, S, SU},
    "sessions.shared.watch": {U, S, SU},
    "sessions.shared.join": {U, S, SU},
    "sessions.read": {S, SU},
    "sessions.terminate": {S, SU},
    "sessions.share": {S, SU},
    "sessions.observe": {S, SU},
    "sessions.recordings.read": {S, SU},
    "approvals.own.read": {U, S, SU},
    "approvals.own.decide": {U, S, SU},
    "approvals.read": {S, SU},
    "approvals.decide": {S, SU},
    "policy.read": {S, SU},
    "policy.update": {SU},
}


def test_matrix_covers_every_action() -> None:
    assert set(MATRIX) == set(ACTIONS)


@pytest.mark.parametrize("load", [load_polar, load_casbin], ids=["polar", "casbin"])
def test_shipped_policy_decides_the_matrix(load: object) -> None:
    engine = load()  # type: ignore[operator]
    for action, allowed in MATRIX.items():
        for role in (U, S, SU):
            subject = Subject("someone", Role(role), (), 10.0)
            decision = engine.decide(ActionRequest(subject, action))
            assert (decision.effect is Effect.ALLOW) == (role in allowed), (action, role, decision)
