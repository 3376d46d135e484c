"""Live terminal session routes: open a session, get a ticket to (re-)attach, list the
live sessions, end one, and the terminal WebSocket itself; plus :func:`gateway_of`, the one
place the API gets the app's :class:`GatewaySessions`.

Thin: parse, authenticate, call :class:`GatewaySessions` or a service, shape the answer.
It must never relay terminal bytes or decide policy itself (the gateway does both). The
gateway is built on first use from the app's runtime and hub unless one was set on
``app.state.gateway`` (tests inject theirs that way). Recordings are :mod:`api.recordings`,
the calls that revoke access and end sessions :mod:`api.revocation`, sharing and
observing :mod:`api.shares`.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket

from api.auth import authenticate
from api.authz import authorize, permits
from api.problems import ApiError, Forbidden, NotFoundProblem
from api.spec import Model, StrictInt, body_of, operation
from api.state import services_of
from broker.agents.errors import AgentOffline
from broker.audit import Category, Outcome
from broker.gateway import AccessDenied, GatewaySessions, SessionUnavailable
from broker.runtime import Runtime

__all__ = [
    "TerminalTicket",
    "UnixUser",
    "gateway_of",
    "session_routes",
    "websocket_url",
]

UNIX_USER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")

UnixUser = Annotated[str, Field(pattern=UNIX_USER.pattern, description="A Unix user name.")]


class OpenSession(Model):
    server: Annotated[str, Field(min_length=1, max_length=100)]
    """The server's id or name."""
    unix_user: UnixUser
    cols: Annotated[StrictInt, Field(ge=1, le=1000)] = 80
    rows: Annotated[StrictInt, Field(ge=1, le=1000)] = 24


class TerminalTicket(BaseModel):
    """Where to attach the terminal: a WebSocket URL with a single-use ticket."""

    session_id: str
    websocket_url: str
    expires_in: int
    """Seconds the ticket stays valid."""


class LiveSessionOut(BaseModel):
    id: str
    user_id: str
    server_id: str
    unix_user: str
    attached: int
    """WebSocket clients attached now."""
    output_bytes: int


class LiveSessionList(BaseModel):
    sessions: list[LiveSessionOut]


class AgentUnavailable(ApiError):
    status, code, title = 503, "agent-offline", "The server's agent is not connected"


def gateway_of(app: Starlette) -> GatewaySessions:
    gateway: GatewaySessions | None = getattr(app.state, "gateway", None)
    if gateway is None:
        runtime: Runtime = app.state.runtime
        gateway = GatewaySessions(
            runtime.services,
            app.state.hub,
            recordings_dir=runtime.settings.data_dir / "recordings",
            grace_seconds=runtime.settings.session_grace_seconds,
            policy=runtime.policy.engine,
            step_up=app.state.identity.step_up,
            mfa=app.state.mfa,
        )
        app.state.gateway = gateway
    return gateway


def websocket_url(request: Request, session_id: str, ticket: str) -> str:
    runtime: Runtime = request.app.state.runtime
    base = runtime.settings.effective_public_url
    base = "ws" + base[4:] if base.startswith("http") else base
    return f"{base}/api/v1/sessions/{session_id}/terminal?ticket={ticket}"


@operation(
    summary="Open a terminal session",
    tag="sessions",
    body=OpenSession,
    ok=TerminalTicket,
    status=201,
    scope="write",
    errors=(403, 404, 503),
)
async def open_session(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    await authorize(request, principal, "servers.connect")
    asked = await body_of(request, OpenSession, allow_empty=True)
    gateway = gateway_of(request.app)
    try:
        opened = await gateway.open(
            principal.workspace_id,
            principal.user,
            server_ref=asked.server,
            unix_user=asked.unix_user,
            cols=asked.cols,
            rows=asked.rows,
            actor=principal.actor,
        )
    except AccessDenied as exc:
        raise Forbidden(str(exc)) from None
    except AgentOffline:
        raise AgentUnavailable("the server's agent is not connected; try again") from None
    session_id = opened.session.id
    return JSONResponse(
        {
            "session_id": session_id,
            "websocket_url": websocket_url(request, session_id, opened.ticket),
            "expires_in": int(gateway.tickets.ttl),
        },
        status_code=201,
    )


@operation(
    summary="A new ticket to re-attach to one's live session",
    tag="sessions",
    ok=TerminalTicket,
    status=201,
    scope="write",
)
async def new_ticket(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    session_id = request.path_params["session_id"]
    await authorize(request, principal, "sessions.own.attach", session_id[:128])
    gateway = gateway_of(request.app)
    try:
        ticket = gateway.issue_ticket(
            principal.workspace_id, session_id, principal.user, principal.actor
        )
    except SessionUnavailable:
        await services.audit.emit(
            principal.workspace_id,
            Category.AUTHORIZATION,
            "session.unavailable",
            outcome=Outcome.DENIED,
            actor=principal.actor,
            target=session_id[:128],
            details={"reason": "no live session of this user"},
        )
        raise NotFoundProblem(f"no live session {session_id[:64]}") from None
    return JSONResponse(
        {
            "session_id": session_id,
            "websocket_url": websocket_url(request, session_id, ticket),
            "expires_in": int(gateway.tickets.ttl),
        },
        status_code=201,
    )


@operation(
    summary="Live sessions (one's own; staff: all of the workspace's)",
    tag="sessions",
    ok=LiveSessionList,
)
async def list_sessions(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    await authorize(request, principal, "sessions.own.read")
    live = gateway_of(request.app).sessions(principal.workspace_id)
    if not await permits(request, principal, "sessions.read"):
        live = [s for s in live if s.user_id == principal.user.id]
    return JSONResponse(
        {
            "sessions": [
                {
                    "id": s.id,
                    "user_id": s.user_id,
                    "server_id": s.server_id,
                    "unix_user": s.unix_user,
                    "attached": len(s.clients),
                    "output_bytes": s.buffer.end,
                }
                for s in live
            ]
        }
    )


@operation(summary="End a live session", tag="sessions", status=204, scope="write")
async def terminate_session(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request, services)
    session_id = request.path_params["session_id"]
    await authorize(request, principal, "sessions.own.terminate", session_id[:128])
    gateway = gateway_of(request.app)
    missing = NotFoundProblem(f"no live session {session_id[:64]}")
    try:
        live = gateway.session(principal.workspace_id, session_id)
        if live.user_id != principal.user.id:
            await authorize(request, principal, "sessions.terminate", live.id, hidden=missing)
        await gateway.terminate(
            principal.workspace_id,
            session_id,
            "terminated by " + ("its owner" if live.user_id == principal.user.id else "staff"),
            by=principal.user.email,
            actor=principal.actor,
        )
    except SessionUnavailable:
        raise missing from None
    return Response(status_code=204)


async def terminal(websocket: WebSocket) -> None:
    await gateway_of(websocket.app).serve(websocket, websocket.path_params["session_id"])


def session_routes() -> list[BaseRoute]:
    return [
        Route("/api/v1/sessions", open_session, methods=["POST"]),
        Route("/api/v1/sessions", list_sessions, methods=["GET"]),
        Route("/api/v1/sessions/{session_id}/tickets", new_ticket, methods=["POST"]),
        Route("/api/v1/sessions/{session_id}", terminate_session, methods=["DELETE"]),
        WebSocketRoute("/api/v1/sessions/{session_id}/terminal", terminal),
    ]
