"""Routes that once compared roles in the handler ask the policy (``api/authz.py``): a
refusal is the policy's problem, audited as ``action.denied`` naming the action; someone
else's thing stays the same 404 as an unknown id (audited too); one's own things are
``*.own.*`` actions every role holds. Admin-scope tokens throughout, so the role decides
(scope refusals: ``test_api_apps.py::test_read_scope_token_cannot_write``)."""

from __future__ import annotations

import json
from typing import Any

from broker.audit import SYSTEM
from tests.broker import test_api_apps
from tests.broker.test_api import assert_problem
from tests.broker.test_api_apps import Api

api = test_api_apps.api  # the same broker, people and tokens as the REST API tests


async def _denied(api: Api, who: str) -> list[str]:
    return [e.target for e in await api.events("action.denied") if e.actor_id == who]


async def test_management_routes_refuse_a_user_through_the_policy(api: Api) -> None:
    _, user = await api.token(api.user)
    staff_token_id, _ = await api.token(api.staff)
    cases: list[tuple[str, str, Any, dict[str, str], str]] = [
        ("POST", "/api/v1/servers/registration-tokens", {}, {}, "servers.register"),
        (
            "PATCH",
            "/api/v1/workspace/security",
            {"mfa_required": True},
            {},
            "workspace.security.update",
        ),
        ("POST", f"/api/v1/users/{api.staff}/mfa/reset", {}, {}, "users.mfa_reset"),
        ("POST", f"/api/v1/users/{api.staff}/disable", {}, {}, "users.update"),
        ("GET", "/api/v1/auth/sessions", None, {"user_id": api.staff}, "users.sessions.read"),
        ("GET", "/api/v1/policy", None, {}, "policy.read"),
        ("GET", "/api/v1/audit/verify", None, {}, "audit.read"),
        ("DELETE", "/api/v1/grants/some-grant", None, {}, "grants.update"),
        ("DELETE", "/api/v1/servers/some-server", None, {}, "servers.update"),
        ("DELETE", f"/api/v1/groups/g/members/{api.staff}", None, {}, "groups.update"),
        ("DELETE", f"/api/v1/tokens/{staff_token_id}", None, {}, "tokens.revoke"),
        ("POST", "/api/v1/auth/invitations", {"email": "x@acme.test"}, {}, "users.invite"),
    ]
    for method, path, body, params, _ in cases:
        answer = await api.call(method, path, user, body, **params)
        problem = assert_problem(answer, 403, "policy-denied")
        assert problem["rule_id"] == "role.not-permitted", (path, problem)
    assert await _denied(api, api.user) == [action for *_, action in cases]
    # Nothing happened: the staff member's token still works, nobody was disabled.
    assert (await api.services.users.get(api.ws, api.staff)).disabled is False
    assert (await api.services.tokens.list(api.ws, user_id=api.staff))[-1].revoked_at is None


async def test_staff_may_what_the_policy_grants_them_and_no_more(api: Api) -> None:
    made = await api.call("POST", "/api/v1/servers/registration-tokens", api.staff_token, {})
    assert made.status_code == 201, made.text
    invited = await api.call(
        "POST", "/api/v1/auth/invitations", api.staff_token, {"email": "new@acme.test"}
    )
    assert invited.status_code == 201, invited.text
    promoted = await api.call(
        "POST",
        "/api/v1/auth/invitations",
        api.staff_token,
        {"email": "boss@acme.test", "role": "staff"},
    )
    assert_problem(promoted, 403, "policy-denied")
    reset = await api.call("POST", f"/api/v1/users/{api.user}/mfa/reset", api.staff_token, {})
    assert_problem(reset, 403, "policy-denied")
    peek = await api.call("GET", "/api/v1/auth/sessions", api.staff_token, user_id=api.user)
    assert peek.status_code == 200 and peek.json() == {"sessions": []}
    assert await _denied(api, api.staff) == ["users.promote", "users.mfa_reset"]


async def test_nobody_resets_their_own_mfa_and_the_refusal_is_audited(api: Api) -> None:
    own = await api.call("POST", f"/api/v1/users/{api.root}/mfa/reset", api.root_token, {})
    assert_problem(own, 403, "forbidden")
    (event,) = await api.events("action.denied")
    assert event.target == "users.mfa_reset" and json.loads(event.details)["reason"] == "own mfa"
    other = await api.call("POST", f"/api/v1/users/{api.user}/mfa/reset", api.root_token, {})
    assert other.status_code == 200, other.text


async def test_approvals_own_or_by_policy(api: Api) -> None:
    """A user sees and decides only approvals they asked for or are named on; anyone
    else's is a 404, audited once, as the action the policy refused; staff see all."""
    _, user = await api.token(api.user)
    theirs = await api.services.approvals.request(
        api.ws, requester_id=api.root, command="reboot", approvers=[api.staff]
    )
    mine = await api.services.approvals.request(
        api.ws, requester_id=api.user, command="reboot", approvers=[api.staff]
    )
    listed = await api.call("GET", "/api/v1/approvals", user)
    assert [a["id"] for a in listed.json()["approvals"]] == [mine.id]
    assert (await api.call("GET", f"/api/v1/approvals/{mine.id}", user)).status_code == 200
    assert_problem(await api.call("GET", f"/api/v1/approvals/{theirs.id}", user), 404, "not-found")
    approve = await api.call("POST", f"/api/v1/approvals/{theirs.id}/approve", user, {})
    assert_problem(approve, 404, "not-found")
    assert await _denied(api, api.user) == ["approvals.read", "approvals.decide"]
    # Each hidden refusal is one event, the denial with its rule, not also an api.not_found.
    assert [e for e in await api.events("api.not_found") if e.actor_id == api.user] == []
    every = await api.call("GET", "/api/v1/approvals", api.staff_token)
    assert {a["id"] for a in every.json()["approvals"]} == {mine.id, theirs.id}
    decided = await api.call("POST", f"/api/v1/approvals/{theirs.id}/approve", api.staff_token, {})
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "approved"


async def test_a_policy_rule_reaches_ones_own_things_too(api: Api) -> None:
    """Own things are policy actions like any other: ``deny.suspended`` (an action rule
    for ``*``) stops a suspended person listing even their own sessions and approvals."""
    _, user = await api.token(api.user)
    assert (await api.call("GET", "/api/v1/sessions", user)).status_code == 200
    group = await api.services.groups.create(api.ws, "suspended")
    await api.services.groups.add_member(api.ws, group.id, api.user, actor=SYSTEM)
    for path in ("/api/v1/sessions", "/api/v1/approvals", "/api/v1/recordings"):
        problem = assert_problem(await api.call("GET", path, user), 403, "policy-denied")
        assert problem["rule_id"] == "deny.suspended"
    assert await _denied(api, api.user) == [
        "sessions.own.read",
        "approvals.own.read",
        "sessions.own.recordings.read",
    ]
