"""SSO over HTTP: the identity-provider admin API (both protocols), the public list a login
page shows, and the OpenID Connect login and callback.

Provider secrets are write-only: ``client_secret`` is sealed at once
(``SecretBox(broker_key, "sso")`` bound to the provider id) and no answer ever carries it,
only ``has_client_secret``. A provider id of another workspace is the same 404 as a missing
one, and audited (``api.not_found``). SSO failures reach the browser as one generic 401
problem; the reason is in the audit log (``sso.refused``), never in the answer.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar
from urllib.parse import quote

from pydantic import BaseModel, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from api.auth import Principal, authenticate, client_source, identity_of
from api.authz import authorize
from api.bodies import json_object
from api.problems import BadRequest, NotFoundProblem, Unauthorized, problem_response
from api.spec import Model, operation, query_of
from api.state import runtime_of, services_of
from broker.audit import Actor, Category, Outcome
from broker.errors import AuthenticationFailed, InvalidInput, NotFound
from broker.services import Services
from broker.services.directory import NAME
from broker.store.models import Role, SsoProtocol, SsoProvider
from idp.sso_config import check_config
from idp.sso_login import UnsafeReturn, finish_sso_login, safe_return_path
from idp.sso_oidc import PENDING_COOKIE, PENDING_SECONDS

__all__ = ["sso_routes"]

M = TypeVar("M", bound=BaseModel)
SSO_FAILED = "single sign-on failed; start the login again or ask your administrator"
MAX_PROVIDERS = 50
MAX_PROVIDER_BODY = 256 * 1024  # SAML metadata can be large


class ProviderIn(Model):
    name: str = Field(min_length=1, max_length=100)
    protocol: Literal["oidc", "saml"]
    preset: Literal["", "google"] = ""
    enabled: bool = True
    config: dict[str, Any] = Field(default_factory=dict)
    client_secret: str | None = Field(default=None, min_length=1, max_length=4000)
    group_mapping: dict[str, str] = Field(default_factory=dict, max_length=500)
    default_role: Literal["user", "staff"] = "user"
    jit: bool = True


class ProviderPatch(Model):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    enabled: bool | None = None
    config: dict[str, Any] | None = None
    client_secret: str | None = Field(default=None, min_length=1, max_length=4000)
    group_mapping: dict[str, str] | None = Field(default=None, max_length=500)
    default_role: Literal["user", "staff"] | None = None
    jit: bool | None = None


class ProviderOut(BaseModel):
    id: str
    name: str
    protocol: str
    preset: str
    enabled: bool
    config: dict[str, Any]
    group_mapping: dict[str, str]
    default_role: str
    jit: bool
    has_client_secret: bool
    login_url: str
    callback_url: str
    """OIDC: the redirect URI to register at the provider; SAML: the ACS URL."""
    created_at: str
    updated_at: str | None


class ProviderList(BaseModel):
    providers: list[ProviderOut]
    next_cursor: str | None


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


# -- helpers ------------------------------------------------------------------------------


def _base(request: Request) -> str:
    return runtime_of(request).settings.effective_public_url


def _login_url(request: Request, provider: SsoProvider, workspace_name: str) -> str:
    return (
        f"{_base(request)}/api/v1/sso/{provider.protocol}/{provider.id}/login"
        f"?workspace={quote(workspace_name, safe='')}"
    )


def _callback_url(request: Request, provider: SsoProvider) -> str:
    if provider.protocol is SsoProtocol.OIDC:
        return identity_of(request).oidc.callback_url(provider.id)
    return f"{_base(request)}/api/v1/sso/saml/{provider.id}/acs"


def _view(request: Request, provider: SsoProvider, workspace_name: str) -> dict[str, Any]:
    return ProviderOut(
        id=provider.id,
        name=provider.name,
        protocol=str(provider.protocol),
        preset=provider.preset,
        enabled=provider.enabled,
        config=provider.config,
        group_mapping=provider.group_mapping,
        default_role=str(provider.default_role),
        jit=provider.jit,
        has_client_secret=bool(provider.secret_box),
        login_url=_login_url(request, provider, workspace_name),
        callback_url=_callback_url(request, provider),
        created_at=provider.created_at.isoformat(),
        updated_at=provider.updated_at.isoformat() if provider.updated_at else None,
    ).model_dump()


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


async def _provider(request: Request, principal: Principal) -> SsoProvider:
    services = services_of(request)
    ident = request.path_params["provider_id"]
    try:
        return await services.sso.provider(principal.workspace_id, ident)
    except NotFound:  # audited as api.not_found by the problem handler (api/tenancy.py)
        raise NotFoundProblem("identity provider not found") from None


async def _reader(request: Request) -> Principal:
    principal = await authenticate(request, services_of(request))
    await authorize(request, principal, "sso.read")
    return principal


async def _admin(request: Request) -> Principal:
    principal = await authenticate(request, services_of(request))
    await authorize(request, principal, "sso.update")
    return principal


def _group_mapping(mapping: dict[str, str]) -> dict[str, str]:
    for idp_group, group in mapping.items():
        if not 1 <= len(idp_group) <= 500:
            raise BadRequest("group_mapping keys (IdP groups) must be 1-500 characters")
        if not NAME.match(group):
            raise BadRequest(f"group_mapping value {group[:100]!r} is not a valid group name")
    return mapping


async def _body(request: Request, model: type[M]) -> M:
    """Like ``api.spec.body_of`` with a larger size limit (SAML metadata documents)."""
    raw = await json_object(request, max_bytes=MAX_PROVIDER_BODY)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "body"
        raise BadRequest(f"body field '{field}': {first['msg']}", field=field) from None


async def _workspace_name(request: Request, workspace_id: str) -> str:
    return (await services_of(request).workspaces.get(workspace_id)).name


# -- admin API ----------------------------------------------------------------------------


@operation(
    summary="List the workspace's identity providers",
    tag="sso",
    ok=ProviderList,
    errors=(403,),
    description="Ordered by name. Secrets are never returned (`has_client_secret` only).",
)
async def list_providers(request: Request) -> JSONResponse:
    principal = await _reader(request)
    name = await _workspace_name(request, principal.workspace_id)
    rows = await services_of(request).sso.providers(principal.workspace_id)
    return JSONResponse(
        {"providers": [_view(request, row, name) for row in rows], "next_cursor": None}
    )


@operation(
    summary="Add an identity provider (OIDC, Google preset, or SAML)",
    tag="sso",
    body=ProviderIn,
    ok=ProviderOut,
    status=201,
    scope="admin",
    errors=(400, 403, 409),
)
async def create_provider(request: Request) -> JSONResponse:
    principal = await _admin(request)
    services, identity = services_of(request), identity_of(request)
    body = await _body(request, ProviderIn)
    protocol = SsoProtocol(body.protocol)
    config = _checked(protocol, body.preset, body.config)
    if protocol is SsoProtocol.OIDC and not body.client_secret:
        raise BadRequest("an OIDC provider needs its client_secret")
    if protocol is SsoProtocol.SAML and body.client_secret is not None:
        raise BadRequest("a SAML provider has no client_secret")
    if len(await services.sso.providers(principal.workspace_id)) >= MAX_PROVIDERS:
        raise BadRequest(f"a workspace can have at most {MAX_PROVIDERS} identity providers")
    try:
        row = await services.sso.create_provider(
            principal.workspace_id,
            body.name,
            protocol,
            config=config,
            group_mapping=_group_mapping(body.group_mapping),
            default_role=Role(body.default_role),
            jit=body.jit,
            preset=body.preset,
            actor=principal.actor,
        )
    except InvalidInput as exc:
        raise BadRequest(str(exc)) from None
    changes: dict[str, Any] = {}
    if body.client_secret:
        # Sealing is bound to the row id, so it can only happen once the row exists.
        changes["secret_box"] = identity.oidc.seal_client_secret(row.id, body.client_secret)
    if not body.enabled:
        changes["enabled"] = False
    if changes:
        row = await services.sso.update_provider(
            principal.workspace_id, row.id, actor=principal.actor, **changes
        )
    name = await _workspace_name(request, principal.workspace_id)
    return JSONResponse(_view(request, row, name), status_code=201)


def _checked(protocol: SsoProtocol, preset: str, config: dict[str, Any]) -> dict[str, Any]:
    try:
        return check_config(protocol, preset, config)
    except InvalidInput as exc:
        raise BadRequest(str(exc), field="config") from None


@operation(summary="Show an identity provider", tag="sso", ok=ProviderOut, errors=(403, 404))
async def get_provider(request: Request) -> JSONResponse:
    principal = await _reader(request)
    row = await _provider(request, principal)
    name = await _workspace_name(request, principal.workspace_id)
    return JSONResponse(_view(request, row, name))


@operation(
    summary="Change an identity provider",
    tag="sso",
    body=ProviderPatch,
    ok=ProviderOut,
    scope="admin",
    errors=(400, 403, 404, 409),
    description="`config`, when given, replaces the whole configuration (validated again).",
)
async def update_provider(request: Request) -> JSONResponse:
    principal = await _admin(request)
    services, identity = services_of(request), identity_of(request)
    row = await _provider(request, principal)
    body = await _body(request, ProviderPatch)
    changes: dict[str, Any] = {}
    for field in ("name", "enabled", "jit"):
        value = getattr(body, field)
        if value is not None:
            changes[field] = value
    if body.config is not None:
        changes["config"] = _checked(row.protocol, row.preset, body.config)
    if body.group_mapping is not None:
        changes["group_mapping"] = _group_mapping(body.group_mapping)
    if body.default_role is not None:
        changes["default_role"] = Role(body.default_role)
    if body.client_secret is not None:
        if row.protocol is not SsoProtocol.OIDC:
            raise BadRequest("a SAML provider has no client_secret")
        changes["secret_box"] = identity.oidc.seal_client_secret(row.id, body.client_secret)
    if not changes:
        raise BadRequest("nothing to change")
    try:
        row = await services.sso.update_provider(
            principal.workspace_id, row.id, actor=principal.actor, **changes
        )
    except InvalidInput as exc:
        raise BadRequest(str(exc)) from None
    name = await _workspace_name(request, principal.workspace_id)
    return JSONResponse(_view(request, row, name))


@operation(
    summary="Remove an identity provider (its people's links go with it)",
    tag="sso",
    status=204,
    scope="admin",
    errors=(403, 404),
)
async def delete_provider(request: Request) -> Response:
    principal = await _admin(request)
    row = await _provider(request, principal)
    await services_of(request).sso.delete_provider(
        principal.workspace_id, row.id, actor=principal.actor
    )
    return Response(status_code=204)


# -- for the login page -------------------------------------------------------------------


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
            login_url=_login_url(request, row, name),
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


def sso_routes() -> list[BaseRoute]:
    return [
        Route("/api/v1/sso/providers", list_providers, methods=["GET"]),
        Route("/api/v1/sso/providers", create_provider, methods=["POST"]),
        Route("/api/v1/sso/providers/{provider_id}", get_provider, methods=["GET"]),
        Route("/api/v1/sso/providers/{provider_id}", update_provider, methods=["PATCH"]),
        Route("/api/v1/sso/providers/{provider_id}", delete_provider, methods=["DELETE"]),
        Route("/api/v1/sso/login-options", login_options, methods=["GET"]),
        Route("/api/v1/sso/oidc/{provider_id}/login", oidc_login, methods=["GET"]),
        Route("/api/v1/sso/oidc/{provider_id}/callback", oidc_callback, methods=["GET"]),
    ]
