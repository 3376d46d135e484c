"""Policy routes: which policy is in force, reloading it, and exec-mode commands.

``GET /api/v1/policy`` and ``POST /api/v1/policy/reload`` are management actions
(``policy.read`` / ``policy.update``) decided by the policy itself, so a security team
decides who may reload it. ``POST /api/v1/servers/{server}/exec`` runs one command after
an exact policy decision. Thin: authenticate, validate, call the broker, shape the
answer; refusals become problem+json naming the rule and what would be needed.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from api.auth import authenticate
from api.authz import authorize
from api.decisions import decision_problem
from api.problems import ApiError, BadRequest
from api.sessions import AgentUnavailable, UnixUser, gateway_of
from api.spec import Model, body_of, operation
from api.state import hub_of, runtime_of, services_of
from broker.agents.errors import AgentOffline
from broker.policy import MfaAges, PolicyRuntime
from broker.policy.exec import ExecFailed, ExecGate, ExecRefused
from policies import ReloadResult
from policies.commands import MAX_LENGTH

__all__ = ["PolicyRefusedProblem", "PolicyReloaded", "policy_routes", "reloaded"]

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


class ExecFailedProblem(ApiError):
    status, code, title = 502, "exec-failed", "The agent could not run the command"


class PolicyRefusedProblem(ApiError):
    status, code, title = 422, "policy-refused", "The candidate policy does not load"


def _mfa(request: Request) -> MfaAges:
    mfa: MfaAges = request.app.state.mfa
    return mfa


@operation(summary="The policy in force", tag="policy", ok=PolicyInfo, errors=(403, 409))
async def policy_info(request: Request) -> JSONResponse:
    principal = await authenticate(request, services_of(request))
    await authorize(request, principal, "policy.read")
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
    await authorize(request, principal, "policy.update")
    policy = runtime_of(request).policy
    result = await policy.reload(
        trigger="api", actor=principal.actor, workspace_id=principal.workspace_id
    )
    return reloaded(policy, result)


def reloaded(policy: PolicyRuntime, result: ReloadResult) -> JSONResponse:
    """The :class:`PolicyReloaded` answer, or the 422 of a refused candidate."""
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
    await authorize(request, principal, "servers.connect", request.path_params["server"][:128])
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
