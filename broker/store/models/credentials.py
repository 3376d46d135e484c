"""Bearer credentials: personal access tokens, agent registration tokens, agent credentials.

Only the SHA-256 of each secret is stored; the secret is shown once, at creation. Browser
sessions and MFA secrets are in :mod:`broker.store.models.authentication`.

This module must never import services or do I/O: it is schema, shared with Alembic.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlmodel import Field, SQLModel

from broker.store.models.columns import (
    UTCDateTime,
    created_field,
    enum_field,
    new_id,
    when_field,
    workspace_field,
)

__all__ = ["AgentCredential", "ApiToken", "RegistrationToken", "TokenScope"]


class TokenScope(enum.StrEnum):
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


class ApiToken(SQLModel, table=True):
    """A personal access token: only its SHA-256 is kept; the secret is shown once."""

    id: str = Field(default_factory=new_id, primary_key=True)
    workspace_id: str = workspace_field()
    user_id: str = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    name: str = Field(max_length=100)
    scope: TokenScope = enum_field(TokenScope)
    secret_hash: str = Field(max_length=64)
    created_at: datetime = created_field()
    expires_at: datetime | None = when_field()
    last_used_at: datetime | None = when_field()
    revoked_at: datetime | None = when_field()
    created_by: str | None = None  # migration 0004: who minted it (service-account tokens)


class RegistrationToken(SQLModel, table=True):
    """Single-use, short-lived: an agent trades it for its own credential."""

    id: str = Field(default_factory=new_id, primary_key=True)
    workspace_id: str = workspace_field()
    secret_hash: str = Field(max_length=64)
    created_by: str | None = None
    created_at: datetime = created_field()
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = when_field()
    server_id: str | None = None


class AgentCredential(SQLModel, table=True):
    id: str = Field(default_factory=new_id, primary_key=True)
    workspace_id: str = workspace_field()
    server_id: str = Field(foreign_key="server.id", index=True, ondelete="CASCADE")
    secret_hash: str = Field(max_length=64)
    created_at: datetime = created_field()
    last_used_at: datetime | None = when_field()
    revoked_at: datetime | None = when_field()
