"""Local-account routes: log in and out, the current session, password change, invitations
and sign-up. Thin: validate the body, call ``idp``, set or clear the cookies."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from api.auth import authenticate, browser_session, client_source, identity_of
from api.bodies import json_object
from api.password_reset import forgot_password, reset_password
from api.problems import BadRequest, Forbidden, Unauthorized
from api.state import runtime_of, services_of
from broker.audit import Actor, Category, Outcome
from broker.errors import AuthenticationFailed
from broker.store.models import BrowserSession, BrowserSessionState, Role
from idp.errors import RateLimited
from idp.sessions import COOKIE, CSRF_COOKIE, set_session_cookies

__all__ = ["identity_routes", "session_answer", "set_session_cookies", "text_field"]

ALL_STATES = tuple(BrowserSessionState)
MAX_FIELD = 1024


def text_field(data: dict[str, Any], name: str, *, required: bool = True, limit: int = 320) -> str:
    value = data.get(name, "" if not required else None)
    if not isinstance(value, str) or (required and not value) or len(value) > limit:
        raise BadRequest(f"{name} must be a string of 1-{limit} characters")
    return value


def clear_session_cookies(response: Response) -> None:
    for name in (COOKIE, CSRF_COOKIE):
        response.delete_cookie(name, path="/", secure=True, samesite="lax")


def session_answer(
    request: Request,
    row: BrowserSession,
    secret: str,
    *,
    methods: list[str] | None = None,
    status: int = 200,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    """The JSON every login step answers with, plus fresh cookies (the secret may rotate)."""
    identity = identity_of(request)
    csrf = identity.browser.csrf_token(secret)
    body: dict[str, Any] = {
        "state": str(row.state),
        "session_id": row.id,
        "user_id": row.user_id,
        "expires_at": row.expires_at.isoformat(),
        "mfa_at": row.mfa_at.isoformat() if row.mfa_at else None,
        "csrf_token": csrf,
        **({"methods": methods} if methods is not None else {}),
        **(extra or {}),
    }
    response = JSONResponse(body, status_code=status)
    lifetime = (row.expires_at - identity.browser.services.accounts.clock()).total_seconds()
    set_session_cookies(response, secret, csrf, max(1, int(lifetime)))
    return response


async def login(request: Request) -> JSONResponse:
    services, identity = services_of(request), identity_of(request)
    data = await json_object(request)
    email = text_field(data, "email")
    password = text_field(data, "password", limit=MAX_FIELD)
    name = data.get("workspace", runtime_of(request).settings.default_workspace)
    if not isinstance(name, str) or not 1 <= len(name) <= 100:
        raise BadRequest("workspace must be a workspace name")
    source = client_source(request)
    origin = request.headers.get("origin")
    workspace = await services.workspaces.find(name)
    if workspace is None:
        wait = identity.login.per_source.hit(source)
        if wait:
            raise RateLimited("too many login attempts; try again later", wait)
        raise Unauthorized("invalid email or password")
    if origin is not None and origin.lower() != identity.browser.origin:
        await services.audit.emit(
            workspace.id,
            Category.AUTHENTICATION,
            "login.failed",
            outcome=Outcome.DENIED,
            target=email[:200],
            details={"reason": "cross-origin login", "source": source},
        )
        raise Forbidden("cross-origin login refused")
    try:
        outcome = await identity.browser.password_login(
            workspace.id,
            email,
            password,
            source=source,
            user_agent=request.headers.get("user-agent", ""),
        )
    except AuthenticationFailed as exc:
        raise Unauthorized(str(exc)) from None
    return session_answer(request, outcome.session, outcome.secret, methods=outcome.methods)


async def logout(request: Request) -> Response:
    services = services_of(request)
    row, _user, _ = await browser_session(request, allow=ALL_STATES)
    await services.browser_sessions.revoke(
        row.workspace_id, row.id, actor=_actor(row), reason="logout"
    )
    response = Response(status_code=204)
    clear_session_cookies(response)
    return response


async def current_session(request: Request) -> JSONResponse:
    identity = identity_of(request)
    row, user, secret = await browser_session(request, allow=ALL_STATES)
    methods = await identity.mfa.methods(row.workspace_id, user.id)
    body = {
        "state": str(row.state),
        "session_id": row.id,
        "user": {"id": user.id, "email": user.email, "role": str(user.role)},
        "expires_at": row.expires_at.isoformat(),
        "mfa_at": row.mfa_at.isoformat() if row.mfa_at else None,
        "mfa_method": row.mfa_method or None,
        "methods": methods,
        "csrf_token": identity.browser.csrf_token(secret),
    }
    return JSONResponse(body)


async def change_password(request: Request) -> JSONResponse:
    services, identity = services_of(request), identity_of(request)
    principal = await authenticate(request, services)
    data = await json_object(request)
    current = text_field(data, "current_password", limit=MAX_FIELD)
    new = text_field(data, "new_password", limit=MAX_FIELD)
    keep = principal.session.id if principal.session is not None else None
    await identity.login.change_password(
        principal.workspace_id,
        principal.user.id,
        current,
        new,
        actor=principal.actor,
        keep_session=keep,
    )
    return JSONResponse({"changed": True})


async def invite(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    if principal.user.role not in (Role.STAFF, Role.SUPERUSER) or principal.scope != "admin":
        raise Forbidden("inviting people needs a staff or superuser with admin rights")
    data = await json_object(request)
    email = text_field(data, "email")
    role_name = data.get("role", "user")
    if role_name not in {r.value for r in Role}:
        raise BadRequest("role must be user, staff or superuser")
    role = Role(role_name)
    if role is not Role.USER and principal.user.role is not Role.SUPERUSER:
        raise Forbidden("only a superuser can invite staff or superusers")
    ttl = data.get("expires_in_seconds", 7 * 86400)
    if isinstance(ttl, bool) or not isinstance(ttl, int):
        raise BadRequest("expires_in_seconds must be an integer")
    invitation, secret = await services.accounts.invite(
        principal.workspace_id, email, role=role, ttl_seconds=ttl, actor=principal.actor
    )
    base = runtime_of(request).settings.effective_public_url
    return JSONResponse(
        {
            "id": invitation.id,
            "email": invitation.email,
            "role": str(invitation.role),
            "expires_at": invitation.expires_at.isoformat(),
            "invitation": secret,
            "url": f"{base}/signup#{secret}",
        },
        status_code=201,
    )


async def signup(request: Request) -> JSONResponse:
    identity = identity_of(request)
    data = await json_object(request)
    secret = text_field(data, "invitation", limit=200)
    password = text_field(data, "password", limit=MAX_FIELD)
    name = data.get("display_name", "")
    if not isinstance(name, str) or len(name) > 200:
        raise BadRequest("display_name must be a string of at most 200 characters")
    try:
        user = await identity.login.sign_up(
            secret, password, display_name=name, source=client_source(request)
        )
    except AuthenticationFailed as exc:
        raise Unauthorized(str(exc)) from None
    return JSONResponse(
        {"user": {"id": user.id, "email": user.email, "role": str(user.role)}}, status_code=201
    )


def _actor(row: BrowserSession) -> Actor:
    return Actor("user", row.user_id, row.id)


def identity_routes() -> list[BaseRoute]:
    return [
        Route("/api/v1/auth/login", login, methods=["POST"]),
        Route("/api/v1/auth/logout", logout, methods=["POST"]),
        Route("/api/v1/auth/session", current_session, methods=["GET"]),
        Route("/api/v1/auth/password", change_password, methods=["POST"]),
        Route("/api/v1/auth/password/forgot", forgot_password, methods=["POST"]),
        Route("/api/v1/auth/password/reset", reset_password, methods=["POST"]),
        Route("/api/v1/auth/invitations", invite, methods=["POST"]),
        Route("/api/v1/auth/signup", signup, methods=["POST"]),
    ]
