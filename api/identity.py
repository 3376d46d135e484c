"""Local-account routes: log in and out, the current session, password change, invitations
and sign-up. Thin: validate the body, call ``idp``, set or clear the cookies."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from api.auth import authenticate, browser_session, client_source, identity_of
from api.authz import authorize
from api.password_reset import forgot_password, reset_password
from api.problems import BadRequest, Forbidden, Unauthorized
from api.routes import UserRef
from api.spec import Model, StrictInt, body_of, operation
from api.state import runtime_of, services_of
from broker.audit import Actor, Category, Outcome
from broker.errors import AuthenticationFailed
from broker.store.models import BrowserSession, BrowserSessionState, Role
from idp.errors import RateLimited
from idp.sessions import COOKIE, CSRF_COOKIE, set_session_cookies

__all__ = [
    "SessionAnswer",
    "identity_routes",
    "session_answer",
    "set_session_cookies",
    "text_field",
]

ALL_STATES = tuple(BrowserSessionState)
MAX_FIELD = 1024

Email = Annotated[str, Field(min_length=1, max_length=320, json_schema_extra={"format": "email"})]
Secret = Annotated[str, Field(min_length=1, max_length=MAX_FIELD)]


class SessionAnswer(BaseModel):
    """Every login step's answer; the cookies ``corral_session`` and ``corral_csrf`` are set
    with it. ``methods`` (login) lists the second factors on offer; ``recovery_codes`` is
    shown once after the first factor; ``recovery_codes_left`` after using one."""

    state: BrowserSessionState
    session_id: str
    user_id: str
    expires_at: str
    mfa_at: str | None
    csrf_token: str
    """Send it back as the ``X-Corral-CSRF`` header on unsafe requests."""
    methods: list[str] | None = None
    recovery_codes: list[str] | None = None
    recovery_codes_left: int | None = None


class Login(Model):
    email: Email
    password: Secret
    workspace: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    """The workspace's name; the broker's default workspace when left out."""


class CurrentSession(BaseModel):
    state: BrowserSessionState
    session_id: str
    user: UserRef
    expires_at: str
    mfa_at: str | None
    mfa_method: str | None
    methods: list[str]
    csrf_token: str


class PasswordChange(Model):
    current_password: Secret
    new_password: Secret


class Changed(BaseModel):
    changed: bool


class Invite(Model):
    email: Email
    role: Role = Role.USER
    expires_in_seconds: Annotated[StrictInt, Field(ge=300, le=30 * 86400)] = 7 * 86400


class InvitationOut(BaseModel):
    id: str
    email: str
    role: Role
    expires_at: str
    invitation: str
    """The sign-up secret, shown once."""
    url: str


class SignUp(Model):
    invitation: Annotated[str, Field(min_length=1, max_length=200)]
    password: Secret
    display_name: Annotated[str, Field(max_length=200)] = ""


class SignedUp(BaseModel):
    user: UserRef


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


@operation(
    summary="Log in with email and password",
    tag="identity",
    body=Login,
    ok=SessionAnswer,
    authenticated=False,
    errors=(401, 403, 429),
)
async def login(request: Request) -> JSONResponse:
    services, identity = services_of(request), identity_of(request)
    asked = await body_of(request, Login)
    email, password = asked.email, asked.password
    name = asked.workspace or runtime_of(request).settings.default_workspace
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


@operation(
    summary="Log out (ends this browser session)", tag="identity", status=204, cookie_only=True
)
async def logout(request: Request) -> Response:
    services = services_of(request)
    row, _user, _ = await browser_session(request, allow=ALL_STATES)
    await services.browser_sessions.revoke(
        row.workspace_id, row.id, actor=_actor(row), reason="logout"
    )
    response = Response(status_code=204)
    clear_session_cookies(response)
    return response


@operation(summary="This browser session", tag="identity", ok=CurrentSession, cookie_only=True)
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


@operation(
    summary="Change one's password (other browser sessions end)",
    tag="identity",
    body=PasswordChange,
    ok=Changed,
    scope="write",
    errors=(429,),
)
async def change_password(request: Request) -> JSONResponse:
    services, identity = services_of(request), identity_of(request)
    principal = await authenticate(request, services)
    await authorize(request, principal, "users.own.password")
    asked = await body_of(request, PasswordChange)
    current, new = asked.current_password, asked.new_password
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


@operation(
    summary="Invite a person (staff; staff and superusers only by a superuser)",
    tag="identity",
    body=Invite,
    ok=InvitationOut,
    status=201,
    scope="admin",
    errors=(409,),
)
async def invite(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    await authorize(request, principal, "users.invite")
    asked = await body_of(request, Invite)
    email, role, ttl = asked.email, asked.role, asked.expires_in_seconds
    if role is not Role.USER:
        await authorize(request, principal, "users.promote", str(role))
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


@operation(
    summary="Create one's account from an invitation",
    tag="identity",
    body=SignUp,
    ok=SignedUp,
    status=201,
    authenticated=False,
    errors=(401, 429),
)
async def signup(request: Request) -> JSONResponse:
    identity = identity_of(request)
    asked = await body_of(request, SignUp)
    secret, password, name = asked.invitation, asked.password, asked.display_name
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
