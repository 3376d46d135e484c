"""Service accounts for CI/CD (staff, ``service_accounts.*``): not tied to a person, no
password or SSO, their own scoped tokens (minted here by staff or superusers), grants and
group memberships like a user's, ``actor_type`` ``service`` in the audit log.

``DELETE`` retires one: every token revoked, grants and memberships dropped, the account
disabled and its live sessions ended; the row stays so the audit log keeps naming it.
A service account with the staff role is a superuser's to create or change
(``users.promote``), as promoting a person is.
"""

from __future__ import annotations

from typing import Literal

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
from api.tokens import TokenIn, TokenList, mint, token_key
from api.users import UserChanged, UserPatch, apply_patch
from api.views import TokenOut, UserOut, token_view, user_view
from broker.gateway import Revocation
from broker.services import Services
from broker.store.models import Role, User

__all__ = ["service_account_routes"]


class AccountIn(Model):
    name: str = Field(min_length=1, max_length=64)
    role: Literal["user", "staff"] = "user"
    description: str = Field("", max_length=200)


class AccountPatch(Model):
    description: str | None = Field(None, max_length=200)
    role: Literal["user", "staff"] | None = None
    disabled: bool | None = None


class AccountList(BaseModel):
    service_accounts: list[UserOut]
    next_cursor: str | None


class Retired(BaseModel):
    retired: bool
    tokens_revoked: int
    sessions_ended: int


class TokenCreated(TokenOut):
    secret: str


async def _account(services: Services, principal: Principal, request: Request) -> User:
    return await services.service_accounts.get(
        principal.workspace_id, request.path_params["account_id"]
    )


@operation(
    summary="List service accounts (ordered by name)",
    tag="service-accounts",
    query=PageQuery,
    ok=AccountList,
    errors=(400, 403),
)
async def list_accounts(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    await authorize(request, principal, "service_accounts.read")
    query = query_of(request, PageQuery)
    rows = await services.service_accounts.list(principal.workspace_id)
    page, cursor = page_of(request, "service_accounts", rows, query, lambda u: (u.email,))
    return JSONResponse({"service_accounts": [user_view(u) for u in page], "next_cursor": cursor})


@operation(
    summary="Create a service account",
    tag="service-accounts",
    body=AccountIn,
    ok=UserOut,
    status=201,
    scope="admin",
    errors=(400, 403, 409),
)
async def create_account(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    await authorize(request, principal, "service_accounts.update")
    body = await body_of(request, AccountIn)
    if body.role != "user":
        await authorize(request, principal, "users.promote", body.name)
    account = await services.service_accounts.create(
        principal.workspace_id,
        body.name,
        role=Role(body.role),
        description=body.description,
        actor=principal.actor,
    )
    return JSONResponse(user_view(account), status_code=201)


@operation(
    summary="One service account", tag="service-accounts", ok=UserOut, errors=(400, 403, 404)
)
async def get_account(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    await authorize(request, principal, "service_accounts.read")
    return JSONResponse(user_view(await _account(services, principal, request)))


@operation(
    summary="Change a service account's description, role or disabled flag",
    tag="service-accounts",
    body=AccountPatch,
    ok=UserChanged,
    scope="admin",
    errors=(400, 403, 404),
)
async def patch_account(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    await authorize(request, principal, "service_accounts.update")
    body = await body_of(request, AccountPatch)
    account = await _account(services, principal, request)
    if account.role is not Role.USER or (body.role is not None and body.role != "user"):
        await authorize(request, principal, "users.promote", account.id)
    patch = UserPatch(display_name=body.description, role=body.role, disabled=body.disabled)
    return JSONResponse(await apply_patch(request, principal, account, patch))


@operation(
    summary="Retire a service account (tokens revoked, sessions ended)",
    tag="service-accounts",
    ok=Retired,
    scope="admin",
    errors=(400, 403, 404),
)
async def retire_account(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    await authorize(request, principal, "service_accounts.update")
    account = await _account(services, principal, request)
    revoked = await services.service_accounts.retire(
        principal.workspace_id, account.id, actor=principal.actor
    )
    ended = await Revocation(gateway_of(request.app)).user_disabled(
        principal.workspace_id, account.id, actor=principal.actor
    )
    return JSONResponse({"retired": True, "tokens_revoked": revoked, "sessions_ended": len(ended)})


@operation(
    summary="Create a token for a service account (the secret is shown once)",
    tag="service-accounts",
    body=TokenIn,
    ok=TokenCreated,
    status=201,
    scope="admin",
    errors=(400, 403, 404, 429),
)
async def create_account_token(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    await authorize(request, principal, "service_accounts.tokens")
    body = await body_of(request, TokenIn)
    account = await _account(services, principal, request)
    return await mint(request, principal, account, body, "service_accounts.tokens")


@operation(
    summary="A service account's tokens, with last use; ordered by creation",
    tag="service-accounts",
    query=PageQuery,
    ok=TokenList,
    errors=(400, 403, 404),
)
async def list_account_tokens(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    await authorize(request, principal, "service_accounts.read")
    query = query_of(request, PageQuery)
    account = await _account(services, principal, request)
    rows = await services.tokens.list(principal.workspace_id, user_id=account.id)
    page, cursor = page_of(request, "tokens", rows, query, token_key)
    return JSONResponse({"tokens": [token_view(t) for t in page], "next_cursor": cursor})


def service_account_routes() -> list[BaseRoute]:
    base = "/api/v1/service-accounts"
    return [
        Route(base, list_accounts, methods=["GET"]),
        Route(base, create_account, methods=["POST"]),
        Route(base + "/{account_id}", get_account, methods=["GET"]),
        Route(base + "/{account_id}", patch_account, methods=["PATCH"]),
        Route(base + "/{account_id}", retire_account, methods=["DELETE"]),
        Route(base + "/{account_id}/tokens", list_account_tokens, methods=["GET"]),
        Route(base + "/{account_id}/tokens", create_account_token, methods=["POST"]),
    ]
