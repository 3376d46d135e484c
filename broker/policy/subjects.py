"""Store rows -> the values :mod:`policies` decides on.

Policy files name people as ``user:<email>`` and ``group:<user group name>``, and servers
by name, server group name and ``key=value`` tags, so this is the one place that reads
memberships for a decision. It must never decide anything itself.
"""

from __future__ import annotations

from broker.services import Services
from broker.store.models import Server, User
from policies import Role as PolicyRole
from policies import Server as PolicyServer
from policies import Subject

__all__ = ["server_of", "subject_of"]


async def subject_of(
    services: Services, workspace_id: str, user: User, *, mfa_age_seconds: float | None = None
) -> Subject:
    """``user`` as a policy subject: email, role and user-group names."""
    groups = await services.groups.groups_of(workspace_id, user.id)
    return Subject(
        user_id=user.email,
        role=PolicyRole(user.role.value),
        groups=tuple(g.name for g in groups),
        mfa_age_seconds=mfa_age_seconds,
    )


async def server_of(services: Services, workspace_id: str, server: Server) -> PolicyServer:
    """``server`` as policy sees it: name, server-group names and tags."""
    groups = await services.server_groups.groups_of(workspace_id, server.id)
    return PolicyServer.of(server.name, tuple(g.name for g in groups), server.tags)
