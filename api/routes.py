"""The REST API's routes under /api/v1: thin handlers that authenticate, call a service
and shape the answer. They never build SQL and never decide policy themselves."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from api.auth import Principal, authenticate
from api.authz import authorize
from api.spec import operation
from api.state import services_of
from broker.store.models import BrowserSessionState, Role, TokenScope

__all__ = ["UserRef", "routes"]


class UserRef(BaseModel):
    id: str
    email: str
    role: Role


class WorkspaceRef(BaseModel):
    id: str
    name: str


class TokenRef(BaseModel):
    id: str
    scope: TokenScope


class SessionRef(BaseModel):
    id: str
    state: BrowserSessionState
    expires_at: str
    mfa_at: str | None
    mfa_method: str | None


class WhoAmI(BaseModel):
    """``token`` when called with a bearer token, ``session`` with a browser session."""

    user: UserRef
    workspace: WorkspaceRef
    token: TokenRef | None = None
    session: SessionRef | None = None


class AuditVerification(BaseModel):
    ok: bool
    checked: int
    head_seq: int
    broken: str | None
    """The first broken event, described; ``null`` when the chain is intact."""


class Health(BaseModel):
    status: Literal["ok"]


@operation(summary="Who am I", tag="identity", ok=WhoAmI)
async def whoami(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    workspace = await services.workspaces.get(principal.workspace_id)
    return JSONResponse(
        {
            "user": {
                "id": principal.user.id,
                "email": principal.user.email,
                "role": str(principal.user.role),
            },
            "workspace": {"id": workspace.id, "name": workspace.name},
            **(
                {"token": {"id": principal.token.id, "scope": str(principal.token.scope)}}
                if principal.token is not None
                else {"session": _session_view(principal)}
            ),
        }
    )


def _session_view(principal: Principal) -> dict[str, object]:
    session = principal.session
    assert session is not None
    return {
        "id": session.id,
        "state": str(session.state),
        "expires_at": session.expires_at.isoformat(),
        "mfa_at": session.mfa_at.isoformat() if session.mfa_at else None,
        "mfa_method": session.mfa_method or None,
    }


@operation(
    summary="Verify the workspace's audit hash chain",
    tag="audit",
    ok=AuditVerification,
    errors=(403,),
)
async def audit_verify(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    await authorize(request, principal, "audit.read")
    result = await services.audit.verify(principal.workspace_id)
    return JSONResponse(
        {
            "ok": result.ok,
            "checked": result.checked,
            "head_seq": result.head_seq,
            "broken": None if result.broken is None else str(result.broken),
        }
    )


@operation(summary="Liveness", tag="meta", ok=Health, authenticated=False)
async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def routes() -> list[BaseRoute]:
    return [
        Route("/healthz", health),
        Route("/api/v1/whoami", whoami),
        Route("/api/v1/audit/verify", audit_verify),
    ]
