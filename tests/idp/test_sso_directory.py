"""SSO sign-in bookkeeping (broker/services/sso.py): links, just-in-time users, group sync,
replay refusal, and refusals audited. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from broker.audit import SYSTEM
from broker.errors import AuthenticationFailed
from broker.services import Services
from broker.services.sso import SsoAssertion
from broker.store.models import Role, SsoProtocol


async def _provider(services: Services, **kw: object):  # type: ignore[no-untyped-def]
    ws = await services.workspaces.create("acme")
    return await services.sso.create_provider(
        ws.id,
        "okta",
        SsoProtocol.OIDC,
        config={"issuer": "https://idp.example"},
        group_mapping={"eng": "engineers", "ops": "operators"},
        **kw,  # type: ignore[arg-type]
    )


async def test_jit_user_is_created_linked_and_grouped(services: Services) -> None:
    provider = await _provider(services)
    user = await services.sso.sign_in(
        provider, SsoAssertion("sub-1", "Ada@Example.com", "Ada", groups=("eng", "other"))
    )
    assert user.email == "ada@example.com" and user.role is Role.USER
    groups = {g.name for g in await services.groups.groups_of(provider.workspace_id, user.id)}
    assert groups == {"engineers"}
    # Next login: same user by link even if the email changed; groups follow the IdP.
    again = await services.sso.sign_in(
        provider, SsoAssertion("sub-1", "ada@new.example", groups=("ops",))
    )
    assert again.id == user.id
    groups = {g.name for g in await services.groups.groups_of(provider.workspace_id, user.id)}
    assert groups == {"operators"}


async def test_unmapped_groups_are_left_alone(services: Services) -> None:
    provider = await _provider(services)
    user = await services.sso.sign_in(provider, SsoAssertion("s", "b@example.com"))
    manual = await services.groups.create(provider.workspace_id, "handmade", actor=SYSTEM)
    await services.groups.add_member(provider.workspace_id, manual.id, user.id, actor=SYSTEM)
    await services.sso.sign_in(provider, SsoAssertion("s", "b@example.com", groups=("eng",)))
    groups = {g.name for g in await services.groups.groups_of(provider.workspace_id, user.id)}
    assert groups == {"handmade", "engineers"}


async def test_refusals_are_audited(services: Services) -> None:
    provider = await _provider(services, jit=False)
    with pytest.raises(AuthenticationFailed, match="just-in-time"):
        await services.sso.sign_in(provider, SsoAssertion("s", "c@example.com"))
    existing = await services.users.create(provider.workspace_id, "d@example.com")
    await services.users.set_disabled(provider.workspace_id, existing.id, True, actor=SYSTEM)
    with pytest.raises(AuthenticationFailed, match="disabled"):
        await services.sso.sign_in(provider, SsoAssertion("s3", "d@example.com"))
    with pytest.raises(AuthenticationFailed, match="email"):
        await services.sso.sign_in(provider, SsoAssertion("s2", "not an email"))
    events = await services.audit.events(provider.workspace_id)
    refused = [e for e in events if e.action == "sso.refused"]
    assert len(refused) == 3 and all(e.outcome == "denied" for e in refused)


async def test_claim_once_refuses_a_replay(services: Services) -> None:
    provider = await _provider(services)
    until = services.sso.clock() + timedelta(minutes=5)
    assert await services.sso.claim_once(provider, "assertion-1", until)
    assert not await services.sso.claim_once(provider, "assertion-1", until)
    assert await services.sso.claim_once(provider, "assertion-2", until)
