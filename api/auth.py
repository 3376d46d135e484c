"""Who is calling: a bearer personal access token or a browser session cookie, turned into
the same :class:`Principal`.

A request with an ``Authorization`` header is judged on the token alone (bearer behaviour
is unchanged, and a cookie sent alongside is ignored). Otherwise the ``corral_session``
cookie must name an *active* session, and unsafe methods must pass the CSRF check
(:mod:`idp.sessions`); refusals are audited. Sessions still owing MFA are only accepted by
the MFA routes, through :func:`browser_session`.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import HTTPConnection, Request

from api.problems import Forbidden, Unauthorized
from api.ratelimits import bearer_failed, bearer_gate
from broker.audit import Actor, Category, Outcome
from broker.errors import AuthenticationFailed
from broker.services import Services
from broker.services.credentials import actor_of
from broker.store.models import (
    ApiToken,
    BrowserSession,
    BrowserSessionState,
    TokenScope,
    User,
)
from idp import Identity
from idp.sessions import COOKIE, CSRF_HEADER

__all__ = ["Principal", "authenticate", "browser_session", "client_source", "identity_of"]


@dataclass(frozen=True)
class Principal:
    user: User
    token: ApiToken | None = None
    session: BrowserSession | None = None

    @property
    def workspace_id(self) -> str:
        return self.user.workspace_id

    @property
    def scope(self) -> TokenScope:
        """A browser session acts with the person's full rights; roles still apply."""
        return self.token.scope if self.token is not None else TokenScope.ADMIN

    @property
    def credential_id(self) -> str:
        if self.token is not None:
            return self.token.id
        return self.session.id if self.session is not None else ""

    @property
    def actor(self) -> Actor:
        """Service accounts appear in the audit log as ``actor_type`` ``service``."""
        return actor_of(self.user, self.credential_id)


def identity_of(conn: HTTPConnection) -> Identity:
    identity: Identity = conn.app.state.identity
    return identity


def client_source(conn: HTTPConnection) -> str:
    return conn.client.host if conn.client is not None else ""


async def authenticate(request: Request, services: Services) -> Principal:
    """The caller, remembered on ``request.state.principal`` (the 404 audit reads it).

    A call made with a token is audited as ``api.request`` with the token's id (so every
    token call, read or write, is in the audit log); failed bearer attempts are counted per
    source address and answer 429 past the limit (:mod:`api.ratelimits`).
    """
    # A NUL in the path or query never gets here: api/guard.py refuses it for every route.
    header = request.headers.get("authorization")
    if header is None and COOKIE in request.cookies:
        row, user, _ = await browser_session(request, allow=(BrowserSessionState.ACTIVE,))
        return Principal(user, session=row)
    scheme, _, secret = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized("send an Authorization: Bearer <token> header")
    bearer_gate(request)
    try:
        token, user = await services.tokens.authenticate(
            secret.strip(), request_line=f"{request.method} {request.url.path}"
        )
    except AuthenticationFailed as exc:
        bearer_failed(request)
        raise Unauthorized(str(exc)) from None
    principal = Principal(user, token=token)
    request.state.principal = principal
    return principal


async def browser_session(
    request: Request, *, allow: tuple[BrowserSessionState, ...]
) -> tuple[BrowserSession, User, str]:
    """The cookie's live session (in one of ``allow``), its user and its secret; CSRF-checked."""
    identity = identity_of(request)
    secret = request.cookies.get(COOKIE, "")
    if not secret:
        raise Unauthorized("log in first (no session cookie)")
    try:
        row, user = await identity.browser.resolve(secret)
    except AuthenticationFailed as exc:
        raise Unauthorized(str(exc)) from None
    why = identity.browser.csrf_ok(
        request.method, secret, request.headers.get(CSRF_HEADER), request.headers.get("origin")
    )
    if why:
        await identity.browser.services.audit.emit(
            row.workspace_id,
            Category.AUTHENTICATION,
            "session.csrf_refused",
            outcome=Outcome.DENIED,
            actor=Actor("user", user.id, row.id),
            target=request.url.path[:200],
            details={"reason": why, "method": request.method, "source": client_source(request)},
        )
        raise Forbidden(f"{why}; send the X-Corral-CSRF header from the login answer")
    if row.state not in allow:
        if row.state is BrowserSessionState.ACTIVE:
            raise Forbidden("this session is already signed in")
        raise Unauthorized(
            "multi-factor authentication is not complete"
            if row.state is BrowserSessionState.MFA_PENDING
            else "enrol a second factor first (this workspace requires MFA)",
            state=str(row.state),
        )
    request.state.principal = Principal(user, session=row)  # for the 404 audit
    return row, user, secret
