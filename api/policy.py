"""Policy routes: which policy is in force, reloading it, and exec-mode commands.

``GET /api/v1/policy`` and ``POST /api/v1/policy/reload`` are management actions
(``policy.read`` / ``policy.update``) decided by the policy itself, so a security team
decides who may reload it. ``POST /api/v1/servers/{server}/exec`` runs one command after
an exact policy decision. Thin: authenticate, validate, call the broker, shape the
answer; refusals become problem+json naming the rule and what would be needed.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from api.auth import Principal, authenticate
from api.problems import ApiError, BadRequest, Forbidden
from api.sessions import AgentUnavailable, UnixUser, gateway_of
from api.spec import Model, body_of, operation
from api.state import hub_of, runtime_of, services_of
from broker.agents.hub import AgentOffline
from broker.audit import Category, Outcome
from broker.policy import MfaAges, subject_of
from broker.policy.exec import ExecFailed, ExecGate, ExecRefused
from broker.store.models import TokenScope
from policies import ActionRequest, Decision, Effect
from policies.commands import MAX_LENGTH

__all__ = ["decision_problem", "policy_routes"]

MAX_TIMEOUT = 3600


class PolicyInfo(BaseModel):
    version: str
    """A hash of the policy text in force."""
    backend: str
    file: str
    model_file: str | None
    loaded_at: str


class PolicyReloaded(PolicyInfo):
    reloaded: bool
    changed: bool
    """Whether a new version was swapped in (``false``: the text did not change)."""
    old_version: str


class ExecCommand(Model):
    command: Annotated[str, Field(min_length=1, max_length=MAX_LENGTH)]
    unix_user: UnixUser
    timeout: Annotated[float, Field(strict=True, ge=1, le=MAX_TIMEOUT)] = 60
    """Seconds before the command is killed."""


class ExecResult(BaseModel):
    exit_status: int | None
    signal: int | None
    timed_out: bool
    stdout: str
    stderr: str
    rule_id: str
    """The policy rule that allowed the command."""
    policy_version: str


class CommandDenied(ApiError):
    status, code, title = 403, "policy-denied", "Denied by policy"


class MfaRequired(ApiError):
    status, code, title = 403, "mfa-required", "A recent MFA is required"


class ApprovalRequired(ApiError):
    status, code, title = 409, "approval-required", "An approval is required"


class ExecFailedProblem(ApiError):
    status, code, title = 502, "exec-failed", "The agent could not run the command"


class PolicyRefusedProblem(ApiError):
    status, code, title = 422, "policy-refused", "The candidate policy does not load"


def decision_problem(decision: Decision) -> ApiError:
    """The problem for a decision that is not ``allow``: names the rule and what is needed."""
    extra: dict[str, Any] = {
        "rule_id": decision.rule_id,
        "reason": decision.reason,
        "effect": str(decision.effect),
        "policy_version": decision.version,
    }
    if decision.effect is Effect.REQUIRE_MFA:
        extra["mfa_within"] = decision.mfa_within
        detail = f"an MFA within {decision.mfa_within} s is required ({decision.rule_id})"
        return MfaRequired(detail, **extra)
    if decision.effect is Effect.REQUIRE_APPROVAL:
        extra["approvers"] = list(decision.approvers)
        detail = (
            f"an approval by {' or '.join(decision.approvers)} is required ({decision.rule_id}); "
            "exec requests are not held: ask for the approval, then retry"
        )
        return ApprovalRequired(detail, **extra)
    return CommandDenied(f"denied by {decision.rule_id}: {decision.reason}", **extra)


def _mfa(request: Request) -> MfaAges:
    mfa: MfaAges = request.app.state.mfa
    return mfa


async def _authorize(request: Request, principal: Principal, action: str) -> Decision:
    """Ask the policy whether the principal's role may perform ``action``; audit refusals."""
    services = services_of(request)
    age = await _mfa(request).mfa_age(principal.workspace_id, principal.user.id)
    subject = await subject_of(
        services, principal.workspace_id, principal.user, mfa_age_seconds=age
    )
    decision = runtime_of(request).policy.engine().decide(ActionRequest(subject, action))
    if decision.effect is not Effect.ALLOW:
        await services.audit.emit(
            principal.workspace_id,
            Category.AUTHORIZATION,
            "action.denied",
            outcome=Outcome.DENIED,
            actor=principal.actor,
            target=action,
            details={
                "action": action,
                "effect": str(decision.effect),
                "rule_id": decision.rule_id,
                "reason": decision.reason,
                "policy_version": decision.version,
            },
        )
        raise decision_problem(decision)
    return decision


