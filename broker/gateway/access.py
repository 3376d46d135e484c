"""Access at session open: the (user, server) level, resolved once per session.

:class:`AccessResolver` is the seam the gateway, revocation and exec ask. The default is
:class:`PolicyAccessResolver`, which combines the two places access is granted:

* the **policy file** (``grant(...)`` facts, edited by the security team), and
* the **stored grants** (rows managed through the API: a user or group, a server name
  glob, server group or ``key=value`` tag, a level).

The combination rule: a disabled user gets ``none``; a matching ``none`` grant *in the
policy file* hides the server whatever is stored (security's file can carve out
exceptions that API grants cannot override); otherwise the highest level of the two wins
(on a tie, the policy's grant names the decision). :class:`GrantAccessResolver` (stored
grants only, superusers full) is kept for tests and tools that run without a policy.
This module must never be the place where grants are written.
"""

from __future__ import annotations

from collections.abc import Callable
from fnmatch import fnmatchcase
from typing import Protocol

from broker.gateway.errors import AccessDenied
from broker.policy.subjects import server_of, subject_of
from broker.services import Services
from broker.store.models import AccessGrant, AccessLevel, Role, Server, User
from policies import AccessLevel as PolicyLevel
from policies import PolicyEngine
from policies.engine import NO_GRANT

__all__ = [
    "RANK",
    "STORED_GRANT",
    "AccessResolver",
    "GrantAccessResolver",
    "PolicyAccessResolver",
    "check_open",
    "stored_access",
]

RANK = {
    AccessLevel.NONE: 0,
    AccessLevel.READ_ONLY: 1,
    AccessLevel.TERMINAL: 2,
    AccessLevel.FULL: 3,
}
ROOT = "root"
#: Decisions that rest on a stored grant name it ``grant.stored:<grant id>``.
STORED_GRANT = "grant.stored:"
DISABLED = "user.disabled"


class AccessResolver(Protocol):
    async def access_level(self, workspace_id: str, user: User, server: Server) -> AccessLevel:
        """The user's level for this server: none, read-only, terminal or full."""
        ...


async def stored_access(
    services: Services, workspace_id: str, user: User, server: Server
) -> tuple[AccessLevel, AccessGrant | None]:
    """The highest stored grant naming ``user`` (directly or through a group) whose
    selector matches ``server``, and that grant; ``(none, None)`` when nothing matches."""
    groups = await services.groups.groups_of(workspace_id, user.id)
    grants = await services.grants.list(
        workspace_id, user_id=user.id, group_ids=[g.id for g in groups]
    )
    if not grants:
        return AccessLevel.NONE, None
    server_groups = {g.id for g in await services.server_groups.groups_of(workspace_id, server.id)}
    best: tuple[AccessLevel, AccessGrant | None] = (AccessLevel.NONE, None)
    for grant in grants:
        if _matches(grant, server, server_groups) and RANK[grant.level] > RANK[best[0]]:
            best = (grant.level, grant)
    return best


class GrantAccessResolver:
    """Stored grants only, no policy: superusers get ``full``, everyone else the best
    matching stored grant."""

    def __init__(self, services: Services) -> None:
        self.services = services

    async def access_level(self, workspace_id: str, user: User, server: Server) -> AccessLevel:
        if user.disabled:
            return AccessLevel.NONE
        if user.role is Role.SUPERUSER:
            return AccessLevel.FULL
        return (await stored_access(self.services, workspace_id, user, server))[0]


class PolicyAccessResolver:
    """The policy file's grants combined with the stored ones (rule in the module doc).

    ``policy`` is the engine getter (``PolicyRuntime.engine``), called on every
    resolution so a reload applies to the next session open and revocation check.
    """

    def __init__(self, services: Services, policy: Callable[[], PolicyEngine]) -> None:
        self.services = services
        self.policy = policy

    async def resolve(
        self, workspace_id: str, user: User, server: Server
    ) -> tuple[PolicyLevel, str]:
        """The level and the id of what decided it: a policy grant id, ``grant.stored:<id>``,
        ``access.no-grant`` or ``user.disabled``. Pass it as ``CommandRequest.grant``."""
        if user.disabled:
            return PolicyLevel.NONE, DISABLED
        subject = await subject_of(self.services, workspace_id, user)
        target = await server_of(self.services, workspace_id, server)
        level, rule = self.policy().access(subject, target)
        if level is PolicyLevel.NONE and rule != NO_GRANT:
            return level, rule  # the file's carve-out: stored grants cannot override it
        stored, grant = await stored_access(self.services, workspace_id, user, server)
        if grant is not None and RANK[stored] > RANK[AccessLevel(level.value)]:
            return PolicyLevel(stored.value), STORED_GRANT + grant.id
        return level, rule

    async def access_level(self, workspace_id: str, user: User, server: Server) -> AccessLevel:
        return AccessLevel((await self.resolve(workspace_id, user, server))[0].value)


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


grant_matches = _matches
"""Whether a stored grant's selector matches a server (given its server-group ids); the
API's grant filter uses the very function access resolution does."""
