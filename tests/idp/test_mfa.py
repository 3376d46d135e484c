"""MFA over the real app on both databases: TOTP (drift window, replay), recovery codes,
email codes through a real SMTP server, SMS codes through a real webhook, workspace
enforcement, hardware-only, step-up."""

from __future__ import annotations

from typing import Any

from broker.audit import SYSTEM
from broker.store.models import FactorKind
from idp.totp import STEP_SECONDS
from tests.idp.conftest import Env

PROBLEM = "application/problem+json"


async def enrol_totp(env: Env) -> tuple[str, list[str]]:
    """Enrol and confirm TOTP in the current session; returns (seed, recovery codes)."""
    started = await env.client.post("/api/v1/auth/mfa/totp", json={"label": "phone"})
    assert started.status_code == 201, started.text
    body = started.json()
    assert body["otpauth_uri"].startswith("otpauth://totp/")
    factor, seed = body["factor"]["id"], body["secret"]
    wrong = await env.client.post(
        f"/api/v1/auth/mfa/factors/{factor}/confirm", json={"code": "000000"}
    )
    assert wrong.status_code == 400
    confirmed = await env.client.post(
        f"/api/v1/auth/mfa/factors/{factor}/confirm", json={"code": env.totp_now(seed)}
    )
    assert confirmed.status_code == 200, confirmed.text
    answer = env.remember(confirmed)
    assert answer["state"] == "active"
    return seed, answer["recovery_codes"]


async def relogin(env: Env) -> dict[str, Any]:
    env.client.cookies.clear()
    response = await env.login()
    assert response.status_code == 200
    return response.json()


async def verify(env: Env, **body: Any) -> Any:
    response = await env.client.post("/api/v1/auth/mfa/verify", json=body)
    if response.status_code == 200:
        env.remember(response)
    return response


async def test_totp_enrol_then_login_needs_it(env: Env) -> None:
    await env.login()
    seed, codes = await enrol_totp(env)
    assert len(codes) == 10 and len(set(codes)) == 10
    factors = (await env.client.get("/api/v1/auth/mfa/factors")).json()
    assert factors["recovery_codes_left"] == 10
    assert [f["kind"] for f in factors["factors"]] == ["totp"]
    assert seed not in str(factors)

    pending = await relogin(env)
    assert pending["state"] == "mfa-pending"
    assert pending["methods"] == ["totp", "recovery"]
    assert (await env.client.get("/api/v1/whoami")).status_code == 401
    pending_secret = env.client.cookies["corral_session"]

    env.clock.advance(seconds=STEP_SECONDS)
    done = await verify(env, method="totp", code=env.totp_now(seed))
    assert done.status_code == 200 and done.json()["state"] == "active"
    assert done.json()["mfa_at"] is not None
    assert env.client.cookies["corral_session"] != pending_secret  # rotated
    assert (await env.client.get("/api/v1/whoami")).status_code == 200
    env.client.cookies.set("corral_session", pending_secret, domain="corral.test")
    assert (await env.client.get("/api/v1/whoami")).status_code == 401
    assert len(await env.events("mfa.verified")) == 1


async def test_totp_drift_window_and_replay(env: Env) -> None:
    await env.login()
    seed, _ = await enrol_totp(env)
    env.clock.advance(seconds=10 * STEP_SECONDS)
    await relogin(env)
    # One step either side is accepted; a code is accepted once.
    late = env.totp_now(seed, offset_steps=-1)
    assert (await verify(env, method="totp", code=late)).status_code == 200
    await relogin(env)
    replay = await verify(env, method="totp", code=late)
    assert replay.status_code == 401 and replay.headers["content-type"] == PROBLEM
    # A step before the last accepted one is refused too (the counter only moves on).
    older = await verify(env, method="totp", code=env.totp_now(seed, offset_steps=-2))
    assert older.status_code == 401
    far = await verify(env, method="totp", code=env.totp_now(seed, offset_steps=3))
    assert far.status_code == 401
    early = await verify(env, method="totp", code=env.totp_now(seed, offset_steps=1))
    assert early.status_code == 200
    failed = await env.events("mfa.failed")  # the enrolment's wrong code, then three here
    assert len(failed) == 4 and all(e.outcome == "denied" for e in failed)
    assert all(env.totp_now(seed) not in e.details for e in failed)


