"""``corral audit verify`` (the real console script) finds a tampered audit event and
names it, on SQLite and on PostgreSQL: the row is edited behind the broker's back (on
PostgreSQL with the append-only triggers switched off, as a database superuser could),
and the command must print the event's seq and row id and exit 1."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.broker.test_cli import corral
from tests.conftest import _pg_admin_url, _pg_exec, _with_db

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    if request.param == "sqlite":
        yield {}
        return
    name = f"corral_tamper_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_exec(f'CREATE DATABASE "{name}"'))
    yield {"CORRAL_DATABASE_URL": _with_db(_pg_admin_url(), name)}
    asyncio.run(_pg_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _tamper(cwd: Path, settings: dict[str, str], sql: str) -> list[tuple[int, int]]:
    """Run ``sql`` against the audit table bypassing the broker; return (seq, id) rows."""
    url = settings.get("CORRAL_DATABASE_URL")
    if url is None:
        conn = sqlite3.connect(cwd / ".corral" / "corral.db")
        try:
            conn.execute(sql)
            conn.commit()
            return list(conn.execute("SELECT seq, id FROM auditevent ORDER BY seq"))
        finally:
            conn.close()

    async def run() -> list[tuple[int, int]]:
        pg = await asyncpg.connect(url)
        try:
            await pg.execute("SET session_replication_role = replica")  # triggers off
            await pg.execute(sql)
            rows = await pg.fetch("SELECT seq, id FROM auditevent ORDER BY seq")
            return [(row["seq"], row["id"]) for row in rows]
        finally:
            await pg.close()

    return asyncio.run(run())


def test_verify_names_the_tampered_event(tmp_path: Path, database: dict[str, str]) -> None:
    init = corral(tmp_path, "init", **database)
    assert init.code == 0, init
    good = corral(tmp_path, "audit", "verify", **database)
    assert good.code == 0 and good.out.startswith("default: ok"), good

    rows = _tamper(tmp_path, database, "UPDATE auditevent SET target = target || 'x' WHERE seq = 2")
    row_id = dict(rows)[2]
    bad = corral(tmp_path, "audit", "verify", **database)
    assert bad.code == 1, bad
    assert "Traceback" not in bad.err
    assert bad.out.strip().startswith(f"default: BROKEN at event seq 2 (id {row_id}):"), bad.out

    # Put it back and cut an event out instead: the gap is named too.
    restore = "UPDATE auditevent SET target = substr(target, 1, length(target) - 1) WHERE seq = 2"
    _tamper(tmp_path, database, restore)
    assert corral(tmp_path, "audit", "verify", **database).code == 0
    _tamper(tmp_path, database, "DELETE FROM auditevent WHERE seq = 2")
    cut = corral(tmp_path, "audit", "verify", **database)
    assert cut.code == 1 and "BROKEN at event seq 2" in cut.out, cut.out
    assert "events 2..2 are missing" in cut.out
