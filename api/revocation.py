"""The revoking calls: disable a user, revoke a token or a grant, remove a server or a
group member, and end at once the live sessions that access allowed.

Thin: authenticate, authorize, change the row through its service, then let
:class:`broker.gateway.Revocation` end the sessions. It must never end a session itself
(the gateway does, with its audit event) and never answer before the sessions are ended.
``DELETE /api/v1/servers/{server_id}`` keeps the operationId ``sessions_remove_server`` it
had when these calls lived in :mod:`api.sessions`.
"""

from __future__ import annotations

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from api.auth import authenticate
from api.authz import authorize
from api.sessions import gateway_of
from api.spec import operation
from api.state import services_of
from broker.gateway import Revocation

__all__ = ["revocation_routes"]


class Disabled(BaseModel):
    disabled: bool
    sessions_ended: int


class Revoked(BaseModel):
    revoked: bool
    sessions_ended: int


class Removed(BaseModel):
    removed: bool
    sessions_ended: int


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
    operation_id="sessions_remove_server",
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


def revocation_routes() -> list[BaseRoute]:
    return [
        Route("/api/v1/users/{user_id}/disable", disable_user, methods=["POST"]),
        Route("/api/v1/tokens/{token_id}", revoke_token, methods=["DELETE"]),
        Route("/api/v1/grants/{grant_id}", revoke_grant, methods=["DELETE"]),
        Route("/api/v1/servers/{server_id}", remove_server, methods=["DELETE"]),
        Route(
            "/api/v1/groups/{group_id}/members/{user_id}", remove_group_member, methods=["DELETE"]
        ),
    ]
