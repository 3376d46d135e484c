"""One place that decides whether a caller may perform an API action: ``authorize``.

Two checks, both audited when they refuse:

1. **Token scope** (read < write < admin). Every action has a required scope in
   :data:`ACTIONS`; a browser session counts as ``admin`` (roles still apply). A
   read-scope token cannot write, whatever its owner's role.
2. **Role, through the policy engine.** The question ``ActionRequest(subject, action)``
   goes to the policy in force (Polar or Casbin, the same ``permission(...)`` facts and
   ``kind "action"`` rules such as step-up MFA), so a security team changes who may do what
   in ``policies.polar``, not in handlers.

Actions a caller performs on their own things (tokens, password, browser and terminal
sessions, approvals) are ``*.own.*`` actions, so the policy can grant them to every role;
handlers pick the action by ownership, never by comparing roles themselves. A route that
serves both asks the ``*.own.*`` action first (so a too-small token is refused before any
lookup), then, for someone else's thing, the wider action with ``hidden`` (a refusal is
the same 404 as an unknown id, audited). Lists widen with :func:`permits`.

This module must never grant anything the policy did not: no role names appear here.
"""

from __future__ import annotations

from starlette.requests import Request

from api.auth import Principal
from api.decisions import decision_problem
from api.problems import ApiError, Forbidden
from api.spec import Scope
from api.state import runtime_of, services_of
from broker.audit import Category, Outcome
from broker.policy import MfaAges, subject_of
from broker.store.models import TokenScope
from policies import ActionRequest, Decision, Effect

__all__ = ["ACTIONS", "authorize", "permits", "refuse", "scope_allows"]

#: Every action the REST API asks about, and the token scope it needs.
ACTIONS: dict[str, Scope] = {
    "workspace.read": "read",
    "workspace.settings.update": "admin",
    "workspace.security.update": "admin",
    "workspace.delete": "admin",
    "users.read": "read",
    "users.invite": "admin",
    "users.update": "admin",
    "users.promote": "admin",
    "groups.read": "read",
    "groups.update": "admin",
    "servers.read": "read",
    "servers.groups.read": "read",
    "servers.update": "admin",
    "grants.read": "read",
    "grants.update": "admin",
    "tokens.own.read": "read",
    "tokens.own.create": "write",
    "tokens.own.revoke": "write",
    "tokens.read": "read",
    "tokens.revoke": "admin",
    "service_accounts.read": "read",
    "service_accounts.update": "admin",
    "service_accounts.tokens": "admin",
    "audit.read": "read",
    "sso.read": "read",
    "sso.update": "admin",
    "servers.register": "write",
    "servers.connect": "write",
    "users.mfa_reset": "admin",
    "users.sessions.read": "admin",
    "users.own.password": "write",
    "users.own.sessions.read": "read",
    "users.own.sessions.revoke": "write",
    "sessions.own.read": "read",
    "sessions.own.attach": "write",
    "sessions.own.terminate": "write",
    "sessions.own.share": "write",
    "sessions.own.recordings.read": "read",
    "sessions.shared.watch": "read",
    "sessions.shared.join": "write",
    "sessions.read": "read",
    "sessions.terminate": "write",
    "sessions.share": "write",
    "sessions.observe": "read",
    "sessions.recordings.read": "read",
    "approvals.own.read": "read",
    "approvals.own.decide": "write",
    "approvals.read": "read",
    "approvals.decide": "write",
    "policy.read": "read",
    "policy.update": "admin",
}

_RANK = {TokenScope.READ: 0, TokenScope.WRITE: 1, TokenScope.ADMIN: 2}


def scope_allows(held: TokenScope, needed: Scope) -> bool:
    return _RANK[held] >= _RANK[TokenScope(needed)]


async def refuse(request: Request, principal: Principal, action: str, **details: object) -> None:
    """Audit a refused ``action`` (``action.denied``, outcome denied)."""
    await services_of(request).audit.emit(
        principal.workspace_id,
        Category.AUTHORIZATION,
        "action.denied",
        outcome=Outcome.DENIED,
        actor=principal.actor,
        target=action,
        details={"action": action, "path": request.url.path[:200], **details},
    )


async def _decide(request: Request, principal: Principal, action: str) -> Decision:
    """The policy's answer for the principal's role (and groups, MFA age) and ``action``."""
    services = services_of(request)
    mfa: MfaAges = request.app.state.mfa
    age = await mfa.mfa_age(principal.workspace_id, principal.user.id)
    subject = await subject_of(
        services, principal.workspace_id, principal.user, mfa_age_seconds=age
    )
    return runtime_of(request).policy.engine().decide(ActionRequest(subject, action))


async def permits(request: Request, principal: Principal, action: str) -> bool:
    """Whether ``action`` would be allowed, without refusing or auditing anything.

    For *widening* an answer the caller gets anyway (a list of one's own sessions that
    becomes the workspace's for staff); a refusal goes through :func:`authorize`."""
    if not scope_allows(principal.scope, ACTIONS[action]):
        return False
    return (await _decide(request, principal, action)).effect is Effect.ALLOW


async def authorize(
    request: Request,
    principal: Principal,
    action: str,
    resource: str = "",
    *,
    hidden: ApiError | None = None,
) -> Decision:
    """Allow ``action`` (on ``resource``, for the audit) or raise the audited refusal:
    403 ``forbidden`` for a too-small token scope, else the policy's own problem
    (``policy-denied``, ``mfa-required``, ``approval-required``).

    ``hidden`` replaces a policy *denial* with the given problem (a 404) where saying
    "forbidden" would reveal that someone else's thing exists; it is audited all the same,
    once, as the denial (with the policy's rule), not again as ``api.not_found``.
    """
    needed = ACTIONS[action]  # an unknown action is a programming error: fail loudly
    if not scope_allows(principal.scope, needed):
        await refuse(
            request,
            principal,
            action,
            reason="token scope",
            scope=str(principal.scope),
            needed=needed,
            resource=resource,
        )
        raise Forbidden(f"this needs a token with the {needed} scope", needed_scope=needed)
    decision = await _decide(request, principal, action)
    if decision.effect is not Effect.ALLOW:
        await refuse(
            request,
            principal,
            action,
            effect=str(decision.effect),
            rule_id=decision.rule_id,
            reason=decision.reason,
            policy_version=decision.version,
            resource=resource,
        )
        if hidden is not None and decision.effect is Effect.DENY:
            request.state.refusal_audited = True  # the 404 is not audited a second time
            raise hidden
        raise decision_problem(decision)
    return decision
