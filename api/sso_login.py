"""The anonymous side of SSO over HTTP: the list of providers a login page offers, and
the OpenID Connect login (302 to the provider) and callback (verify, sign in, 303 back).
SAML's login and assertion consumer are :mod:`api.saml`; managing providers is
:mod:`api.sso`.

SSO failures reach the browser as one generic 401 problem; the reason is in the audit log
(``sso.refused``), never in the answer. It must never trust ``return_to`` beyond a path on
this broker, never send the pending-login cookie anywhere but its provider's callback
path, and never list a disabled provider or another workspace's.
"""

from __future__ import annotations

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from api.auth import client_source, identity_of
from api.problems import BadRequest, NotFoundProblem, Unauthorized, problem_response
from api.spec import Model, operation, query_of
from api.sso import login_url
from api.state import runtime_of, services_of
from broker.audit import Actor, Category, Outcome
from broker.errors import AuthenticationFailed, NotFound
from broker.services import Services
from broker.store.models import SsoProtocol
from idp.sso_login import UnsafeReturn, finish_sso_login, safe_return_path
from idp.sso_oidc import PENDING_COOKIE, PENDING_SECONDS

__all__ = ["sso_login_routes"]

SSO_FAILED = "single sign-on failed; start the login again or ask your administrator"


class WorkspaceQuery(Model):
    workspace: str | None = Field(default=None, min_length=1, max_length=100)


class LoginQuery(Model):
    workspace: str | None = Field(default=None, min_length=1, max_length=100)
    return_to: str | None = Field(default=None, max_length=500)


class LoginOption(BaseModel):
    id: str
    name: str
    protocol: str
    login_url: str


class LoginOptions(BaseModel):
    workspace: str
    providers: list[LoginOption]


async def _not_found(
    request: Request, services: Services, workspace_id: str, actor: Actor, ident: str
) -> NotFoundProblem:
    """The 404 for a provider id this workspace does not have, audited."""
    await services.audit.emit(
        workspace_id,
        Category.AUTHORIZATION,
        "api.not_found",
        outcome=Outcome.DENIED,
        actor=actor,
        target=ident[:100],
        details={"kind": "identity provider", "path": request.url.path[:200]},
    )
    return NotFoundProblem("identity provider not found")


@operation(
    summary="The enabled identity providers a login page offers",
    tag="sso",
    query=WorkspaceQuery,
    ok=LoginOptions,
    authenticated=False,
    errors=(400,),
    description="Names and login URLs only. An unknown workspace lists none.",
)
async def login_options(request: Request) -> JSONResponse:
    query = query_of(request, WorkspaceQuery)
    services = services_of(request)
    name = query.workspace or runtime_of(request).settings.default_workspace
    workspace = await services.workspaces.find(name)
    rows = [] if workspace is None else await services.sso.providers(workspace.id)
    options = [
        LoginOption(
            id=row.id,
            name=row.name,
            protocol=str(row.protocol),
            login_url=login_url(request, row, name),
        ).model_dump()
        for row in rows
        if row.enabled
    ]
    return JSONResponse({"workspace": name, "providers": options})


# -- OpenID Connect -----------------------------------------------------------------------


@operation(
    summary="Start an OpenID Connect login (302 to the provider)",
    tag="sso",
    query=LoginQuery,
    status=302,
    authenticated=False,
    errors=(400, 401, 404, 429),
    media_type="text/html",
    description="Sets a sealed, HttpOnly pending-login cookie for the callback. "
    "`return_to` must be a path (or URL) on this broker, else 400.",
)
async def oidc_login(request: Request) -> Response:
    query = query_of(request, LoginQuery)
    services, identity = services_of(request), identity_of(request)
    ident = request.path_params["provider_id"]
    name = query.workspace or runtime_of(request).settings.default_workspace
    workspace = await services.workspaces.find(name)
    if workspace is None:
        raise NotFoundProblem("identity provider not found")
    source = client_source(request)
    try:
        provider = await services.sso.provider(workspace.id, ident)
    except NotFound:
        provider = None
    if provider is None or provider.protocol is not SsoProtocol.OIDC:
        raise await _not_found(request, services, workspace.id, Actor("anonymous", source), ident)
    try:
        return_to = safe_return_path(query.return_to, identity.oidc.public_url)
    except UnsafeReturn as exc:
        raise BadRequest(str(exc)) from None
    try:
        url, sealed = await identity.oidc.begin(provider, return_to=return_to, source=source)
    except AuthenticationFailed:
        raise Unauthorized(SSO_FAILED) from None
    response = RedirectResponse(url, status_code=302)
    response.set_cookie(
        PENDING_COOKIE,
        sealed,
        max_age=PENDING_SECONDS,
        path=identity.oidc.cookie_path(provider.id),
        secure=True,
        httponly=True,
        samesite="lax",  # sent on the provider's top-level redirect back to us
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@operation(
    summary="The OpenID Connect callback: verify, sign in, 303 to the page",
    tag="sso",
    status=303,
    authenticated=False,
    errors=(401, 404),
    media_type="text/html",
    description="Refusals are a generic 401; the reason is audited (`sso.refused`).",
)
async def oidc_callback(request: Request) -> Response:
    services, identity = services_of(request), identity_of(request)
    provider = await services.sso.callback_provider(request.path_params["provider_id"])
    if provider is None or provider.protocol is not SsoProtocol.OIDC:
        raise NotFoundProblem("identity provider not found")
    source = client_source(request)
    params = {k: v[:4096] for k, v in request.query_params.items()}
    try:
        assertion, return_to = await identity.oidc.complete(
            provider, request.cookies.get(PENDING_COOKIE), params, source=source
        )
        user = await services.sso.sign_in(provider, assertion, source=source)
    except AuthenticationFailed:
        response = problem_response(
            request, 401, "unauthenticated", "Authentication required", SSO_FAILED
        )
    else:
        response = await finish_sso_login(
            identity.browser,
            user,
            provider,
            return_to=return_to,
            source=source,
            user_agent=request.headers.get("user-agent", ""),
        )
    response.delete_cookie(
        PENDING_COOKIE,
        path=identity.oidc.cookie_path(provider.id),
        secure=True,
        httponly=True,
        samesite="lax",
    )
    return response


def sso_login_routes() -> list[BaseRoute]:
    return [
        Route("/api/v1/sso/login-options", login_options, methods=["GET"]),
        Route("/api/v1/sso/oidc/{provider_id}/login", oidc_login, methods=["GET"]),
        Route("/api/v1/sso/oidc/{provider_id}/callback", oidc_callback, methods=["GET"]),
    ]
