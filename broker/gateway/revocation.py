"""Instant revocation: whoever changes who may do what tells this module, which ends the
live sessions that are no longer allowed (``terminated`` to the user, close 4042, audit).

It is called right after the service call that made the change committed; it never
changes rows itself. Access is re-resolved through the same :class:`AccessResolver` the
gateway uses at open, so the policy layer's decisions apply here too.
"""

from __future__ import annotations

from broker.audit import Actor
from broker.errors import CorralError
from broker.gateway.access import check_open
from broker.gateway.errors import AccessDenied
from broker.gateway.sessions import GatewaySessions

__all__ = ["Revocation"]


class Revocation:
    def __init__(self, gateway: GatewaySessions) -> None:
        self.gateway = gateway

    async def user_disabled(self, workspace_id: str, user_id: str, *, actor: Actor) -> list[str]:
        """End the user's sessions and remove them from sessions others shared with them."""
        ended = await self.gateway.terminate_where(
            workspace_id, lambda s: s.user_id == user_id, "user disabled", actor=actor
        )
        await self.gateway.kick_where(workspace_id, lambda c: c.user_id == user_id, "user disabled")
        return ended

    async def token_revoked(self, workspace_id: str, token_id: str, *, actor: Actor) -> list[str]:
        reason = "the token that opened this session was revoked"
        ended = await self.gateway.terminate_where(
            workspace_id, lambda s: s.credential_id == token_id, reason, actor=actor
        )
        await self.gateway.kick_where(
            workspace_id, lambda c: c.credential_id == token_id, "the token was revoked"
        )
        return ended

    async def server_removed(self, workspace_id: str, server_id: str, *, actor: Actor) -> list[str]:
        return await self.gateway.terminate_where(
            workspace_id, lambda s: s.server_id == server_id, "server removed", actor=actor
        )

    async def access_changed(self, workspace_id: str, *, actor: Actor) -> list[str]:
        """A grant or membership changed: re-check every live session of the workspace."""
        services = self.gateway.services
        lost: set[str] = set()
        for live in self.gateway.sessions(workspace_id):
            try:
                user = await services.users.get(workspace_id, live.user_id)
                server = await services.servers.get(workspace_id, live.server_id)
                level = await self.gateway.resolver.access_level(workspace_id, user, server)
                check_open(level, live.unix_user)
            except (AccessDenied, CorralError):
                lost.add(live.id)
        return await self.gateway.terminate_where(
            workspace_id, lambda s: s.id in lost, "access revoked", actor=actor
        )
