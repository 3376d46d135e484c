"""The purge of dead identity rows (idp/purge.py over IdentityLifecycleService): expired or
spent challenges and reset links, sessions past expiry, expired invitations, old SSO replay
entries go; live ones stay; one audited event per workspace. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import timedelta

from sqlmodel import col, select

from broker.audit import SYSTEM
from broker.services import Services
from broker.store.models import (
    AuditEvent,
    BrowserSession,
    BrowserSessionState,
    Invitation,
    MfaChallenge,
    SsoProtocol,
    SsoReplay,
)
from idp.purge import IdentityPurge
from tests.conftest import Clock


async def _ids(services: Services, model: type) -> set[str]:  # type: ignore[type-arg]
    async with services.db.transaction() as s:
        rows = (await s.exec(select(model))).all()
    return {getattr(r, "id", None) or r.key for r in rows}


async def test_purge_removes_dead_rows_only(services: Services, clock: Clock) -> None:
    ws = (await services.workspaces.create("acme")).id
    other = (await services.workspaces.create("other")).id
    user = (await services.users.create(ws, "a@acme.test")).id
    stranger = (await services.users.create(other, "b@other.test")).id
    provider = await services.sso.create_provider(ws, "okta", SsoProtocol.OIDC, config={})

    await services.browser_sessions.create(
        ws, user, state=BrowserSessionState.ACTIVE, lifetime_seconds=60
    )
    spent = await services.lifecycle.open_password_reset(ws, user)  # retired by the next
    await services.lifecycle.open_password_reset(ws, user, ttl_seconds=60)
    await services.accounts.invite(ws, "c@acme.test", ttl_seconds=300)
    await services.sso.claim_once(provider, "old", clock() + timedelta(seconds=30))
    # (claim_once sweeps expired entries itself, so the live one is claimed up front)
    await services.sso.claim_once(provider, "live", clock() + timedelta(minutes=20))
    theirs, _ = await services.browser_sessions.create(
        other, stranger, state=BrowserSessionState.ACTIVE, lifetime_seconds=60
    )
    clock.advance(seconds=400)
    live_session, _ = await services.browser_sessions.create(
        ws, user, state=BrowserSessionState.ACTIVE, lifetime_seconds=3600
    )
    live_reset = await services.lifecycle.open_password_reset(ws, user)
    live_invite, _ = await services.accounts.invite(ws, "d@acme.test")

    results = await IdentityPurge(services).purge_all(workspace_name="acme")
    (result,) = results
    counts = result.counts
    assert (counts.challenges, counts.browser_sessions, counts.invitations, counts.sso_replay) == (
        2,
        1,
        1,
        1,
    )
    assert await _ids(services, BrowserSession) == {live_session.id, theirs.id}
    assert await _ids(services, Invitation) == {live_invite.id}
    assert await _ids(services, SsoReplay) == {"live"}
    (left,) = await _ids(services, MfaChallenge)
    assert live_reset.split("_")[1] == left and spent.split("_")[1] != left
    assert (await services.lifecycle.password_reset_user(live_reset)).id == user

    async with services.db.transaction() as s:
        query = select(AuditEvent).where(col(AuditEvent.action) == "identity.purged")
        (event,) = (await s.exec(query)).all()
    assert event.workspace_id == ws and json.loads(event.details)["browser_sessions"] == 1
    again = await IdentityPurge(services).purge_all(actor=SYSTEM)
    # acme has nothing more; the other workspace's expired session goes in its own purge.
    assert [(r.workspace_name, r.counts.total) for r in again] == [("acme", 0), ("other", 1)]
    assert await _ids(services, BrowserSession) == {live_session.id}


async def test_the_broker_timer_purges(services: Services, clock: Clock) -> None:
    ws = (await services.workspaces.create("acme")).id
    await services.accounts.invite(ws, "c@acme.test", ttl_seconds=300)
    clock.advance(seconds=301)
    task = asyncio.create_task(IdentityPurge(services).run(interval=3600))
    try:
        for _ in range(200):
            if not await _ids(services, Invitation):
                break
            await asyncio.sleep(0.05)
        assert await _ids(services, Invitation) == set()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
