"""Servers as people see them: the ones their access level does not hide, with the agent's
presence, last contact, system facts and latest metrics.

A server whose level is ``none`` is invisible: it is missing from the list and its id
answers 404, exactly like an id that does not exist.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from api.auth import authenticate
from api.authz import authorize
from api.problems import NotFoundProblem
from api.sessions import gateway_of
from api.spec import operation
from api.state import services_of
from broker.errors import NotFound
from broker.store.models import AccessLevel, Server, ServerStatus

__all__ = ["server_routes"]


class ServerOut(BaseModel):
    id: str
    name: str
    status: ServerStatus
    online: bool
    """Whether the server's agent is connected to this broker right now."""
    last_seen_at: str | None
    platform: str
    tags: dict[str, str]
    sysinfo: dict[str, Any]
    metrics: dict[str, Any]
    access: AccessLevel
    """The caller's access level on this server (never ``none``: those are hidden)."""


class ServerList(BaseModel):
    servers: list[ServerOut]


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when is not None else None


def _shape(server: Server, level: AccessLevel, online: bool) -> dict[str, Any]:
    return {
        "id": server.id,
        "name": server.name,
        "status": str(server.status),
        "online": online,
        "last_seen_at": _iso(server.last_seen_at),
        "platform": server.platform,
        "tags": server.tags,
        "sysinfo": server.sysinfo,
        "metrics": server.metrics,
        "access": str(level),
    }


@operation(summary="List the servers the caller can see", tag="servers", ok=ServerList)
async def list_servers(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    await authorize(request, principal, "servers.read")
    gateway = gateway_of(request.app)
    links = request.app.state.hub.links
    shown = []
    for server in await services.servers.list(principal.workspace_id):
        level = await gateway.resolver.access_level(principal.workspace_id, principal.user, server)
        if level is not AccessLevel.NONE:
            shown.append(_shape(server, level, server.id in links))
    return JSONResponse({"servers": shown})


@operation(summary="One server, by id or name", tag="servers", ok=ServerOut)
async def get_server(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    ref = request.path_params["server_id"]
    await authorize(request, principal, "servers.read", ref[:128])
    gateway = gateway_of(request.app)
    try:
        server = await gateway.find_server(principal.workspace_id, ref)
    except NotFound:
        raise NotFoundProblem(f"server {ref[:64]} not found") from None
    level = await gateway.resolver.access_level(principal.workspace_id, principal.user, server)
    if level is AccessLevel.NONE:
        raise NotFoundProblem(f"server {ref[:64]} not found")
    return JSONResponse(_shape(server, level, server.id in request.app.state.hub.links))


def server_routes() -> list[BaseRoute]:
    return [
        Route("/api/v1/servers", list_servers, methods=["GET"]),
        Route("/api/v1/servers/{server_id}", get_server, methods=["GET"]),
    ]
