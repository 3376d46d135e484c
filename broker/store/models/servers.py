"""The machines people reach, how they are grouped, and the grants that open them.

A server is a host running the agent (its status and last report come from the agent
hub); server groups and tags are what grants select on. A grant says which user or group
may reach which servers (a name pattern, a server group or a tag) at which access level;
the policy layer turns grants into decisions. The agent's own credentials live in
:mod:`broker.store.models.credentials`.

This module must never import services or do I/O: it is schema, shared with Alembic.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from broker.store.models.columns import (
    created_field,
    dict_field,
    enum_field,
    list_field,
    new_id,
    when_field,
    workspace_field,
)

__all__ = [
    "AccessGrant",
    "AccessLevel",
    "Server",
    "ServerGroup",
    "ServerGroupMembership",
    "ServerStatus",
]


class AccessLevel(enum.StrEnum):
    NONE = "none"
    READ_ONLY = "read-only"
    TERMINAL = "terminal"
    FULL = "full"


class ServerStatus(enum.StrEnum):
    PENDING = "pending"
    ONLINE = "online"
    OFFLINE = "offline"


class Server(SQLModel, table=True):
    __table_args__ = (sa.UniqueConstraint("workspace_id", "name"),)
    id: str = Field(default_factory=new_id, primary_key=True)
    workspace_id: str = workspace_field()
    name: str = Field(max_length=100)
    platform: str = Field(default="", max_length=100)
    tags: dict[str, str] = dict_field()
    status: ServerStatus = enum_field(ServerStatus, ServerStatus.PENDING)
    last_seen_at: datetime | None = when_field()
    sysinfo: dict[str, Any] = dict_field()
    metrics: dict[str, Any] = dict_field()
    created_at: datetime = created_field()


class ServerGroup(SQLModel, table=True):
    __table_args__ = (sa.UniqueConstraint("workspace_id", "name"),)
    id: str = Field(default_factory=new_id, primary_key=True)
    workspace_id: str = workspace_field()
    name: str = Field(max_length=100)
    created_at: datetime = created_field()


class ServerGroupMembership(SQLModel, table=True):
    workspace_id: str = workspace_field()
    server_group_id: str = Field(foreign_key="servergroup.id", primary_key=True, ondelete="CASCADE")
    server_id: str = Field(foreign_key="server.id", primary_key=True, ondelete="CASCADE")


class AccessGrant(SQLModel, table=True):
    """Who may reach which servers at which level: a user or group, and a server selector.

    The selector is one of a name pattern (``production-*``), a server group, or a tag
    (``env=prod``); the policy layer turns grants into decisions.
    """

    id: str = Field(default_factory=new_id, primary_key=True)
    workspace_id: str = workspace_field()
    user_id: str | None = Field(default=None, foreign_key="user.id", ondelete="CASCADE")
    group_id: str | None = Field(default=None, foreign_key="usergroup.id", ondelete="CASCADE")
    server_pattern: str | None = Field(default=None, max_length=200)
    server_group_id: str | None = Field(
        default=None, foreign_key="servergroup.id", ondelete="CASCADE"
    )
    server_tag: str | None = Field(default=None, max_length=200)
    level: AccessLevel = enum_field(AccessLevel)
    unix_users: list[str] = list_field()
    created_at: datetime = created_field()
    created_by: str | None = None
