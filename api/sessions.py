"""Terminal session routes: open a session, get a ticket, attach a WebSocket, end it,
download its recording; and the revoking calls (disable a user, revoke a token or a grant)
that must also end live sessions at once.

Thin: parse, authenticate, call :class:`GatewaySessions` or a service, shape the answer.
The gateway is built on first use from the app's runtime and hub unless one was set on
``app.state.gateway`` (tests inject theirs that way).
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket

from api.auth import authenticate
from api.authz import authorize, permits
from api.problems import ApiError, Forbidden, NotFoundProblem
from api.spec import Model, StrictInt, body_of, operation, query_of
from api.state import services_of
from broker.agents.errors import AgentOffline
from broker.audit import Category, Outcome
from broker.gateway import AccessDenied, GatewaySessions, Revocation, SessionUnavailable
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


class RecordingQuery(Model):
    session_id: str | None = None


class RecordingOut(BaseModel):
    id: str
    session_id: str
    size_bytes: int
    user_id: str
    server_id: str | None
    """``null`` once the server was removed; ``server_name`` still says which it was."""
    server_name: str
    unix_user: str
    started_at: datetime
    ended_at: datetime | None
    """``null`` while the session is still being recorded."""


class RecordingList(BaseModel):
    recordings: list[RecordingOut]


class Disabled(BaseModel):
    disabled: bool
    sessions_ended: int


class Revoked(BaseModel):
    revoked: bool
    sessions_ended: int


class Removed(BaseModel):
    removed: bool
    sessions_ended: int


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


@operation(
    summary="Download a recording (asciicast v2)",
    tag="sessions",
    media_type="application/x-asciicast",
)
async def download_recording(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request, services)
    await authorize(request, principal, "sessions.own.recordings.read")
    recording = await services.recordings.get(
        principal.workspace_id, request.path_params["recording_id"]
    )
    session = await services.sessions.get(principal.workspace_id, recording.session_id)
    if session.user_id != principal.user.id:
        missing = NotFoundProblem(f"recording {recording.id} not found")
        await authorize(
            request, principal, "sessions.recordings.read", recording.id, hidden=missing
        )
    await services.audit.emit(
        principal.workspace_id,
        Category.RESOURCE_ACCESS,
        "recording.downloaded",
        actor=principal.actor,
        session_id=session.id,
        target=recording.id,
    )
    return FileResponse(
        Path(recording.path),
        media_type="application/x-asciicast",
        filename=f"{session.id}.cast",
    )


@operation(
    summary="Recordings (one's own sessions'; staff: all)",
    tag="sessions",
    query=RecordingQuery,
    ok=RecordingList,
)
async def list_recordings(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    await authorize(request, principal, "sessions.own.recordings.read")
    query = query_of(request, RecordingQuery)
    everyone = await permits(request, principal, "sessions.recordings.read")
    rows = await services.recordings.index(
        principal.workspace_id,
        session_id=query.session_id,
        user_id=None if everyone else principal.user.id,
    )
    return JSONResponse(
        {
            "recordings": [
                {
                    "id": r.id,
                    "session_id": r.session_id,
                    "size_bytes": r.size_bytes,
                    "user_id": s.user_id,
                    "server_id": s.server_id,
                    "server_name": s.server_name,
                    "unix_user": s.unix_user,
                    "started_at": r.started_at.isoformat(),
                    "ended_at": r.ended_at.isoformat() if r.ended_at else None,
                }
                for r, s in rows
            ]
        }
    )


# ---------------------------------------------------------------- revoking calls


def _revocation(request: Request) -> Revocation:
    return Revocation(gateway_of(request.app))


@operation(
    summary="Disable a user and end their sessions",
    tag="revocation",
    ok=Disabled,
    scope="admin",
)
async def disable_user(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    user_id = request.path_params["user_id"]
    await authorize(request, principal, "users.update", user_id[:128])
    await services.users.set_disabled(principal.workspace_id, user_id, True, actor=principal.actor)
    ended = await _revocation(request).user_disabled(
        principal.workspace_id, user_id, actor=principal.actor
    )
    return JSONResponse({"disabled": True, "sessions_ended": ended})


@operation(
    summary="Revoke a token (one's own with a write token; another's as admin), end its sessions",
    tag="revocation",
    ok=Revoked,
    scope="write",
)
async def revoke_token(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    token_id = request.path_params["token_id"]
    own = {
        t.id for t in await services.tokens.list(principal.workspace_id, user_id=principal.user.id)
    }
    action = "tokens.own.revoke" if token_id in own else "tokens.revoke"
    await authorize(request, principal, action, token_id[:128])
    await services.tokens.revoke(principal.workspace_id, token_id, actor=principal.actor)
    ended = await _revocation(request).token_revoked(
        principal.workspace_id, token_id, actor=principal.actor
    )
    return JSONResponse({"revoked": True, "sessions_ended": ended})


@operation(
    summary="Revoke an access grant and end the sessions it allowed",
    tag="revocation",
    ok=Revoked,
    scope="admin",
)
async def revoke_grant(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    await authorize(request, principal, "grants.update", request.path_params["grant_id"][:128])
    await services.grants.revoke(
        principal.workspace_id, request.path_params["grant_id"], actor=principal.actor
    )
    ended = await _revocation(request).access_changed(principal.workspace_id, actor=principal.actor)
    return JSONResponse({"revoked": True, "sessions_ended": ended})


@operation(
    summary="Remove a server, end its sessions and hang up its agent",
    tag="servers",
    ok=Removed,
    scope="admin",
)
async def remove_server(request: Request) -> JSONResponse:
    """End the server's live sessions, forget the server and hang up its agent."""
    services = services_of(request)
    principal = await authenticate(request, services)
    await authorize(request, principal, "servers.update", request.path_params["server_id"][:128])
    server = await services.servers.get(principal.workspace_id, request.path_params["server_id"])
    ended = await _revocation(request).server_removed(
        principal.workspace_id, server.id, actor=principal.actor
    )
    await services.servers.remove(principal.workspace_id, server.id, actor=principal.actor)
    await request.app.state.hub.disconnect(server.id, "server removed")
    return JSONResponse({"removed": True, "sessions_ended": ended})


