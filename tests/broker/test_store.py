"""The database handle on both backends: start-up checks, migrations, types, pragmas."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from broker.errors import StoreError
from broker.store.db import Database
from broker.store.models import Approval, Server, User, Workspace
from tests.conftest import POSTGRES_URL, _pg_exec, _with_db


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with nothing in it at all (not even Corral's schema)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    name = f"corral_e_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_exec(f'CREATE DATABASE "{name}"'))
    yield _with_db(POSTGRES_URL, name).replace("postgresql://", "postgresql+asyncpg://")
    asyncio.run(_pg_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def empty_db(empty_url: str) -> AsyncIterator[Database]:
    database = Database(empty_url)
    yield database
    await database.dispose()


async def _scalar(db: Database, sql: str) -> object:
    async with db.engine.connect() as conn:
        return (await conn.execute(sa.text(sql))).scalar()


async def _exec(db: Database, sql: str) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(sa.text(sql))


async def _tables(db: Database) -> list[str]:
    async with db.engine.connect() as conn:
        return sorted(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))


async def test_check_on_an_empty_database(empty_db: Database) -> None:
    state = await empty_db.check()
    assert state.empty
    assert not state.up_to_date
    assert state.head
    assert await _tables(empty_db) == []  # checking changed nothing


async def test_migrate_is_idempotent(empty_db: Database) -> None:
    first = await empty_db.migrate()
    assert first.up_to_date and not first.empty
    tables = await _tables(empty_db)
    assert {"workspace", "user", "auditevent", "alembic_version"} <= set(tables)
    second = await empty_db.migrate()
    assert second.up_to_date and second.current == first.current
    assert await _tables(empty_db) == tables
    assert await _scalar(empty_db, "SELECT count(*) FROM alembic_version") == 1
    state = await empty_db.check()
    assert state.up_to_date and state.current == state.head


async def test_unknown_revision_is_newer(db: Database) -> None:
    await _exec(db, "UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(StoreError, match="newer") as info:
        await db.check()
    assert "9999" in str(info.value)
    with pytest.raises(StoreError, match="newer"):
        await db.migrate()
    assert await _scalar(db, "SELECT version_num FROM alembic_version") == "9999"


async def test_foreign_tables_without_version_are_refused(empty_db: Database) -> None:
    await _exec(empty_db, "CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    with pytest.raises(StoreError, match="no Corral schema version"):
        await empty_db.check()
    with pytest.raises(StoreError, match="no Corral schema version"):
        await empty_db.migrate()
    assert await _tables(empty_db) == ["invoices"]


async def test_unreachable_postgres_is_one_short_line() -> None:
    db = Database("postgresql+asyncpg://u:hunter2@127.0.0.1:1/x", connect_timeout=2)
    try:
        with pytest.raises(StoreError) as info:
            await db.check()
        with pytest.raises(StoreError):
            await db.migrate()
    finally:
        await db.dispose()
    message = str(info.value)
    assert message.startswith("cannot reach database postgresql+asyncpg://u:***@127.0.0.1:1/x: ")
    assert "hunter2" not in message
    assert "\n" not in message and len(message) < 300
    assert info.value.__cause__ is None and info.value.__suppress_context__


async def test_unreachable_sqlite_is_one_short_line(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'missing-dir' / 'corral.db'}")
    try:
        with pytest.raises(StoreError, match=r"^cannot reach database sqlite") as info:
            await db.check()
    finally:
        await db.dispose()
    assert "\n" not in str(info.value) and len(str(info.value)) < 400
    assert not (tmp_path / "missing-dir").exists()


async def test_sqlite_pragmas(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")
    try:
        await db.migrate()
        assert await _scalar(db, "PRAGMA journal_mode") == "wal"
        assert await _scalar(db, "PRAGMA foreign_keys") == 1
        assert await _scalar(db, "PRAGMA busy_timeout") == 30000
    finally:
        await db.dispose()


async def test_deleting_a_workspace_cascades(db: Database) -> None:
    async with db.transaction() as s:
        workspace = Workspace(name="doomed")
        s.add(workspace)
        await s.flush()
        s.add(User(workspace_id=workspace.id, email="a@example.com"))
        s.add(Server(workspace_id=workspace.id, name="web-1"))
    assert await _scalar(db, 'SELECT count(*) FROM "user"') == 1
    await _exec(db, f"DELETE FROM workspace WHERE id = '{workspace.id}'")
    assert await _scalar(db, 'SELECT count(*) FROM "user"') == 0
    assert await _scalar(db, "SELECT count(*) FROM server") == 0


async def test_foreign_keys_are_enforced(db: Database) -> None:
    with pytest.raises(sa.exc.IntegrityError):
        async with db.transaction() as s:
            s.add(User(workspace_id="no-such-workspace", email="a@example.com"))


async def test_datetimes_come_back_aware_utc(db: Database) -> None:
    plus_two = timezone(timedelta(hours=2))
    moment = datetime(2026, 3, 1, 14, 30, 15, 123456, tzinfo=plus_two)
    async with db.transaction() as s:
        workspace = Workspace(name="tz", created_at=moment)
        s.add(workspace)
    async with db.transaction() as s:
        row = await s.get(Workspace, workspace.id, populate_existing=True)
        assert row is not None
    assert row.created_at.tzinfo is not None
    assert row.created_at.utcoffset() == timedelta(0)
    assert row.created_at == moment
    assert row.created_at == datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)


async def test_naive_datetimes_are_refused(db: Database) -> None:
    with pytest.raises(sa.exc.StatementError, match="naive datetime"):
        async with db.transaction() as s:
            s.add(Workspace(name="naive", created_at=datetime(2026, 1, 1)))


async def test_json_columns_round_trip(db: Database) -> None:
    sysinfo = {"os": {"name": "debian", "version": [12, 5]}, "cpus": 4, "ok": True, "n": None}
    tags = {"env": "prod", "team": "ünïcode ☃"}
    async with db.transaction() as s:
        workspace = Workspace(name="json")
        s.add(workspace)
        await s.flush()
        user = User(workspace_id=workspace.id, email="r@example.com")
        server = Server(workspace_id=workspace.id, name="db-1", tags=tags, sysinfo=sysinfo)
        s.add_all([user, server])
        await s.flush()
        approval = Approval(
            workspace_id=workspace.id,
            requester_id=user.id,
            command="rm -rf /tmp/x",
            approvers=["a", "b"],
        )
        s.add(approval)
    async with db.transaction() as s:
        got_server = await s.get(Server, server.id, populate_existing=True)
        got_approval = await s.get(Approval, approval.id, populate_existing=True)
    assert got_server is not None and got_approval is not None
    assert got_server.tags == tags
    assert got_server.sysinfo == sysinfo
    assert got_server.metrics == {}
    assert got_approval.approvers == ["a", "b"]


async def test_transaction_rolls_back_on_error(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.transaction() as s:
            s.add(Workspace(name="ghost"))
            await s.flush()
            raise RuntimeError("boom")
    assert await _scalar(db, "SELECT count(*) FROM workspace WHERE name = 'ghost'") == 0
