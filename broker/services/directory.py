"""People: users and the groups they belong to, always inside one workspace."""

from __future__ import annotations

import builtins
import re

from sqlmodel import col, delete

from broker.audit import SYSTEM, Actor, Category
from broker.errors import InvalidInput
from broker.services.base import Service, fetch, scoped, unique
from broker.store.models import GroupMembership, Role, User, UserGroup, UserKind

__all__ = ["GroupService", "UserService", "normalise_email"]

EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def normalise_email(value: str) -> str:
    value = value.strip().lower()
    if not EMAIL.match(value):
        raise InvalidInput(f"not an email address: {value[:80]!r}")
    return value


def _name(value: str, what: str) -> str:
    if not NAME.match(value):
        raise InvalidInput(f"{what} name must be letters, digits, '.', '_' or '-' (max 100)")
    return value


class UserService(Service):
    async def create(
        self,
        workspace_id: str,
        email: str,
        *,
        role: Role = Role.USER,
        display_name: str = "",
        password_hash: str | None = None,
        must_change_password: bool = False,
        actor: Actor = SYSTEM,
    ) -> User:
        async with self.db.transaction() as s:
            user = User(
                workspace_id=workspace_id,
                email=normalise_email(email),
                role=Role(role),
                display_name=display_name,
                password_hash=password_hash,
                must_change_password=must_change_password,
            )
            s.add(user)
            await unique(s, f"user {user.email}")
            await self.audit.emit(
                workspace_id,
                Category.CONFIGURATION,
                "user.created",
                actor=actor,
                target=user.id,
                details={"email": user.email, "role": str(user.role)},
                session=s,
            )
            return user

    async def get(self, workspace_id: str, user_id: str) -> User:
        async with self.db.transaction() as s:
            return await fetch(s, User, workspace_id, user_id)

    async def find_by_email(self, workspace_id: str, email: str) -> User | None:
        async with self.db.transaction() as s:
            query = scoped(User, workspace_id).where(User.email == email.strip().lower())
            return (await s.exec(query)).first()

    async def list(self, workspace_id: str) -> builtins.list[User]:
        async with self.db.transaction() as s:
            return list((await s.exec(scoped(User, workspace_id).order_by(col(User.email)))).all())

    async def page(
        self,
        workspace_id: str,
        *,
        kind: UserKind | None = None,
        role: Role | None = None,
        disabled: bool | None = None,
        email_prefix: str | None = None,
        after_email: str | None = None,
        limit: int = 100,
    ) -> builtins.list[User]:
        """Up to ``limit`` users ordered by email, after ``after_email`` (keyset paging)."""
        query = scoped(User, workspace_id)
        if kind is not None:
            query = query.where(User.kind == kind)
        if role is not None:
            query = query.where(User.role == role)
        if disabled is not None:
            query = query.where(User.disabled == disabled)
        if email_prefix:
            query = query.where(
                col(User.email).startswith(email_prefix.strip().lower(), autoescape=True)
            )
        if after_email is not None:
            query = query.where(col(User.email) > after_email)
        query = query.order_by(col(User.email)).limit(max(1, min(limit, 1001)))
        async with self.db.transaction() as s:
            return list((await s.exec(query)).all())

    async def update(
        self, workspace_id: str, user_id: str, *, display_name: str, actor: Actor
    ) -> User:
        async with self.db.transaction() as s:
            user = await fetch(s, User, workspace_id, user_id)
            before, user.display_name = user.display_name, display_name[:200]
            s.add(user)
            await self.audit.emit(
                workspace_id,
                Category.CONFIGURATION,
                "user.updated",
                actor=actor,
                target=user.id,
                details={"display_name": {"from": before, "to": user.display_name}},
                session=s,
            )
            return user

    async def set_role(self, workspace_id: str, user_id: str, role: Role, *, actor: Actor) -> User:
        async with self.db.transaction() as s:
            user = await fetch(s, User, workspace_id, user_id)
            before, user.role = user.role, Role(role)
            s.add(user)
            await self.audit.emit(
                workspace_id,
                Category.CONFIGURATION,
                "user.role_changed",
                actor=actor,
                target=user.id,
                details={"from": str(before), "to": str(user.role)},
                session=s,
            )
            return user

    async def set_disabled(
        self, workspace_id: str, user_id: str, disabled: bool, *, actor: Actor
    ) -> User:
        async with self.db.transaction() as s:
            user = await fetch(s, User, workspace_id, user_id)
            user.disabled = disabled
            s.add(user)
            await self.audit.emit(
                workspace_id,
                Category.CONFIGURATION,
                "user.disabled" if disabled else "user.enabled",
                actor=actor,
                target=user.id,
                session=s,
            )
            return user


