"""Response shapes shared by the API-for-apps modules: one function per resource turns a
row into exactly what the API answers, and one pydantic model describes it (the OpenAPI
document is generated from the models; responses do not forbid extra fields)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from broker.store.models import AccessGrant, ApiToken, ServerGroup, User, UserGroup

__all__ = [
    "GrantOut",
    "GroupOut",
    "ServerGroupOut",
    "TokenOut",
    "UserOut",
    "grant_view",
    "group_view",
    "iso",
    "server_group_view",
    "token_view",
    "user_view",
]


def iso(when: datetime | None) -> str | None:
    return when.isoformat() if when is not None else None


class UserOut(BaseModel):
    id: str
    email: str
    display_name: str
    role: str
    kind: str
    disabled: bool
    created_at: str
    last_login_at: str | None


def user_view(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "display_name": user.display_name,
        "role": str(user.role),
        "kind": str(user.kind),
        "disabled": user.disabled,
        "created_at": iso(user.created_at),
        "last_login_at": iso(user.last_login_at),
    }


class GroupOut(BaseModel):
    id: str
    name: str
    description: str
    created_at: str


def group_view(group: UserGroup) -> dict[str, Any]:
    return {
        "id": group.id,
        "name": group.name,
        "description": group.description,
        "created_at": iso(group.created_at),
    }


class ServerGroupOut(BaseModel):
    id: str
    name: str
    created_at: str


def server_group_view(group: ServerGroup) -> dict[str, Any]:
    return {"id": group.id, "name": group.name, "created_at": iso(group.created_at)}


class GrantOut(BaseModel):
    id: str
    user_id: str | None
    group_id: str | None
    server_pattern: str | None
    server_group_id: str | None
    server_tag: str | None
    level: str
    unix_users: list[str]
    created_at: str
    created_by: str | None


def grant_view(grant: AccessGrant) -> dict[str, Any]:
    return {
        "id": grant.id,
        "user_id": grant.user_id,
        "group_id": grant.group_id,
        "server_pattern": grant.server_pattern,
        "server_group_id": grant.server_group_id,
        "server_tag": grant.server_tag,
        "level": str(grant.level),
        "unix_users": list(grant.unix_users),
        "created_at": iso(grant.created_at),
        "created_by": grant.created_by,
    }


class TokenOut(BaseModel):
    id: str
    user_id: str
    name: str
    scope: str
    created_at: str
    expires_at: str | None
    last_used_at: str | None
    revoked_at: str | None
    created_by: str | None


def token_view(token: ApiToken) -> dict[str, Any]:
    return {
        "id": token.id,
        "user_id": token.user_id,
        "name": token.name,
        "scope": str(token.scope),
        "created_at": iso(token.created_at),
        "expires_at": iso(token.expires_at),
        "last_used_at": iso(token.last_used_at),
        "revoked_at": iso(token.revoked_at),
        "created_by": token.created_by,
    }
