"""Workspaces: the tenant boundary. Creating one is the only unscoped write."""

from __future__ import annotations

import builtins
from typing import Any

import sqlalchemy as sa
from sqlmodel import SQLModel, col, select

from broker.audit import SYSTEM, Actor, Category
from broker.errors import InvalidInput, NotFound
from broker.services.base import Service, unique
from broker.store.models import (
    AgentCredential,
    ApiToken,
    BrowserSession,
    Invitation,
    RegistrationToken,
    SsoProvider,
    User,
    Workspace,
)

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
        name: str | None = None,
    ) -> Workspace:
        if name is not None:
            name = name.strip()
            if not name or len(name) > 100:
                raise InvalidInput("workspace name must be 1-100 characters")
        changes = {
            key: value
            for key, value in {
                "name": name,
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
            if "name" in changes:
                await unique(s, f"workspace {name!r}")
            await self.audit.emit(
                workspace_id,
                Category.CONFIGURATION,
                "workspace.settings_changed",
                actor=actor,
                details=changes,
                session=s,
            )
            return workspace

    async def delete(self, workspace_id: str, *, confirm_name: str, actor: Actor) -> dict[str, int]:
        """Close the workspace for good: every token, browser session and agent credential
        is revoked, every account disabled, pending invitations and registration tokens
        used up and SSO providers switched off, in one transaction with its audit event.

        The rows and the audit chain stay (the operator removes them with the database);
        ``confirm_name`` must repeat the workspace's name exactly. Returns what was
        revoked and disabled, by kind.
        """
        async with self.db.transaction() as s:
            workspace = await s.get(Workspace, workspace_id)
            if workspace is None or workspace.deleted_at is not None:
                raise NotFound("workspace", workspace_id)
            if confirm_name != workspace.name:
                raise InvalidInput("confirm_name must repeat the workspace's name exactly")
            now = self.clock()
            counts: dict[str, int] = {}
            for name, model, column in (
                ("tokens_revoked", ApiToken, ApiToken.revoked_at),
                ("browser_sessions_revoked", BrowserSession, BrowserSession.revoked_at),
                ("agent_credentials_revoked", AgentCredential, AgentCredential.revoked_at),
            ):
                result = await s.exec(
                    sa.update(model)
                    .where(
                        col(model.workspace_id) == workspace_id,
                        col(column).is_(None),
                    )
                    .values(revoked_at=now)
                )
                counts[name] = int(getattr(result, "rowcount", 0) or 0)
            # Nothing may bring a new account or host in afterwards either.
            closing: tuple[tuple[type[SQLModel], dict[str, object]], ...] = (
                (Invitation, {"used_at": now}),
                (RegistrationToken, {"used_at": now}),
                (SsoProvider, {"enabled": False}),
            )
            for table, values in closing:
                owner: Any = table.workspace_id  # type: ignore[attr-defined]
                await s.exec(sa.update(table).where(owner == workspace_id).values(**values))
            result = await s.exec(
                sa.update(User)
                .where(col(User.workspace_id) == workspace_id, col(User.disabled).is_(False))
                .values(disabled=True)
            )
            counts["accounts_disabled"] = int(getattr(result, "rowcount", 0) or 0)
            workspace.deleted_at = now
            s.add(workspace)
            await self.audit.emit(
                workspace_id,
                Category.CONFIGURATION,
                "workspace.deleted",
                actor=actor,
                target=workspace.name,
                details=counts,
                session=s,
            )
            return counts