class GroupService(Service):
    async def create(
        self, workspace_id: str, name: str, *, description: str = "", actor: Actor = SYSTEM
    ) -> UserGroup:
        async with self.db.transaction() as s:
            group = UserGroup(
                workspace_id=workspace_id, name=_name(name, "group"), description=description
            )
            s.add(group)
            await unique(s, f"group {name!r}")
            await self.audit.emit(
                workspace_id,
                Category.CONFIGURATION,
                "group.created",
                actor=actor,
                target=group.id,
                details={"name": name},
                session=s,
            )
            return group

    async def get(self, workspace_id: str, group_id: str) -> UserGroup:
        async with self.db.transaction() as s:
            return await fetch(s, UserGroup, workspace_id, group_id)

    async def list(self, workspace_id: str) -> builtins.list[UserGroup]:
        async with self.db.transaction() as s:
            query = scoped(UserGroup, workspace_id).order_by(col(UserGroup.name))
            return list((await s.exec(query)).all())

    async def update(
        self,
        workspace_id: str,
        group_id: str,
        *,
        name: str | None = None,
        description: str | None = None,
        actor: Actor,
    ) -> UserGroup:
        async with self.db.transaction() as s:
            group = await fetch(s, UserGroup, workspace_id, group_id)
            changes: dict[str, str] = {}
            if name is not None and name != group.name:
                changes["name"] = group.name = _name(name, "group")
            if description is not None and description != group.description:
                changes["description"] = group.description = description[:1000]
            s.add(group)
            await unique(s, f"group {name!r}")
            await self.audit.emit(
                workspace_id,
                Category.CONFIGURATION,
                "group.updated",
                actor=actor,
                target=group.id,
                details=changes,
                session=s,
            )
            return group

    async def delete(self, workspace_id: str, group_id: str, *, actor: Actor) -> None:
        async with self.db.transaction() as s:
            group = await fetch(s, UserGroup, workspace_id, group_id)
            await s.exec(delete(GroupMembership).where(col(GroupMembership.group_id) == group.id))
            await s.delete(group)
            await self.audit.emit(
                workspace_id,
                Category.CONFIGURATION,
                "group.deleted",
                actor=actor,
                target=group_id,
                details={"name": group.name},
                session=s,
            )

    async def add_member(
        self, workspace_id: str, group_id: str, user_id: str, *, actor: Actor
    ) -> None:
        async with self.db.transaction() as s:
            await fetch(s, UserGroup, workspace_id, group_id)
            await fetch(s, User, workspace_id, user_id)
            s.add(GroupMembership(workspace_id=workspace_id, group_id=group_id, user_id=user_id))
            await unique(s, "membership")
            await self.audit.emit(
                workspace_id,
                Category.CONFIGURATION,
                "group.member_added",
                actor=actor,
                target=group_id,
                details={"user_id": user_id},
                session=s,
            )

    async def remove_member(
        self, workspace_id: str, group_id: str, user_id: str, *, actor: Actor
    ) -> None:
        async with self.db.transaction() as s:
            await fetch(s, UserGroup, workspace_id, group_id)
            query = scoped(GroupMembership, workspace_id).where(
                GroupMembership.group_id == group_id, GroupMembership.user_id == user_id
            )
            membership = (await s.exec(query)).first()
            if membership is None:
                raise InvalidInput(f"user {user_id} is not a member of group {group_id}")
            await s.delete(membership)
            await self.audit.emit(
                workspace_id,
                Category.CONFIGURATION,
                "group.member_removed",
                actor=actor,
                target=group_id,
                details={"user_id": user_id},
                session=s,
            )

    async def members(self, workspace_id: str, group_id: str) -> builtins.list[User]:
        async with self.db.transaction() as s:
            await fetch(s, UserGroup, workspace_id, group_id)
            query = (
                scoped(User, workspace_id)
                .join(GroupMembership, col(GroupMembership.user_id) == col(User.id))
                .where(GroupMembership.group_id == group_id)
                .order_by(col(User.email))
            )
            return list((await s.exec(query)).all())

    async def groups_of(self, workspace_id: str, user_id: str) -> builtins.list[UserGroup]:
        async with self.db.transaction() as s:
            await fetch(s, User, workspace_id, user_id)
            query = (
                scoped(UserGroup, workspace_id)
                .join(GroupMembership, col(GroupMembership.group_id) == col(UserGroup.id))
                .where(GroupMembership.user_id == user_id)
                .order_by(col(UserGroup.name))
            )
            return list((await s.exec(query)).all())
