"""Access grants stored through the API (staff, ``grants.*``): who (a user, service account
or group) reaches which servers (a name glob, a server group or a ``key=value`` tag) at
which level, as which unix users. ``DELETE /api/v1/grants/{id}`` lives in
:mod:`api.revocation` (it ends the sessions the grant allowed).

What a grant means next to the policy file's own grants is docs/policy.md's "Policy
grants and API grants together".
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field, field_validator
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from api.auth import authenticate
from api.authz import authorize
from api.pagination import PageQuery, page_of
from api.spec import Model, body_of, operation, query_of
from api.state import services_of
from api.views import GrantOut, grant_view, iso
from broker.gateway.access import grant_matches
from broker.store.models import AccessGrant, AccessLevel

__all__ = ["grant_routes"]

UNIX_USER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")
Level = Literal["none", "read-only", "terminal", "full"]


class GrantQuery(PageQuery):
    user_id: str | None = Field(None, max_length=64)
    group_id: str | None = Field(None, max_length=64)
    server_id: str | None = Field(None, max_length=64)


class GrantList(BaseModel):
    grants: list[GrantOut]
    next_cursor: str | None


class GrantIn(Model):
    user_id: str | None = Field(None, max_length=64)
    group_id: str | None = Field(None, max_length=64)
    server_pattern: str | None = Field(None, min_length=1, max_length=200)
    server_group_id: str | None = Field(None, max_length=64)
    server_tag: str | None = Field(None, min_length=3, max_length=200)
    level: Level
    unix_users: list[str] = Field(default_factory=list, max_length=50)

    @field_validator("unix_users")
    @classmethod
    def _unix_users(cls, value: list[str]) -> list[str]:
        for name in value:
            if not UNIX_USER.match(name):
                raise ValueError(f"not a unix user name: {name[:40]!r}")
        return value


def _key(grant: AccessGrant) -> tuple[str, str]:
    return (iso(grant.created_at) or "", grant.id)


@operation(
    summary="List grants (filter by user, group or server; ordered by creation time)",
    description="user_id: grants that apply to the user directly or through a group; "
    "server_id: grants whose selector matches the server.",
    tag="grants",
    query=GrantQuery,
    ok=GrantList,
    errors=(400, 403, 404),
)
async def list_grants(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    await authorize(request, principal, "grants.read")
    query = query_of(request, GrantQuery)
    ws = principal.workspace_id
    if query.user_id is not None:
        groups = await services.groups.groups_of(ws, query.user_id)
        rows = await services.grants.list(
            ws, user_id=query.user_id, group_ids=[g.id for g in groups]
        )
    else:
        rows = await services.grants.list(ws)
    if query.group_id is not None:
        group = await services.groups.get(ws, query.group_id)
        rows = [g for g in rows if g.group_id == group.id]
    if query.server_id is not None:
        server = await services.servers.get(ws, query.server_id)
        in_groups = {g.id for g in await services.server_groups.groups_of(ws, server.id)}
        rows = [g for g in rows if grant_matches(g, server, in_groups)]
    page, cursor = page_of(request, "grants", rows, query, _key)
    return JSONResponse({"grants": [grant_view(g) for g in page], "next_cursor": cursor})


@operation(
    summary="Grant a user, service account or group access to servers",
    description="Exactly one of user_id / group_id, and exactly one of server_pattern / "
    "server_group_id / server_tag (key=value).",
    tag="grants",
    body=GrantIn,
    ok=GrantOut,
    status=201,
    scope="admin",
    errors=(400, 403, 404),
)
async def create_grant(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    await authorize(request, principal, "grants.update")
    body = await body_of(request, GrantIn)
    grant = await services.grants.grant(
        principal.workspace_id,
        level=AccessLevel(body.level),
        user_id=body.user_id,
        group_id=body.group_id,
        server_pattern=body.server_pattern,
        server_group_id=body.server_group_id,
        server_tag=body.server_tag,
        unix_users=body.unix_users,
        actor=principal.actor,
    )
    return JSONResponse(grant_view(grant), status_code=201)


@operation(summary="One grant", tag="grants", ok=GrantOut, errors=(400, 403, 404))
async def get_grant(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    grant_id = request.path_params["grant_id"]
    await authorize(request, principal, "grants.read", grant_id)
    return JSONResponse(grant_view(await services.grants.get(principal.workspace_id, grant_id)))


def grant_routes() -> list[BaseRoute]:
    return [
        Route("/api/v1/grants", list_grants, methods=["GET"]),
        Route("/api/v1/grants", create_grant, methods=["POST"]),
        Route("/api/v1/grants/{grant_id}", get_grant, methods=["GET"]),
    ]
