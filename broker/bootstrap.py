"""First start: the first workspace, its superuser and a way for that person to log in.

Idempotent: once any workspace exists, it changes nothing and says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import col, select

from broker.audit import SYSTEM
from broker.services import Services
from broker.store.models import Role, TokenScope, User, Workspace

__all__ = ["InitResult", "initialise"]


@dataclass(frozen=True)
class InitResult:
    created: bool
    workspace: Workspace
    admin: User
    token: str | None  # shown once, only when ``created``


async def initialise(
    services: Services, *, workspace_name: str = "default", admin_email: str = "admin@localhost"
) -> InitResult:
    async with services.db.transaction() as s:
        existing = (await s.exec(select(Workspace).order_by(col(Workspace.created_at)))).first()
        admin = None
        if existing is not None:
            query = select(User).where(
                User.workspace_id == existing.id, User.role == Role.SUPERUSER
            )
            admin = (await s.exec(query)).first()
    if existing is not None and admin is not None:
        return InitResult(False, existing, admin, None)
    workspace = existing or await services.workspaces.create(workspace_name)
    admin = await services.users.create(
        workspace.id, admin_email, role=Role.SUPERUSER, display_name="Administrator"
    )
    _, secret = await services.tokens.create(
        workspace.id,
        admin.id,
        name="bootstrap",
        scope=TokenScope.ADMIN,
        expires_in_days=30,
        actor=SYSTEM,
    )
    return InitResult(True, workspace, admin, secret)
