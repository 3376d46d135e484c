"""OpenID Connect login for a workspace's configured providers (generic, or the Google
preset): the redirect out and the callback, around the protocol core in ``idp/oidc.py``.

Nothing the browser brings back is trusted. The pending login (state, nonce, PKCE verifier,
where to return) travels in a cookie *sealed* with AES-GCM under a broker subkey and bound
to the provider id: the browser can neither read the verifier nor change anything, and
only the browser that started the login has it (a callback link planted in another
browser -- login CSRF -- finds no cookie). The state is then claimed once in the replay
store, so a callback cannot be replayed either, and the pending login expires after
10 minutes. Every refusal goes through :meth:`broker.services.sso.SsoService.refuse`
(audited ``sso.refused`` with why) and reaches the browser as one generic error.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from broker.errors import AuthenticationFailed, CorralError, InvalidInput
from broker.services import Services
from broker.services.sso import SsoAssertion
from broker.store.models import SsoProvider
from idp.errors import RateLimited
from idp.oidc import OidcClient, OidcConfig, OidcIdentity, PendingLogin
from idp.ratelimit import RateLimiter
from idp.secretbox import SecretBox
from idp.sso_config import OidcProviderConfig, oidc_config_of

__all__ = ["PENDING_COOKIE", "PENDING_SECONDS", "OidcLogins", "PendingOidc"]

PENDING_COOKIE = "corral_sso_oidc"
PENDING_SECONDS = 600


@dataclass(frozen=True)
class PendingOidc:
    """What the sealed cookie carries between the redirect out and the callback."""

    provider_id: str
    state: str
    nonce: str
    code_verifier: str
    return_to: str
    expires_at: float


class OidcLogins:
    def __init__(
        self,
        services: Services,
        broker_key: bytes,
        *,
        public_url: str,
        http: httpx.AsyncClient | None = None,
        cache_seconds: float = 3600.0,
        logins_per_minute: int = 30,
    ) -> None:
        self.services = services
        self.public_url = public_url.rstrip("/")
        self.secrets = SecretBox(broker_key, "sso")
        self._pending = SecretBox(broker_key, "sso pending login")
        self._http = http
        self.cache_seconds = cache_seconds
        self._clients: dict[str, tuple[tuple[Any, ...], OidcClient]] = {}
        # Each login started can cost a replay-store row at its callback: bound them.
        self.per_source = RateLimiter(logins_per_minute, 60.0)

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def http(self) -> httpx.AsyncClient:
        """One client for every provider (connection reuse); made on first use."""
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=10.0, follow_redirects=False)
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def callback_url(self, provider_id: str) -> str:
        """The redirect URI to register at the provider."""
        return f"{self.public_url}/api/v1/sso/oidc/{provider_id}/callback"

    def cookie_path(self, provider_id: str) -> str:
        return f"/api/v1/sso/oidc/{provider_id}/"

    def seal_client_secret(self, provider_id: str, secret: str) -> str:
        return self.secrets.seal(secret.encode(), bound_to=provider_id)

    def _client(self, provider: SsoProvider) -> tuple[OidcProviderConfig, OidcClient]:
        """The provider's protocol client: cached (with its discovery document and JWKS)
        until the provider row changes."""
        config = oidc_config_of(provider.config)
        settings = json.dumps(provider.config, sort_keys=True)
        key = (provider.updated_at, provider.secret_box, settings)
        cached = self._clients.get(provider.id)
        if cached is not None and cached[0] == key:
            return config, cached[1]
        if not provider.secret_box:
            raise InvalidInput("the identity provider has no client secret")
        secret = self.secrets.open(provider.secret_box, bound_to=provider.id).decode()
        hints = (("hd", config.hosted_domain),) if config.hosted_domain else ()
        client = OidcClient(
            OidcConfig(
                issuer=config.issuer,
                client_id=config.client_id,
                client_secret=secret,
                redirect_uri=self.callback_url(provider.id),
                scopes=tuple(config.scopes),
                groups_claim=config.groups_claim,
                extra_authorize_params=hints,
            ),
            http=self.http,
            clock=self.services.sso.clock,
            cache_seconds=self.cache_seconds,
        )
        self._clients[provider.id] = (key, client)
        return config, client

    # -- the two legs -----------------------------------------------------------------------

    async def begin(self, provider: SsoProvider, *, return_to: str, source: str) -> tuple[str, str]:
        """The provider's authorization URL and the sealed cookie to set."""
        if not provider.enabled:
            raise await self.services.sso.refuse(
                provider, "identity provider is disabled", source=source
            )
        wait = self.per_source.hit(source)
        if wait:
            await self.services.sso.refuse(provider, "too many logins started", source=source)
            raise RateLimited("too many logins started; try again later", wait)
        try:
            _, client = self._client(provider)
            url, pending = await client.begin()
        except CorralError as exc:  # discovery failed, or a stored secret/config unusable
            raise await self.services.sso.refuse(provider, str(exc), source=source) from None
        expires = self.services.sso.clock().timestamp() + PENDING_SECONDS
        body = json.dumps(
            {
                "p": provider.id,
                "s": pending.state,
                "n": pending.nonce,
                "v": pending.code_verifier,
                "r": return_to,
                "e": expires,
            }
        )
        return url, self._pending.seal(body.encode(), bound_to=provider.id)

    def _open(self, provider: SsoProvider, sealed: str) -> PendingOidc:
        try:
            data = json.loads(self._pending.open(sealed, bound_to=provider.id))
            return PendingOidc(
                data["p"], data["s"], data["n"], data["v"], data["r"], float(data["e"])
            )
        except (CorralError, ValueError, KeyError, TypeError):
            raise AuthenticationFailed("the pending-login cookie is not valid") from None

    async def complete(
        self, provider: SsoProvider, sealed: str | None, params: Mapping[str, str], *, source: str
    ) -> tuple[SsoAssertion, str]:
        """The verified person the provider vouched for, and where to send the browser."""
        try:
            return await self._complete(provider, sealed, params, source)
        except CorralError as exc:  # AuthenticationFailed, or an unusable stored secret
            raise await self.services.sso.refuse(provider, str(exc), source=source) from None

    async def _complete(
        self, provider: SsoProvider, sealed: str | None, params: Mapping[str, str], source: str
    ) -> tuple[SsoAssertion, str]:
        if not provider.enabled:
            raise AuthenticationFailed("identity provider is disabled")
        if not sealed:
            raise AuthenticationFailed("no pending login in this browser")
        pending = self._open(provider, sealed)
        now = self.services.sso.clock()
        if now.timestamp() > pending.expires_at:
            raise AuthenticationFailed("the pending login expired")
        until = datetime.fromtimestamp(pending.expires_at, UTC) + timedelta(minutes=5)
        key = "oidc-state:" + hashlib.sha256(pending.state.encode()).hexdigest()
        if not await self.services.sso.claim_once(provider, key, until):
            raise AuthenticationFailed("this login was already completed (replayed callback)")
        config, client = self._client(provider)
        identity = await client.finish(
            PendingLogin(pending.state, pending.nonce, pending.code_verifier), params
        )
        return self._assertion(config, identity), pending.return_to

    def _assertion(self, config: OidcProviderConfig, identity: OidcIdentity) -> SsoAssertion:
        """Apply the provider's rules to the verified claims (fail closed)."""
        claims = identity.claims
        email = str(claims.get(config.email_claim, "")).strip().lower()
        verified = claims.get("email_verified")
        if verified is False or (config.email_claim == "email" and verified is not True):
            raise AuthenticationFailed("the provider has not verified this email address")
        domain = email.rpartition("@")[2]
        if config.allowed_domains and domain not in config.allowed_domains:
            raise AuthenticationFailed(f"email domain {domain[:100]} is not allowed")
        if config.hosted_domain and claims.get("hd") != config.hosted_domain:
            raise AuthenticationFailed("the account is not in the required hosted domain")
        amr = claims.get("amr")
        details: dict[str, Any] = {"issuer": config.issuer}
        if isinstance(amr, list):
            details["amr"] = [str(a)[:20] for a in amr[:10]]  # recorded, not trusted
        return SsoAssertion(
            subject=identity.subject,
            email=email,
            display_name=identity.name,
            groups=identity.groups,
            details=details,
        )
