"""Terminal session routes: open a session, get a ticket, attach a WebSocket, end it,
download its recording; and the revoking calls (disable a user, revoke a token or a grant)
that must also end live sessions at once.

Thin: parse, authenticate, call :class:`GatewaySessions` or a service, shape the answer.
The gateway is built on first use from the app's runtime and hub unless one was set on
``app.state.gateway`` (tests inject theirs that way).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket

from api.auth import Principal, authenticate
from api.bodies import json_object
from api.problems import ApiError, BadRequest, Forbidden, NotFoundProblem
from api.state import services_of
from broker.agents.hub import AgentOffline
from broker.audit import Category, Outcome
from broker.gateway import AccessDenied, GatewaySessions, Revocation, SessionUnavailable
from broker.runtime import Runtime
from broker.store.models import Role, TokenScope

__all__ = ["STAFF", "gateway_of", "need_write", "session_routes", "websocket_url"]

UNIX_USER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")
STAFF = (Role.STAFF, Role.SUPERUSER)


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


def _int(data: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequest(f"{name} must be an integer {low}..{high}")
    return value


def need_write(principal: Principal) -> None:
    if principal.scope not in (TokenScope.WRITE, TokenScope.ADMIN):
        raise Forbidden("this needs a token with the write scope")


def _need_admin(principal: Principal) -> None:
    if principal.scope is not TokenScope.ADMIN or principal.user.role not in STAFF:
        raise Forbidden("this needs a staff or superuser with an admin-scope token")


def websocket_url(request: Request, session_id: str, ticket: str) -> str:
    runtime: Runtime = request.app.state.runtime
    base = runtime.settings.effective_public_url
    base = "ws" + base[4:] if base.startswith("http") else base
    return f"{base}/api/v1/sessions/{session_id}/terminal?ticket={ticket}"


async def open_session(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    need_write(principal)
    data = await json_object(request, allow_empty=True)
    server = data.get("server")
    unix_user = data.get("unix_user")
    if not isinstance(server, str) or not 1 <= len(server) <= 100:
        raise BadRequest("server must be a server id or name")
    if not isinstance(unix_user, str) or not UNIX_USER.match(unix_user):
        raise BadRequest("unix_user must be a valid unix user name")
    cols = _int(data, "cols", 80, 1, 1000)
    rows = _int(data, "rows", 24, 1, 1000)
    gateway = gateway_of(request.app)
    try:
        opened = await gateway.open(
            principal.workspace_id,
            principal.user,
            server_ref=server,
            unix_user=unix_user,
            cols=cols,
            rows=rows,
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


async def new_ticket(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    need_write(principal)
    session_id = request.path_params["session_id"]
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


async def list_sessions(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    live = gateway_of(request.app).sessions(principal.workspace_id)
    if principal.user.role not in STAFF:
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


async def terminate_session(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request, services)
    need_write(principal)
    session_id = request.path_params["session_id"]
    gateway = gateway_of(request.app)
    try:
        live = gateway.session(principal.workspace_id, session_id)
        if live.user_id != principal.user.id and principal.user.role not in STAFF:
            raise SessionUnavailable(session_id)
        await gateway.terminate(
            principal.workspace_id,
            session_id,
            "terminated by " + ("its owner" if live.user_id == principal.user.id else "staff"),
            by=principal.user.email,
            actor=principal.actor,
        )
    except SessionUnavailable:
        raise NotFoundProblem(f"no live session {session_id[:64]}") from None
    return Response(status_code=204)


async def terminal(websocket: WebSocket) -> None:
    await gateway_of(websocket.app).serve(websocket, websocket.path_params["session_id"])


async def download_recording(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request, services)
    recording = await services.recordings.get(
        principal.workspace_id, request.path_params["recording_id"]
    )
    session = await services.sessions.get(principal.workspace_id, recording.session_id)
    if session.user_id != principal.user.id and principal.user.role not in STAFF:
        raise NotFoundProblem(f"recording {recording.id} not found")
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


async def list_recordings(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    session_id = request.query_params.get("session_id")
    rows = await services.recordings.list(principal.workspace_id, session_id=session_id)
    if principal.user.role not in STAFF:
        own = {
            s.id
            for s in await services.sessions.list(principal.workspace_id, user_id=principal.user.id)
        }
        rows = [r for r in rows if r.session_id in own]
    return JSONResponse(
        {
            "recordings": [
                {"id": r.id, "session_id": r.session_id, "size_bytes": r.size_bytes} for r in rows
            ]
        }
    )


# ---------------------------------------------------------------- revoking calls


def _revocation(request: Request) -> Revocation:
    return Revocation(gateway_of(request.app))


async def disable_user(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    _need_admin(principal)
    user_id = request.path_params["user_id"]
    await services.users.set_disabled(principal.workspace_id, user_id, True, actor=principal.actor)
    ended = await _revocation(request).user_disabled(
        principal.workspace_id, user_id, actor=principal.actor
    )
    return JSONResponse({"disabled": True, "sessions_ended": ended})


async def revoke_token(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    token_id = request.path_params["token_id"]
    own = {
        t.id for t in await services.tokens.list(principal.workspace_id, user_id=principal.user.id)
    }
    if token_id not in own:
        _need_admin(principal)
    await services.tokens.revoke(principal.workspace_id, token_id, actor=principal.actor)
    ended = await _revocation(request).token_revoked(
        principal.workspace_id, token_id, actor=principal.actor
    )
    return JSONResponse({"revoked": True, "sessions_ended": ended})


async def revoke_grant(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    _need_admin(principal)
    await services.grants.revoke(
        principal.workspace_id, request.path_params["grant_id"], actor=principal.actor
    )
    ended = await _revocation(request).access_changed(principal.workspace_id, actor=principal.actor)
    return JSONResponse({"revoked": True, "sessions_ended": ended})


async def remove_server(request: Request) -> JSONResponse:
    """End the server's live sessions, forget the server and hang up its agent."""
    services = services_of(request)
    principal = await authenticate(request, services)
    _need_admin(principal)
    server = await services.servers.get(principal.workspace_id, request.path_params["server_id"])
    ended = await _revocation(request).server_removed(
        principal.workspace_id, server.id, actor=principal.actor
    )
    await services.servers.remove(principal.workspace_id, server.id, actor=principal.actor)
    await request.app.state.hub.disconnect(server.id, "server removed")
    return JSONResponse({"removed": True, "sessions_ended": ended})


async def remove_group_member(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    _need_admin(principal)
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
