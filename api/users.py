"""People in the workspace: list (filtered, paginated), read, invite, change.

There is no DELETE: a person is disabled instead (``PATCH {"disabled": true}``), which
ends their live sessions at once and refuses their tokens and browser sessions. Deleting
the row would cascade to their sessions and recordings, which the audit log refers to.
Service accounts are users too but live under ``/api/v1/service-accounts``; their ids are
not found here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from api.auth import Principal, authenticate
from api.authz import authorize
from api.pagination import PageQuery, cursors_of, page_of
from api.problems import ConflictProblem, NotFoundProblem
from api.sessions import gateway_of
from api.spec import Model, body_of, operation, query_of
from api.state import runtime_of, services_of
from api.views import UserOut, iso, user_view
from broker.gateway import Revocation
from broker.services import Services
from broker.store.models import Role, User, UserKind

__all__ = ["person", "user_routes"]

RoleName = Literal["user", "staff", "superuser"]


class UserQuery(PageQuery):
    role: RoleName | None = None
    disabled: bool | None = None
    email_prefix: str | None = Field(None, max_length=320)


class UserList(BaseModel):
    users: list[UserOut]
    next_cursor: str | None


class InviteIn(Model):
    email: str = Field(max_length=320)
    role: RoleName = "user"
    expires_in_seconds: int = Field(7 * 86400, ge=300, le=30 * 86400)


class InvitationOut(BaseModel):
    id: str
    email: str
    role: str
    expires_at: str
    invitation: str
    url: str


class UserPatch(Model):
    display_name: str | None = Field(None, max_length=200)
    role: RoleName | None = None
    disabled: bool | None = None


class UserChanged(UserOut):
    sessions_ended: int


async def person(services: Services, principal: Principal, user_id: str) -> User:
    """A person of the caller's workspace; a service account or another workspace's id
    is the same 404 (audited by the problem handler)."""
    user = await services.users.get(principal.workspace_id, user_id)
    if user.kind is not UserKind.PERSON:
        raise NotFoundProblem(f"user {user_id[:64]} not found")
    return user


@operation(
    summary="List people (filter by role, disabled, email prefix; ordered by email)",
    tag="users",
    query=UserQuery,
    ok=UserList,
    errors=(400, 403),
)
async def list_users(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    await authorize(request, principal, "users.read")
    query = query_of(request, UserQuery)
    after = cursors_of(request).decode("users", query.cursor)
    rows = await services.users.page(
        principal.workspace_id,
        kind=UserKind.PERSON,
        role=Role(query.role) if query.role else None,
        disabled=query.disabled,
        email_prefix=query.email_prefix,
        after_email=str(after[0]) if after else None,
        limit=query.limit + 1,
    )
    page, cursor = page_of(request, "users", rows, query, lambda u: (u.email,), presorted=True)
    return JSONResponse({"users": [user_view(u) for u in page], "next_cursor": cursor})


@operation(
    summary="Invite a person (the sign-up secret is shown once)",
    tag="users",
    body=InviteIn,
    ok=InvitationOut,
    status=201,
    scope="admin",
    errors=(400, 403, 409),
)
async def invite_user(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    await authorize(request, principal, "users.invite")
    body = await body_of(request, InviteIn)
    if body.role != "user":
        await authorize(request, principal, "users.promote", body.role)
    invitation, secret = await services.accounts.invite(
        principal.workspace_id,
        body.email,
        role=Role(body.role),
        ttl_seconds=body.expires_in_seconds,
        actor=principal.actor,
    )
    base = runtime_of(request).settings.effective_public_url
    return JSONResponse(
        {
            "id": invitation.id,
            "email": invitation.email,
            "role": str(invitation.role),
            "expires_at": iso(invitation.expires_at),
            "invitation": secret,
            "url": f"{base}/signup#{secret}",
        },
        status_code=201,
    )


@operation(summary="One person", tag="users", ok=UserOut, errors=(400, 403, 404))
async def get_user(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    user_id = request.path_params["user_id"]
    if user_id != principal.user.id:  # everyone may read themselves
        await authorize(request, principal, "users.read", user_id)
    return JSONResponse(user_view(await person(services, principal, user_id)))


@operation(
    summary="Change a person's display name, role or disabled flag",
    description="Disabling ends the person's live sessions at once; a lower role ends "
    "the sessions it no longer allows. Staff change people with the user role; roles "
    "above user, and anyone who holds one, are a superuser's (users.promote).",
    tag="users",
    body=UserPatch,
    ok=UserChanged,
    scope="admin",
    errors=(400, 403, 404, 409),
)
async def patch_user(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    user_id = request.path_params["user_id"]
    await authorize(request, principal, "users.update", user_id)
    patch = await body_of(request, UserPatch)
    user = await person(services, principal, user_id)
    if user.role is not Role.USER or (patch.role is not None and patch.role != "user"):
        await authorize(request, principal, "users.promote", user_id)
    if user.id == principal.user.id and (patch.role is not None or patch.disabled):
        raise ConflictProblem("you cannot change your own role or disable yourself")
    return JSONResponse(await apply_patch(request, principal, user, patch))


async def apply_patch(
    request: Request, principal: Principal, user: User, patch: UserPatch
) -> dict[str, object]:
    """Apply a user or service-account patch, then end the sessions it disallows."""
    services, ws = services_of(request), principal.workspace_id
    if patch.display_name is not None and patch.display_name != user.display_name:
        user = await services.users.update(
            ws, user.id, display_name=patch.display_name, actor=principal.actor
        )
    revocation = Revocation(gateway_of(request.app))
    ended: list[str] = []
    if patch.role is not None and patch.role != user.role:
        user = await services.users.set_role(ws, user.id, Role(patch.role), actor=principal.actor)
        ended += await revocation.access_changed(ws, actor=principal.actor)
    if patch.disabled is not None and patch.disabled != user.disabled:
        user = await services.users.set_disabled(ws, user.id, patch.disabled, actor=principal.actor)
        if patch.disabled:
            ended += await revocation.user_disabled(ws, user.id, actor=principal.actor)
    return {**user_view(user), "sessions_ended": len(ended)}


def user_routes() -> list[BaseRoute]:
    return [
        Route("/api/v1/users", list_users, methods=["GET"]),
        Route("/api/v1/users", invite_user, methods=["POST"]),
        Route("/api/v1/users/{user_id}", get_user, methods=["GET"]),
        Route("/api/v1/users/{user_id}", patch_user, methods=["PATCH"]),
    ]
