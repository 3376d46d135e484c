"""Terminal sessions, their recordings, and the command approvals raised in them.

A session row outlives its server (the server id is cleared, its name kept) so history
and recordings survive a server's removal; a recording points at the asciicast file on
disk. An approval is a held command waiting for someone allowed to approve it.

This module must never import services or do I/O: it is schema, shared with Alembic.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlmodel import Field, SQLModel

from broker.store.models.columns import (
    created_field,
    enum_field,
    list_field,
    new_id,
    when_field,
    workspace_field,
)

__all__ = ["Approval", "ApprovalStatus", "Recording", "SessionStatus", "TerminalSession"]


class SessionStatus(enum.StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    DETACHED = "detached"
    CLOSED = "closed"
    TERMINATED = "terminated"


class ApprovalStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"


class TerminalSession(SQLModel, table=True):
    id: str = Field(default_factory=new_id, primary_key=True)
    workspace_id: str = workspace_field()
    user_id: str = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    # A session outlives its server: removing a server keeps the history and the
    # recordings (migration 0005); the name it had is kept beside the cleared id.
    server_id: str | None = Field(
        default=None, foreign_key="server.id", index=True, ondelete="SET NULL"
    )
    server_name: str = Field(default="", max_length=100)
    unix_user: str = Field(max_length=64)
    status: SessionStatus = enum_field(SessionStatus, SessionStatus.PENDING)
    cols: int = 80
    rows: int = 24
    credential_id: str | None = None
    opened_at: datetime = created_field()
    closed_at: datetime | None = when_field()
    close_reason: str | None = None


class Recording(SQLModel, table=True):
    id: str = Field(default_factory=new_id, primary_key=True)
    workspace_id: str = workspace_field()
    session_id: str = Field(foreign_key="terminalsession.id", index=True, ondelete="CASCADE")
    path: str
    size_bytes: int = 0
    started_at: datetime = created_field()
    ended_at: datetime | None = when_field()


class Approval(SQLModel, table=True):
    id: str = Field(default_factory=new_id, primary_key=True)
    workspace_id: str = workspace_field()
    session_id: str | None = Field(
        default=None, foreign_key="terminalsession.id", ondelete="CASCADE"
    )
    requester_id: str = Field(foreign_key="user.id", ondelete="CASCADE")
    server_id: str | None = Field(default=None, foreign_key="server.id", ondelete="SET NULL")
    command: str
    rule_id: str = ""
    approvers: list[str] = list_field()
    status: ApprovalStatus = enum_field(ApprovalStatus, ApprovalStatus.PENDING)
    decided_by: str | None = None
    decided_at: datetime | None = when_field()
    reason: str = ""
    created_at: datetime = created_field()
    expires_at: datetime | None = when_field()
