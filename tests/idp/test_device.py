"""Device-code login (RFC 8628 shape) over the real app on both databases: start, poll
(pending, slow-down, expiry, denial), approval by bearer token, by cookie + CSRF and by the
HTML form at /device, and the audit trail of each decision and refusal."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from broker.audit import SYSTEM
from broker.store.models import Role, TokenScope
from idp.device import DeviceGrants
from tests.idp.conftest import ORIGIN, Env

PROBLEM = "application/problem+json"


class Ticks:
    """A monotonic clock moved by hand, for polling intervals and expiry."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ticks(env: Env) -> Ticks:
    clock = Ticks()
    env.app.state.device = DeviceGrants(interval=2, ttl_seconds=60, clock=clock)
    return clock


async def start(env: Env, name: str = "laptop-1") -> dict[str, Any]:
    response = await env.client.post("/api/v1/auth/device", json={"client_name": name})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def poll(env: Env, device_code: str) -> httpx.Response:
    return await env.client.post("/api/v1/auth/device/token", json={"device_code": device_code})


def problem_code(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == PROBLEM
    return str(response.json()["type"]).removeprefix("urn:corral:problem:")


async def bearer(env: Env, scope: TokenScope = TokenScope.WRITE) -> dict[str, str]:
    _, secret = await env.services.tokens.create(
        env.ws, env.user, name="t", scope=scope, expires_in_days=30
    )
    return {"Authorization": f"Bearer {secret}"}


async def test_start_poll_approve_and_the_token_works_once(env: Env, ticks: Ticks) -> None:
    started = await start(env)
    assert re.fullmatch(
        r"[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}", started["user_code"]
    )
    assert started["verification_uri"] == f"{ORIGIN}/device"
    assert started["verification_uri_complete"].endswith(f"?user_code={started['user_code']}")
    assert started["interval"] == 2 and started["expires_in"] == 60
    assert problem_code(await poll(env, started["device_code"])) == "authorization-pending"

    headers = await bearer(env)
    # The code as a person types it: lower case, no dash.
    typed = started["user_code"].replace("-", "").lower()
    approved = await env.client.post(
        "/api/v1/auth/device/approve", json={"user_code": typed}, headers=headers
    )
    assert approved.status_code == 200, approved.text
    assert approved.json() == {"approved": True, "client_name": "laptop-1"}

    ticks.now += 2
    granted = await poll(env, started["device_code"])
    assert granted.status_code == 200, granted.text
    body = granted.json()
    assert body["user"]["email"] == env.email and body["workspace"]["name"] == "default"
    who = await env.client.get(
        "/api/v1/whoami", headers={"Authorization": f"Bearer {body['token']}"}
    )
    assert who.status_code == 200 and who.json()["token"]["scope"] == "write"
    tokens = await env.services.tokens.list(env.ws, user_id=env.user)
    minted = next(t for t in tokens if t.id == body["token_id"])
    assert minted.name == "corral login on laptop-1"
    assert minted.expires_at is not None
    assert (minted.expires_at - minted.created_at).days == 90
    # One device code, one token.
    ticks.now += 2
    assert problem_code(await poll(env, started["device_code"])) == "expired-token"
    assert [e.outcome for e in await env.events("device.approved")] == ["success"]
    issued = await env.events("device.token_issued")
    assert [e.target for e in issued] == [body["token_id"]]


async def test_polling_too_fast_slows_down_and_codes_expire(env: Env, ticks: Ticks) -> None:
    started = await start(env)
    assert problem_code(await poll(env, started["device_code"])) == "authorization-pending"
    fast = await poll(env, started["device_code"])
    assert problem_code(fast) == "slow-down"
    assert fast.json()["interval"] == 7  # 2 + 5 (RFC 8628 3.5)
    ticks.now += 61
    assert problem_code(await poll(env, started["device_code"])) == "expired-token"
    assert problem_code(await poll(env, "not-a-device-code")) == "expired-token"
    bad = await env.client.post("/api/v1/auth/device/token", json={"device_code": 5})
    assert problem_code(bad) == "invalid-request"
    odd = await env.client.post("/api/v1/auth/device", json={"client_name": "<script>"})
    assert problem_code(odd) == "invalid-request"


async def test_denied_in_the_browser_with_cookie_and_csrf(env: Env, ticks: Ticks) -> None:
    started = await start(env)
    assert (await env.login()).status_code == 200
    csrf = env.client.headers.pop("X-Corral-CSRF")
    body = {"user_code": started["user_code"]}
    no_csrf = await env.client.post("/api/v1/auth/device/deny", json=body)
    assert no_csrf.status_code == 403
    denied = await env.client.post(
        "/api/v1/auth/device/deny", json=body, headers={"X-Corral-CSRF": csrf}
    )
    assert denied.status_code == 200 and denied.json()["approved"] is False
    ticks.now += 2
    assert problem_code(await poll(env, started["device_code"])) == "access-denied"
    assert [e.outcome for e in await env.events("device.denied")] == ["success"]


async def test_refusals_are_audited_and_guessing_is_rate_limited(env: Env, ticks: Ticks) -> None:
    started = await start(env)
    reader = await bearer(env, TokenScope.READ)
    body = {"user_code": started["user_code"]}
    read_only = await env.client.post("/api/v1/auth/device/approve", json=body, headers=reader)
    assert read_only.status_code == 403  # a read token must not mint a write token
    anonymous = await env.client.post("/api/v1/auth/device/approve", json=body)
    assert anonymous.status_code == 401
    writer = await bearer(env)
    for _ in range(10):
        wrong = await env.client.post(
            "/api/v1/auth/device/approve", json={"user_code": "BCDF-GHJK"}, headers=writer
        )
        assert wrong.status_code == 404
    limited = await env.client.post("/api/v1/auth/device/approve", json=body, headers=writer)
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    refused = await env.events("device.refused")
    assert len(refused) == 11 and {e.outcome for e in refused} == {"denied"}
    assert problem_code(await poll(env, started["device_code"])) == "authorization-pending"


async def test_the_device_page_needs_a_session_and_a_csrf_token(env: Env, ticks: Ticks) -> None:
    started = await start(env, "build-box")
    anonymous = await env.client.get("/device")
    assert anonymous.status_code == 401 and "Sign in to Corral" in anonymous.text
    assert "default-src 'none'" in anonymous.headers["content-security-policy"]
    assert (await env.login()).status_code == 200
    page = await env.client.get("/device", params={"user_code": started["user_code"]})
    assert page.status_code == 200
    assert f'value="{started["user_code"]}"' in page.text
    assert "corral login on build-box</b> asks to sign in as you" in page.text
    assert "<script" not in page.text
    csrf = re.search(r'name=csrf value="([0-9a-f]+)"', page.text)
    assert csrf is not None
    hostile = await env.client.get("/device", params={"user_code": '"><script>x</script>'})
    assert "<script>x" not in hostile.text

    form = {"user_code": started["user_code"], "decision": "approve"}
    forged = await env.client.post("/device", data={**form, "csrf": "0" * 64})
    assert forged.status_code == 403
    assert [e.target for e in await env.events("session.csrf_refused")] == ["/device"]
    done = await env.client.post("/device", data={**form, "csrf": csrf.group(1)})
    assert done.status_code == 200 and "approved" in done.text and "build-box" in done.text
    again = await env.client.post("/device", data={**form, "csrf": csrf.group(1)})
    assert again.status_code == 404  # decided codes cannot be decided twice
    ticks.now += 2
    assert (await poll(env, started["device_code"])).status_code == 200


async def test_a_disabled_approver_session_cannot_approve(env: Env, ticks: Ticks) -> None:
    started = await start(env)
    other = await env.services.users.create(env.ws, "bob@corral.test", role=Role.USER)
    _, secret = await env.services.tokens.create(
        env.ws, other.id, name="t", scope=TokenScope.WRITE, expires_in_days=30
    )
    await env.services.users.set_disabled(env.ws, other.id, True, actor=SYSTEM)
    refused = await env.client.post(
        "/api/v1/auth/device/approve",
        json={"user_code": started["user_code"]},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert refused.status_code == 401
    assert problem_code(await poll(env, started["device_code"])) == "authorization-pending"
