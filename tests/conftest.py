"""Shared fixtures: every store-backed test runs on SQLite and on the real PostgreSQL.

PostgreSQL is the server every machine of this project runs on 127.0.0.1:5432 (override
with TEST_POSTGRES_URL). A template database is migrated once per run; each test gets a
fresh copy of it and drops it afterwards.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from broker.audit import AuditLog
from broker.services import Services
from broker.store.db import Database

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
TEST_KEY = bytes(range(32))


class Clock:
    """A clock tests move by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


def _pg_admin_url() -> str:
    return POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")


def _with_db(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


async def _pg_exec(sql: str) -> None:
    conn = await asyncpg.connect(_pg_admin_url())
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    name = f"corral_tmpl_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_exec(f'CREATE DATABASE "{name}"'))

    async def migrate() -> None:
        db = Database(
            _with_db(POSTGRES_URL, name).replace("postgresql://", "postgresql+asyncpg://")
        )
        await db.migrate()
        await db.dispose()

    asyncio.run(migrate())
    yield name
    asyncio.run(_pg_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty-but-migrated database URL on each backend."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'corral.db'}"
        return
    template = request.getfixturevalue("pg_template")
    name = f"corral_t_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_exec(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    yield _with_db(POSTGRES_URL, name).replace("postgresql://", "postgresql+asyncpg://")
    asyncio.run(_pg_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    await database.migrate()
    yield database
    await database.dispose()


@pytest.fixture
def services(db: Database, clock: Clock) -> Services:
    return Services.build(db, AuditLog(db, TEST_KEY, clock=clock), clock=clock)


@pytest.fixture(scope="session")
def shell_user() -> str:
    """An ordinary Unix account with bash and a clean home, for real terminal sessions.

    Tests open shells as this user rather than root, so the machine's own dotfiles (root's
    ``.bashrc``) never run inside a test, and privilege dropping is exercised for real.
    """
    import pwd
    import subprocess

    name = "corral-e2e"
    if os.geteuid() != 0:
        pytest.skip("real terminal sessions for another user need root")
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--create-home", "--shell", "/bin/bash", name],
            check=True,
            capture_output=True,
        )
    return name
