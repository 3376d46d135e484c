"""Access grants: a user or group, a server selector, an access level.

Grants are data; what they mean (which level wins, wildcards, tags) is the policy layer's
job. This service only stores them safely inside one workspace.
"""

from __future__ import annotations

import builtins

from sqlmodel import col, or_

from broker.audit import SYSTEM, Actor, Category
from broker.errors import InvalidInput
from broker.services.base import Service, fetch, scoped
from broker.store.models import AccessGrant, AccessLevel, ServerGroup, User, UserGroup

__all__ = ["GrantService"]


class GrantService(Service):
    async def grant(
        self,
        workspace_id: str,
        *,
        level: AccessLevel,
        user_id: str | None = None,
        group_id: str | None = None,
        server_pattern: str | None = None,
        server_group_id: str | None = None,
        server_tag: str | None = None,
        unix_users: list[str] | None = None,
        actor: Actor = SYSTEM,
    ) -> AccessGrant:
        if (user_id is None) == (group_id is None):
            raise InvalidInput("a grant names exactly one of user_id or group_id")
        selectors = [server_pattern, server_group_id, server_tag]
        if sum(value is not None for value in selectors) != 1:
            raise InvalidInput("a grant names exactly one of server_pattern, group or tag")
        if server_tag is not None and "=" not in server_tag:
            raise InvalidInput("server_tag is written key=value")
        async with self.db.transaction() as s:
            if user_id is not None:
                await fetch(s, User, workspace_id, user_id)
            if group_id is not None:
                await fetch(s, UserGroup, workspace_id, group_id)
            if server_group_id is not None:
                await fetch(s, ServerGroup, workspace_id, server_group_id)
            grant = AccessGrant(
                workspace_id=workspace_id,
                user_id=user_id,
                group_id=group_id,
                server_pattern=server_pattern,
                server_group_id=server_group_id,
                server_tag=server_tag,
                level=AccessLevel(level),
                unix_users=list(unix_users or []),
                created_by=actor.id or None,
            )
            s.add(grant)
            await s.flush()
            await self.audit.emit(
                workspace_id,
                Category.CONFIGURATION,
                "grant.created",
                actor=actor,
                target=grant.id,
                details=grant.model_dump(mode="json", exclude={"created_at"}),
                session=s,
            )
            return grant

    async def list(
        self, workspace_id: str, *, user_id: str | None = None, group_ids: list[str] | None = None
    ) -> builtins.list[AccessGrant]:
        """All grants, or those that apply to a user directly or through ``group_ids``."""
        query = scoped(AccessGrant, workspace_id)
        if user_id is not None or group_ids is not None:
            query = query.where(
                or_(
                    col(AccessGrant.user_id) == user_id,
                    col(AccessGrant.group_id).in_(group_ids or []),
                )
            )
        async with self.db.transaction() as s:
            return list((await s.exec(query.order_by(col(AccessGrant.created_at)))).all())

    async def get(self, workspace_id: str, grant_id: str) -> AccessGrant:
        async with self.db.transaction() as s:
            return await fetch(s, AccessGrant, workspace_id, grant_id)

    async def revoke(self, workspace_id: str, grant_id: str, *, actor: Actor) -> None:
        async with self.db.transaction() as s:
            grant = await fetch(s, AccessGrant, workspace_id, grant_id)
            await s.delete(grant)
            await self.audit.emit(
                workspace_id,
                Category.CONFIGURATION,
                "grant.revoked",
                actor=actor,
                target=grant_id,
                session=s,
            )