async def test_recovery_codes_work_once_and_regenerate(env: Env) -> None:
    await env.login()
    _, codes = await enrol_totp(env)
    await relogin(env)
    used = await verify(env, method="recovery", code=codes[0].upper())
    assert used.status_code == 200 and used.json()["recovery_codes_left"] == 9
    await relogin(env)
    assert (await verify(env, method="recovery", code=codes[0])).status_code == 401
    assert (await verify(env, method="recovery", code=codes[1])).status_code == 200
    fresh = await env.client.post("/api/v1/auth/mfa/recovery-codes")
    assert fresh.status_code == 201
    new_codes = fresh.json()["recovery_codes"]
    await relogin(env)
    assert (await verify(env, method="recovery", code=codes[2])).status_code == 401
    assert (await verify(env, method="recovery", code=new_codes[0])).status_code == 200


async def test_managing_factors_needs_recent_mfa(env: Env) -> None:
    await env.login()
    seed, _ = await enrol_totp(env)
    env.clock.advance(seconds=301)
    stale = await env.client.post("/api/v1/auth/mfa/totp")
    assert stale.status_code == 403 and stale.json()["step_up_required"] is True
    step = await env.client.post(
        "/api/v1/auth/step-up", json={"method": "totp", "code": env.totp_now(seed)}
    )
    assert step.status_code == 200, step.text
    env.remember(step)
    assert (await env.client.post("/api/v1/auth/mfa/totp")).status_code == 201


async def test_email_codes_through_real_smtp(env: Env) -> None:
    await env.login()
    started = await env.client.post("/api/v1/auth/mfa/email")
    assert started.status_code == 201, started.text
    factor = started.json()["factor"]["id"]
    assert env.mailbox.messages[-1].rcpt_tos == [env.email]
    code = env.mailbox.last_code()
    ok = await env.client.post(f"/api/v1/auth/mfa/factors/{factor}/confirm", json={"code": code})
    assert ok.status_code == 200, (ok.text, env.mailbox.messages[-1].content)
    env.remember(ok)

    await relogin(env)
    assert (
        await env.client.post("/api/v1/auth/mfa/send", json={"method": "email"})
    ).status_code == 200
    code = env.mailbox.last_code()
    assert (await verify(env, method="email", code=code)).status_code == 200
    # Expired codes are refused.
    await relogin(env)
    await env.client.post("/api/v1/auth/mfa/send", json={"method": "email"})
    env.clock.advance(seconds=301)
    assert (await verify(env, method="email", code=env.mailbox.last_code())).status_code == 401


async def test_email_code_attempt_limit(env: Env) -> None:
    await env.login()
    factor = (await env.client.post("/api/v1/auth/mfa/email")).json()["factor"]["id"]
    first = env.mailbox.last_code()
    confirmed = await env.client.post(
        f"/api/v1/auth/mfa/factors/{factor}/confirm", json={"code": first}
    )
    env.remember(confirmed)
    await relogin(env)
    await env.client.post("/api/v1/auth/mfa/send", json={"method": "email"})
    code = env.mailbox.last_code()
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for _ in range(env.identity.codes.max_attempts):
        assert (await verify(env, method="email", code=wrong)).status_code == 401
    # The code is burnt after the limit, even the right one.
    assert (await verify(env, method="email", code=code)).status_code == 401


async def test_sms_codes_through_real_webhook(env: Env) -> None:
    await env.login()
    bad = await env.client.post("/api/v1/auth/mfa/sms", json={"phone": "555-1234"})
    assert bad.status_code == 400
    started = await env.client.post("/api/v1/auth/mfa/sms", json={"phone": "+15551234567"})
    assert started.status_code == 201, started.text
    assert started.json()["factor"]["destination"].endswith("4567")
    assert env.sms.received[-1]["to"] == "+15551234567"
    factor = started.json()["factor"]["id"]
    ok = await env.client.post(
        f"/api/v1/auth/mfa/factors/{factor}/confirm", json={"code": env.sms.last_code()}
    )
    assert ok.status_code == 200
    await relogin(env)
    assert (
        await env.client.post("/api/v1/auth/mfa/send", json={"method": "sms"})
    ).status_code == 200
    assert (await verify(env, method="sms", code=env.sms.last_code())).status_code == 200
    env.sms.status = 500
    await relogin(env)
    broken = await env.client.post("/api/v1/auth/mfa/send", json={"method": "sms"})
    assert broken.status_code == 502 and broken.headers["content-type"] == PROBLEM


