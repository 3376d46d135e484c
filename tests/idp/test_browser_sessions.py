"""Browser sessions over the real app on both databases: cookies, CSRF, expiry, logout,
and bearer tokens unaffected."""

from __future__ import annotations

import httpx

from broker.audit import SYSTEM
from broker.store.models import TokenScope
from tests.idp.conftest import ORIGIN, PASSWORD, Env

PROBLEM = "application/problem+json"


def cookie_attributes(response: httpx.Response, name: str) -> set[str]:
    for header in response.headers.get_list("set-cookie"):
        if header.startswith(f"{name}="):
            return {part.strip().lower() for part in header.split(";")[1:]}
    raise AssertionError(f"no {name} cookie set")


async def test_login_sets_hardened_cookies_and_whoami_works(env: Env) -> None:
    response = await env.login()
    assert response.status_code == 200
    body = response.json()
    assert body["state"] == "active" and body["methods"] == []
    session = cookie_attributes(response, "corral_session")
    assert {"secure", "httponly", "samesite=lax", "path=/"} <= session
    csrf = cookie_attributes(response, "corral_csrf")
    assert "secure" in csrf and "httponly" not in csrf
    who = await env.client.get("/api/v1/whoami")
    assert who.status_code == 200
    assert who.json()["user"]["email"] == env.email
    assert who.json()["session"]["state"] == "active"
    assert PASSWORD not in response.text
    assert [e.outcome for e in await env.events("login.succeeded")] == ["success"]


async def test_wrong_password_is_a_problem_and_audited(env: Env) -> None:
    response = await env.login(password="not-the-password!")
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["detail"] == "invalid email or password"
    unknown = await env.login(email="nobody@corral.test")
    assert unknown.json()["detail"] == "invalid email or password"
    no_ws = await env.login(workspace="nope")
    assert no_ws.status_code == 401
    bad = await env.client.post("/api/v1/auth/login", json={"email": 5, "password": "x"})
    assert bad.status_code == 400 and bad.headers["content-type"] == PROBLEM
    assert len(await env.events("login.failed")) == 2


async def test_login_rate_limited_with_retry_after(env: Env) -> None:
    for _ in range(env.identity.login.max_failures - 1):
        assert (await env.login(password="not-the-password!")).status_code == 401
    locked = await env.login(password="not-the-password!")
    assert locked.status_code == 429
    assert locked.headers["content-type"] == PROBLEM
    assert int(locked.headers["retry-after"]) >= 1
    assert (await env.login()).status_code == 429  # even the right password, while locked


async def test_csrf_needed_for_unsafe_cookie_requests(env: Env) -> None:
    await env.login()
    token = env.client.headers.pop("X-Corral-CSRF")
    refused = await env.client.post("/api/v1/auth/logout")
    assert refused.status_code == 403 and refused.headers["content-type"] == PROBLEM
    forged = await env.client.post("/api/v1/auth/logout", headers={"X-Corral-CSRF": "0" * 64})
    assert forged.status_code == 403
    cross = await env.client.post(
        "/api/v1/auth/logout",
        headers={"X-Corral-CSRF": token, "Origin": "https://evil.example"},
    )
    assert cross.status_code == 403
    assert len(await env.events("session.csrf_refused")) == 3
    assert (await env.client.get("/api/v1/whoami")).status_code == 200  # GET needs none
    same_origin = await env.client.post(
        "/api/v1/auth/logout", headers={"X-Corral-CSRF": token, "Origin": ORIGIN}
    )
    assert same_origin.status_code == 204


async def test_cross_origin_login_refused(env: Env) -> None:
    response = await env.client.post(
        "/api/v1/auth/login",
        json={"email": env.email, "password": PASSWORD},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403


async def test_logout_revokes(env: Env) -> None:
    await env.login()
    secret = env.client.cookies["corral_session"]
    assert (await env.client.post("/api/v1/auth/logout")).status_code == 204
    assert "corral_session" not in env.client.cookies
    env.client.cookies.set("corral_session", secret, domain="corral.test")
    again = await env.client.get("/api/v1/whoami")
    assert again.status_code == 401 and "revoked" in again.json()["detail"]
    assert len(await env.events("session.revoked")) == 1


async def test_idle_and_absolute_expiry(env: Env) -> None:
    await env.login()
    idle = env.identity.browser.idle_seconds
    env.clock.advance(seconds=idle - 60)
    assert (await env.client.get("/api/v1/whoami")).status_code == 200  # touches last_seen
    env.clock.advance(seconds=idle - 60)
    assert (await env.client.get("/api/v1/whoami")).status_code == 200
    env.clock.advance(seconds=idle + 1)
    idle_out = await env.client.get("/api/v1/whoami")
    assert idle_out.status_code == 401 and "idle" in idle_out.json()["detail"]

    await env.login()
    absolute = env.identity.browser.absolute_seconds
    for _ in range(absolute // (idle - 60) + 1):
        env.clock.advance(seconds=idle - 60)
        response = await env.client.get("/api/v1/whoami")
        if response.status_code != 200:
            break
    assert response.status_code == 401 and "expired" in response.json()["detail"]
    reasons = [e.details for e in await env.events("session.refused")]
    assert any('"idle"' in r for r in reasons) and any('"expired"' in r for r in reasons)


async def test_bearer_unchanged_and_wins_over_cookie(env: Env) -> None:
    _, secret = await env.services.tokens.create(
        env.ws, env.user, name="t", scope=TokenScope.READ, expires_in_days=30, actor=SYSTEM
    )
    await env.login()
    who = await env.client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {secret}"})
    assert who.status_code == 200 and who.json()["token"]["scope"] == "read"
    bad = await env.client.get("/api/v1/whoami", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401  # a valid cookie does not rescue a bad bearer token
    env.client.cookies.clear()
    anonymous = await env.client.get("/api/v1/whoami")
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"


async def test_invitation_and_sign_up_over_http(env: Env) -> None:
    await env.login()
    invite = await env.client.post("/api/v1/auth/invitations", json={"email": "dan@corral.test"})
    assert invite.status_code == 201, invite.text
    secret = invite.json()["invitation"]
    signup = await env.client.post(
        "/api/v1/auth/signup", json={"invitation": secret, "password": "Another-g00d-phrase"}
    )
    assert signup.status_code == 201 and signup.json()["user"]["email"] == "dan@corral.test"
    again = await env.client.post(
        "/api/v1/auth/signup", json={"invitation": secret, "password": "Another-g00d-phrase"}
    )
    assert again.status_code == 401
    env.client.cookies.clear()
    dan = await env.login(email="dan@corral.test", password="Another-g00d-phrase")
    assert dan.status_code == 200


async def test_password_change_over_http(env: Env) -> None:
    await env.login()
    wrong = await env.client.post(
        "/api/v1/auth/password",
        json={"current_password": "nope-nope-nope", "new_password": "Brand-new-phrase-1"},
    )
    assert wrong.status_code == 401
    ok = await env.client.post(
        "/api/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": "Brand-new-phrase-1"},
    )
    assert ok.status_code == 200
    assert (await env.client.get("/api/v1/whoami")).status_code == 200  # this session stays
    assert len(await env.events("password.changed")) == 2  # fixture's set + this change
