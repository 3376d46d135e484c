"""Managing identity providers over HTTP (staff, ``sso.*``): list, add (OIDC, the Google
preset, or SAML), show, change and remove a workspace's providers; and
:func:`login_url`, the link a login page follows. Logging in through a provider is
:mod:`api.sso_login` (OIDC) and :mod:`api.saml`.

Provider secrets are write-only: ``client_secret`` is sealed at once
(``SecretBox(broker_key, "sso")`` bound to the provider id) and no answer ever carries it,
only ``has_client_secret``; this module must never return or log one. A provider id of
another workspace is the same 404 as a missing one, and audited (``api.not_found``).
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar
from urllib.parse import quote

from pydantic import BaseModel, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from api.auth import Principal, authenticate, identity_of
from api.authz import authorize
from api.bodies import json_object
from api.problems import BadRequest, NotFoundProblem
from api.spec import Model, operation
from api.state import runtime_of, services_of
from broker.errors import InvalidInput, NotFound
from broker.services.directory import NAME
from broker.store.models import Role, SsoProtocol, SsoProvider
from idp.sso_config import check_config

__all__ = ["login_url", "sso_routes"]

M = TypeVar("M", bound=BaseModel)
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


# -- helpers ------------------------------------------------------------------------------


def _base(request: Request) -> str:
    return runtime_of(request).settings.effective_public_url


def login_url(request: Request, provider: SsoProvider, workspace_name: str) -> str:
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
        login_url=login_url(request, provider, workspace_name),
        callback_url=_callback_url(request, provider),
        created_at=provider.created_at.isoformat(),
        updated_at=provider.updated_at.isoformat() if provider.updated_at else None,
    ).model_dump()


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


def sso_routes() -> list[BaseRoute]:
    return [
        Route("/api/v1/sso/providers", list_providers, methods=["GET"]),
        Route("/api/v1/sso/providers", create_provider, methods=["POST"]),
        Route("/api/v1/sso/providers/{provider_id}", get_provider, methods=["GET"]),
        Route("/api/v1/sso/providers/{provider_id}", update_provider, methods=["PATCH"]),
        Route("/api/v1/sso/providers/{provider_id}", delete_provider, methods=["DELETE"]),
    ]
