"""Session listing and revocation, workspace MFA rules and MFA reset over the real app."""

from __future__ import annotations

from broker.audit import SYSTEM
from broker.store.models import BrowserSessionState, FactorKind, Role, TokenScope
from tests.idp.conftest import PASSWORD, Env


async def test_list_and_revoke_own_sessions(env: Env) -> None:
    await env.login()
    other, other_secret = await env.services.browser_sessions.create(
        env.ws, env.user, state=BrowserSessionState.ACTIVE, lifetime_seconds=3600
    )
    listed = (await env.client.get("/api/v1/auth/sessions")).json()["sessions"]
    assert len(listed) == 2 and sum(s["current"] for s in listed) == 1
    gone = await env.client.delete(f"/api/v1/auth/sessions/{other.id}")
    assert gone.status_code == 204
    listed = (await env.client.get("/api/v1/auth/sessions")).json()["sessions"]
    assert [s["current"] for s in listed] == [True]
    revoked = await env.services.browser_sessions.get(env.ws, other.id)
    assert revoked.revoked_at is not None and other_secret


async def test_someone_elses_session_is_not_found_for_a_plain_user(env: Env) -> None:
    bob = await env.services.users.create(env.ws, "bob@corral.test")
    await env.identity.login.set_password(env.ws, bob.id, PASSWORD, actor=SYSTEM)
    alice_session, _ = await env.services.browser_sessions.create(
        env.ws, env.user, state=BrowserSessionState.ACTIVE, lifetime_seconds=3600
    )
    await env.login(email="bob@corral.test")
    refused = await env.client.delete(f"/api/v1/auth/sessions/{alice_session.id}")
    assert refused.status_code == 404
    peek = await env.client.get(f"/api/v1/auth/sessions?user_id={env.user}")
    assert peek.status_code == 403


async def test_superuser_sets_mfa_rules_and_resets_mfa(env: Env) -> None:
    bob = await env.services.users.create(env.ws, "bob@corral.test", role=Role.USER)
    await env.services.factors.add(env.ws, bob.id, FactorKind.TOTP, confirmed=True)
    await env.services.browser_sessions.create(
        env.ws, bob.id, state=BrowserSessionState.ACTIVE, lifetime_seconds=3600
    )
    _, token = await env.services.tokens.create(
        env.ws, env.user, name="t", scope=TokenScope.ADMIN, expires_in_days=30, actor=SYSTEM
    )
    auth = {"Authorization": f"Bearer {token}"}
    rules = await env.client.patch(
        "/api/v1/workspace/security", json={"mfa_required": True}, headers=auth
    )
    assert rules.status_code == 200
    assert rules.json() == {"mfa_required": True, "mfa_hardware_only": False}
    bad = await env.client.patch("/api/v1/workspace/security", json={"x": 1}, headers=auth)
    assert bad.status_code == 400
    reset = await env.client.post(f"/api/v1/users/{bob.id}/mfa/reset", headers=auth)
    assert reset.status_code == 200
    assert reset.json() == {"factors_removed": 1, "sessions_revoked": 1}
    assert await env.services.factors.list(env.ws, bob.id, confirmed_only=False) == []
    self_reset = await env.client.post(f"/api/v1/users/{env.user}/mfa/reset", headers=auth)
    assert self_reset.status_code == 403
    assert len(await env.events("mfa.reset")) == 1

    _, read_only = await env.services.tokens.create(
        env.ws, env.user, name="r", scope=TokenScope.READ, expires_in_days=30, actor=SYSTEM
    )
    weak = await env.client.patch(
        "/api/v1/workspace/security",
        json={"mfa_required": False},
        headers={"Authorization": f"Bearer {read_only}"},
    )
    assert weak.status_code == 403