@operation(
    summary="Remove a member from a group and end the sessions it allowed",
    tag="revocation",
    ok=Removed,
    scope="admin",
)
async def remove_group_member(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    await authorize(request, principal, "groups.update", request.path_params["group_id"][:128])
    await services.groups.remove_member(
        principal.workspace_id,
        request.path_params["group_id"],
        request.path_params["user_id"],
        actor=principal.actor,
    )
    ended = await _revocation(request).access_changed(principal.workspace_id, actor=principal.actor)
    return JSONResponse({"removed": True, "sessions_ended": ended})


def session_routes() -> list[BaseRoute]:
    return [
        Route("/api/v1/sessions", open_session, methods=["POST"]),
        Route("/api/v1/sessions", list_sessions, methods=["GET"]),
        Route("/api/v1/sessions/{session_id}/tickets", new_ticket, methods=["POST"]),
        Route("/api/v1/sessions/{session_id}", terminate_session, methods=["DELETE"]),
        WebSocketRoute("/api/v1/sessions/{session_id}/terminal", terminal),
        Route("/api/v1/recordings", list_recordings, methods=["GET"]),
        Route("/api/v1/recordings/{recording_id}/download", download_recording),
        Route("/api/v1/users/{user_id}/disable", disable_user, methods=["POST"]),
        Route("/api/v1/tokens/{token_id}", revoke_token, methods=["DELETE"]),
        Route("/api/v1/grants/{grant_id}", revoke_grant, methods=["DELETE"]),
        Route("/api/v1/servers/{server_id}", remove_server, methods=["DELETE"]),
        Route(
            "/api/v1/groups/{group_id}/members/{user_id}", remove_group_member, methods=["DELETE"]
        ),
    ]
