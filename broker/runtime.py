"""Assembly of the broker's long-lived parts from the settings: the one place that wires
database, key, audit log, services and the policy in force together (for the app, the
CLI and tests alike)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from broker.audit import AuditLog
from broker.errors import StoreError
from broker.keys import load_or_create_key
from broker.policy.runtime import PolicyRuntime, PolicySource
from broker.services import Services
from broker.settings import Settings
from broker.store.db import Database

__all__ = ["Runtime", "open_runtime"]


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    db: Database
    services: Services
    policy: PolicyRuntime


@asynccontextmanager
async def open_runtime(settings: Settings, *, migrate: bool = True) -> AsyncIterator[Runtime]:
    """Load the policy, open the database (migrating it unless told not to) and build the
    services.

    Without ``migrate`` nothing is created: a missing embedded database is an error rather
    than a new empty file, data directory and key.
    """
    source = PolicySource.from_settings(settings)
    engine = source.load_at_start()  # a bad policy refuses start-up before anything is made
    embedded = settings.data_dir / "corral.db"
    if not migrate and not settings.database_url and not embedded.exists():
        raise StoreError(f"no database at {embedded}; run `corral init` first")
    if not settings.database_url:
        try:
            settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StoreError(
                f"cannot create data_dir {settings.data_dir}: {exc.strerror}"
            ) from None
    db = Database(settings.effective_database_url)
    try:
        if migrate:
            await db.migrate()
        else:
            state = await db.check()
            if not state.up_to_date:
                raise StoreError(
                    f"database {db.display_url} is at schema {state.current or 'none'}, "
                    f"this Corral needs {state.head}; run `corral migrate`"
                )
        # Only once the database is known good, so a failed start leaves no key behind.
        key = load_or_create_key(settings.effective_secret_key_file)
        audit = AuditLog(db, key)
        services = Services.build(db, audit)
        policy = PolicyRuntime(source, services, engine=engine)
        try:
            yield Runtime(settings, db, services, policy)
        finally:
            await policy.aclose()
    finally:
        await db.dispose()
