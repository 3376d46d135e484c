"""Who is in a workspace: the workspace itself, users, groups and invitations.

A workspace is the tenant; every other row carries its ``workspace_id``. A user is a
person (who signs in) or a service account (which only ever uses its own tokens); groups
collect users for grants and SSO group mapping; an invitation is a pending sign-up for a
local account. How a user proves who they are lives in
:mod:`broker.store.models.authentication` and :mod:`broker.store.models.sso`.

This module must never import services or do I/O: it is schema, shared with Alembic.
"""

from __future__ import annotations

import enum
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from broker.store.models.columns import (
    UTCDateTime,
    created_field,
    enum_field,
    new_id,
    when_field,
    workspace_field,
)

__all__ = ["GroupMembership", "Invitation", "Role", "User", "UserGroup", "UserKind", "Workspace"]


class Role(enum.StrEnum):
    USER = "user"
    STAFF = "staff"
    SUPERUSER = "superuser"


class UserKind(enum.StrEnum):
    """A person signs in; a service account (CI/CD) only ever uses its own tokens."""

    PERSON = "person"
    SERVICE = "service"


class Workspace(SQLModel, table=True):
    id: str = Field(default_factory=new_id, primary_key=True)
    name: str = Field(unique=True, max_length=100)
    created_at: datetime = created_field()
    mfa_required: bool = False
    mfa_hardware_only: bool = False
    recording_retention_days: int = 365
    audit_retention_days: int = 365
    # Head of the audit chain: lets verify notice events cut off the end of the chain.
    audit_head_seq: int = 0
    audit_head_hash: str = Field(default="", max_length=64)
    # Set by DELETE /api/v1/workspace (migration 0004): every credential is revoked then,
    # the rows and the audit chain stay for the operator (see docs/api.md).
    deleted_at: datetime | None = when_field()


class User(SQLModel, table=True):
    __table_args__ = (sa.UniqueConstraint("workspace_id", "email"),)
    id: str = Field(default_factory=new_id, primary_key=True)
    workspace_id: str = workspace_field()
    email: str = Field(max_length=320)
    display_name: str = Field(default="", max_length=200)
    role: Role = enum_field(Role, Role.USER)
    disabled: bool = False
    password_hash: str | None = None
    must_change_password: bool = False
    created_at: datetime = created_field()
    last_login_at: datetime | None = when_field()
    kind: UserKind = enum_field(UserKind, UserKind.PERSON)  # migration 0004


class UserGroup(SQLModel, table=True):
    __table_args__ = (sa.UniqueConstraint("workspace_id", "name"),)
    id: str = Field(default_factory=new_id, primary_key=True)
    workspace_id: str = workspace_field()
    name: str = Field(max_length=100)
    description: str = ""
    created_at: datetime = created_field()


class GroupMembership(SQLModel, table=True):
    workspace_id: str = workspace_field()
    group_id: str = Field(foreign_key="usergroup.id", primary_key=True, ondelete="CASCADE")
    user_id: str = Field(foreign_key="user.id", primary_key=True, ondelete="CASCADE")
    created_at: datetime = created_field()


class Invitation(SQLModel, table=True):
    """Sign-up for a local account: single use, short-lived, SHA-256 of the secret only."""

    id: str = Field(default_factory=new_id, primary_key=True)
    workspace_id: str = workspace_field()
    email: str = Field(max_length=320)
    role: Role = enum_field(Role, Role.USER)
    secret_hash: str = Field(max_length=64)
    created_by: str | None = None
    created_at: datetime = created_field()
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = when_field()
