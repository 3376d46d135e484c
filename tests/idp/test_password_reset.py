"""Password reset by an emailed single-use link, through the real app and a real SMTP
server (aiosmtpd): same answer for everyone, link works once and expires, rules apply,
sessions end, rate limits, audit."""

from __future__ import annotations

import email
import email.policy
import json
from email.message import EmailMessage

from sqlmodel import select

from broker.audit import SYSTEM
from broker.store.models import MfaChallenge
from tests.idp.conftest import PASSWORD, Env

NEW = "a-brand-new-Passphrase-42"
SENT = {"status": "if this address has an account with a password, a reset link is on its way"}


async def forgot(env: Env, email: str, **extra: str) -> dict[str, str]:
    response = await env.client.post("/api/v1/auth/password/forgot", json={"email": email, **extra})
    assert response.status_code == 202, response.text
    await env.identity.reset.drain()
    body: dict[str, str] = response.json()
    return body


def link_secret(env: Env) -> str:
    content = env.mailbox.messages[-1].content
    raw = content if isinstance(content, bytes) else str(content).encode()
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    text = message.get_content()
    assert "https://corral.test/reset-password#" in text
    return text.split("/reset-password#", 1)[1].split()[0]


async def reasons(env: Env) -> list[str]:
    return [json.loads(e.details)["reason"] for e in await env.events("password.reset_refused")]


async def test_link_resets_once_and_ends_sessions(env: Env) -> None:
    assert (await env.login()).status_code == 200
    assert (await env.client.get("/api/v1/auth/session")).status_code == 200
    assert await forgot(env, "Alice@corral.test") == SENT
    assert env.mailbox.messages[-1].rcpt_tos == [env.email]
    secret = link_secret(env)
    assert secret.startswith("crlpwr_")

    response = await env.client.post(
        "/api/v1/auth/password/reset", json={"token": secret, "new_password": NEW}
    )
    assert response.status_code == 200 and response.json() == {"reset": True}
    assert (await env.client.get("/api/v1/auth/session")).status_code == 401  # ended
    assert (await env.login(password=PASSWORD)).status_code == 401
    assert (await env.login(password=NEW)).status_code == 200

    again = await env.client.post(
        "/api/v1/auth/password/reset", json={"token": secret, "new_password": NEW + "x"}
    )
    assert again.status_code == 401
    assert again.json()["detail"] == "invalid or expired reset link"
    (done,) = await env.events("password.reset")
    assert json.loads(done.details)["sessions_ended"] == 1
    assert await reasons(env) == ["already used"]
    async with env.services.db.transaction() as s:
        rows = (await s.exec(select(MfaChallenge))).all()
    assert all(secret not in r.secret_hash and r.secret_hash for r in rows)  # stored hashed


async def test_same_answer_whoever_asks(env: Env) -> None:
    sso_only = await env.services.users.create(env.ws, "sso@corral.test")
    gone = await env.services.users.create(env.ws, "gone@corral.test")
    await env.identity.login.set_password(env.ws, gone.id, PASSWORD + "!", actor=SYSTEM)
    await env.services.users.set_disabled(env.ws, gone.id, True, actor=SYSTEM)
    assert await forgot(env, "nobody@corral.test") == SENT
    assert await forgot(env, sso_only.email) == SENT
    assert await forgot(env, gone.email) == SENT
    assert await forgot(env, env.email, workspace="no-such-workspace") == SENT
    assert env.mailbox.messages == []
    assert await reasons(env) == [
        "unknown user",
        "no password (signs in with SSO)",
        "user disabled",
    ]


async def test_rules_expiry_and_newer_link(env: Env) -> None:
    await forgot(env, env.email)
    first = link_secret(env)
    weak = await env.client.post(
        "/api/v1/auth/password/reset", json={"token": first, "new_password": "short"}
    )
    assert weak.status_code == 400 and "at least 12" in weak.json()["detail"]
    await forgot(env, env.email)  # a newer link retires the first
    second = link_secret(env)
    refused = await env.client.post(
        "/api/v1/auth/password/reset", json={"token": first, "new_password": NEW}
    )
    assert refused.status_code == 401
    env.clock.advance(minutes=31)
    expired = await env.client.post(
        "/api/v1/auth/password/reset", json={"token": second, "new_password": NEW}
    )
    assert expired.status_code == 401
    tampered = second[:-1] + ("0" if second[-1] != "0" else "1")
    env.clock.advance(minutes=-31)
    wrong = await env.client.post(
        "/api/v1/auth/password/reset", json={"token": tampered, "new_password": NEW}
    )
    assert wrong.status_code == 401
    assert await reasons(env) == ["already used", "expired", "wrong secret"]
    assert (await env.login(password=PASSWORD)).status_code == 200  # unchanged


async def test_rate_limited_per_address_and_cross_origin_refused(env: Env) -> None:
    for _ in range(3):
        await forgot(env, "someone@corral.test")
    limited = await env.client.post(
        "/api/v1/auth/password/forgot", json={"email": "someone@corral.test"}
    )
    assert limited.status_code == 429 and "Retry-After" in limited.headers
    cross = await env.client.post(
        "/api/v1/auth/password/forgot",
        json={"email": env.email},
        headers={"Origin": "https://evil.test"},
    )
    assert cross.status_code == 403
    await env.identity.reset.drain()
    assert env.mailbox.messages == []
