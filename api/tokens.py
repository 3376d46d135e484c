"""Personal access tokens: ``GET/POST /api/v1/tokens``, ``GET /api/v1/tokens/{id}``
(``DELETE`` lives in :mod:`api.revocation`: revoking ends the sessions opened with it).

The secret (``crlpat_<id>_<random>``) is in the creation answer only; the broker keeps
its SHA-256. A token never mints a token of a wider scope than its own, and minting is
rate limited per source address and per account (:mod:`api.ratelimits`). Every call
made with a token is audited under its id (``api.request``; see docs/api.md).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from api.auth import Principal, authenticate
from api.authz import authorize, refuse, scope_allows
from api.pagination import PageQuery, page_of
from api.problems import Forbidden
from api.ratelimits import limit_token_creation
from api.spec import Model, body_of, operation, query_of
from api.state import services_of
from api.views import TokenOut, iso, token_view
from broker.store.models import ApiToken, TokenScope, User

__all__ = ["TokenIn", "TokenList", "mint", "token_routes"]


class TokenIn(Model):
    name: str = Field(min_length=1, max_length=100)
    scope: Literal["read", "write", "admin"]
    expires_in_days: Literal[30, 90, 365] | None = 90


class TokenCreated(TokenOut):
    secret: str


class TokenQuery(PageQuery):
    user_id: str | None = Field(None, max_length=64)


class TokenList(BaseModel):
    tokens: list[TokenOut]
    next_cursor: str | None


def token_key(token: ApiToken) -> tuple[str, str]:
    return (iso(token.created_at) or "", token.id)


async def mint(
    request: Request, principal: Principal, owner: User, body: TokenIn, action: str
) -> JSONResponse:
    """Create a token for ``owner`` (the caller or a service account) after the checks
    every token creation shares: scope no wider than the caller's, and the rate limit."""
    services = services_of(request)
    if not scope_allows(principal.scope, body.scope):
        await refuse(
            request,
            principal,
            action,
            reason="token scope",
            scope=str(principal.scope),
            needed=body.scope,
        )
        raise Forbidden(
            f"a {principal.scope} credential cannot create a {body.scope} token",
            needed_scope=body.scope,
        )
    await limit_token_creation(
        request, services, principal.workspace_id, principal.user.id, principal.actor
    )
    token, secret = await services.tokens.create(
        principal.workspace_id,
        owner.id,
        name=body.name,
        scope=TokenScope(body.scope),
        expires_in_days=body.expires_in_days,
        actor=principal.actor,
    )
    return JSONResponse({**token_view(token), "secret": secret}, status_code=201)


@operation(
    summary="Create a personal access token (the secret is shown once)",
    tag="tokens",
    body=TokenIn,
    ok=TokenCreated,
    status=201,
    scope="write",
    errors=(400, 403, 429),
)
async def create_token(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    await authorize(request, principal, "tokens.own.create")
    body = await body_of(request, TokenIn)
    return await mint(request, principal, principal.user, body, "tokens.own.create")


@operation(
    summary="List tokens (your own; staff: ?user_id=), with last use; ordered by creation",
    tag="tokens",
    query=TokenQuery,
    ok=TokenList,
    errors=(400, 403, 404),
)
async def list_tokens(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    query = query_of(request, TokenQuery)
    user_id = query.user_id or principal.user.id
    own = user_id == principal.user.id
    await authorize(request, principal, "tokens.own.read" if own else "tokens.read", user_id)
    if not own:
        await services.users.get(principal.workspace_id, user_id)  # 404 for another's id
    rows = await services.tokens.list(principal.workspace_id, user_id=user_id)
    page, cursor = page_of(request, "tokens", rows, query, token_key)
    return JSONResponse({"tokens": [token_view(t) for t in page], "next_cursor": cursor})


@operation(
    summary="One token (never its secret)", tag="tokens", ok=TokenOut, errors=(400, 403, 404)
)
async def get_token(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    token = await services.tokens.get(principal.workspace_id, request.path_params["token_id"])
    own = token.user_id == principal.user.id
    await authorize(request, principal, "tokens.own.read" if own else "tokens.read", token.id)
    return JSONResponse(token_view(token))


def token_routes() -> list[BaseRoute]:
    return [
        Route("/api/v1/tokens", list_tokens, methods=["GET"]),
        Route("/api/v1/tokens", create_token, methods=["POST"]),
        Route("/api/v1/tokens/{token_id}", get_token, methods=["GET"]),
    ]
