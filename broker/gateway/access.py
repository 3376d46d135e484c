"""Access at session open: the (user, server) level, resolved once per session.

:class:`AccessResolver` is the seam the policy layer plugs into. Until it does,
:class:`GrantAccessResolver` reads the stored grants: superusers get ``full``; everyone
else gets the highest level among the grants naming them directly or through a group whose
selector matches the server (name glob, server group, or ``key=value`` tag); nothing
matching means ``none``. It must never be the place where grants are written.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Protocol

from broker.gateway.errors import AccessDenied
from broker.services import Services
from broker.store.models import AccessGrant, AccessLevel, Role, Server, User

__all__ = ["RANK", "AccessResolver", "GrantAccessResolver", "check_open"]

RANK = {
    AccessLevel.NONE: 0,
    AccessLevel.READ_ONLY: 1,
    AccessLevel.TERMINAL: 2,
    AccessLevel.FULL: 3,
}
ROOT = "root"


class AccessResolver(Protocol):
    async def access_level(self, workspace_id: str, user: User, server: Server) -> AccessLevel:
        """The user's level for this server: none, read-only, terminal or full."""
        ...


class GrantAccessResolver:
    """The stand-in until the policy layer lands: grants only, no conditions."""

    def __init__(self, services: Services) -> None:
        self.services = services

    async def access_level(self, workspace_id: str, user: User, server: Server) -> AccessLevel:
        if user.disabled:
            return AccessLevel.NONE
        if user.role is Role.SUPERUSER:
            return AccessLevel.FULL
        groups = await self.services.groups.groups_of(workspace_id, user.id)
        grants = await self.services.grants.list(
            workspace_id, user_id=user.id, group_ids=[g.id for g in groups]
        )
        if not grants:
            return AccessLevel.NONE
        server_groups = {
            g.id for g in await self.services.server_groups.groups_of(workspace_id, server.id)
        }
        best = AccessLevel.NONE
        for grant in grants:
            if _matches(grant, server, server_groups) and RANK[grant.level] > RANK[best]:
                best = grant.level
        return best


def _matches(grant: AccessGrant, server: Server, server_groups: set[str]) -> bool:
    if grant.server_pattern is not None:
        return fnmatchcase(server.name, grant.server_pattern)
    if grant.server_group_id is not None:
        return grant.server_group_id in server_groups
    if grant.server_tag is not None:
        key, _, value = grant.server_tag.partition("=")
        return server.tags.get(key) == value
    return False


def check_open(level: AccessLevel, unix_user: str) -> None:
    """Raise :class:`AccessDenied` unless ``level`` may open a shell as ``unix_user``."""
    if RANK[level] < RANK[AccessLevel.TERMINAL]:
        raise AccessDenied(f"access level {level} cannot open a terminal on this server")
    if unix_user == ROOT and level is not AccessLevel.FULL:
        raise AccessDenied("only full access may open a root shell")
