"""The step-up time is what the policy layer sees: a superuser's policy reload (rule
``mfa.policy-update``: MFA within 300 s) is held until a browser step-up, with the app's
default wiring (identity's step-up service answers the policy layer's MFA age)."""

from __future__ import annotations

from tests.idp.conftest import Env
from tests.idp.test_mfa import enrol_totp, relogin, verify


async def test_policy_reload_needs_a_recent_step_up(env: Env) -> None:
    assert env.app.state.mfa is env.identity.step_up
    await env.login()
    seed, _ = await enrol_totp(env)
    env.clock.advance(seconds=400)
    await relogin(env)
    assert (await verify(env, method="totp", code=env.totp_now(seed))).status_code == 200
    env.clock.advance(seconds=301)  # the login's MFA is now too old for this rule
    held = await env.client.post("/api/v1/policy/reload")
    assert held.status_code == 403, held.text
    assert held.json()["rule_id"] == "mfa.policy-update"
    env.clock.advance(seconds=30)
    step = await env.client.post(
        "/api/v1/auth/step-up", json={"method": "totp", "code": env.totp_now(seed)}
    )
    assert step.status_code == 200
    env.remember(step)
    assert await env.identity.step_up.mfa_age(env.ws, env.user) == 0.0
    reloaded = await env.client.post("/api/v1/policy/reload")
    assert reloaded.status_code == 200, reloaded.text
    assert reloaded.json()["reloaded"] is True
