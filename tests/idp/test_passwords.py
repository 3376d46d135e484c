"""Local passwords on both databases: rules, argon2id, rehash, lockout, invitations."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from broker.audit import SYSTEM
from broker.errors import AuthenticationFailed, InvalidInput
from broker.services import Services
from broker.store.models import Role
from idp.errors import RateLimited
from idp.passwords import LocalLogin, Passwords, check_password_rules
from tests.conftest import Clock
from tests.idp.conftest import CHEAP, PASSWORD


@pytest.mark.parametrize(
    "bad",
    [
        "short",
        "a" * 1025,
        "passwordpassword",
        "aaaaaaaaaaaaaa",
        "ababababababab",
        "xxalice-2026-yy",
    ],
)
def test_password_rules_refuse(bad: str) -> None:
    with pytest.raises(InvalidInput):
        check_password_rules(bad, email="alice@corral.test")


def test_password_rules_accept() -> None:
    check_password_rules(PASSWORD, email="alice@corral.test")


async def test_hash_is_argon2id_and_rehashed_when_parameters_change() -> None:
    old = Passwords(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    digest = await old.hash(PASSWORD)
    assert digest.startswith("$argon2id$") and PASSWORD not in digest
    assert await old.verify(digest, PASSWORD) == (True, None)
    assert await old.verify(digest, PASSWORD + "x") == (False, None)
    assert await old.verify(None, PASSWORD) == (False, None)  # the dummy path
    new = Passwords(PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1))
    ok, rehash = await new.verify(digest, PASSWORD)
    assert ok and rehash is not None and "m=2048,t=2" in rehash


async def _user(services: Services, login: LocalLogin) -> tuple[str, str]:
    ws = (await services.workspaces.create("acme")).id
    user = await services.users.create(ws, "bob@acme.test")
    await login.set_password(ws, user.id, PASSWORD, actor=SYSTEM)
    return ws, user.id


async def test_login_upgrades_an_outdated_hash(services: Services) -> None:
    weak = LocalLogin(services, Passwords(CHEAP))
    ws, user = await _user(services, weak)
    stronger = LocalLogin(
        services, Passwords(PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1))
    )
    await stronger.check(ws, "BOB@acme.test", PASSWORD, source="t")
    assert "m=2048,t=2" in ((await services.users.get(ws, user)).password_hash or "")


async def test_lockout_after_failures_then_backoff_expires(
    services: Services, clock: Clock
) -> None:
    login = LocalLogin(services, Passwords(CHEAP), max_failures=3, lockout_seconds=60)
    ws, user = await _user(services, login)
    for _ in range(2):
        with pytest.raises(AuthenticationFailed, match="invalid email or password"):
            await login.check(ws, "bob@acme.test", "wrong-password-123", source="t")
    with pytest.raises(RateLimited) as locked:
        await login.check(ws, "bob@acme.test", "wrong-password-123", source="t")
    assert locked.value.retry_after == 60
    # Even the right password is refused while locked.
    with pytest.raises(RateLimited):
        await login.check(ws, "bob@acme.test", PASSWORD, source="t")
    clock.advance(seconds=61)
    with pytest.raises(RateLimited) as again:  # one more failure doubles the lock
        await login.check(ws, "bob@acme.test", "wrong-password-123", source="t")
    assert again.value.retry_after == 120
    clock.advance(seconds=121)
    assert (await login.check(ws, "bob@acme.test", PASSWORD, source="t")).id == user
    state = await services.accounts.login_state(ws, user)
    assert state.failed_logins == 0 and state.locked_until is None
    events = await services.audit.events(ws, limit=1000)
    failures = [e for e in events if e.action == "login.failed"]
    assert len(failures) == 5 and all(e.outcome == "denied" for e in failures)
    assert all(PASSWORD not in e.details and "wrong-password" not in e.details for e in failures)
    assert [e.action for e in events].count("login.locked") == 2


async def test_unknown_user_same_answer_and_audited(services: Services) -> None:
    login = LocalLogin(services, Passwords(CHEAP), max_failures=2)
    ws, _ = await _user(services, login)
    with pytest.raises(AuthenticationFailed, match="invalid email or password"):
        await login.check(ws, "nobody@acme.test", PASSWORD, source="t")
    with pytest.raises(RateLimited):  # looks locked, like a real account would
        await login.check(ws, "nobody@acme.test", PASSWORD, source="t")
    events = [e for e in await services.audit.events(ws, limit=1000) if e.action == "login.failed"]
    assert '"unknown user"' in events[0].details


async def test_disabled_user_refused(services: Services) -> None:
    login = LocalLogin(services, Passwords(CHEAP))
    ws, user = await _user(services, login)
    await services.users.set_disabled(ws, user, True, actor=SYSTEM)
    with pytest.raises(AuthenticationFailed):
        await login.check(ws, "bob@acme.test", PASSWORD, source="t")


async def test_rate_limit_per_source(services: Services) -> None:
    login = LocalLogin(services, Passwords(CHEAP), rate_per_minute=3, max_failures=100)
    ws, _ = await _user(services, login)
    for _ in range(3):
        with pytest.raises(AuthenticationFailed):
            await login.check(ws, "bob@acme.test", "nope-nope-nope", source="10.0.0.9")
    with pytest.raises(RateLimited):
        await login.check(ws, "bob@acme.test", PASSWORD, source="10.0.0.9")


async def test_invitation_sign_up_once(services: Services, clock: Clock) -> None:
    login = LocalLogin(services, Passwords(CHEAP))
    ws = (await services.workspaces.create("acme")).id
    _, secret = await services.accounts.invite(ws, "Carol@acme.test", role=Role.STAFF)
    with pytest.raises(InvalidInput):
        await login.sign_up(secret, "short", source="t")
    user = await login.sign_up(secret, PASSWORD, display_name="Carol", source="t")
    assert user.email == "carol@acme.test" and user.role is Role.STAFF
    assert (await login.check(ws, "carol@acme.test", PASSWORD, source="t")).id == user.id
    with pytest.raises(AuthenticationFailed, match="already used"):
        await login.sign_up(secret, PASSWORD, source="t")
    _, late = await services.accounts.invite(ws, "dan@acme.test", ttl_seconds=600)
    clock.advance(seconds=601)
    with pytest.raises(AuthenticationFailed, match="expired"):
        await login.sign_up(late, PASSWORD, source="t")
    with pytest.raises(AuthenticationFailed, match="invalid invitation"):
        await login.sign_up(late[:-1] + ("0" if late[-1] != "0" else "1"), PASSWORD, source="t")
    actions = [e.action for e in await services.audit.events(ws, limit=1000)]
    assert "invitation.accepted" in actions and actions.count("invitation.refused") == 3


async def test_change_password_needs_current_and_ends_other_sessions(
    services: Services,
) -> None:
    login = LocalLogin(services, Passwords(CHEAP))
    ws, user = await _user(services, login)
    actor = SYSTEM
    from broker.store.models import BrowserSessionState

    keep, _ = await services.browser_sessions.create(
        ws, user, state=BrowserSessionState.ACTIVE, lifetime_seconds=3600
    )
    _, other_secret = await services.browser_sessions.create(
        ws, user, state=BrowserSessionState.ACTIVE, lifetime_seconds=3600
    )
    with pytest.raises(AuthenticationFailed):
        await login.change_password(ws, user, "not-it-at-all", "N3w-pass-phrase!", actor=actor)
    await login.change_password(
        ws, user, PASSWORD, "N3w-pass-phrase!", actor=actor, keep_session=keep.id
    )
    assert (await login.check(ws, "bob@acme.test", "N3w-pass-phrase!", source="t")).id == user
    with pytest.raises(AuthenticationFailed, match="revoked"):
        await services.browser_sessions.authenticate(other_secret, idle_seconds=600)
    assert (await services.browser_sessions.get(ws, keep.id)).revoked_at is None


async def test_first_logins_racing_share_one_state_row(services: Services) -> None:
    import asyncio

    ws = (await services.workspaces.create("acme")).id
    user = await services.users.create(ws, "racer@acme.test")
    states = await asyncio.gather(
        *(services.accounts.record_mfa(ws, user.id, "totp") for _ in range(4))
    )
    assert {s.user_id for s in states} == {user.id}
    assert (await services.accounts.login_state(ws, user.id)).last_mfa_method == "totp"
