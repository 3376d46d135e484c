"""WebAuthn ceremonies against a software authenticator on both databases: register,
authenticate, wrong origin, counter going backwards, user verification required but
absent, challenge reuse, and hardware-only enforcement."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from broker.audit import SYSTEM
from broker.errors import AuthenticationFailed
from broker.services import Services
from broker.settings import Settings
from broker.store.models import FactorKind
from tests.conftest import Clock
from tests.idp.conftest import ORIGIN, Env, build_identity
from tests.idp.soft_authenticator import SoftAuthenticator


async def register(env: Env, key: SoftAuthenticator, **kwargs: Any) -> httpx.Response:
    options = await env.client.post("/api/v1/auth/mfa/webauthn/register/options")
    assert options.status_code == 200, options.text
    credential = key.create(options.json(), origin=ORIGIN, **kwargs)
    response = await env.client.post(
        "/api/v1/auth/mfa/webauthn/register", json={"credential": credential, "label": "yubikey"}
    )
    if response.status_code == 200:
        env.remember(response)
    return response


async def authenticate(env: Env, key: SoftAuthenticator, **kwargs: Any) -> httpx.Response:
    options = await env.client.post("/api/v1/auth/mfa/webauthn/options")
    assert options.status_code == 200, options.text
    assertion = key.get(options.json(), **{"origin": ORIGIN, **kwargs})
    response = await env.client.post(
        "/api/v1/auth/mfa/verify", json={"method": "webauthn", "credential": assertion}
    )
    if response.status_code == 200:
        env.remember(response)
    return response


async def relogin(env: Env) -> dict[str, Any]:
    env.client.cookies.clear()
    body: dict[str, Any] = (await env.login()).json()
    return body


@pytest.mark.parametrize("fmt", ["none", "packed"])
async def test_register_then_authenticate(env: Env, fmt: str) -> None:
    key = SoftAuthenticator(fmt=fmt)
    await env.login()
    registered = await register(env, key)
    assert registered.status_code == 200, registered.text
    assert len(registered.json()["recovery_codes"]) == 10
    (factor,) = await env.services.factors.list(env.ws, env.user)
    assert factor.kind is FactorKind.WEBAUTHN
    assert factor.transports == ["usb", "nfc"] and factor.attachment == "cross-platform"
    assert factor.sign_count == 0 and factor.user_verified

    pending = await relogin(env)
    assert pending["state"] == "mfa-pending" and pending["methods"][0] == "webauthn"
    done = await authenticate(env, key)
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "active"
    assert (await env.services.factors.get(env.ws, factor.id)).sign_count == 1
    verified = await env.events("mfa.verified")
    assert '"webauthn"' in verified[-1].details


async def test_wrong_origin_refused(env: Env) -> None:
    key = SoftAuthenticator()
    await env.login()
    options = await env.client.post("/api/v1/auth/mfa/webauthn/register/options")
    credential = key.create(options.json(), origin="https://evil.example")
    refused = await env.client.post(
        "/api/v1/auth/mfa/webauthn/register", json={"credential": credential}
    )
    assert refused.status_code == 401
    assert await env.services.factors.list(env.ws, env.user) == []
    assert "origin" in (await env.events("mfa.enrol_failed"))[0].details.lower()
    assert (await register(env, key)).status_code == 200
    await relogin(env)
    phished = await authenticate(env, key, origin="https://corral.test.evil.example")
    assert phished.status_code == 401
    failures = await env.events("mfa.failed")
    assert "origin" in failures[-1].details.lower()


async def test_counter_going_backwards_refused(env: Env) -> None:
    key = SoftAuthenticator()
    await env.login()
    await register(env, key)
    await relogin(env)
    assert (await authenticate(env, key, counter=5)).status_code == 200
    await relogin(env)
    cloned = await authenticate(env, key, counter=3)
    assert cloned.status_code == 401
    same = await authenticate(env, key, counter=5)
    assert same.status_code == 401
    assert (await authenticate(env, key, counter=6)).status_code == 200


async def test_challenge_is_single_use(env: Env) -> None:
    key = SoftAuthenticator()
    await env.login()
    await register(env, key)
    await relogin(env)
    options = (await env.client.post("/api/v1/auth/mfa/webauthn/options")).json()
    first = key.get(options, origin=ORIGIN)
    ok = await env.client.post(
        "/api/v1/auth/mfa/verify", json={"method": "webauthn", "credential": first}
    )
    assert ok.status_code == 200
    env.remember(ok)
    await relogin(env)
    again = key.get(options, origin=ORIGIN)  # a fresh signature over the spent challenge
    replay = await env.client.post(
        "/api/v1/auth/mfa/verify", json={"method": "webauthn", "credential": again}
    )
    assert replay.status_code == 401


async def test_hardware_only_counts_only_webauthn(env: Env) -> None:
    key = SoftAuthenticator()
    await env.login()
    await register(env, key)
    await env.services.workspaces.update_settings(
        env.ws, actor=SYSTEM, mfa_required=True, mfa_hardware_only=True
    )
    body = await relogin(env)
    assert body["methods"] == ["webauthn"]
    totp = await env.client.post("/api/v1/auth/mfa/verify", json={"method": "totp", "code": "1"})
    assert totp.status_code == 401
    assert "only security keys" in totp.json()["detail"]
    assert (await authenticate(env, key)).status_code == 200


async def test_user_verification_required_but_absent(
    services: Services, clock: Clock, tmp_path: Path
) -> None:
    identity = build_identity(
        services, Settings(data_dir=tmp_path, public_url=ORIGIN), require_user_verification=True
    )
    ws = (await services.workspaces.create("acme")).id
    user = (await services.users.create(ws, "eve@acme.test")).id
    key = SoftAuthenticator()
    options = await identity.webauthn.registration_options(ws, user)
    assert options["authenticatorSelection"]["userVerification"] == "required"
    with pytest.raises(AuthenticationFailed, match="verif"):
        await identity.webauthn.register(
            ws, user, key.create(options, origin=ORIGIN, user_verified=False), actor=SYSTEM
        )
    options = await identity.webauthn.registration_options(ws, user)
    await identity.webauthn.register(ws, user, key.create(options, origin=ORIGIN), actor=SYSTEM)
    request = await identity.webauthn.authentication_options(ws, user)
    with pytest.raises(AuthenticationFailed, match="verif"):
        await identity.webauthn.authenticate(
            ws, user, key.get(request, origin=ORIGIN, user_verified=False)
        )
    request = await identity.webauthn.authentication_options(ws, user)
    factor = await identity.webauthn.authenticate(ws, user, key.get(request, origin=ORIGIN))
    assert factor.user_id == user
