"""Purge of identity rows nothing can use any more: spent or expired MFA challenges and
password-reset links, browser sessions past their absolute expiry, expired invitations
and SSO replay entries past their expiry.

They are harmless but grow without bound (every login leaves a session row, every code a
challenge). The broker runs the purge on a timer (hourly, like recording retention) and
``corral identity purge`` runs it on demand; each workspace's purge is one transaction
audited as ``identity.purged`` with the counts when it removed anything. The audit log
keeps the history of those rows (logins, revocations, codes sent); the rows themselves are
only working state.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from broker.audit import SYSTEM, Actor
from broker.errors import CorralError, NotFound
from broker.services import Services
from broker.services.lifecycle import PurgeCounts

__all__ = ["IdentityPurge", "WorkspacePurge"]

log = logging.getLogger("corral.identity")


@dataclass(frozen=True)
class WorkspacePurge:
    workspace_id: str
    workspace_name: str
    counts: PurgeCounts


class IdentityPurge:
    def __init__(self, services: Services) -> None:
        self.services = services

    async def purge_all(
        self, *, workspace_name: str | None = None, actor: Actor = SYSTEM
    ) -> list[WorkspacePurge]:
        """Purge every workspace (or the one named); :class:`NotFound` for an unknown name."""
        workspaces = await self.services.workspaces.list_all()
        if workspace_name is not None:
            workspaces = [w for w in workspaces if w.name == workspace_name]
            if not workspaces:
                raise NotFound("workspace", workspace_name)
        return [
            WorkspacePurge(
                w.id, w.name, await self.services.lifecycle.purge_expired(w.id, actor=actor)
            )
            for w in workspaces
        ]

    async def run(self, interval: float = 3600.0) -> None:
        """The broker's timer: purge now, then every ``interval`` seconds."""
        while True:
            try:
                for result in await self.purge_all():
                    if result.counts.total:
                        log.info(
                            "purged %d expired identity rows of workspace %s",
                            result.counts.total,
                            result.workspace_name,
                        )
            except CorralError:
                log.exception("identity purge failed; will retry")
            await asyncio.sleep(interval)
