"""Identity administration: a person's own browser sessions (list, revoke), the workspace's
MFA rules, and a superuser's MFA reset for someone who lost every factor.

One's own sessions are ``users.own.sessions.*`` actions; another person's are
``users.sessions.read`` / ``users.update`` (staff), MFA rules ``workspace.security.update``
and MFA reset ``users.mfa_reset`` (superusers), all decided by the policy
(:func:`api.authz.authorize`). A session of another user is reported as not found to
whoever may not manage it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, StrictBool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from api.auth import Principal, authenticate
from api.authz import authorize, refuse
from api.problems import Forbidden, NotFoundProblem
from api.spec import Model, body_of, operation, query_of
from api.state import services_of
from broker.store.models import BrowserSession, BrowserSessionState

__all__ = ["identity_admin_routes"]


class BrowserSessionOut(BaseModel):
    id: str
    user_id: str
    state: BrowserSessionState
    created_at: str
    last_seen_at: str
    expires_at: str
    mfa_at: str | None
    mfa_method: str | None
    source: str
    user_agent: str
    current: bool
    """Whether this is the session making the request."""


class BrowserSessionList(BaseModel):
    sessions: list[BrowserSessionOut]


class SessionQuery(Model):
    user_id: str | None = None
    """Another person's sessions (staff or superuser with admin rights); default: one's own."""


class SecuritySettings(BaseModel):
    mfa_required: bool
    mfa_hardware_only: bool


class SecurityChange(Model):
    """Only the settings given change (``null`` or left out: unchanged)."""

    mfa_required: StrictBool | None = None
    mfa_hardware_only: StrictBool | None = None


class MfaReset(BaseModel):
    factors_removed: int
    sessions_revoked: int


def session_view(row: BrowserSession, current: str) -> dict[str, Any]:
    return {
        "id": row.id,
        "user_id": row.user_id,
        "state": str(row.state),
        "created_at": row.created_at.isoformat(),
        "last_seen_at": row.last_seen_at.isoformat(),
        "expires_at": row.expires_at.isoformat(),
        "mfa_at": row.mfa_at.isoformat() if row.mfa_at else None,
        "mfa_method": row.mfa_method or None,
        "source": row.source,
        "user_agent": row.user_agent,
        "current": row.id == current,
    }


@operation(
    summary="Browser sessions (one's own, or a person's as staff)",
    tag="identity",
    query=SessionQuery,
    ok=BrowserSessionList,
    errors=(403,),
)
async def list_sessions(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    user_id = query_of(request, SessionQuery).user_id or principal.user.id
    if user_id == principal.user.id:
        await authorize(request, principal, "users.own.sessions.read")
    else:
        await authorize(request, principal, "users.sessions.read", user_id[:128])
    rows = await services.browser_sessions.list(principal.workspace_id, user_id=user_id)
    current = principal.credential_id
    return JSONResponse({"sessions": [session_view(r, current) for r in rows]})


@operation(summary="End a browser session", tag="identity", status=204, scope="write")
async def revoke_session(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request, services)
    session_id = request.path_params["session_id"]
    await authorize(request, principal, "users.own.sessions.revoke", session_id[:128])
    row = await services.browser_sessions.get(principal.workspace_id, session_id)
    own = row.user_id == principal.user.id
    if not own:
        missing = NotFoundProblem(f"browsersession {session_id} not found")
        await authorize(request, principal, "users.update", row.id, hidden=missing)
    await services.browser_sessions.revoke(
        principal.workspace_id,
        row.id,
        actor=principal.actor,
        reason="revoked by the user" if own else "revoked by an administrator",
    )
    return Response(status_code=204)


@operation(summary="The workspace's MFA rules", tag="admin", ok=SecuritySettings)
async def security_settings(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    return await _settings_answer(request, principal)


@operation(
    summary="Change the workspace's MFA rules (superuser)",
    tag="admin",
    body=SecurityChange,
    ok=SecuritySettings,
    scope="admin",
)
async def change_security_settings(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    await authorize(request, principal, "workspace.security.update")
    change = await body_of(request, SecurityChange)
    await services.workspaces.update_settings(
        principal.workspace_id,
        actor=principal.actor,
        mfa_required=change.mfa_required,
        mfa_hardware_only=change.mfa_hardware_only,
    )
    return await _settings_answer(request, principal)


async def _settings_answer(request: Request, principal: Principal) -> JSONResponse:
    workspace = await services_of(request).workspaces.get(principal.workspace_id)
    return JSONResponse(
        {"mfa_required": workspace.mfa_required, "mfa_hardware_only": workspace.mfa_hardware_only}
    )


@operation(
    summary="Reset a person's MFA (superuser; not one's own)",
    tag="admin",
    ok=MfaReset,
    scope="admin",
)
async def reset_mfa(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    user_id = request.path_params["user_id"]
    await authorize(request, principal, "users.mfa_reset", user_id[:128])
    if user_id == principal.user.id:
        # A product rule, not a role: one's own second factor is reset by someone else.
        await refuse(request, principal, "users.mfa_reset", reason="own mfa", resource=user_id)
        raise Forbidden("nobody can reset their own MFA; ask another superuser")
    user = await services.users.get(principal.workspace_id, user_id)
    removed = await services.factors.remove_all(
        principal.workspace_id, user.id, actor=principal.actor
    )
    ended = await services.browser_sessions.revoke_all(
        principal.workspace_id, user.id, actor=principal.actor, reason="mfa reset"
    )
    return JSONResponse({"factors_removed": removed, "sessions_revoked": ended})


def identity_admin_routes() -> list[BaseRoute]:
    return [
        Route("/api/v1/auth/sessions", list_sessions, methods=["GET"]),
        Route("/api/v1/auth/sessions/{session_id:str}", revoke_session, methods=["DELETE"]),
        Route("/api/v1/workspace/security", security_settings, methods=["GET"]),
        Route("/api/v1/workspace/security", change_security_settings, methods=["PATCH"]),
        Route("/api/v1/users/{user_id:str}/mfa/reset", reset_mfa, methods=["POST"]),
    ]
