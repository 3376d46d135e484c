"""Single sign-on: a workspace's identity providers, people's links to them, and replays.

This module must never import services or do I/O: it is schema, shared with Alembic.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from broker.store.models.columns import (
    UTCDateTime,
    created_field,
    dict_field,
    enum_field,
    new_id,
    when_field,
    workspace_field,
)
from broker.store.models.identity import Role

__all__ = ["SsoLink", "SsoProtocol", "SsoProvider", "SsoReplay"]


class SsoProtocol(enum.StrEnum):
    OIDC = "oidc"
    SAML = "saml"


class SsoProvider(SQLModel, table=True):
    """A workspace's identity provider: OIDC (generic, or the Google preset) or SAML 2.0.

    ``config`` holds the protocol settings that are not secret (issuer, client id, scopes,
    the IdP's metadata XML, ...); a client secret lives only in ``secret_box``, encrypted
    under the broker key. ``group_mapping`` maps an IdP group (a claim or attribute value)
    to the name of a Corral group; people are put in and taken out of the mapped groups at
    every login.
    """

    __table_args__ = (sa.UniqueConstraint("workspace_id", "name"),)
    id: str = Field(default_factory=new_id, primary_key=True)
    workspace_id: str = workspace_field()
    name: str = Field(max_length=100)
    protocol: SsoProtocol = enum_field(SsoProtocol)
    preset: str = Field(default="", max_length=32)
    enabled: bool = True
    config: dict[str, Any] = dict_field()
    secret_box: str = ""
    group_mapping: dict[str, str] = dict_field()
    default_role: Role = enum_field(Role, Role.USER)
    jit: bool = True
    created_at: datetime = created_field()
    updated_at: datetime | None = when_field()


class SsoLink(SQLModel, table=True):
    """A person's identity at a provider (its stable subject / NameID) and their user."""

    provider_id: str = Field(foreign_key="ssoprovider.id", primary_key=True, ondelete="CASCADE")
    subject: str = Field(primary_key=True, max_length=255)
    workspace_id: str = workspace_field()
    user_id: str = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    created_at: datetime = created_field()
    last_login_at: datetime | None = when_field()


class SsoReplay(SQLModel, table=True):
    """One-time values already accepted (SAML assertion and response ids, OIDC states):
    kept until they would have expired anyway, so a replay is refused even across restarts
    and broker processes."""

    provider_id: str = Field(foreign_key="ssoprovider.id", primary_key=True, ondelete="CASCADE")
    key: str = Field(primary_key=True, max_length=255)
    workspace_id: str = workspace_field()
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)
