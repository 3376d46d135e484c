"""The OIDC relying-party core against a real OpenID provider on loopback (authlib's own
authorization server, PKCE and client authentication enforced): success, bad state, bad
nonce, wrong issuer, wrong signer, expired ID token, code reuse, PKCE and client secret
checked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import httpx
import pytest
from joserfc.jwk import RSAKey

from broker.errors import AuthenticationFailed
from broker.store.models import utcnow
from idp.oidc import OidcClient, OidcConfig, PendingLogin
from tests.idp.oidc_provider import CLIENT_ID, CLIENT_SECRET, Provider


@pytest.fixture
def provider(oidc_provider: Provider) -> Provider:
    return oidc_provider


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


def relying_party(
    op: Provider, http: httpx.AsyncClient, *, secret: str = CLIENT_SECRET, skew: float = 0
) -> OidcClient:
    config = OidcConfig(op.issuer, CLIENT_ID, secret, op.redirect_uri)
    return OidcClient(config, http=http, clock=lambda: utcnow() + timedelta(seconds=skew))


async def follow(http: httpx.AsyncClient, url: str) -> dict[str, str]:
    """What the browser brings back to the callback after the provider's redirect."""
    response = await http.get(url)
    assert response.status_code == 302, response.text
    return dict(parse_qsl(urlsplit(response.headers["location"]).query))


async def test_success(provider: Provider, http: httpx.AsyncClient) -> None:
    rp = relying_party(provider, http)
    url, pending = await rp.begin()
    assert "code_challenge_method=S256" in url and pending.code_verifier not in url
    identity = await rp.finish(pending, await follow(http, url))
    assert identity.subject == "u-123" and identity.email == "grace@example.test"
    assert identity.email_verified and identity.groups == ("ops", "dba")


async def test_bad_state(provider: Provider, http: httpx.AsyncClient) -> None:
    rp = relying_party(provider, http)
    url, pending = await rp.begin()
    params = await follow(http, url)
    with pytest.raises(AuthenticationFailed, match="state"):
        await rp.finish(pending, {**params, "state": "forged"})


async def test_bad_nonce(provider: Provider, http: httpx.AsyncClient) -> None:
    rp = relying_party(provider, http)
    url, pending = await rp.begin()
    params = await follow(http, url)
    other = PendingLogin(pending.state, "another-login's-nonce", pending.code_verifier)
    with pytest.raises(AuthenticationFailed, match="nonce"):
        await rp.finish(other, params)


async def test_wrong_issuer(provider: Provider, http: httpx.AsyncClient) -> None:
    provider.issuer_claim = "http://127.0.0.1:1"
    rp = relying_party(provider, http)
    url, pending = await rp.begin()
    with pytest.raises(AuthenticationFailed, match="another issuer"):
        await rp.finish(pending, await follow(http, url))


async def test_wrong_signer(provider: Provider, http: httpx.AsyncClient) -> None:
    provider.signing_key = RSAKey.generate_key(2048, {"kid": "k1"})
    rp = relying_party(provider, http)
    url, pending = await rp.begin()
    with pytest.raises(AuthenticationFailed, match="signature"):
        await rp.finish(pending, await follow(http, url))


async def test_expired_id_token(provider: Provider, http: httpx.AsyncClient) -> None:
    provider.lifetime = 30
    rp = relying_party(provider, http, skew=30 + 61)  # past exp plus the allowed skew
    url, pending = await rp.begin()
    with pytest.raises(AuthenticationFailed, match="expired"):
        await rp.finish(pending, await follow(http, url))


async def test_code_reuse_refused(provider: Provider, http: httpx.AsyncClient) -> None:
    rp = relying_party(provider, http)
    url, pending = await rp.begin()
    params = await follow(http, url)
    await rp.finish(pending, params)
    with pytest.raises(AuthenticationFailed, match="invalid_grant"):
        await rp.finish(pending, params)


async def test_pkce_and_client_secret_enforced(provider: Provider, http: httpx.AsyncClient) -> None:
    rp = relying_party(provider, http)
    url, pending = await rp.begin()
    params = await follow(http, url)
    wrong = PendingLogin(pending.state, pending.nonce, "a-verifier-that-was-never-used-x" * 2)
    with pytest.raises(AuthenticationFailed, match="invalid_grant"):
        await rp.finish(wrong, params)

    url, pending = await rp.begin()
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if not k.startswith("code_challenge")]
    stripped = urlunsplit(parts._replace(query="&".join(f"{k}={v}" for k, v in query)))
    refused = await follow(http, stripped)  # PKCE is required: no challenge, no code
    assert refused["error"] == "invalid_request" and "code" not in refused
    with pytest.raises(AuthenticationFailed, match="provider refused: invalid_request"):
        await rp.finish(pending, refused)

    bad_client = relying_party(provider, http, secret="not-the-secret")
    url, pending = await bad_client.begin()
    with pytest.raises(AuthenticationFailed, match="invalid_client"):
        await bad_client.finish(pending, await follow(http, url))


async def test_discovery_and_keys_are_cached_and_rotation_is_followed(
    provider: Provider, http: httpx.AsyncClient
) -> None:
    rp = relying_party(provider, http)
    url, pending = await rp.begin()
    await rp.finish(pending, await follow(http, url))
    cached = await rp.metadata()
    provider.key = RSAKey.generate_key(2048, {"kid": "k1"})  # the issuer rotates its key
    url, pending = await rp.begin()
    params = await follow(http, url)
    with pytest.raises(AuthenticationFailed, match="signature"):  # refresh throttled
        await rp.finish(pending, params)
    rp.min_refresh_seconds = 0
    url, pending = await rp.begin()
    identity = await rp.finish(pending, await follow(http, url))  # re-read the JWKS once
    assert identity.subject == "u-123" and await rp.metadata() is cached
