"""The audit chain on both backends: appends link up, edits and deletions are named by
verify, PostgreSQL refuses them outright, and a retention purge keeps the chain whole."""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from broker.audit import Actor, Category, Outcome
from broker.audit.log import details_of
from broker.services import Services
from broker.store.db import Database
from tests.conftest import Clock


async def _chain(services: Services, count: int) -> str:
    workspace = await services.workspaces.create("acme")
    for n in range(count):
        await services.audit.emit(
            workspace.id,
            Category.RESOURCE_ACCESS,
            "command.seen",
            actor=Actor("user", "u1", "tok1"),
            details={"n": n, "command": f"echo {n}"},
        )
    return workspace.id


async def _raw(db: Database, sql: str, **params: object) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(sa.text(sql), params)


async def test_events_link_and_verify(services: Services) -> None:
    ws = await _chain(services, 5)
    events = await services.audit.events(ws)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6]  # workspace.created + 5
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(events))
    assert details_of(events[1]) == {"command": "echo 0", "n": 0}
    result = await services.audit.verify(ws)
    assert result.ok and result.checked == 6 and result.head_seq == 6


async def test_chains_are_per_workspace(services: Services) -> None:
    a = await _chain(services, 2)
    b = await services.workspaces.create("other")
    await services.audit.emit(b.id, Category.CONFIGURATION, "x")
    assert [e.seq for e in await services.audit.events(b.id)] == [1, 2]
    assert (await services.audit.verify(a)).ok and (await services.audit.verify(b.id)).ok


async def test_concurrent_appends_never_fork(services: Services) -> None:
    ws = await _chain(services, 0)
    await asyncio.gather(
        *(
            services.audit.emit(ws, Category.AUTHORIZATION, "decide", details={"i": i})
            for i in range(30)
        )
    )
    result = await services.audit.verify(ws)
    assert result.ok and result.checked == 31


async def test_filters_and_cursor(services: Services, clock: Clock) -> None:
    ws = await _chain(services, 3)
    clock.advance(hours=1)
    await services.audit.emit(
        ws,
        Category.AUTHENTICATION,
        "login.failed",
        outcome=Outcome.FAILURE,
        actor=Actor("user", "u2"),
        server_id="s9",
    )
    assert [e.action for e in await services.audit.events(ws, category="authentication")] == [
        "login.failed"
    ]
    assert len(await services.audit.events(ws, actor_id="u1")) == 3
    assert len(await services.audit.events(ws, server_id="s9")) == 1
    assert len(await services.audit.events(ws, since=clock.now)) == 1
    page = await services.audit.events(ws, limit=2)
    rest = await services.audit.events(ws, after_seq=page[-1].seq)
    assert [e.seq for e in page + rest] == [1, 2, 3, 4, 5]


async def test_oversized_details_are_bounded(services: Services) -> None:
    ws = await _chain(services, 0)
    event = await services.audit.emit(
        ws, Category.RESOURCE_ACCESS, "big", details={"x": "a" * 40000}
    )
    assert details_of(event) == {"truncated": True, "size": 40008}


@pytest.fixture
def sqlite_only(db: Database) -> None:
    if db.dialect != "sqlite":
        pytest.skip("on PostgreSQL the database refuses the edit itself")


@pytest.fixture
def postgres_only(db: Database) -> None:
    if db.dialect != "postgresql":
        pytest.skip("SQLite has no server to refuse the edit; verify catches it")


@pytest.mark.usefixtures("sqlite_only")
async def test_edited_event_is_named(services: Services, db: Database) -> None:
    ws = await _chain(services, 5)
    await _raw(
        db,
        "UPDATE auditevent SET details = :d WHERE seq = 3 AND workspace_id = :w",
        d='{"n":99}',
        w=ws,
    )
    result = await services.audit.verify(ws)
    assert not result.ok and result.broken is not None
    assert result.broken.seq == 3
    assert "content does not match" in str(result.broken)


@pytest.mark.usefixtures("sqlite_only")
async def test_rehashed_edit_breaks_the_next_link(services: Services, db: Database) -> None:
    from broker.audit.chain import event_hash

    ws = await _chain(services, 5)
    event = (await services.audit.events(ws))[2]
    event.details = '{"n":99}'
    await _raw(
        db,
        "UPDATE auditevent SET details = :d, hash = :h WHERE id = :i",
        d=event.details,
        h=event_hash(event),
        i=event.id,
    )
    result = await services.audit.verify(ws)
    assert result.broken is not None and result.broken.seq == 4
    assert "previous-hash link" in result.broken.reason


@pytest.mark.usefixtures("sqlite_only")
async def test_deleted_event_is_named(services: Services, db: Database) -> None:
    ws = await _chain(services, 5)
    await _raw(db, "DELETE FROM auditevent WHERE seq = 4 AND workspace_id = :w", w=ws)
    result = await services.audit.verify(ws)
    assert result.broken is not None and result.broken.seq == 4
    assert "missing" in result.broken.reason


@pytest.mark.usefixtures("sqlite_only")
async def test_truncated_tail_is_named(services: Services, db: Database) -> None:
    ws = await _chain(services, 5)
    await _raw(db, "DELETE FROM auditevent WHERE seq >= 5 AND workspace_id = :w", w=ws)
    result = await services.audit.verify(ws)
    assert result.broken is not None and result.broken.seq == 5
    assert "recorded head 6" in result.broken.reason


@pytest.mark.usefixtures("postgres_only")
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE auditevent SET details = '{}'",
        "DELETE FROM auditevent",
        "TRUNCATE auditevent",
        "UPDATE auditcheckpoint SET purged_count = 0",
        "DELETE FROM auditcheckpoint",
    ],
)
async def test_postgres_refuses_edits(
    services: Services, db: Database, clock: Clock, sql: str
) -> None:
    ws = await _chain(services, 3)
    clock.advance(days=1)
    await services.audit.purge(ws, before=clock.now - timedelta(hours=1))
    await services.audit.emit(ws, Category.RESOURCE_ACCESS, "after")
    with pytest.raises(DBAPIError, match="append-only"):
        await _raw(db, sql)
    assert (await services.audit.verify(ws)).ok


async def test_purge_leaves_a_signed_checkpoint(services: Services, clock: Clock) -> None:
    ws = await _chain(services, 4)
    clock.advance(days=400)
    await services.audit.emit(ws, Category.RESOURCE_ACCESS, "recent")
    removed = await services.audit.purge(ws, before=clock.now - timedelta(days=365))
    assert removed == 5
    events = await services.audit.events(ws)
    assert [e.action for e in events] == ["recent", "audit.purged"]
    assert details_of(events[-1])["count"] == 5
    result = await services.audit.verify(ws)
    assert result.ok and result.checked == 2
    assert await services.audit.purge(ws, before=clock.now - timedelta(days=365)) == 0


@pytest.mark.usefixtures("sqlite_only")
async def test_forged_checkpoint_is_named(services: Services, db: Database, clock: Clock) -> None:
    ws = await _chain(services, 4)
    clock.advance(days=10)
    await services.audit.purge(ws, before=clock.now)
    await _raw(db, "UPDATE auditcheckpoint SET purged_count = 1")
    result = await services.audit.verify(ws)
    assert result.broken is not None and "checkpoint signature" in result.broken.reason
