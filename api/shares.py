"""Sharing and watching live sessions: share links (read-only or read-write, with an
expiry), joining through one, and staff observing any session of their workspace.

Thin: parse, authenticate, call :class:`GatewaySessions`, shape the answer. Every answer
that would tell a stranger whether a session or link exists is the same 404.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from api.auth import Principal, authenticate
from api.authz import ACTIONS, authorize, scope_allows
from api.problems import Forbidden, NotFoundProblem
from api.sessions import TerminalTicket, gateway_of, websocket_url
from api.spec import Model, StrictInt, body_of, operation
from api.state import services_of
from broker.audit import Category, Outcome
from broker.gateway import SessionUnavailable
from broker.gateway.shares import ShareRefused

__all__ = ["share_routes"]

MODES = {"read-only": True, "read-write": False}
DEFAULT_TTL = 3600
MAX_TTL = 7 * 24 * 3600


class CreateShare(Model):
    mode: Literal["read-only", "read-write"] = "read-only"
    expires_in: Annotated[StrictInt, Field(ge=60, le=MAX_TTL)] = DEFAULT_TTL
    """Seconds the link stays valid."""


class ShareCreated(BaseModel):
    id: str
    session_id: str
    mode: Literal["read-only", "read-write"]
    expires_in: int
    secret: str
    """Shown once: whoever has it (and is in the workspace) can join."""
    join_url: str


class ShareOut(BaseModel):
    id: str
    mode: Literal["read-only", "read-write"]
    revoked: bool
    created_by: str


class Participant(BaseModel):
    user: str
    role: str
    read_only: bool


class ShareList(BaseModel):
    shares: list[ShareOut]
    participants: list[Participant]


def _terminal_answer(request: Request, session_id: str, ticket: str) -> JSONResponse:
    return JSONResponse(
        {
            "session_id": session_id,
            "websocket_url": websocket_url(request, session_id, ticket),
            "expires_in": int(gateway_of(request.app).tickets.ttl),
        },
        status_code=201,
    )


@operation(
    summary="Create a share link for one's live session",
    tag="sharing",
    body=CreateShare,
    ok=ShareCreated,
    status=201,
    scope="write",
)
async def create_share(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    session_id = request.path_params["session_id"]
    await authorize(request, principal, "sessions.own.share", session_id[:128])
    asked = await body_of(request, CreateShare, allow_empty=True)
    mode, ttl = asked.mode, asked.expires_in
    try:
        share, secret = await gateway_of(request.app).share(
            principal.workspace_id,
            session_id,
            principal.user,
            principal.actor,
            read_only=MODES[mode],
            ttl=ttl,
        )
    except SessionUnavailable:
        raise NotFoundProblem(f"no live session {session_id[:64]} of yours") from None
    base = request.app.state.runtime.settings.effective_public_url
    return JSONResponse(
        {
            "id": share.id,
            "session_id": session_id,
            "mode": share.mode,
            "expires_in": ttl,
            "secret": secret,
            "join_url": f"{base}/api/v1/shares/{secret}/join",
        },
        status_code=201,
    )


@operation(
    summary="A live session's share links and who is attached",
    tag="sharing",
    ok=ShareList,
)
async def list_shares(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    session_id = request.path_params["session_id"]
    await authorize(request, principal, "sessions.own.read", session_id[:128])
    gateway = gateway_of(request.app)
    missing = NotFoundProblem(f"no live session {session_id[:64]}")
    try:
        live = gateway.session(principal.workspace_id, session_id)
    except SessionUnavailable:
        raise missing from None
    if live.user_id != principal.user.id:
        await authorize(request, principal, "sessions.read", live.id, hidden=missing)
    shares = gateway.shares.of_session(principal.workspace_id, session_id)
    return JSONResponse(
        {
            "shares": [
                {"id": s.id, "mode": s.mode, "revoked": s.revoked, "created_by": s.created_by}
                for s in shares
            ],
            "participants": [
                {"user": c.label, "role": c.role, "read_only": c.read_only} for c in live.clients
            ],
        }
    )


@operation(
    summary="Revoke a share link (its participants are removed)",
    tag="sharing",
    status=204,
    scope="write",
)
async def revoke_share(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request, services)
    session_id = request.path_params["session_id"]
    await authorize(request, principal, "sessions.own.share", session_id[:128])
    gateway = gateway_of(request.app)
    missing = NotFoundProblem("no such live session or share")
    try:
        live = gateway.session(principal.workspace_id, session_id)
        if live.user_id != principal.user.id:
            await authorize(request, principal, "sessions.share", live.id, hidden=missing)
        await gateway.unshare(
            principal.workspace_id,
            session_id,
            request.path_params["share_id"],
            principal.user,
            principal.actor,
        )
    except SessionUnavailable:
        raise missing from None
    return Response(status_code=204)


@operation(
    summary="Join a live session through a share link",
    tag="sharing",
    ok=TerminalTicket,
    status=201,
)
async def join_share(request: Request) -> JSONResponse:
    """A read-write link needs a token with the write scope (a read token may watch)."""
    services = services_of(request)
    principal = await authenticate(request, services)
    await _writable_or_refuse(request, principal)
    try:
        session_id, ticket = await gateway_of(request.app).join(
            principal.workspace_id, request.path_params["secret"], principal.user, principal.actor
        )
    except SessionUnavailable:
        raise NotFoundProblem("unknown or expired share link") from None
    return _terminal_answer(request, session_id, ticket)


async def _writable_or_refuse(request: Request, principal: Principal) -> None:
    """Authorize ``sessions.shared.watch`` for a read-only link, ``sessions.shared.join``
    for a read-write one; a read-scope token on a read-write link is refused here as
    ``session.join_refused`` (the event the sharing audit trail is built from)."""
    gateway = gateway_of(request.app)
    try:
        share = gateway.shares.redeem(request.path_params["secret"])
    except ShareRefused:
        share = None  # the join answers this link's 404 itself (and audits it)
    if share is None or share.workspace_id != principal.workspace_id:
        await authorize(request, principal, "sessions.shared.watch")
        return
    action = "sessions.shared.watch" if share.read_only else "sessions.shared.join"
    if scope_allows(principal.scope, ACTIONS[action]):
        await authorize(request, principal, action, share.session_id)
        return
    await services_of(request).audit.emit(
        principal.workspace_id,
        Category.AUTHORIZATION,
        "session.join_refused",
        outcome=Outcome.DENIED,
        actor=principal.actor,
        session_id=share.session_id,
        details={"reason": "read-scope token", "share_id": share.id},
    )
    raise Forbidden("joining a read-write share needs a token with the write scope")


@operation(
    summary="Observe a live session read-only (staff)",
    tag="sharing",
    ok=TerminalTicket,
    status=201,
)
async def observe(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    session_id = request.path_params["session_id"]
    missing = NotFoundProblem(f"no live session {session_id[:64]}")
    await authorize(request, principal, "sessions.observe", session_id[:128], hidden=missing)
    try:
        ticket = await gateway_of(request.app).observe(
            principal.workspace_id, session_id, principal.user, principal.actor
        )
    except SessionUnavailable:
        raise NotFoundProblem(f"no live session {session_id[:64]}") from None
    return _terminal_answer(request, session_id, ticket)


def share_routes() -> list[BaseRoute]:
    return [
        Route("/api/v1/sessions/{session_id}/shares", create_share, methods=["POST"]),
        Route("/api/v1/sessions/{session_id}/shares", list_shares, methods=["GET"]),
        Route("/api/v1/sessions/{session_id}/shares/{share_id}", revoke_share, methods=["DELETE"]),
        Route("/api/v1/sessions/{session_id}/observe", observe, methods=["POST"]),
        Route("/api/v1/shares/{secret}/join", join_share, methods=["POST"]),
    ]
