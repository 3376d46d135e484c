"""Alembic environment: always driven from :meth:`broker.store.db.Database.migrate`.

The broker hands Alembic a live synchronous connection (from its async engine), so there is
no alembic.ini and no second place that knows the database URL.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import broker.store.models  # noqa: F401  (registers the tables on SQLModel.metadata)

connection: Connection | None = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `corral migrate`, not the alembic command")

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
