"""Device-code login routes (RFC 8628 shape): start, poll, approve and deny over JSON.

``POST /api/v1/auth/device`` starts a grant (no authentication: the terminal has nothing
yet), ``POST /api/v1/auth/device/token`` is polled with the device code, and a signed-in
person approves or denies the user code with ``POST /api/v1/auth/device/approve|deny``
(bearer token, or browser cookie + CSRF) or the HTML form at ``/device``. An approved
grant becomes an ordinary personal access token (scope ``write``, 90 days, named
``corral login on <client>``) owned by the approver; every decision, refusal and issue is
audited in the approver's workspace.

A read-scope token cannot approve: the grant would mint a write token from it.

It must never issue a token for a grant nobody approved, nor issue one twice. The browser
form at ``/device`` is :mod:`api.device_page`.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from api.auth import Principal, authenticate, client_source
from api.authz import authorize
from api.problems import ApiError, NotFoundProblem, TooManyRequests
from api.spec import Model, body_of, operation
from api.state import runtime_of, services_of
from broker.audit import Actor, Category, Outcome
from broker.store.models import TokenScope
from idp.device import DeviceGrant, DeviceGrants, DevicePollRefused, normalise_user_code

__all__ = ["decide", "device_of", "device_routes"]

TOKEN_DAYS = 90


def device_of(request: Request) -> DeviceGrants:
    """The app's pending grants (one set per broker process; tests inject theirs)."""
    grants: DeviceGrants | None = getattr(request.app.state, "device", None)
    if grants is None:
        grants = request.app.state.device = DeviceGrants()
    return grants


class _DeviceProblem(ApiError):
    status = 400
    code: ClassVar[str]


class AuthorizationPending(_DeviceProblem):
    code, title = "authorization-pending", "Waiting for approval"


class SlowDown(_DeviceProblem):
    code, title = "slow-down", "Polling too fast"


class ExpiredToken(_DeviceProblem):
    code, title = "expired-token", "The device code expired"


class AccessDenied(_DeviceProblem):
    code, title = "access-denied", "The login was denied"


_POLL_PROBLEMS: dict[str, type[ApiError]] = {
    "authorization-pending": AuthorizationPending,
    "slow-down": SlowDown,
    "expired-token": ExpiredToken,
    "access-denied": AccessDenied,
}


class DeviceStart(Model):
    client_name: str = Field(default="", max_length=64, pattern=r"^([A-Za-z0-9][A-Za-z0-9._-]*)?$")


class DeviceStarted(BaseModel):
    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str
    interval: int
    expires_in: int


class DeviceTokenRequest(Model):
    device_code: str = Field(min_length=1, max_length=200)


class _UserOut(BaseModel):
    id: str
    email: str
    role: str


class _WorkspaceOut(BaseModel):
    id: str
    name: str


class DeviceToken(BaseModel):
    token: str
    token_id: str
    expires_at: str | None
    user: _UserOut
    workspace: _WorkspaceOut


class DeviceDecision(Model):
    user_code: str = Field(min_length=1, max_length=32)


class DeviceDecided(BaseModel):
    approved: bool
    client_name: str


@operation(
    summary="Start a device-code login",
    tag="auth",
    body=DeviceStart,
    ok=DeviceStarted,
    authenticated=False,
    errors=(400, 429),
    description="RFC 8628: show user_code and verification_uri to the person, then poll "
    "/api/v1/auth/device/token every `interval` seconds.",
)
async def start(request: Request) -> JSONResponse:
    grants = device_of(request)
    data = await body_of(request, DeviceStart)
    wait = grants.starts.hit(client_source(request))
    if wait:
        raise TooManyRequests(
            "too many device logins from here; try again later", retry_after=int(wait) + 1
        )
    try:
        device_code, grant = grants.start(data.client_name or "a terminal")
    except DevicePollRefused as exc:
        raise TooManyRequests(exc.detail, retry_after=60) from None
    base = runtime_of(request).settings.effective_public_url
    return JSONResponse(
        DeviceStarted(
            device_code=device_code,
            user_code=grant.display_code,
            verification_uri=f"{base}/device",
            verification_uri_complete=f"{base}/device?user_code={grant.display_code}",
            interval=grant.interval,
            expires_in=grants.ttl_seconds,
        ).model_dump()
    )


