"""User groups and their members (staff, ``groups.*``).

Removing a member (``DELETE /api/v1/groups/{g}/members/{u}``, in :mod:`api.revocation`)
and deleting a group both end the live sessions that are no longer allowed.
"""

from __future__ import annotations

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from api.auth import authenticate
from api.authz import authorize
from api.pagination import PageQuery, page_of
from api.sessions import gateway_of
from api.spec import Model, body_of, operation, query_of
from api.state import services_of
from api.views import GroupOut, UserOut, group_view, user_view
from broker.gateway import Revocation

__all__ = ["group_routes"]


class GroupIn(Model):
    name: str = Field(min_length=1, max_length=100)
    description: str = Field("", max_length=1000)


class GroupPatch(Model):
    name: str | None = Field(None, min_length=1, max_length=100)
    description: str | None = Field(None, max_length=1000)


class GroupList(BaseModel):
    groups: list[GroupOut]
    next_cursor: str | None


class GroupDetail(GroupOut):
    member_count: int


class MemberIn(Model):
    user_id: str = Field(min_length=1, max_length=64)


class MemberList(BaseModel):
    members: list[UserOut]
    next_cursor: str | None


class Ended(BaseModel):
    deleted: bool
    sessions_ended: int


@operation(
    summary="List user groups (ordered by name)",
    tag="groups",
    query=PageQuery,
    ok=GroupList,
    errors=(400, 403),
)
async def list_groups(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    await authorize(request, principal, "groups.read")
    query = query_of(request, PageQuery)
    rows = await services.groups.list(principal.workspace_id)
    page, cursor = page_of(request, "groups", rows, query, lambda g: (g.name,))
    return JSONResponse({"groups": [group_view(g) for g in page], "next_cursor": cursor})


@operation(
    summary="Create a user group",
    tag="groups",
    body=GroupIn,
    ok=GroupOut,
    status=201,
    scope="admin",
    errors=(400, 403, 409),
)
async def create_group(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    await authorize(request, principal, "groups.update")
    body = await body_of(request, GroupIn)
    group = await services.groups.create(
        principal.workspace_id, body.name, description=body.description, actor=principal.actor
    )
    return JSONResponse(group_view(group), status_code=201)


@operation(summary="One user group", tag="groups", ok=GroupDetail, errors=(400, 403, 404))
async def get_group(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    group_id = request.path_params["group_id"]
    await authorize(request, principal, "groups.read", group_id)
    group = await services.groups.get(principal.workspace_id, group_id)
    members = await services.groups.members(principal.workspace_id, group.id)
    return JSONResponse({**group_view(group), "member_count": len(members)})


@operation(
    summary="Rename a user group or change its description",
    tag="groups",
    body=GroupPatch,
    ok=GroupOut,
    scope="admin",
    errors=(400, 403, 404, 409),
)
async def patch_group(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    group_id = request.path_params["group_id"]
    await authorize(request, principal, "groups.update", group_id)
    body = await body_of(request, GroupPatch)
    group = await services.groups.update(
        principal.workspace_id,
        group_id,
        name=body.name,
        description=body.description,
        actor=principal.actor,
    )
    # The policy names groups: a rename can change who reaches what.
    await Revocation(gateway_of(request.app)).access_changed(
        principal.workspace_id, actor=principal.actor
    )
    return JSONResponse(group_view(group))


@operation(
    summary="Delete a user group (its grants go with it)",
    tag="groups",
    ok=Ended,
    scope="admin",
    errors=(400, 403, 404),
)
async def delete_group(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    group_id = request.path_params["group_id"]
    await authorize(request, principal, "groups.update", group_id)
    await services.groups.delete(principal.workspace_id, group_id, actor=principal.actor)
    ended = await Revocation(gateway_of(request.app)).access_changed(
        principal.workspace_id, actor=principal.actor
    )
    return JSONResponse({"deleted": True, "sessions_ended": len(ended)})


@operation(
    summary="A group's members (ordered by email)",
    tag="groups",
    query=PageQuery,
    ok=MemberList,
    errors=(400, 403, 404),
)
async def list_members(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    group_id = request.path_params["group_id"]
    await authorize(request, principal, "groups.read", group_id)
    query = query_of(request, PageQuery)
    rows = await services.groups.members(principal.workspace_id, group_id)
    page, cursor = page_of(request, "members", rows, query, lambda u: (u.email,))
    return JSONResponse({"members": [user_view(u) for u in page], "next_cursor": cursor})


@operation(
    summary="Add a person or service account to a group",
    tag="groups",
    body=MemberIn,
    ok=GroupDetail,
    status=201,
    scope="admin",
    errors=(400, 403, 404, 409),
)
async def add_member(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    group_id = request.path_params["group_id"]
    await authorize(request, principal, "groups.update", group_id)
    body = await body_of(request, MemberIn)
    ws = principal.workspace_id
    await services.groups.add_member(ws, group_id, body.user_id, actor=principal.actor)
    group = await services.groups.get(ws, group_id)
    members = await services.groups.members(ws, group_id)
    return JSONResponse({**group_view(group), "member_count": len(members)}, status_code=201)


def group_routes() -> list[BaseRoute]:
    return [
        Route("/api/v1/groups", list_groups, methods=["GET"]),
        Route("/api/v1/groups", create_group, methods=["POST"]),
        Route("/api/v1/groups/{group_id}", get_group, methods=["GET"]),
        Route("/api/v1/groups/{group_id}", patch_group, methods=["PATCH"]),
        Route("/api/v1/groups/{group_id}", delete_group, methods=["DELETE"]),
        Route("/api/v1/groups/{group_id}/members", list_members, methods=["GET"]),
        Route("/api/v1/groups/{group_id}/members", add_member, methods=["POST"]),
    ]
