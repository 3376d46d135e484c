"""The audit trail: hash-chained events and the checkpoints a retention purge leaves.

Events are written and verified by :mod:`broker.audit`; here is only their shape. An event
is never updated; a purge removes the oldest and leaves a signed checkpoint saying where
the chain now starts.

This module must never import services or do I/O: it is schema, shared with Alembic.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from broker.store.models.columns import UTCDateTime, created_field, workspace_field

__all__ = ["AuditCheckpoint", "AuditEvent"]


class AuditEvent(SQLModel, table=True):
    """One link of a workspace's hash chain; never updated, removed only by a purge."""

    __table_args__ = (sa.UniqueConstraint("workspace_id", "seq"),)
    id: int | None = Field(default=None, primary_key=True)
    workspace_id: str = workspace_field()
    seq: int
    ts: datetime = Field(sa_type=UTCDateTime, index=True)
    category: str = Field(max_length=32, index=True)
    action: str = Field(max_length=100)
    outcome: str = Field(max_length=16)
    actor_type: str = Field(default="", max_length=32)
    actor_id: str = Field(default="", max_length=64, index=True)
    credential_id: str = Field(default="", max_length=64)
    server_id: str = Field(default="", max_length=64, index=True)
    session_id: str = Field(default="", max_length=64)
    target: str = Field(default="", max_length=200)
    details: str = "{}"
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class AuditCheckpoint(SQLModel, table=True):
    """Left by a retention purge: where the chain now starts, signed by the broker key."""

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: str = workspace_field()
    through_seq: int
    last_hash: str = Field(max_length=64)
    purged_count: int
    created_at: datetime = created_field()
    signature: str = Field(max_length=64)
