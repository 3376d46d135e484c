"""Service behaviour on both backends: validation, credentials, approvals, sessions, and
the audit event every state change (and every refusal) leaves behind."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import sqlalchemy as sa

from broker.audit import Actor, Outcome
from broker.audit.log import details_of
from broker.errors import AuthenticationFailed, Conflict, InvalidInput
from broker.services import Services
from broker.store.models import (
    AccessLevel,
    ApprovalStatus,
    AuditEvent,
    Role,
    SessionStatus,
    TokenScope,
)
from tests.conftest import Clock

ADMIN = Actor("user", "admin-id", "tok-id")


async def _events(services: Services, ws: str) -> list[AuditEvent]:
    return await services.audit.events(ws, limit=1000)


async def _last(services: Services, ws: str) -> AuditEvent:
    return (await _events(services, ws))[-1]


async def _row(services: Services, sql: str, **params: Any) -> dict[str, Any]:
    async with services.db.engine.connect() as conn:
        row = (await conn.execute(sa.text(sql), params)).mappings().one()
    return dict(row)


async def _workspace_with_user(services: Services, role: Role = Role.USER) -> tuple[str, str]:
    ws = (await services.workspaces.create("acme")).id
    user = (await services.users.create(ws, "alice@example.com", role=role)).id
    return ws, user


# -- validation and uniqueness ------------------------------------------------------------


async def test_unique_names_conflict(services: Services) -> None:
    ws, _ = await _workspace_with_user(services)
    with pytest.raises(Conflict, match="workspace 'acme' already exists"):
        await services.workspaces.create("acme")
    with pytest.raises(Conflict, match="already exists"):
        await services.users.create(ws, "ALICE@example.com ")  # normalised to the same email
    await services.groups.create(ws, "ops")
    with pytest.raises(Conflict):
        await services.groups.create(ws, "ops")
    await services.servers.create(ws, "web-1")
    with pytest.raises(Conflict):
        await services.servers.create(ws, "web-1")
    await services.server_groups.create(ws, "web")
    with pytest.raises(Conflict):
        await services.server_groups.create(ws, "web")
    # The same names are free in another workspace, and nothing half-made was left behind.
    other = (await services.workspaces.create("other")).id
    await services.users.create(other, "alice@example.com")
    await services.groups.create(other, "ops")
    await services.servers.create(other, "web-1")
    assert [u.email for u in await services.users.list(ws)] == ["alice@example.com"]
    assert len(await services.servers.list(ws)) == 1


async def test_invalid_email(services: Services) -> None:
    ws = (await services.workspaces.create("acme")).id
    for email in ("", "not-an-email", "a@b@c", "with space@example.com", "x" * 65 + "@x.org"):
        with pytest.raises(InvalidInput, match="not an email address"):
            await services.users.create(ws, email)
    assert await services.users.list(ws) == []


async def test_invalid_names(services: Services) -> None:
    ws = (await services.workspaces.create("acme")).id
    for name in ("", "-leading", "has space", "a/b", "x" * 101, "ünï"):
        with pytest.raises(InvalidInput):
            await services.groups.create(ws, name)
        with pytest.raises(InvalidInput):
            await services.servers.create(ws, name)
        with pytest.raises(InvalidInput):
            await services.server_groups.create(ws, name)
    for name in ("", "   ", "x" * 101):
        with pytest.raises(InvalidInput):
            await services.workspaces.create(name)
    with pytest.raises(InvalidInput, match="bad tag"):
        await services.servers.create(ws, "ok", tags={"bad key": "v"})
    assert await services.groups.list(ws) == []
    assert await services.servers.list(ws) == []
    assert [e.action for e in await _events(services, ws)] == ["workspace.created"]


async def test_invalid_grants_and_token_options(services: Services) -> None:
    ws, user = await _workspace_with_user(services)
    with pytest.raises(InvalidInput):
        await services.grants.grant(ws, level=AccessLevel.FULL, server_pattern="*")
    with pytest.raises(InvalidInput):
        await services.grants.grant(ws, level=AccessLevel.FULL, user_id=user)
    with pytest.raises(InvalidInput):
        await services.grants.grant(ws, level=AccessLevel.FULL, user_id=user, server_tag="prod")
    with pytest.raises(InvalidInput):
        await services.tokens.create(ws, user, name="t", scope=TokenScope.READ, expires_in_days=7)
    with pytest.raises(InvalidInput):
        await services.tokens.create(ws, user, name=" ", scope=TokenScope.READ, expires_in_days=30)
    with pytest.raises(InvalidInput):
        await services.workspaces.update_settings(ws, actor=ADMIN, audit_retention_days=0)


# -- personal access tokens --------------------------------------------------------------


async def _token(services: Services, ws: str, user: str, days: int | None = 30) -> tuple[str, str]:
    token, secret = await services.tokens.create(
        ws, user, name="laptop", scope=TokenScope.WRITE, expires_in_days=days, actor=ADMIN
    )
    return token.id, secret


async def test_token_secret_is_shown_once_and_only_hashed(services: Services) -> None:
    ws, user = await _workspace_with_user(services)
    token_id, secret = await _token(services, ws, user)
    assert secret.startswith(f"crlpat_{token_id}_")
    row = await _row(services, "SELECT * FROM apitoken WHERE id = :id", id=token_id)
    assert row["secret_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    random_part = secret.rsplit("_", 1)[1]
    for value in row.values():
        assert secret not in str(value) and random_part not in str(value)
    # Nor anywhere in the audit trail.
    for event in await _events(services, ws):
        assert random_part not in event.details and random_part not in event.target
    listed = await services.tokens.list(ws, user_id=user)
    assert [t.id for t in listed] == [token_id]
    assert not hasattr(listed[0], "secret")

    event = await _last(services, ws)
    assert (event.action, event.target, event.actor_id) == ("token.created", token_id, "admin-id")
    assert "laptop" in event.details


async def test_token_authenticates(services: Services, clock: Clock) -> None:
    ws, user = await _workspace_with_user(services)
    token_id, secret = await _token(services, ws, user)
    clock.advance(hours=1)
    token, who = await services.tokens.authenticate(secret)
    assert (token.id, who.id, who.workspace_id) == (token_id, user, ws)
    again = (await services.tokens.list(ws))[0]
    assert again.last_used_at == clock.now


async def _assert_refused(
    services: Services, ws: str, secret: str, reason: str, message: str
) -> None:
    before = len(await _events(services, ws))
    with pytest.raises(AuthenticationFailed, match=message):
        await services.tokens.authenticate(secret)
    events = await _events(services, ws)
    assert len(events) == before + 1, "the refusal must be audited (and committed)"
    event = events[-1]
    assert event.action == "token.refused"
    assert event.outcome == Outcome.DENIED == "denied"
    assert details_of(event) == {"reason": reason}
    assert secret.rsplit("_", 1)[1] not in event.details


async def test_token_wrong_secret_refused_and_audited(services: Services) -> None:
    ws, user = await _workspace_with_user(services)
    token_id, secret = await _token(services, ws, user)
    forged = f"crlpat_{token_id}_{'0' * 48}"
    await _assert_refused(services, ws, forged, "wrong secret", "^invalid token$")
    # Malformed or unknown secrets cannot be placed in a workspace: refused, not audited.
    before = len(await _events(services, ws))
    for garbage in ("", "nonsense", f"crlpat_{'a' * 32}_{'0' * 48}", secret + "x"):
        with pytest.raises(AuthenticationFailed, match=r"^invalid token$"):
            await services.tokens.authenticate(garbage)
    assert len(await _events(services, ws)) == before
    await services.tokens.authenticate(secret)  # the real one still works


async def test_revoked_token_refused_and_audited(services: Services) -> None:
    ws, user = await _workspace_with_user(services)
    token_id, secret = await _token(services, ws, user)
    revoked = await services.tokens.revoke(ws, token_id, actor=ADMIN)
    assert revoked.revoked_at is not None
    event = await _last(services, ws)
    assert (event.action, event.target) == ("token.revoked", token_id)
    count = len(await _events(services, ws))
    await services.tokens.revoke(ws, token_id, actor=ADMIN)  # again: no-op, no event
    assert len(await _events(services, ws)) == count
    await _assert_refused(services, ws, secret, "revoked", "token revoked")


async def test_expired_token_refused_and_audited(services: Services, clock: Clock) -> None:
    ws, user = await _workspace_with_user(services)
    _, secret = await _token(services, ws, user, days=30)
    clock.advance(days=29, hours=23)
    await services.tokens.authenticate(secret)
    clock.advance(hours=1)
    await _assert_refused(services, ws, secret, "expired", "token expired")


async def test_never_expiring_token(services: Services, clock: Clock) -> None:
    ws, user = await _workspace_with_user(services)
    _, secret = await _token(services, ws, user, days=None)
    clock.advance(days=3650)
    await services.tokens.authenticate(secret)


async def test_disabled_user_refused_and_audited(services: Services) -> None:
    ws, user = await _workspace_with_user(services)
    _, secret = await _token(services, ws, user)
    await services.users.set_disabled(ws, user, True, actor=ADMIN)
    assert (await _last(services, ws)).action == "user.disabled"
    await _assert_refused(services, ws, secret, "user disabled", "token user disabled")
    await services.users.set_disabled(ws, user, False, actor=ADMIN)
    assert (await _last(services, ws)).action == "user.enabled"
    await services.tokens.authenticate(secret)


# -- agents ------------------------------------------------------------------------------


async def test_registration_token_is_single_use(services: Services) -> None:
    ws = (await services.workspaces.create("acme")).id
    reg, secret = await services.agents.create_registration_token(ws, actor=ADMIN)
    assert (await _last(services, ws)).action == "agent.registration_token_created"
    row = await _row(services, "SELECT * FROM registrationtoken WHERE id = :id", id=reg.id)
    assert all(secret not in str(value) for value in row.values())

    server, credential, agent_secret = await services.agents.register(
        secret, name="web-1", platform="linux", tags={"env": "prod"}, source="10.0.0.5"
    )
    assert (server.workspace_id, server.name, server.tags) == (ws, "web-1", {"env": "prod"})
    event = await _last(services, ws)
    assert (event.action, event.server_id, event.outcome) == (
        "agent.registered",
        server.id,
        "success",
    )

    with pytest.raises(AuthenticationFailed, match="already used"):
        await services.agents.register(secret, name="intruder", source="10.6.6.6")
    event = await _last(services, ws)
    assert event.action == "agent.registration_refused"
    assert event.outcome == "denied"
    assert details_of(event) == {"reason": "already used", "source": "10.6.6.6"}
    assert [s.name for s in await services.servers.list(ws)] == ["web-1"]

    got_credential, got_server = await services.agents.authenticate(agent_secret)
    assert (got_credential.id, got_server.id) == (credential.id, server.id)


async def test_expired_registration_token_refused(services: Services, clock: Clock) -> None:
    ws = (await services.workspaces.create("acme")).id
    _, secret = await services.agents.create_registration_token(ws, ttl_seconds=600)
    clock.advance(seconds=600)
    with pytest.raises(AuthenticationFailed, match="expired"):
        await services.agents.register(secret, name="late")
    event = await _last(services, ws)
    assert (event.action, event.outcome) == ("agent.registration_refused", "denied")
    assert details_of(event)["reason"] == "expired"
    assert await services.servers.list(ws) == []


async def test_bogus_registration_secrets(services: Services) -> None:
    ws = (await services.workspaces.create("acme")).id
    reg, secret = await services.agents.create_registration_token(ws)
    for bogus in (
        "",
        "crlreg_x_y",
        f"crlreg_{reg.id}_{'0' * 48}",
        secret.replace("crlreg", "crlpat"),
    ):
        with pytest.raises(AuthenticationFailed, match="invalid registration token"):
            await services.agents.register(bogus, name="web-1")
    with pytest.raises(InvalidInput):
        await services.agents.register(secret, name="bad name")
    await services.agents.register(secret, name="web-1")  # still unused after all that


async def test_reregistering_revokes_the_old_credential(services: Services) -> None:
    ws = (await services.workspaces.create("acme")).id
    _, first = await services.agents.create_registration_token(ws)
    server, old_credential, old_secret = await services.agents.register(first, name="web-1")
    _, second = await services.agents.create_registration_token(ws)
    again, new_credential, new_secret = await services.agents.register(second, name="web-1")
    assert again.id == server.id
    assert new_credential.id != old_credential.id

    with pytest.raises(AuthenticationFailed, match="revoked"):
        await services.agents.authenticate(old_secret)
    event = await _last(services, ws)
    assert (event.action, event.outcome, event.server_id) == (
        "agent.credential_refused",
        "denied",
        server.id,
    )
    credential, _ = await services.agents.authenticate(new_secret)
    assert credential.id == new_credential.id
    live = [c for c in await services.agents.credentials(ws, server.id) if c.revoked_at is None]
    assert [c.id for c in live] == [new_credential.id]

    await services.agents.revoke_credential(ws, new_credential.id, actor=ADMIN)
    assert (await _last(services, ws)).action == "agent.credential_revoked"
    with pytest.raises(AuthenticationFailed):
        await services.agents.authenticate(new_secret)
    with pytest.raises(AuthenticationFailed, match="invalid agent credential"):
        await services.agents.authenticate(
            new_secret[:-1] + ("0" if new_secret[-1] != "0" else "1")
        )


async def test_guessed_agent_secrets_are_audited(services: Services) -> None:
    ws = (await services.workspaces.create("acme")).id
    reg, secret = await services.agents.create_registration_token(ws)
    guessed = f"crlreg_{reg.id}_{'0' * 48}"
    with pytest.raises(AuthenticationFailed, match=r"^invalid registration token$"):
        await services.agents.register(guessed, name="web-1")
    event = await _last(services, ws)
    assert (event.action, event.outcome) == ("agent.registration_refused", "denied")
    assert details_of(event)["reason"] == "wrong secret"

    server, credential, agent_secret = await services.agents.register(secret, name="web-1")
    forged = agent_secret[:-1] + ("0" if agent_secret[-1] != "0" else "1")
    with pytest.raises(AuthenticationFailed, match=r"^invalid agent credential$"):
        await services.agents.authenticate(forged)
    event = await _last(services, ws)
    assert (event.action, event.outcome, event.server_id) == (
        "agent.credential_refused",
        "denied",
        server.id,
    )
    assert details_of(event)["reason"] == "wrong secret"
    assert (await services.agents.authenticate(agent_secret))[0].id == credential.id


# -- approvals ---------------------------------------------------------------------------


async def _approval_world(services: Services) -> tuple[str, str, str, str, str]:
    ws, alice = await _workspace_with_user(services)
    bob = (await services.users.create(ws, "bob@example.com")).id
    carol = (await services.users.create(ws, "carol@example.com")).id
    approval = await services.approvals.request(
        ws, requester_id=alice, command="reboot", approvers=[alice, bob], ttl_seconds=300
    )
    return ws, alice, bob, carol, approval.id


async def test_approval_flow(services: Services) -> None:
    ws, _, bob, _, approval_id = await _approval_world(services)
    requested = await _last(services, ws)
    assert (requested.action, requested.target) == ("approval.requested", approval_id)
    decided = await services.approvals.decide(
        ws, approval_id, approver=Actor("user", bob), approve=True, reason="ok"
    )
    assert decided.status == ApprovalStatus.APPROVED and decided.decided_by == bob
    event = await _last(services, ws)
    assert (event.action, event.actor_id, event.outcome) == ("approval.approved", bob, "success")
    with pytest.raises(Conflict, match="already approved"):
        await services.approvals.decide(ws, approval_id, approver=Actor("user", bob), approve=False)
    assert (await services.approvals.get(ws, approval_id)).status == ApprovalStatus.APPROVED


async def test_approval_needs_approvers(services: Services) -> None:
    ws, alice = await _workspace_with_user(services)
    with pytest.raises(InvalidInput):
        await services.approvals.request(ws, requester_id=alice, command="x", approvers=[])


@pytest.mark.parametrize("who", ["requester", "outsider"])
async def test_approval_refusal_is_audited_and_persisted(services: Services, who: str) -> None:
    ws, alice, _, carol, approval_id = await _approval_world(services)
    approver = Actor("user", alice if who == "requester" else carol)
    with pytest.raises(Conflict, match="not an approver"):
        await services.approvals.decide(ws, approval_id, approver=approver, approve=True)
    event = await _last(services, ws)
    assert (event.action, event.outcome, event.actor_id, event.target) == (
        "approval.decide_refused",
        "denied",
        approver.id,
        approval_id,
    )
    assert (await services.approvals.get(ws, approval_id)).status == ApprovalStatus.PENDING
    assert (await services.audit.verify(ws)).ok


async def test_approval_expires(services: Services, clock: Clock) -> None:
    ws, _, bob, _, approval_id = await _approval_world(services)
    clock.advance(seconds=300)
    with pytest.raises(Conflict, match="expired"):
        await services.approvals.decide(ws, approval_id, approver=Actor("user", bob), approve=True)
    assert (await services.approvals.get(ws, approval_id)).status == ApprovalStatus.EXPIRED
    assert await services.approvals.list(ws, status=ApprovalStatus.PENDING) == []
    with pytest.raises(Conflict, match="already expired"):
        await services.approvals.decide(ws, approval_id, approver=Actor("user", bob), approve=True)


# -- sessions ----------------------------------------------------------------------------


async def test_session_close_twice_is_a_no_op(services: Services, clock: Clock) -> None:
    ws, alice = await _workspace_with_user(services)
    server = (await services.servers.create(ws, "web-1")).id
    actor = Actor("user", alice, "tok")
    session = await services.sessions.open(
        ws, user_id=alice, server_id=server, unix_user="deploy", actor=actor
    )
    opened = await _last(services, ws)
    assert (opened.action, opened.session_id, opened.server_id) == (
        "session.opened",
        session.id,
        server,
    )
    assert session.credential_id == "tok"
    await services.sessions.set_status(ws, session.id, SessionStatus.ACTIVE)
    assert [s.id for s in await services.sessions.list(ws, live_only=True)] == [session.id]

    clock.advance(minutes=5)
    closed = await services.sessions.close(ws, session.id, reason="logout", actor=actor)
    assert closed.status == SessionStatus.CLOSED and closed.closed_at == clock.now
    count = len(await _events(services, ws))
    assert (await _last(services, ws)).action == "session.closed"

    clock.advance(minutes=5)
    again = await services.sessions.close(
        ws, session.id, reason="other", actor=actor, terminated=True
    )
    assert again.status == SessionStatus.CLOSED
    assert again.close_reason == "logout" and again.closed_at == closed.closed_at
    assert len(await _events(services, ws)) == count
    with pytest.raises(Conflict):
        await services.sessions.set_status(ws, session.id, SessionStatus.ACTIVE)
    assert await services.sessions.list(ws, live_only=True) == []


# -- every change leaves an event ----------------------------------------------------------


async def test_state_changes_are_audited(services: Services) -> None:
    ws, alice = await _workspace_with_user(services)

    async def expect(action: str, **fields: str) -> AuditEvent:
        event = await _last(services, ws)
        assert event.action == action
        assert event.outcome == "success"
        for name, value in fields.items():
            assert getattr(event, name) == value, (action, name)
        return event

    await expect("user.created", target=alice)
    await services.users.set_role(ws, alice, Role.STAFF, actor=ADMIN)
    event = await expect("user.role_changed", target=alice, actor_id="admin-id")
    assert details_of(event) == {"from": "user", "to": "staff"}
    group = await services.groups.create(ws, "ops", actor=ADMIN)
    await expect("group.created", target=group.id)
    await services.groups.add_member(ws, group.id, alice, actor=ADMIN)
    await expect("group.member_added", target=group.id)
    await services.groups.remove_member(ws, group.id, alice, actor=ADMIN)
    await expect("group.member_removed", target=group.id)
    server = await services.servers.create(ws, "web-1", actor=ADMIN)
    await expect("server.created", server_id=server.id)
    await services.servers.set_tags(ws, server.id, {"env": "prod"}, actor=ADMIN)
    await expect("server.tags_changed", server_id=server.id)
    grant = await services.grants.grant(
        ws, level=AccessLevel.TERMINAL, user_id=alice, server_tag="env=prod", actor=ADMIN
    )
    await expect("grant.created", target=grant.id, credential_id="tok-id")
    await services.grants.revoke(ws, grant.id, actor=ADMIN)
    await expect("grant.revoked", target=grant.id)
    await services.workspaces.update_settings(ws, actor=ADMIN, mfa_required=True)
    event = await expect("workspace.settings_changed")
    assert details_of(event) == {"mfa_required": True}
    await services.servers.remove(ws, server.id, actor=ADMIN)
    await expect("server.removed", server_id=server.id, target="web-1")
    await services.groups.delete(ws, group.id, actor=ADMIN)
    await expect("group.deleted", target=group.id)

    result = await services.audit.verify(ws)
    assert result.ok and result.checked == len(await _events(services, ws))


async def test_failed_changes_leave_no_event(services: Services) -> None:
    ws, alice = await _workspace_with_user(services)
    count = len(await _events(services, ws))
    with pytest.raises(Conflict):
        await services.users.create(ws, "alice@example.com")
    with pytest.raises(InvalidInput):
        await services.groups.create(ws, "bad name")
    group = await services.groups.create(ws, "ops")
    with pytest.raises(InvalidInput):
        await services.groups.remove_member(ws, group.id, alice, actor=ADMIN)
    assert len(await _events(services, ws)) == count + 1  # just group.created
