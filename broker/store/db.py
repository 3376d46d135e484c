"""The database handle: engine, transactions, migrations and the start-up checks.

SQLite (a file, the embedded default) and PostgreSQL are both first-class. SQLite runs every
transaction as ``BEGIN IMMEDIATE`` so two writers queue instead of failing half-way, with
WAL and foreign keys on. Driver exceptions never leave this module untranslated when they
mean "cannot use this database": callers get one :class:`StoreError` line, with the
password masked out of the URL.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from broker.errors import StoreError

__all__ = ["MIN_POSTGRES_VERSION", "Database", "SchemaState"]

MIGRATIONS = Path(__file__).parent / "migrations"
MIN_POSTGRES_VERSION = 13


class SchemaState:
    """Where a database stands against this build's migrations."""

    def __init__(self, current: str | None, head: str) -> None:
        self.current = current
        self.head = head

    @property
    def empty(self) -> bool:
        return self.current is None

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


class Database:
    """One engine per process; ``transaction()`` is the only way services touch rows."""

    def __init__(self, url: str, *, connect_timeout: float = 5.0) -> None:
        self.url = url
        self.display_url = make_url(url).render_as_string(hide_password=True)
        self.dialect = make_url(url).get_backend_name()
        connect_args: dict[str, Any] = {}
        if self.dialect == "postgresql":
            connect_args["timeout"] = connect_timeout
        elif self.dialect == "sqlite":
            connect_args["timeout"] = 30
        self.engine: AsyncEngine = create_async_engine(url, connect_args=connect_args)
        if self.dialect == "sqlite":
            _sqlite_immediate_transactions(self.engine)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on success, rolled back on error."""
        async with (
            AsyncSession(self.engine, expire_on_commit=False) as session,
            session.begin(),
        ):
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()

    async def check(self) -> SchemaState:
        """Connect, check the server version and compare the schema with this build's."""
        head = ScriptDirectory.from_config(self._alembic_config()).get_current_head()
        assert head is not None
        try:
            async with self.engine.connect() as conn:
                if self.dialect == "postgresql":
                    version = await conn.run_sync(lambda c: c.dialect.server_version_info or (0,))
                    if int(version[0]) < MIN_POSTGRES_VERSION:
                        raise StoreError(
                            f"database {self.display_url}: PostgreSQL "
                            f"{'.'.join(map(str, version))} is too old; "
                            f"Corral needs {MIN_POSTGRES_VERSION} or newer"
                        )
                current = await conn.run_sync(
                    lambda c: MigrationContext.configure(c).get_current_revision()
                )
                has_tables = await conn.run_sync(lambda c: bool(c.dialect.get_table_names(c)))
        except StoreError:
            raise
        except (TimeoutError, OSError, DBAPIError) as exc:
            raise StoreError(f"cannot reach database {self.display_url}: {_reason(exc)}") from None
        state = SchemaState(current, head)
        if current is None and has_tables:
            raise StoreError(
                f"database {self.display_url} has tables but no Corral schema version; "
                "point CORRAL_DATABASE_URL at an empty database"
            )
        if current is not None and current != head and not self._known(current):
            raise StoreError(
                f"database {self.display_url} is at schema {current}, newer than this "
                f"Corral (which knows up to {head}); upgrade Corral"
            )
        return state

    async def migrate(self) -> SchemaState:
        """Bring the schema to this build's head; refuses databases it does not know."""
        state = await self.check()
        if not state.up_to_date:
            try:
                async with self.engine.connect() as conn:
                    sqlite = self.dialect == "sqlite"
                    if sqlite:
                        # SQLite rebuilds a table to change its constraints; dropping the old
                        # copy with foreign keys on would run ON DELETE CASCADE on every row
                        # that refers to it. SQLite's documented procedure: keys off outside
                        # the transaction, rebuild, check, keys back on.
                        await conn.run_sync(_sqlite_foreign_keys, False)
                    try:
                        async with conn.begin():
                            await conn.run_sync(self._upgrade)
                            if sqlite:
                                broken = await conn.exec_driver_sql("PRAGMA foreign_key_check")
                                if broken.first() is not None:
                                    raise StoreError(
                                        f"migrating {self.display_url} left rows whose "
                                        "foreign keys point nowhere; nothing was changed"
                                    )
                    finally:
                        if sqlite:
                            await conn.run_sync(_sqlite_foreign_keys, True)
            except (OSError, DBAPIError) as exc:
                raise StoreError(f"migrating {self.display_url} failed: {_reason(exc)}") from None
        return SchemaState(state.head, state.head)

    def _alembic_config(self, connection: Connection | None = None) -> Config:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        return config

    def _known(self, revision: str) -> bool:
        script = ScriptDirectory.from_config(self._alembic_config())
        return any(rev.revision == revision for rev in script.walk_revisions())

    def _upgrade(self, connection: Connection) -> None:
        command.upgrade(self._alembic_config(connection), "head")


def _reason(exc: BaseException) -> str:
    """A short, secret-free cause for a connection failure."""
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, OperationalError | DBAPIError) and exc.orig is not None:
        exc = exc.orig
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def _sqlite_foreign_keys(connection: Connection, on: bool) -> None:
    """Switch SQLite's foreign keys on the driver connection itself: SQLAlchemy would open
    a transaction first, inside which SQLite ignores the pragma."""
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    cursor.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")
    cursor.close()


def _sqlite_immediate_transactions(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when a transaction begins.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
