"""Schema migrations on both backends: the models and the migrations agree, and upgrading a
database with rows in it keeps them (0005: removing a server keeps its history)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from broker.store.db import Database
from broker.store.models import Approval, Recording, Server, User, Workspace
from tests.broker.test_store import empty_url  # noqa: F401  (the two-backend fixture)

NOW = "2026-01-01 00:00:00+00:00"


def _upgrade_to(db: Database, revision: str) -> Any:
    def run(connection: Connection) -> None:
        command.upgrade(db._alembic_config(connection), revision)

    return run


async def _rows(db: Database, sql: str) -> list[tuple[Any, ...]]:
    async with db.engine.connect() as conn:
        return [tuple(row) for row in (await conn.execute(sa.text(sql))).all()]


async def _exec(db: Database, *statements: str) -> None:
    async with db.engine.begin() as conn:
        for sql in statements:
            await conn.execute(sa.text(sql))


@pytest.fixture
def database(empty_url: str) -> Database:  # noqa: F811
    return Database(empty_url)


async def test_models_match_the_migrations(database: Database) -> None:
    """A model change without its migration (or the reverse) fails here, on both backends."""
    await database.migrate()

    def diff(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, SQLModel.metadata))

    try:
        async with database.engine.connect() as conn:
            assert await conn.run_sync(diff) == []
    finally:
        await database.dispose()


async def test_0005_keeps_history_when_a_server_is_removed(database: Database) -> None:
    try:
        async with database.engine.begin() as conn:
            await conn.run_sync(_upgrade_to(database, "0004"))
        async with database.transaction() as s:
            # Tables 0005 leaves alone, written through today's models.
            s.add(Workspace(id="w1", name="acme"))
            await s.flush()
            s.add(User(id="u1", workspace_id="w1", email="a@example.com"))
            s.add(Server(id="s1", workspace_id="w1", name="web-1"))
        await _exec(
            database,
            "INSERT INTO terminalsession (id, workspace_id, user_id, server_id, unix_user, "
            "status, cols, rows, opened_at) VALUES "
            f"('t1', 'w1', 'u1', 's1', 'deploy', 'closed', 80, 24, '{NOW}')",
        )
        async with database.transaction() as s:
            s.add(Recording(id="r1", workspace_id="w1", session_id="t1", path="/r1.cast"))
            s.add(
                Approval(
                    id="a1",
                    workspace_id="w1",
                    session_id="t1",
                    requester_id="u1",
                    server_id="s1",
                    command="reboot",
                )
            )

        await database.migrate()  # 0004 -> head, with rows that refer to the rebuilt tables

        assert await _rows(database, "SELECT server_id, server_name FROM terminalsession") == [
            ("s1", "web-1")
        ]
        assert await _rows(database, "SELECT id FROM recording") == [("r1",)]
        await _exec(database, "DELETE FROM server WHERE id = 's1'")
        assert await _rows(database, "SELECT server_id, server_name FROM terminalsession") == [
            (None, "web-1")
        ]
        assert await _rows(database, "SELECT id, session_id FROM recording") == [("r1", "t1")]
        assert await _rows(database, "SELECT id, server_id FROM approval") == [("a1", None)]
        # Foreign keys are still enforced after the rebuild.
        with pytest.raises(sa.exc.IntegrityError):
            await _exec(
                database,
                "INSERT INTO recording (id, workspace_id, session_id, path, size_bytes, "
                f"started_at) VALUES ('r2', 'w1', 'nope', '/x', 0, '{NOW}')",
            )
    finally:
        await database.dispose()
