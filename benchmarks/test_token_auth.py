"""What auditing every token call costs: ``TokenService.authenticate`` alone (the
``last_used_at`` update) against the same call that also appends the ``api.request``
audit event in the same transaction (what every bearer request to the API does).

Real databases: SQLite in a temporary directory and, when it answers, the PostgreSQL on
127.0.0.1:5432 (``TEST_POSTGRES_URL``). Run with

    .venv/bin/pytest benchmarks/test_token_auth.py -p no:cacheprovider -s

(not part of the test suite: ``testpaths`` is ``tests``).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from broker.audit import AuditLog
from broker.services import Services
from broker.store.db import Database
from broker.store.models import TokenScope

ROUNDS = 500
PG = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_admin(sql: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(PG)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'bench.db'}"
        return
    name = f"corral_bench_{uuid.uuid4().hex[:10]}"
    try:
        _pg_admin(f'CREATE DATABASE "{name}"')
    except OSError:
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    yield PG.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + "/" + name
    _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("audited", [False, True], ids=["last-used-only", "with-api.request"])
def test_token_authenticate(benchmark: Any, url: str, audited: bool) -> None:
    loop = asyncio.new_event_loop()
    db = Database(url)

    async def setup() -> tuple[Services, str]:
        await db.migrate()
        services = Services.build(db, AuditLog(db, bytes(32)))
        ws = await services.workspaces.create("bench")
        user = await services.users.create(ws.id, "ci@bench.test")
        _, secret = await services.tokens.create(
            ws.id, user.id, name="b", scope=TokenScope.READ, expires_in_days=30
        )
        return services, secret

    services, secret = loop.run_until_complete(setup())
    line = "GET /api/v1/servers" if audited else None

    def once() -> None:
        loop.run_until_complete(services.tokens.authenticate(secret, request_line=line))

    benchmark.pedantic(once, rounds=ROUNDS, iterations=1, warmup_rounds=20)
    data = sorted(benchmark.stats.stats.data)
    median = statistics.median(data) * 1e3
    p99 = statistics.quantiles(data, n=100, method="inclusive")[98] * 1e3
    print(
        f"\n{url.split(':')[0]} {'audited' if audited else 'plain'}: "
        f"median {median:.2f} ms, p99 {p99:.2f} ms"
    )
    loop.run_until_complete(db.dispose())
    loop.close()
