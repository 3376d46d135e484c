"""Tenancy by construction: every public method of every tenant service, called with
workspace B on workspace A's rows, neither returns nor changes them.

``test_every_method_is_walked`` fails when a service grows a method without a case here.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import select

from broker.audit import Actor
from broker.errors import AuthenticationFailed, NotFound
from broker.services import TENANT_SERVICES, Services
from broker.services.inventory import Departure, Report
from broker.services.sso import SsoAssertion
from broker.store.models import (
    AccessLevel,
    BrowserSession,
    BrowserSessionState,
    FactorKind,
    Invitation,
    MfaChallenge,
    Role,
    SsoProtocol,
    SsoReplay,
    TokenScope,
)

ACTOR = Actor("user", "someone")


@dataclass
class World:
    ws: str
    user: str
    group: str
    server: str
    server_group: str
    grant: str
    session: str
    recording: str
    approval: str
    token: str
    token_secret: str
    credential: str
    agent_secret: str
    factor: str
    browser: str
    browser_secret: str
    challenge: str
    invitation: str
    provider: str
    service_account: str = ""


async def build_world(sv: Services, name: str) -> World:
    ws = (await sv.workspaces.create(name)).id
    user = (await sv.users.create(ws, f"alice@{name}.test", role=Role.STAFF)).id
    approver = (await sv.users.create(ws, f"bob@{name}.test")).id
    group = (await sv.groups.create(ws, "ops")).id
    await sv.groups.add_member(ws, group, user, actor=ACTOR)
    server = (await sv.servers.create(ws, "web-1", tags={"env": "prod"})).id
    server_group = (await sv.server_groups.create(ws, "web")).id
    await sv.server_groups.add_server(ws, server_group, server, actor=ACTOR)
    grant = (
        await sv.grants.grant(ws, level=AccessLevel.FULL, group_id=group, server_pattern="web-*")
    ).id
    session = (
        await sv.sessions.open(ws, user_id=user, server_id=server, unix_user="deploy", actor=ACTOR)
    ).id
    recording = (await sv.recordings.add(ws, session, "/tmp/r.cast")).id
    approval = (
        await sv.approvals.request(
            ws, requester_id=user, command="reboot", approvers=[approver], server_id=server
        )
    ).id
    token, token_secret = await sv.tokens.create(
        ws, user, name="ci", scope=TokenScope.READ, expires_in_days=30
    )
    _, reg_secret = await sv.agents.create_registration_token(ws)
    _, credential, agent_secret = await sv.agents.register(reg_secret, name="db-1")
    factor = await sv.factors.add(
        ws, user, FactorKind.WEBAUTHN, confirmed=True, credential_id=f"cred-{name}", public_key="k"
    )
    browser, browser_secret = await sv.browser_sessions.create(
        ws, user, state=BrowserSessionState.ACTIVE, lifetime_seconds=3600
    )
    challenge = await sv.factors.open_challenge(
        ws, user, purpose="code:x", ttl_seconds=300, factor_id=factor.id, secret_hash="h"
    )
    await sv.factors.replace_recovery_codes(ws, user, ["r1", "r2"], actor=ACTOR)
    await sv.accounts.record_mfa(ws, user, "totp")
    invitation, _ = await sv.accounts.invite(ws, f"carol@{name}.test")
    provider = await sv.sso.create_provider(
        ws, "okta", SsoProtocol.OIDC, config={"issuer": f"https://{name}.example"}
    )
    await sv.sso.claim_once(provider, "state-1", sv.sso.clock() + timedelta(minutes=5))
    await sv.lifecycle.open_password_reset(ws, user)
    account = await sv.service_accounts.create(ws, "ci", actor=ACTOR)
    await sv.tokens.create(ws, account.id, name="ci", scope=TokenScope.WRITE, expires_in_days=30)
    world = World(
        ws,
        user,
        group,
        server,
        server_group,
        grant,
        session,
        recording,
        approval,
        token.id,
        token_secret,
        credential.id,
        agent_secret,
        factor.id,
        browser.id,
        browser_secret,
        challenge.id,
        invitation.id,
        provider.id,
    )
    world.service_account = account.id
    return world


Case = Callable[[Services, World, World], Awaitable[Any]]
# Each case calls one method with B's workspace and A's ids and returns what came back;
# the runner expects NotFound, or a result that holds none of A's rows.
CASES: dict[str, Case] = {
    "UserService.create": lambda s, a, b: s.users.create(b.ws, "alice@a.test"),
    "UserService.get": lambda s, a, b: s.users.get(b.ws, a.user),
    "UserService.find_by_email": lambda s, a, b: s.users.find_by_email(b.ws, "alice@a.test"),
    "UserService.list": lambda s, a, b: s.users.list(b.ws),
    "UserService.set_role": lambda s, a, b: s.users.set_role(b.ws, a.user, Role.USER, actor=ACTOR),
    "UserService.set_disabled": lambda s, a, b: s.users.set_disabled(
        b.ws, a.user, True, actor=ACTOR
    ),
    "UserService.page": lambda s, a, b: s.users.page(b.ws, email_prefix="alice"),
    "UserService.update": lambda s, a, b: s.users.update(
        b.ws, a.user, display_name="x", actor=ACTOR
    ),
    "GroupService.update": lambda s, a, b: s.groups.update(b.ws, a.group, name="x", actor=ACTOR),
    "GrantService.get": lambda s, a, b: s.grants.get(b.ws, a.grant),
    "TokenService.get": lambda s, a, b: s.tokens.get(b.ws, a.token),
    "ServerGroupService.get": lambda s, a, b: s.server_groups.get(b.ws, a.server_group),
    "ServiceAccountService.create": lambda s, a, b: s.service_accounts.create(
        b.ws, "ci2", actor=ACTOR
    ),
    "ServiceAccountService.get": lambda s, a, b: s.service_accounts.get(b.ws, a.service_account),
    "ServiceAccountService.list": lambda s, a, b: s.service_accounts.list(b.ws),
    "ServiceAccountService.retire": lambda s, a, b: s.service_accounts.retire(
        b.ws, a.service_account, actor=ACTOR
    ),
    "WorkspaceService.delete": lambda s, a, b: s.workspaces.delete(
        b.ws, confirm_name="b", actor=ACTOR
    ),
    "GroupService.create": lambda s, a, b: s.groups.create(b.ws, "ops2"),
    "GroupService.get": lambda s, a, b: s.groups.get(b.ws, a.group),
    "GroupService.list": lambda s, a, b: s.groups.list(b.ws),
    "GroupService.delete": lambda s, a, b: s.groups.delete(b.ws, a.group, actor=ACTOR),
    "GroupService.add_member": lambda s, a, b: s.groups.add_member(
        b.ws, b.group, a.user, actor=ACTOR
    ),
    "GroupService.remove_member": lambda s, a, b: s.groups.remove_member(
        b.ws, a.group, a.user, actor=ACTOR
    ),
    "GroupService.members": lambda s, a, b: s.groups.members(b.ws, a.group),
    "GroupService.groups_of": lambda s, a, b: s.groups.groups_of(b.ws, a.user),
    "ServerService.create": lambda s, a, b: s.servers.create(b.ws, "web-2"),
    "ServerService.get": lambda s, a, b: s.servers.get(b.ws, a.server),
    "ServerService.find_by_name": lambda s, a, b: s.servers.find_by_name(b.ws, "nothing-here"),
    "ServerService.list": lambda s, a, b: s.servers.list(b.ws),
    "ServerService.set_tags": lambda s, a, b: s.servers.set_tags(b.ws, a.server, {}, actor=ACTOR),
    "ServerService.report": lambda s, a, b: s.servers.report(b.ws, a.server, metrics={"x": 1}),
    "ServerService.report_many": lambda s, a, b: s.servers.report_many(
        b.ws, [Report(a.server, datetime.now(UTC), metrics={"x": 1})]
    ),
    "ServerService.departed": lambda s, a, b: s.servers.departed(
        b.ws, [Departure(a.server, "cred", 1000)], datetime.now(UTC)
    ),
    "ServerService.remove": lambda s, a, b: s.servers.remove(b.ws, a.server, actor=ACTOR),
    "ServerGroupService.create": lambda s, a, b: s.server_groups.create(b.ws, "web2"),
    "ServerGroupService.list": lambda s, a, b: s.server_groups.list(b.ws),
    "ServerGroupService.delete": lambda s, a, b: s.server_groups.delete(
        b.ws, a.server_group, actor=ACTOR
    ),
    "ServerGroupService.add_server": lambda s, a, b: s.server_groups.add_server(
        b.ws, b.server_group, a.server, actor=ACTOR
    ),
    "ServerGroupService.remove_server": lambda s, a, b: s.server_groups.remove_server(
        b.ws, a.server_group, a.server, actor=ACTOR
    ),
    "ServerGroupService.servers": lambda s, a, b: s.server_groups.servers(b.ws, a.server_group),
    "ServerGroupService.groups_of": lambda s, a, b: s.server_groups.groups_of(b.ws, a.server),
    "GrantService.grant": lambda s, a, b: s.grants.grant(
        b.ws, level=AccessLevel.FULL, user_id=a.user, server_pattern="*"
    ),
    "GrantService.list": lambda s, a, b: s.grants.list(b.ws, user_id=a.user, group_ids=[a.group]),
    "GrantService.revoke": lambda s, a, b: s.grants.revoke(b.ws, a.grant, actor=ACTOR),
    "SessionService.open": lambda s, a, b: s.sessions.open(
        b.ws, user_id=a.user, server_id=a.server, unix_user="x", actor=ACTOR
    ),
    "SessionService.get": lambda s, a, b: s.sessions.get(b.ws, a.session),
    "SessionService.list": lambda s, a, b: s.sessions.list(b.ws, user_id=a.user),
    "SessionService.set_status": lambda s, a, b: s.sessions.set_status(b.ws, a.session, "active"),
    "SessionService.close": lambda s, a, b: s.sessions.close(
        b.ws, a.session, reason="x", actor=ACTOR
    ),
    "RecordingService.add": lambda s, a, b: s.recordings.add(b.ws, a.session, "/tmp/x"),
    "RecordingService.finish": lambda s, a, b: s.recordings.finish(b.ws, a.recording, 1),
    "RecordingService.get": lambda s, a, b: s.recordings.get(b.ws, a.recording),
    "RecordingService.list": lambda s, a, b: s.recordings.list(b.ws, session_id=a.session),
    "RecordingService.index": lambda s, a, b: s.recordings.index(
        b.ws, session_id=a.session, user_id=a.user
    ),
    "RecordingService.purge_ended_before": lambda s, a, b: s.recordings.purge_ended_before(
        b.ws, s.recordings.clock() + timedelta(days=1), actor=ACTOR
    ),
    "ApprovalService.request": lambda s, a, b: s.approvals.request(
        b.ws, requester_id=a.user, command="x", approvers=["y"]
    ),
    "ApprovalService.get": lambda s, a, b: s.approvals.get(b.ws, a.approval),
    "ApprovalService.list": lambda s, a, b: s.approvals.list(b.ws),
    "ApprovalService.decide": lambda s, a, b: s.approvals.decide(
        b.ws, a.approval, approver=ACTOR, approve=True
    ),
    "ApprovalService.withdraw": lambda s, a, b: s.approvals.withdraw(
        b.ws, a.approval, reason="timed out"
    ),
    "TokenService.create": lambda s, a, b: s.tokens.create(
        b.ws, a.user, name="x", scope=TokenScope.ADMIN, expires_in_days=30
    ),
    "TokenService.list": lambda s, a, b: s.tokens.list(b.ws, user_id=a.user),
    "TokenService.revoke": lambda s, a, b: s.tokens.revoke(b.ws, a.token, actor=ACTOR),
    "AgentService.create_registration_token": lambda s, a, b: s.agents.create_registration_token(
        b.ws
    ),
    "AgentService.credentials": lambda s, a, b: s.agents.credentials(b.ws, a.server),
    "AgentService.revoke_credential": lambda s, a, b: s.agents.revoke_credential(
        b.ws, a.credential, actor=ACTOR
    ),
    "WorkspaceService.get": lambda s, a, b: s.workspaces.get(b.ws),
    "WorkspaceService.update_settings": lambda s, a, b: s.workspaces.update_settings(
        b.ws, actor=ACTOR, mfa_required=True
    ),
    "AccountService.login_state": lambda s, a, b: s.accounts.login_state(b.ws, a.user),
    "AccountService.record_failure": lambda s, a, b: s.accounts.record_failure(
        b.ws, a.user, reason="x", max_failures=1, lock_seconds=60
    ),
    "AccountService.record_password_ok": lambda s, a, b: s.accounts.record_password_ok(
        b.ws, a.user, rehash="h"
    ),
    "AccountService.set_password": lambda s, a, b: s.accounts.set_password(
        b.ws, a.user, "h", actor=ACTOR
    ),
    "AccountService.record_mfa": lambda s, a, b: s.accounts.record_mfa(b.ws, a.user, "sms"),
    "AccountService.invite": lambda s, a, b: s.accounts.invite(b.ws, "alice@a.test"),
    "BrowserSessionService.create": lambda s, a, b: s.browser_sessions.create(
        b.ws, a.user, state=BrowserSessionState.ACTIVE, lifetime_seconds=60
    ),
    "BrowserSessionService.get": lambda s, a, b: s.browser_sessions.get(b.ws, a.browser),
    "BrowserSessionService.promote": lambda s, a, b: s.browser_sessions.promote(
        b.ws, a.browser, state=BrowserSessionState.ACTIVE, mfa_method="totp"
    ),
    "BrowserSessionService.list": lambda s, a, b: s.browser_sessions.list(b.ws, user_id=a.user),
    "BrowserSessionService.revoke": lambda s, a, b: s.browser_sessions.revoke(
        b.ws, a.browser, actor=ACTOR
    ),
    "BrowserSessionService.revoke_all": lambda s, a, b: s.browser_sessions.revoke_all(
        b.ws, a.user, actor=ACTOR, reason="x"
    ),
    "FactorService.add": lambda s, a, b: s.factors.add(b.ws, a.user, FactorKind.TOTP),
    "FactorService.confirm": lambda s, a, b: s.factors.confirm(b.ws, a.factor, actor=ACTOR),
    "FactorService.get": lambda s, a, b: s.factors.get(b.ws, a.factor),
    "FactorService.list": lambda s, a, b: s.factors.list(b.ws, a.user, confirmed_only=False),
    "FactorService.find_credential": lambda s, a, b: s.factors.find_credential(b.ws, "cred-a"),
    "FactorService.remove": lambda s, a, b: s.factors.remove(b.ws, a.factor, actor=ACTOR),
    "FactorService.remove_all": lambda s, a, b: s.factors.remove_all(b.ws, a.user, actor=ACTOR),
    "FactorService.use_totp_step": lambda s, a, b: s.factors.use_totp_step(b.ws, a.factor, 10**9),
    "FactorService.use_webauthn": lambda s, a, b: s.factors.use_webauthn(b.ws, a.factor, 99),
    "FactorService.replace_recovery_codes": lambda s, a, b: s.factors.replace_recovery_codes(
        b.ws, a.user, ["x"], actor=ACTOR
    ),
    "FactorService.use_recovery_code": lambda s, a, b: s.factors.use_recovery_code(
        b.ws, a.user, "r1"
    ),
    "FactorService.recovery_codes_left": lambda s, a, b: s.factors.recovery_codes_left(
        b.ws, a.user
    ),
    "FactorService.open_challenge": lambda s, a, b: s.factors.open_challenge(
        b.ws, a.user, purpose="code:x", ttl_seconds=60
    ),
    "FactorService.current_challenge": lambda s, a, b: s.factors.current_challenge(
        b.ws, a.user, "code:x"
    ),
    "FactorService.attempt_challenge": lambda s, a, b: s.factors.attempt_challenge(
        b.ws, a.challenge, matched=True, max_attempts=5
    ),
    "SsoService.create_provider": lambda s, a, b: s.sso.create_provider(
        b.ws, "okta2", SsoProtocol.OIDC, config={}
    ),
    "SsoService.update_provider": lambda s, a, b: s.sso.update_provider(
        b.ws, a.provider, actor=ACTOR, enabled=False
    ),
    "SsoService.delete_provider": lambda s, a, b: s.sso.delete_provider(
        b.ws, a.provider, actor=ACTOR
    ),
    "SsoService.provider": lambda s, a, b: s.sso.provider(b.ws, a.provider),
    "SsoService.providers": lambda s, a, b: s.sso.providers(b.ws),
    "IdentityLifecycleService.open_password_reset": lambda s, a, b: s.lifecycle.open_password_reset(
        b.ws, a.user
    ),
    "IdentityLifecycleService.purge_expired": lambda s, a, b: s.lifecycle.purge_expired(
        b.ws, before=s.lifecycle.clock() + timedelta(days=3650), actor=ACTOR
    ),
}

# Methods that take no workspace because they *derive* it from a credential or are the
# operator's own, unscoped tools; each is checked below to stay inside its workspace.
DERIVED = {
    "WorkspaceService.create",
    "WorkspaceService.find",
    "WorkspaceService.list_all",
    "TokenService.authenticate",
    "AgentService.register",
    "AgentService.authenticate",
    "BrowserSessionService.authenticate",
    "AccountService.accept_invitation",
    "SsoService.callback_provider",
    "SsoService.claim_once",
    "SsoService.refuse",
    "SsoService.sign_in",
    "IdentityLifecycleService.password_reset_user",
    "IdentityLifecycleService.redeem_password_reset",
}


def public_methods() -> set[str]:
    names = set()
    for cls in TENANT_SERVICES:
        for name, _member in inspect.getmembers(cls, inspect.iscoroutinefunction):
            if not name.startswith("_"):
                names.add(f"{cls.__name__}.{name}")
    return names


def test_every_method_is_walked() -> None:
    assert public_methods() == set(CASES) | DERIVED


def test_scoped_methods_take_the_workspace_first() -> None:
    for qualified in set(CASES) - {"WorkspaceService.get"}:
        cls_name, method = qualified.split(".")
        cls = next(c for c in TENANT_SERVICES if c.__name__ == cls_name)
        params = list(inspect.signature(getattr(cls, method)).parameters)
        assert params[1] == "workspace_id", qualified


def _ids(world: World) -> set[str]:
    secrets = ("ws", "token_secret", "agent_secret", "browser_secret")
    return {v for k, v in vars(world).items() if k not in secrets}


def _leaked(result: Any, a: World) -> set[str]:
    rows = result if isinstance(result, list | tuple) else [result]
    found = set()
    for row in rows:
        ident = getattr(row, "id", None)
        if ident in _ids(a):
            found.add(ident)
        if getattr(row, "workspace_id", None) == a.ws:
            found.add(f"row of A: {row!r}")
    return found


async def _identity_rows(sv: Services, ws: str) -> dict[str, int]:
    """How many purgeable identity rows a workspace has (the purge must not reach A's)."""
    counts = {}
    async with sv.db.transaction() as s:
        for model in (MfaChallenge, BrowserSession, Invitation, SsoReplay):
            rows = await s.exec(select(model).where(model.workspace_id == ws))  # type: ignore[attr-defined]
            counts[model.__name__] = len(rows.all())
    return counts


async def _snapshot(sv: Services, a: World) -> dict[str, Any]:
    return {
        "user": (await sv.users.get(a.ws, a.user)).model_dump(),
        "users": len(await sv.users.list(a.ws)),
        "members": [u.id for u in await sv.groups.members(a.ws, a.group)],
        "server": (await sv.servers.get(a.ws, a.server)).model_dump(),
        "server_groups": [g.id for g in await sv.server_groups.groups_of(a.ws, a.server)],
        "grants": [g.id for g in await sv.grants.list(a.ws)],
        "session": (await sv.sessions.get(a.ws, a.session)).model_dump(),
        "recording": (await sv.recordings.get(a.ws, a.recording)).model_dump(),
        "approval": (await sv.approvals.get(a.ws, a.approval)).model_dump(),
        "tokens": [t.model_dump() for t in await sv.tokens.list(a.ws)],
        "service_account": (await sv.service_accounts.get(a.ws, a.service_account)).model_dump(),
        "credentials": [c.model_dump() for c in await sv.agents.credentials(a.ws, a.server)],
        "login_state": (await sv.accounts.login_state(a.ws, a.user)).model_dump(),
        "factors": [
            f.model_dump() for f in await sv.factors.list(a.ws, a.user, confirmed_only=False)
        ],
        "recovery_left": await sv.factors.recovery_codes_left(a.ws, a.user),
        "challenge": (await sv.factors.current_challenge(a.ws, a.user, "code:x")),
        "browser": (await sv.browser_sessions.get(a.ws, a.browser)).model_dump(),
        "providers": [p.model_dump() for p in await sv.sso.providers(a.ws)],
        "identity_rows": await _identity_rows(sv, a.ws),
        "workspace": (await sv.workspaces.get(a.ws)).model_dump(
            exclude={"audit_head_seq", "audit_head_hash"}
        ),
    }


@pytest.mark.parametrize("method", sorted(CASES))
async def test_other_workspace_cannot_reach(services: Services, method: str) -> None:
    a = await build_world(services, "a")
    b = await build_world(services, "b")
    before = await _snapshot(services, a)
    try:
        result = await CASES[method](services, a, b)
    except NotFound:
        result = None
    assert not _leaked(result, a), method
    assert await _snapshot(services, a) == before, method


async def test_derived_workspace_methods_stay_inside(services: Services) -> None:
    a = await build_world(services, "a")
    b = await build_world(services, "b")
    token, user = await services.tokens.authenticate(a.token_secret)
    assert token.workspace_id == user.workspace_id == a.ws
    credential, server = await services.agents.authenticate(b.agent_secret)
    assert credential.workspace_id == server.workspace_id == b.ws
    _, reg = await services.agents.create_registration_token(b.ws)
    registered, _, _ = await services.agents.register(reg, name="db-1")
    assert registered.workspace_id == b.ws
    assert registered.id != (await services.servers.find_by_name(a.ws, "db-1")).id  # type: ignore[union-attr]
    assert (await services.workspaces.find("a")).id == a.ws  # type: ignore[union-attr]
    assert {w.id for w in await services.workspaces.list_all()} == {a.ws, b.ws}
    row, user = await services.browser_sessions.authenticate(b.browser_secret, idle_seconds=600)
    assert row.workspace_id == user.workspace_id == b.ws and row.id == b.browser
    _, invite = await services.accounts.invite(b.ws, "dave@b.test")
    joined = await services.accounts.accept_invitation(invite, password_hash="h")
    assert joined.workspace_id == b.ws
    assert await services.users.find_by_email(a.ws, "dave@b.test") is None
    with pytest.raises(AuthenticationFailed):
        last = a.token_secret[-1]
        await services.tokens.authenticate(a.token_secret[:-1] + ("1" if last == "0" else "0"))


async def test_derived_sso_and_reset_methods_stay_inside(services: Services) -> None:
    a = await build_world(services, "a")
    b = await build_world(services, "b")
    provider_b = await services.sso.callback_provider(b.provider)
    assert provider_b is not None and provider_b.workspace_id == b.ws
    until = services.sso.clock() + timedelta(minutes=5)
    assert await services.sso.claim_once(provider_b, "state-1", until) is False  # b's own
    provider_a = await services.sso.provider(a.ws, a.provider)
    assert await services.sso.claim_once(provider_a, "state-2", until) is True
    # The same subject and email as A's staff user: B gets its own person, A is untouched.
    user = await services.sso.sign_in(provider_b, SsoAssertion("sub", "alice@a.test"))
    assert user.workspace_id == b.ws and user.id != a.user
    assert await services.users.find_by_email(a.ws, "alice@a.test") is not None
    refused = await services.sso.refuse(provider_b, "test")
    assert isinstance(refused, AuthenticationFailed)

    secret = await services.lifecycle.open_password_reset(b.ws, b.user)
    assert (await services.lifecycle.password_reset_user(secret)).id == b.user
    changed = await services.lifecycle.redeem_password_reset(secret, password_hash="h")
    assert changed.id == b.user and changed.workspace_id == b.ws
    assert (await services.users.get(a.ws, a.user)).password_hash is None
    assert len(await services.browser_sessions.list(a.ws, user_id=a.user)) == 1
