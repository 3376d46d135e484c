"""OpenID Connect relying party: the authorization-code flow with PKCE, state and nonce.

This is the protocol core only (the per-workspace provider rows, the routes and creating
users just in time come with the SSO round). It never trusts the browser: ``state`` must
match what :meth:`OidcClient.begin` issued, the code is exchanged server-to-server with the
client secret and the PKCE verifier, and the ID token must be signed by a key from the
issuer's JWKS and carry the expected ``iss``, ``aud``, ``nonce`` and a live ``exp`` (with a
bounded clock skew). Any failure is :class:`AuthenticationFailed` with a reason safe to
audit: never the code, the token or the client secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from broker.errors import AuthenticationFailed
from broker.store.models import utcnow

__all__ = ["OidcClient", "OidcConfig", "OidcIdentity", "PendingLogin"]

ALGORITHMS = ["RS256", "ES256", "PS256", "EdDSA"]


@dataclass(frozen=True)
class OidcConfig:
    issuer: str
    client_id: str
    client_secret: str
    redirect_uri: str
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    groups_claim: str = "groups"
    max_skew_seconds: int = 60
    extra_authorize_params: tuple[tuple[str, str], ...] = ()
    """Provider-specific hints for the authorization request (Google's ``hd``)."""


@dataclass(frozen=True)
class PendingLogin:
    """What the broker keeps between the redirect out and the callback (server-side)."""

    state: str
    nonce: str
    code_verifier: str


@dataclass(frozen=True)
class OidcIdentity:
    subject: str
    email: str
    email_verified: bool
    name: str
    groups: tuple[str, ...]
    claims: dict[str, Any] = field(repr=False)


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class OidcClient:
    def __init__(
        self,
        config: OidcConfig,
        *,
        http: httpx.AsyncClient,
        clock: Callable[[], datetime] = utcnow,
        cache_seconds: float = 3600.0,
    ) -> None:
        self.config = config
        self.http = http
        self.clock = clock
        self.cache_seconds = cache_seconds
        self._metadata: tuple[float, dict[str, Any]] | None = None
        self._jwks: tuple[float, KeySet] | None = None
        self.min_refresh_seconds = 60.0

    def _fresh(self, cached: tuple[float, Any] | None) -> bool:
        return cached is not None and time.monotonic() - cached[0] < self.cache_seconds

    async def metadata(self) -> dict[str, Any]:
        """The issuer's discovery document (cached ``cache_seconds``); its ``issuer`` must
        be ours exactly and it must name the endpoints the code flow needs."""
        if self._metadata is None or not self._fresh(self._metadata):
            url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
            document = await self._get_json(url, "discovery")
            if document.get("issuer") != self.config.issuer:
                raise AuthenticationFailed("OIDC discovery names another issuer")
            needed = ("authorization_endpoint", "token_endpoint", "jwks_uri")
            if not all(isinstance(document.get(k), str) for k in needed):
                raise AuthenticationFailed("OIDC discovery lacks an endpoint")
            self._metadata = (time.monotonic(), document)
        return self._metadata[1]

    async def _keys(self, *, refresh: bool = False) -> KeySet:
        """The issuer's signing keys, cached like the discovery document; ``refresh``
        re-reads them (a token signed by a key we have not seen: the issuer rotated), at
        most once a minute, so bad tokens cannot make us hammer the issuer."""
        recent = self._jwks is not None and (
            time.monotonic() - self._jwks[0] < self.min_refresh_seconds
        )
        if (refresh and not recent) or self._jwks is None or not self._fresh(self._jwks):
            meta = await self.metadata()
            document: Any = await self._get_json(meta["jwks_uri"], "JWKS")
            try:
                keys = KeySet.import_key_set(document)
            except (JoseError, ValueError, KeyError, TypeError):
                raise AuthenticationFailed("OIDC JWKS cannot be read") from None
            self._jwks = (time.monotonic(), keys)
        return self._jwks[1]

    async def begin(self) -> tuple[str, PendingLogin]:
        """The provider URL to send the browser to, and what to keep until the callback."""
        meta = await self.metadata()
        pending = PendingLogin(
            state=secrets.token_urlsafe(32),
            nonce=secrets.token_urlsafe(32),
            code_verifier=secrets.token_urlsafe(48),
        )
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.config.client_id,
                "redirect_uri": self.config.redirect_uri,
                "scope": " ".join(self.config.scopes),
                "state": pending.state,
                "nonce": pending.nonce,
                "code_challenge": _s256(pending.code_verifier),
                "code_challenge_method": "S256",
                **dict(self.config.extra_authorize_params),
            }
        )
        return f"{meta['authorization_endpoint']}?{query}", pending

    async def finish(self, pending: PendingLogin, params: Mapping[str, str]) -> OidcIdentity:
        """Check the callback, redeem the code and validate the ID token."""
        if "error" in params:
            raise AuthenticationFailed(f"OIDC provider refused: {params['error'][:100]}")
        if not hmac.compare_digest(params.get("state", ""), pending.state):
            raise AuthenticationFailed("OIDC state does not match this login")
        code = params.get("code", "")
        if not code:
            raise AuthenticationFailed("OIDC callback without a code")
        meta = await self.metadata()
        try:
            response = await self.http.post(
                meta["token_endpoint"],
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": self.config.redirect_uri,
                    "code_verifier": pending.code_verifier,
                },
                auth=(self.config.client_id, self.config.client_secret),
            )
        except httpx.HTTPError as exc:
            raise AuthenticationFailed(f"OIDC token endpoint: {type(exc).__name__}") from None
        body = _json_or_empty(response)
        if response.status_code != 200 or "id_token" not in body:
            error = str(body.get("error", f"status {response.status_code}"))[:100]
            raise AuthenticationFailed(f"OIDC token endpoint refused: {error}")
        claims = await self._validate(str(body["id_token"]), pending.nonce)
        groups = claims.get(self.config.groups_claim, [])
        return OidcIdentity(
            subject=str(claims["sub"]),
            email=str(claims.get("email", "")).lower(),
            email_verified=claims.get("email_verified") is True,
            name=str(claims.get("name", "")),
            groups=tuple(str(g) for g in groups) if isinstance(groups, list) else (),
            claims=claims,
        )

    async def _validate(self, id_token: str, nonce: str) -> dict[str, Any]:
        try:
            token = jwt.decode(id_token, await self._keys(), algorithms=ALGORITHMS)
        except (JoseError, ValueError):
            # Maybe the issuer rotated its keys since we cached them: read them once more.
            try:
                token = jwt.decode(id_token, await self._keys(refresh=True), algorithms=ALGORITHMS)
            except (JoseError, ValueError) as exc:
                raise AuthenticationFailed(
                    f"OIDC ID token signature: {type(exc).__name__}"
                ) from None
        claims: dict[str, Any] = dict(token.claims)
        now = self.clock().timestamp()
        skew = self.config.max_skew_seconds
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if claims.get("iss") != self.config.issuer:
            raise AuthenticationFailed("OIDC ID token from another issuer")
        if self.config.client_id not in audiences:
            raise AuthenticationFailed("OIDC ID token for another audience")
        if len(audiences) > 1 and claims.get("azp") != self.config.client_id:
            raise AuthenticationFailed("OIDC ID token authorised for another party")
        if not isinstance(claims.get("exp"), int | float) or now > claims["exp"] + skew:
            raise AuthenticationFailed("OIDC ID token expired")
        if isinstance(claims.get("iat"), int | float) and claims["iat"] > now + skew:
            raise AuthenticationFailed("OIDC ID token issued in the future")
        if not hmac.compare_digest(str(claims.get("nonce", "")), nonce):
            raise AuthenticationFailed("OIDC nonce does not match this login")
        if not claims.get("sub"):
            raise AuthenticationFailed("OIDC ID token without a subject")
        return claims

    async def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            response = await self.http.get(url)
        except httpx.HTTPError as exc:
            raise AuthenticationFailed(f"OIDC {what}: {type(exc).__name__}") from None
        body = _json_or_empty(response)
        if response.status_code != 200 or not body:
            raise AuthenticationFailed(f"OIDC {what}: status {response.status_code}")
        return body


def _json_or_empty(response: httpx.Response) -> dict[str, Any]:
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
