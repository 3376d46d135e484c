"""SAML 2.0 routes: our SP metadata, the redirect to the IdP, and the assertion consumer
service the IdP's form posts to. All three are unauthenticated (the person is signing in);
the provider id in the path selects the provider and so its workspace.

A refused response is a 401 problem that names nothing internal; the reason is in the audit
log (``sso.refused``). An accepted one becomes a browser session exactly like a password
login (same states: Corral's own MFA still applies, see docs/identity.md) and a 303 to the
page the login started from, which must be on this broker's own origin.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from pydantic import Field
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from api.auth import client_source, identity_of
from api.problems import BadRequest, NotFoundProblem, problem_response
from api.spec import Model, operation, query_of
from api.state import runtime_of, services_of
from broker.audit import Actor, Category, Outcome
from broker.errors import AuthenticationFailed, NotFound
from broker.store.models import SsoProtocol, SsoProvider
from idp.saml_login import MAX_RESPONSE_BYTES, PENDING_COOKIE, PENDING_SECONDS, cookie_path
from idp.sso_login import UnsafeReturn, finish_sso_login, safe_return_path

__all__ = ["saml_routes"]

METADATA_TYPE = "application/samlmetadata+xml"
FORM_TYPE = "application/x-www-form-urlencoded"
REFUSED = "single sign-on failed; start the login again or ask your administrator"


class SamlLoginQuery(Model):
    return_to: str = Field(default="/", max_length=500)
    """Where to land after signing in: a path (or URL) on this broker."""
    workspace: str | None = Field(default=None, min_length=1, max_length=100)
    """The workspace the provider belongs to (default: the broker's default workspace)."""


async def _provider(request: Request) -> SsoProvider:
    """The enabled SAML provider the path names, in whichever workspace holds it: the IdP
    addresses metadata and ACS by provider id alone. Anything else is one 404."""
    services = services_of(request)
    provider = await services.sso.callback_provider(request.path_params["provider_id"])
    if provider is None or provider.protocol is not SsoProtocol.SAML or not provider.enabled:
        raise NotFoundProblem("identity provider not found")
    return provider


async def _provider_in(request: Request, workspace_name: str | None) -> SsoProvider:
    """For the login a person starts: the provider must be in the named workspace (the
    default one unless given); another workspace's provider is the same 404, audited."""
    services = services_of(request)
    ident = request.path_params["provider_id"]
    name = workspace_name or runtime_of(request).settings.default_workspace
    workspace = await services.workspaces.find(name)
    if workspace is None:
        raise NotFoundProblem("identity provider not found")
    try:
        provider = await services.sso.provider(workspace.id, ident)
    except NotFound:
        provider = None
    if provider is None or provider.protocol is not SsoProtocol.SAML or not provider.enabled:
        source = client_source(request)
        await services.audit.emit(
            workspace.id,
            Category.AUTHORIZATION,
            "api.not_found",
            outcome=Outcome.DENIED,
            actor=Actor("anonymous", source),
            target=ident[:100],
            details={"kind": "identity provider", "path": request.url.path[:200]},
        )
        raise NotFoundProblem("identity provider not found")
    return provider


@operation(
    summary="SAML service-provider metadata (give its URL to the IdP)",
    tag="sso",
    authenticated=False,
    media_type=METADATA_TYPE,
    errors=(404, 503),
)
async def metadata(request: Request) -> Response:
    provider = await _provider(request)
    try:
        xml = identity_of(request).saml.sp(provider).metadata()
    except AuthenticationFailed:  # the SAML libraries do not load (see SamlLogins.sp)
        return problem_response(
            request, 503, "unavailable", "Service unavailable", "SAML is unavailable here"
        )
    return Response(xml, media_type=METADATA_TYPE)


@operation(
    summary="Start a SAML sign-in: 302 to the IdP with an AuthnRequest",
    tag="sso",
    authenticated=False,
    query=SamlLoginQuery,
    status=302,
    errors=(400, 401, 404),
    media_type="text/html",
    description="Sets a signed, HttpOnly, SameSite=None pending-request cookie for the ACS. "
    "`return_to` must be a path (or URL) on this broker, else 400.",
)
async def login(request: Request) -> Response:
    query = query_of(request, SamlLoginQuery)
    provider = await _provider_in(request, query.workspace)
    saml = identity_of(request).saml
    try:
        return_to = safe_return_path(query.return_to, saml.public_url)
    except UnsafeReturn as exc:
        raise BadRequest(str(exc)) from None
    try:
        url, cookie = await saml.begin(provider, return_to, source=client_source(request))
    except AuthenticationFailed:  # a misconfigured provider: the reason is in the audit
        return _refused(request)
    response = RedirectResponse(url, status_code=302)
    response.set_cookie(
        PENDING_COOKIE,
        cookie,
        max_age=PENDING_SECONDS,
        path=cookie_path(provider.id),
        secure=True,
        httponly=True,
        samesite="none",  # the IdP's form post back to the ACS is cross-site
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@operation(
    summary="SAML assertion consumer service (the IdP's HTTP-POST binding)",
    description=(
        "Takes an application/x-www-form-urlencoded body with SAMLResponse and RelayState, "
        "as the IdP's auto-submitting form sends it. Success sets the session cookies and "
        "answers 303 to the return path given at login."
    ),
    tag="sso",
    authenticated=False,
    status=303,
    errors=(401, 404),
    media_type="text/html",
)
async def acs(request: Request) -> Response:
    provider = await _provider(request)
    services, identity = services_of(request), identity_of(request)
    source = client_source(request)
    try:
        form = await _form(request)
        user, pending = await identity.saml.finish(
            provider,
            form.get("SAMLResponse", ""),
            form.get("RelayState", ""),
            request.cookies.get(PENDING_COOKIE, ""),
            source=source,
        )
    except AuthenticationFailed:
        response = _refused(request)
    except _BadForm as exc:
        await services.sso.refuse(provider, str(exc), source=source)
        response = _refused(request)
    else:
        response = await finish_sso_login(
            identity_of(request).browser,
            user,
            provider,
            return_to=pending.return_to,
            source=client_source(request),
            user_agent=request.headers.get("user-agent", ""),
        )
    response.delete_cookie(
        PENDING_COOKIE, path=cookie_path(provider.id), secure=True, httponly=True, samesite="none"
    )
    response.headers["Cache-Control"] = "no-store"
    return response


class _BadForm(Exception):
    pass


def _refused(request: Request) -> Response:
    """One answer for every refusal: what went wrong is for the audit log, not the caller."""
    return problem_response(request, 401, "unauthenticated", "Authentication required", REFUSED)


async def _form(request: Request) -> dict[str, str]:
    """The posted form, bounded; not via Starlette's multipart parser (one encoding only)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != FORM_TYPE:
        raise _BadForm(f"ACS post is not {FORM_TYPE}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_RESPONSE_BYTES + 8192:
            raise _BadForm("ACS post too large")
    try:
        fields = parse_qs(bytes(body).decode("ascii"), max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise _BadForm("ACS post is not a form") from None
    return {key: values[0] for key, values in fields.items() if len(values) == 1}


def saml_routes() -> list[BaseRoute]:
    base = "/api/v1/sso/saml/{provider_id}"
    return [
        Route(f"{base}/metadata", metadata, methods=["GET"]),
        Route(f"{base}/login", login, methods=["GET"]),
        Route(f"{base}/acs", acs, methods=["POST"]),
    ]
