"""Server administration (staff, ``servers.*``): server groups, their servers, and a
server's tags. Registration tokens and removal live in :mod:`api.agents` and
:mod:`api.revocation`.

Groups and tags are what grants and policy select servers by, so every change here
re-checks the workspace's live sessions and ends the ones no longer allowed.
"""

from __future__ import annotations

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from api.auth import Principal, authenticate
from api.authz import authorize
from api.pagination import PageQuery, page_of
from api.sessions import gateway_of
from api.spec import Model, body_of, operation, query_of
from api.state import services_of
from api.views import ServerGroupOut, server_group_view
from broker.gateway import Revocation

__all__ = ["server_admin_routes"]


class ServerGroupIn(Model):
    name: str = Field(min_length=1, max_length=100)


class ServerGroupList(BaseModel):
    server_groups: list[ServerGroupOut]
    next_cursor: str | None


class ServerRef(BaseModel):
    id: str
    name: str


class ServerGroupDetail(ServerGroupOut):
    servers: list[ServerRef]


class ServerIn(Model):
    server_id: str = Field(min_length=1, max_length=64)


class TagsIn(Model):
    tags: dict[str, str]


class TagsOut(BaseModel):
    id: str
    name: str
    tags: dict[str, str]
    sessions_ended: int


class Changed(BaseModel):
    changed: bool
    sessions_ended: int


async def _recheck(request: Request, principal: Principal) -> int:
    ended = await Revocation(gateway_of(request.app)).access_changed(
        principal.workspace_id, actor=principal.actor
    )
    return len(ended)


async def _detail(request: Request, principal: Principal, group_id: str) -> dict[str, object]:
    services = services_of(request)
    group = await services.server_groups.get(principal.workspace_id, group_id)
    servers = await services.server_groups.servers(principal.workspace_id, group.id)
    return {
        **server_group_view(group),
        "servers": [{"id": s.id, "name": s.name} for s in servers],
    }


@operation(
    summary="List server groups (ordered by name)",
    tag="servers",
    query=PageQuery,
    ok=ServerGroupList,
    errors=(400, 403),
)
async def list_server_groups(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    await authorize(request, principal, "servers.groups.read")
    query = query_of(request, PageQuery)
    rows = await services.server_groups.list(principal.workspace_id)
    page, cursor = page_of(request, "server_groups", rows, query, lambda g: (g.name,))
    return JSONResponse(
        {"server_groups": [server_group_view(g) for g in page], "next_cursor": cursor}
    )


@operation(
    summary="Create a server group",
    tag="servers",
    body=ServerGroupIn,
    ok=ServerGroupOut,
    status=201,
    scope="admin",
    errors=(400, 403, 409),
)
async def create_server_group(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    await authorize(request, principal, "servers.update")
    body = await body_of(request, ServerGroupIn)
    group = await services.server_groups.create(
        principal.workspace_id, body.name, actor=principal.actor
    )
    return JSONResponse(server_group_view(group), status_code=201)


@operation(
    summary="One server group and its servers",
    tag="servers",
    ok=ServerGroupDetail,
    errors=(400, 403, 404),
)
async def get_server_group(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    group_id = request.path_params["group_id"]
    await authorize(request, principal, "servers.groups.read", group_id)
    return JSONResponse(await _detail(request, principal, group_id))


@operation(
    summary="Delete a server group (grants on it go with it)",
    tag="servers",
    ok=Changed,
    scope="admin",
    errors=(400, 403, 404),
)
async def delete_server_group(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    group_id = request.path_params["group_id"]
    await authorize(request, principal, "servers.update", group_id)
    await services.server_groups.delete(principal.workspace_id, group_id, actor=principal.actor)
    return JSONResponse({"changed": True, "sessions_ended": await _recheck(request, principal)})


@operation(
    summary="Put a server in a server group",
    tag="servers",
    body=ServerIn,
    ok=ServerGroupDetail,
    status=201,
    scope="admin",
    errors=(400, 403, 404, 409),
)
async def add_server(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    group_id = request.path_params["group_id"]
    await authorize(request, principal, "servers.update", group_id)
    body = await body_of(request, ServerIn)
    await services.server_groups.add_server(
        principal.workspace_id, group_id, body.server_id, actor=principal.actor
    )
    await _recheck(request, principal)
    return JSONResponse(await _detail(request, principal, group_id), status_code=201)


@operation(
    summary="Take a server out of a server group",
    tag="servers",
    ok=Changed,
    scope="admin",
    errors=(400, 403, 404),
)
async def remove_server(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    group_id = request.path_params["group_id"]
    await authorize(request, principal, "servers.update", group_id)
    server = await services.servers.get(principal.workspace_id, request.path_params["server_id"])
    await services.server_groups.remove_server(
        principal.workspace_id, group_id, server.id, actor=principal.actor
    )
    return JSONResponse({"changed": True, "sessions_ended": await _recheck(request, principal)})


@operation(
    summary="Replace a server's tags",
    tag="servers",
    body=TagsIn,
    ok=TagsOut,
    scope="admin",
    errors=(400, 403, 404),
)
async def set_tags(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    server_id = request.path_params["server_id"]
    await authorize(request, principal, "servers.update", server_id)
    body = await body_of(request, TagsIn)
    server = await services.servers.set_tags(
        principal.workspace_id, server_id, body.tags, actor=principal.actor
    )
    ended = await _recheck(request, principal)
    return JSONResponse(
        {"id": server.id, "name": server.name, "tags": server.tags, "sessions_ended": ended}
    )


def server_admin_routes() -> list[BaseRoute]:
    return [
        Route("/api/v1/server-groups", list_server_groups, methods=["GET"]),
        Route("/api/v1/server-groups", create_server_group, methods=["POST"]),
        Route("/api/v1/server-groups/{group_id}", get_server_group, methods=["GET"]),
        Route("/api/v1/server-groups/{group_id}", delete_server_group, methods=["DELETE"]),
        Route("/api/v1/server-groups/{group_id}/servers", add_server, methods=["POST"]),
        Route(
            "/api/v1/server-groups/{group_id}/servers/{server_id}",
            remove_server,
            methods=["DELETE"],
        ),
        Route("/api/v1/servers/{server_id}", set_tags, methods=["PATCH"]),
    ]