@operation(summary="The policy in force", tag="policy", ok=PolicyInfo, errors=(403, 409))
async def policy_info(request: Request) -> JSONResponse:
    principal = await authenticate(request, services_of(request))
    await _authorize(request, principal, "policy.read")
    return JSONResponse(runtime_of(request).policy.info())


@operation(
    summary="Reload the policy from its file",
    tag="policy",
    ok=PolicyReloaded,
    scope="admin",
    errors=(409, 422),
)
async def policy_reload(request: Request) -> JSONResponse:
    principal = await authenticate(request, services_of(request))
    if principal.scope is not TokenScope.ADMIN:
        raise Forbidden("reloading the policy needs an admin-scope token")
    await _authorize(request, principal, "policy.update")
    policy = runtime_of(request).policy
    result = await policy.reload(
        trigger="api", actor=principal.actor, workspace_id=principal.workspace_id
    )
    if result.error is not None:
        raise PolicyRefusedProblem(
            f"{result.error}; the previous policy stays in force",
            version=result.old_version,
        )
    return JSONResponse(
        {
            "reloaded": True,
            "changed": result.swapped,
            "version": result.new_version,
            "old_version": result.old_version,
            **{k: v for k, v in policy.info().items() if k != "version"},
        }
    )


@operation(
    summary="Run one command on a server, decided exactly by policy",
    tag="policy",
    body=ExecCommand,
    ok=ExecResult,
    scope="write",
    errors=(409, 502, 503),
)
async def exec_command(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    if principal.scope not in (TokenScope.WRITE, TokenScope.ADMIN):
        raise Forbidden("this needs a token with the write scope")
    asked = await body_of(request, ExecCommand)
    command, unix_user, timeout = asked.command, asked.unix_user, asked.timeout
    if not command.strip():
        raise BadRequest(f"command must be a non-empty string of at most {MAX_LENGTH} characters")
    if "\0" in command:
        raise BadRequest("command must not contain NUL")
    gateway = gateway_of(request.app)
    server = await gateway.find_server(principal.workspace_id, request.path_params["server"])
    gate = ExecGate(services, hub_of(request), runtime_of(request).policy.engine, _mfa(request))
    try:
        out = await gate.run(
            principal.workspace_id,
            principal.user,
            server,
            command,
            unix_user=unix_user,
            timeout=float(timeout),
            actor=principal.actor,
        )
    except ExecRefused as refused:
        raise decision_problem(refused.decision) from None
    except ExecFailed as exc:
        raise ExecFailedProblem(str(exc)) from None
    except AgentOffline:
        raise AgentUnavailable("the server's agent is not connected; try again") from None
    return JSONResponse(
        {
            "exit_status": out.exit_status,
            "signal": out.signal,
            "timed_out": out.timed_out,
            "stdout": out.stdout.decode("utf-8", "replace"),
            "stderr": out.stderr.decode("utf-8", "replace"),
            "rule_id": out.decision.rule_id,
            "policy_version": out.decision.version,
        }
    )


def policy_routes() -> list[BaseRoute]:
    return [
        Route("/api/v1/policy", policy_info, methods=["GET"]),
        Route("/api/v1/policy/reload", policy_reload, methods=["POST"]),
        Route("/api/v1/servers/{server}/exec", exec_command, methods=["POST"]),
    ]
