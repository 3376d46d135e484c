"""The column types and field factories every table is built from.

Ids are random hex UUIDs; times are timezone-aware UTC on every database (SQLite forgets
the zone, :class:`UTCDateTime` puts it back and refuses naive datetimes); enums are stored
as their value in a short string column, so no native enum type ever needs migrating;
every tenant-owned row points at its workspace with ``ON DELETE CASCADE``. Migrations
reference :class:`UTCDateTime` by its import path, so it must stay importable here and
from :mod:`broker.store.models`.

This module must never define a table: it is what the table modules share.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field

__all__ = [
    "UTCDateTime",
    "created_field",
    "dict_field",
    "enum_field",
    "list_field",
    "new_id",
    "utcnow",
    "when_field",
    "workspace_field",
]


def new_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware UTC datetimes and always gives them back aware (SQLite forgets tzinfo)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def enum_field(kind: type[enum.StrEnum], default: Any = None) -> Any:
    """Stored as its value in a short string column (no native enum type to migrate)."""
    column = sa.Enum(
        kind, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e]
    )
    if default is None:
        return Field(sa_type=column)
    return Field(default=default, sa_type=column)


def created_field() -> Any:
    """When the row was made: set by the broker, never by the database clock."""
    return Field(default_factory=utcnow, sa_type=UTCDateTime)


def when_field() -> Any:
    """A moment that may not have happened yet (used, revoked, ended): null until then."""
    return Field(default=None, sa_type=UTCDateTime)


def workspace_field() -> Any:
    """The owning tenant: indexed (every query filters on it), deleted with the workspace."""
    return Field(foreign_key="workspace.id", index=True, ondelete="CASCADE")


def dict_field() -> Any:
    """A JSON object column; each row gets its own empty dict."""
    return Field(default_factory=dict, sa_type=sa.JSON)


def list_field() -> Any:
    """A JSON array column; each row gets its own empty list."""
    return Field(default_factory=list, sa_type=sa.JSON)
