"""Persistence: the schema (``models``), the database handle (``db``) and migrations."""

from broker.store.db import Database, SchemaState

__all__ = ["Database", "SchemaState"]
