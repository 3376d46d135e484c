"""Service accounts: users that are not people (CI/CD, scripts).

A service account is a ``User`` row with ``kind = service``: it gets grants and group
memberships like a person and acts only through its own scoped tokens (minted by staff).
It has no password, cannot sign in with SSO and never has a browser session; its address
is ``<name>@service.invalid`` (a reserved domain, so no mailbox or IdP can claim it).
Retiring one revokes every token, drops its grants and memberships and disables it; the
row stays so the audit log and recordings keep naming it.
"""

from __future__ import annotations

import builtins

import sqlalchemy as sa
from sqlmodel import col, delete
from sqlmodel.ext.asyncio.session import AsyncSession

from broker.audit import Actor, Category
from broker.errors import InvalidInput, NotFound
from broker.services.base import Service, fetch, scoped, unique
from broker.services.directory import NAME
from broker.store.models import AccessGrant, ApiToken, GroupMembership, Role, User, UserKind

__all__ = ["SERVICE_DOMAIN", "ServiceAccountService"]

SERVICE_DOMAIN = "service.invalid"


async def _account(s: AsyncSession, workspace_id: str, account_id: str) -> User:
    user = await fetch(s, User, workspace_id, account_id)
    if user.kind is not UserKind.SERVICE:
        raise NotFound("service account", account_id)
    return user


class ServiceAccountService(Service):
    async def create(
        self,
        workspace_id: str,
        name: str,
        *,
        role: Role = Role.USER,
        description: str = "",
        actor: Actor,
    ) -> User:
        if not NAME.match(name):
            raise InvalidInput("service account name must be letters, digits, '.', '_' or '-'")
        if Role(role) is Role.SUPERUSER:
            raise InvalidInput("a service account can be user or staff, not superuser")
        async with self.db.transaction() as s:
            account = User(
                workspace_id=workspace_id,
                email=f"{name.lower()}@{SERVICE_DOMAIN}",
                display_name=(description or name)[:200],
                role=Role(role),
                kind=UserKind.SERVICE,
            )
            s.add(account)
            await unique(s, f"service account {name!r}")
            await self.audit.emit(
                workspace_id,
                Category.CONFIGURATION,
                "service_account.created",
                actor=actor,
                target=account.id,
                details={"name": name, "role": str(account.role)},
                session=s,
            )
            return account

    async def get(self, workspace_id: str, account_id: str) -> User:
        async with self.db.transaction() as s:
            return await _account(s, workspace_id, account_id)

    async def list(self, workspace_id: str) -> builtins.list[User]:
        query = scoped(User, workspace_id).where(User.kind == UserKind.SERVICE)
        async with self.db.transaction() as s:
            return list((await s.exec(query.order_by(col(User.email)))).all())

    async def retire(self, workspace_id: str, account_id: str, *, actor: Actor) -> int:
        """Revoke its tokens, drop its grants and memberships, disable it; returns how many
        tokens were revoked."""
        async with self.db.transaction() as s:
            account = await _account(s, workspace_id, account_id)
            now = self.clock()
            revoked = await s.exec(
                sa.update(ApiToken)
                .where(
                    col(ApiToken.workspace_id) == workspace_id,
                    col(ApiToken.user_id) == account.id,
                    col(ApiToken.revoked_at).is_(None),
                )
                .values(revoked_at=now)
            )
            await s.exec(
                delete(AccessGrant).where(
                    col(AccessGrant.workspace_id) == workspace_id,
                    col(AccessGrant.user_id) == account.id,
                )
            )
            await s.exec(
                delete(GroupMembership).where(
                    col(GroupMembership.workspace_id) == workspace_id,
                    col(GroupMembership.user_id) == account.id,
                )
            )
            account.disabled = True
            s.add(account)
            count = int(getattr(revoked, "rowcount", 0) or 0)
            await self.audit.emit(
                workspace_id,
                Category.CONFIGURATION,
                "service_account.retired",
                actor=actor,
                target=account.id,
                details={"tokens_revoked": count},
                session=s,
            )
            return count