@operation(
    summary="Poll for the token of a device-code login",
    tag="auth",
    body=DeviceTokenRequest,
    ok=DeviceToken,
    authenticated=False,
    errors=(400,),
    description="400 problems with code authorization-pending, slow-down (wait `interval` s "
    "more), expired-token or access-denied; 200 once, with the new token.",
)
async def token(request: Request) -> JSONResponse:
    services = services_of(request)
    data = await body_of(request, DeviceTokenRequest)
    try:
        grant = device_of(request).poll(data.device_code)
    except DevicePollRefused as exc:
        extra = {"interval": exc.interval} if exc.interval is not None else {}
        raise _POLL_PROBLEMS[exc.code](exc.detail, **extra) from None
    actor = Actor("user", grant.user_id, grant.credential_id)
    row, secret = await services.tokens.create(
        grant.workspace_id,
        grant.user_id,
        name=f"corral login on {grant.client_name}",
        scope=TokenScope.WRITE,
        expires_in_days=TOKEN_DAYS,
        actor=actor,
    )
    await services.audit.emit(
        grant.workspace_id,
        Category.AUTHENTICATION,
        "device.token_issued",
        actor=actor,
        target=row.id,
        details={"client_name": grant.client_name, "source": client_source(request)},
    )
    user = await services.users.get(grant.workspace_id, grant.user_id)
    workspace = await services.workspaces.get(grant.workspace_id)
    return JSONResponse(
        DeviceToken(
            token=secret,
            token_id=row.id,
            expires_at=row.expires_at.isoformat() if row.expires_at else None,
            user=_UserOut(id=user.id, email=user.email, role=str(user.role)),
            workspace=_WorkspaceOut(id=workspace.id, name=workspace.name),
        ).model_dump()
    )


async def decide(
    request: Request, principal: Principal, user_code: str, *, approve: bool
) -> DeviceGrant:
    """Approve or deny for ``principal``; refusals (unknown code, rate limit) are audited."""
    services = services_of(request)
    grants = device_of(request)
    shown = normalise_user_code(user_code)[:16]
    wait = grants.attempts.hit(principal.user.id)
    grant = None if wait else grants.pending(user_code)
    if grant is None:
        reason = "rate limited" if wait else "unknown or expired user code"
        await services.audit.emit(
            principal.workspace_id,
            Category.AUTHENTICATION,
            "device.refused",
            outcome=Outcome.DENIED,
            actor=principal.actor,
            target=shown,
            details={"reason": reason, "source": client_source(request)},
        )
        if wait:
            raise TooManyRequests(
                "too many device approvals; try again later", retry_after=int(wait) + 1
            )
        raise NotFoundProblem(
            "no pending login with that code; check the code in your terminal, or start again"
        )
    grants.decide(
        user_code,
        approve=approve,
        workspace_id=principal.workspace_id,
        user_id=principal.user.id,
        credential_id=principal.credential_id,
    )
    await services.audit.emit(
        principal.workspace_id,
        Category.AUTHENTICATION,
        "device.approved" if approve else "device.denied",
        actor=principal.actor,
        target=shown,
        details={"client_name": grant.client_name, "source": client_source(request)},
    )
    return grant


async def _decision_answer(request: Request, *, approve: bool) -> JSONResponse:
    principal = await authenticate(request, services_of(request))
    # Approving mints the caller a write token: the same question as creating one.
    await authorize(request, principal, "tokens.own.create")
    data = await body_of(request, DeviceDecision)
    grant = await decide(request, principal, data.user_code, approve=approve)
    return JSONResponse(DeviceDecided(approved=approve, client_name=grant.client_name).model_dump())


_DECISION = {
    "tag": "auth",
    "body": DeviceDecision,
    "ok": DeviceDecided,
    "scope": "write",
    "errors": (400, 403, 404, 429),
}


@operation(summary="Approve a device-code login", **_DECISION)
async def approve(request: Request) -> JSONResponse:
    return await _decision_answer(request, approve=True)


@operation(summary="Deny a device-code login", **_DECISION)
async def deny(request: Request) -> JSONResponse:
    return await _decision_answer(request, approve=False)


def device_routes() -> list[BaseRoute]:
    return [
        Route("/api/v1/auth/device", start, methods=["POST"]),
        Route("/api/v1/auth/device/token", token, methods=["POST"]),
        Route("/api/v1/auth/device/approve", approve, methods=["POST"]),
        Route("/api/v1/auth/device/deny", deny, methods=["POST"]),
    ]
