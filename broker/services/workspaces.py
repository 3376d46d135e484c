"""Workspaces: the tenant boundary. Creating one is the only unscoped write."""

from __future__ import annotations

import builtins

from sqlmodel import col, select

from broker.audit import SYSTEM, Actor, Category
from broker.errors import InvalidInput, NotFound
from broker.services.base import Service, unique
from broker.store.models import Workspace

__all__ = ["WorkspaceService"]


class WorkspaceService(Service):
    async def create(self, name: str, *, actor: Actor = SYSTEM) -> Workspace:
        name = name.strip()
        if not name or len(name) > 100:
            raise InvalidInput("workspace name must be 1-100 characters")
        async with self.db.transaction() as s:
            workspace = Workspace(name=name)
            s.add(workspace)
            await unique(s, f"workspace {name!r}")
            await self.audit.emit(
                workspace.id,
                Category.CONFIGURATION,
                "workspace.created",
                actor=actor,
                target=name,
                session=s,
            )
            return workspace

    async def get(self, workspace_id: str) -> Workspace:
        async with self.db.transaction() as s:
            workspace = await s.get(Workspace, workspace_id)
            if workspace is None:
                raise NotFound("workspace", workspace_id)
            return workspace

    async def find(self, name: str) -> Workspace | None:
        """Look a workspace up by its name (log-in and bootstrap start from a name)."""
        async with self.db.transaction() as s:
            return (await s.exec(select(Workspace).where(Workspace.name == name))).first()

    async def list_all(self) -> builtins.list[Workspace]:
        """Every workspace: for the server operator's own tools (CLI), never for the API."""
        async with self.db.transaction() as s:
            return list((await s.exec(select(Workspace).order_by(col(Workspace.created_at)))).all())

    async def update_settings(
        self,
        workspace_id: str,
        *,
        actor: Actor,
        mfa_required: bool | None = None,
        mfa_hardware_only: bool | None = None,
        recording_retention_days: int | None = None,
        audit_retention_days: int | None = None,
    ) -> Workspace:
        changes = {
            key: value
            for key, value in {
                "mfa_required": mfa_required,
                "mfa_hardware_only": mfa_hardware_only,
                "recording_retention_days": recording_retention_days,
                "audit_retention_days": audit_retention_days,
            }.items()
            if value is not None
        }
        for key in ("recording_retention_days", "audit_retention_days"):
            if key in changes and not 1 <= int(changes[key]) <= 36500:
                raise InvalidInput(f"{key} must be between 1 and 36500")
        async with self.db.transaction() as s:
            workspace = await s.get(Workspace, workspace_id)
            if workspace is None:
                raise NotFound("workspace", workspace_id)
            for key, value in changes.items():
                setattr(workspace, key, value)
            s.add(workspace)
            await self.audit.emit(
                workspace_id,
                Category.CONFIGURATION,
                "workspace.settings_changed",
                actor=actor,
                details=changes,
                session=s,
            )
            return workspace