async def test_workspace_enforced_mfa_sends_to_enrolment(env: Env) -> None:
    await env.services.workspaces.update_settings(env.ws, actor=SYSTEM, mfa_required=True)
    body = (await env.login()).json()
    assert body["state"] == "enrol"
    assert (await env.client.get("/api/v1/whoami")).status_code == 401
    await enrol_totp(env)  # confirming the first factor completes the login
    assert (await env.client.get("/api/v1/whoami")).status_code == 200
    factor = (await env.client.get("/api/v1/auth/mfa/factors")).json()["factors"][0]["id"]
    last = await env.client.delete(f"/api/v1/auth/mfa/factors/{factor}")
    assert last.status_code == 409  # cannot remove the only factor while MFA is required


async def test_hardware_only_refuses_totp(env: Env) -> None:
    await env.login()
    seed, _ = await enrol_totp(env)
    await env.services.workspaces.update_settings(env.ws, actor=SYSTEM, mfa_hardware_only=True)
    assert await env.identity.mfa.methods(env.ws, env.user) == []
    refused = await env.identity.step_up.verify(
        env.ws, env.user, env.totp_now(seed, offset_steps=1)
    )
    assert refused is False
    events = await env.events("mfa.failed")
    assert '"hardware-only"' in events[-1].details
    blocked = await env.client.post("/api/v1/auth/mfa/totp")
    assert blocked.status_code in (403, 409)
    # The TOTP factor no longer counts, but a password alone is not enough either.
    assert (await relogin(env))["state"] == "enrol"
    assert (await env.client.get("/api/v1/whoami")).status_code == 401


async def test_step_up_seam_for_the_terminal_gate(env: Env) -> None:
    step_up = env.identity.step_up
    assert await step_up.mfa_age(env.ws, env.user) is None
    await env.login()
    seed, codes = await enrol_totp(env)
    assert await step_up.mfa_age(env.ws, env.user) == 0.0
    env.clock.advance(seconds=600)
    assert await step_up.mfa_age(env.ws, env.user) == 600.0
    assert await step_up.verify(env.ws, env.user, "123456") is False
    assert await step_up.verify(env.ws, env.user, env.totp_now(seed)) is True
    assert await step_up.mfa_age(env.ws, env.user) == 0.0
    assert await step_up.verify(env.ws, env.user, env.totp_now(seed)) is False  # replay
    assert await step_up.verify(env.ws, env.user, codes[3]) is True
    assert await step_up.verify(env.ws, env.user, codes[3]) is False
    verified = await env.events("mfa.verified")
    assert sum('"step-up"' in e.details for e in verified) == 2
    # The browser's own step-up refreshes the session's MFA time.
    env.clock.advance(seconds=60)
    response = await env.client.post(
        "/api/v1/auth/step-up", json={"method": "recovery", "code": codes[4]}
    )
    assert response.status_code == 200
    assert response.json()["mfa_at"].startswith(env.clock.now.isoformat()[:19])
    assert (await env.services.audit.verify(env.ws)).ok  # every event above is in the chain


async def test_someone_elses_factor_is_not_found(env: Env) -> None:
    """Another person's factor id answers like an unknown one (never "not yours"), and
    the refusal is audited."""
    bob = await env.services.users.create(env.ws, "bob@corral.test")
    theirs = await env.services.factors.add(env.ws, bob.id, FactorKind.TOTP, confirmed=True)
    await env.login()
    confirm = await env.client.post(
        f"/api/v1/auth/mfa/factors/{theirs.id}/confirm", json={"code": "000000"}
    )
    unknown = await env.client.post(
        "/api/v1/auth/mfa/factors/no-such-factor/confirm", json={"code": "000000"}
    )
    assert confirm.status_code == unknown.status_code == 404
    assert confirm.json()["type"] == unknown.json()["type"] == "urn:corral:problem:not-found"
    refused = await env.events("api.not_found")
    assert [e.actor_id for e in refused] == [env.user, env.user]
    assert await env.services.factors.list(env.ws, bob.id) != []
