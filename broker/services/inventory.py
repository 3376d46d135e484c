"""Servers and server groups: what the agents report, scoped to their workspace."""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlmodel import col, delete

from broker.audit import SYSTEM, Actor, Category
from broker.errors import InvalidInput
from broker.services.base import Service, fetch, scoped, unique
from broker.services.directory import NAME
from broker.store.models import Server, ServerGroup, ServerGroupMembership, ServerStatus

__all__ = ["Departure", "Report", "ServerGroupService", "ServerService"]


@dataclass(frozen=True)
class Report:
    """What one agent said since the last flush (see :meth:`ServerService.report_many`)."""

    server_id: str
    seen_at: datetime
    sysinfo: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None


@dataclass(frozen=True)
class Departure:
    """An agent connection that ended (see :meth:`ServerService.departed`)."""

    server_id: str
    credential_id: str
    close_code: int | None
    #: No newer connection of the server was welcomed meanwhile: mark it offline.
    offline: bool = True


def server_name(name: str) -> str:
    if not NAME.match(name):
        raise InvalidInput("server name must be letters, digits, '.', '_' or '-' (max 100)")
    return name


def validate_tags(tags: dict[str, str]) -> dict[str, str]:
    for key, value in tags.items():
        if not NAME.match(key) or not isinstance(value, str) or len(value) > 200:
            raise InvalidInput(f"bad tag {key[:40]!r}: keys like 'env', values up to 200 chars")
    return dict(tags)


class ServerService(Service):
    async def create(
        self,
        workspace_id: str,
        name: str,
        *,
        platform: str = "",
        tags: dict[str, str] | None = None,
        actor: Actor = SYSTEM,
    ) -> Server:
        async with self.db.transaction() as s:
            server = Server(
                workspace_id=workspace_id,
                name=server_name(name),
                platform=platform[:100],
                tags=validate_tags(tags or {}),
            )
            s.add(server)
            await unique(s, f"server {name!r}")
            await self.audit.emit(
                workspace_id,
                Category.CONFIGURATION,
                "server.created",
                actor=actor,
                server_id=server.id,
                target=name,
                session=s,
            )
            return server

    async def get(self, workspace_id: str, server_id: str) -> Server:
        async with self.db.transaction() as s:
            return await fetch(s, Server, workspace_id, server_id)

    async def find_by_name(self, workspace_id: str, name: str) -> Server | None:
        async with self.db.transaction() as s:
            return (await s.exec(scoped(Server, workspace_id).where(Server.name == name))).first()

    async def list(self, workspace_id: str) -> builtins.list[Server]:
        async with self.db.transaction() as s:
            query = scoped(Server, workspace_id).order_by(col(Server.name))
            return list((await s.exec(query)).all())

    async def set_tags(
        self, workspace_id: str, server_id: str, tags: dict[str, str], *, actor: Actor
    ) -> Server:
        async with self.db.transaction() as s:
            server = await fetch(s, Server, workspace_id, server_id)
            server.tags = validate_tags(tags)
            s.add(server)
            await self.audit.emit(
                workspace_id,
                Category.CONFIGURATION,
                "server.tags_changed",
                actor=actor,
                server_id=server.id,
                details={"tags": server.tags},
                session=s,
            )
            return server

    async def report(
        self,
        workspace_id: str,
        server_id: str,
        *,
        status: ServerStatus | None = None,
        seen_at: datetime | None = None,
        sysinfo: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> Server:
        """What the agent hub learns about a server: presence, system info, metrics."""
        async with self.db.transaction() as s:
            server = await fetch(s, Server, workspace_id, server_id)
            if status is not None:
                server.status = status
            if seen_at is not None:
                server.last_seen_at = seen_at
            if sysinfo is not None:
                server.sysinfo = sysinfo
                server.platform = str(sysinfo.get("platform", server.platform))[:100]
            if metrics is not None:
                server.metrics = metrics
            s.add(server)
            return server

    async def report_many(self, workspace_id: str, reports: builtins.list[Report]) -> None:
        """Write many of a workspace's agents' metrics and system info in one transaction.

        The hub collects what its agents send and flushes it every few seconds: one
        ``UPDATE ... WHERE id = ? AND workspace_id = ?`` per server, all in one commit,
        instead of a read-modify-write transaction per message (1,000 agents sending
        metrics every 60 s were 17 transactions a second; ``benchmarks/idle_agents.py``).
        A server removed meanwhile, or one of another workspace, simply matches no row.
        """
        groups: dict[tuple[str, ...], builtins.list[dict[str, Any]]] = {}
        for report in reports:
            row: dict[str, Any] = {
                "b_id": report.server_id,
                "b_ws": workspace_id,
                "last_seen_at": report.seen_at,
            }
            if report.sysinfo is not None:
                row["sysinfo"] = report.sysinfo
                if "platform" in report.sysinfo:
                    row["platform"] = str(report.sysinfo["platform"])[:100]
            if report.metrics is not None:
                row["metrics"] = report.metrics
            groups.setdefault(tuple(row), []).append(row)
        if not groups:
            return
        table = cast(sa.Table, getattr(Server, "__table__"))  # noqa: B009 (untyped in SQLModel)
        async with self.db.transaction() as s:
            for rows in groups.values():
                values: dict[str, Any] = {
                    key: sa.bindparam(key) for key in rows[0] if not key.startswith("b_")
                }
                statement = (
                    table.update()
                    .where(table.c.id == sa.bindparam("b_id"))
                    .where(table.c.workspace_id == sa.bindparam("b_ws"))
                    .values(values)
                )
                await (await s.connection()).execute(statement, rows)

    async def departed(
        self, workspace_id: str, departures: builtins.list[Departure], seen_at: datetime
    ) -> None:
        """Many of a workspace's agents left: their servers offline and one
        ``agent.disconnected`` event each, in one transaction.

        The hub writes the departures that queued up while the previous batch was being
        written together (a broker shutting down with 1,000 agents: a few commits instead
        of 2,000). A server removed meanwhile matches no row; its departure is still
        audited.
        """
        if not departures:
            return
        offline = [d.server_id for d in departures if d.offline]
        async with self.db.transaction() as s:
            if offline:
                await s.exec(
                    sa.update(Server)
                    .where(col(Server.workspace_id) == workspace_id)
                    .where(col(Server.id).in_(offline))
                    .values(status=ServerStatus.OFFLINE, last_seen_at=seen_at)
                )
            for departure in departures:
                await self.audit.emit(
                    workspace_id,
                    Category.RESOURCE_ACCESS,
                    "agent.disconnected",
                    actor=Actor("agent", departure.server_id, departure.credential_id),
                    server_id=departure.server_id,
                    details={"close_code": departure.close_code},
                    session=s,
                )

    async def remove(self, workspace_id: str, server_id: str, *, actor: Actor) -> None:
        async with self.db.transaction() as s:
            server = await fetch(s, Server, workspace_id, server_id)
            await s.delete(server)
            await self.audit.emit(
                workspace_id,
                Category.CONFIGURATION,
                "server.removed",
                actor=actor,
                server_id=server_id,
                target=server.name,
                session=s,
            )


class ServerGroupService(Service):
    async def create(self, workspace_id: str, name: str, *, actor: Actor = SYSTEM) -> ServerGroup:
        async with self.db.transaction() as s:
            group = ServerGroup(workspace_id=workspace_id, name=server_name(name))
            s.add(group)
            await unique(s, f"server group {name!r}")
            await self.audit.emit(
                workspace_id,
                Category.CONFIGURATION,
                "server_group.created",
                actor=actor,
                target=group.id,
                details={"name": name},
                session=s,
            )
            return group

    async def get(self, workspace_id: str, group_id: str) -> ServerGroup:
        async with self.db.transaction() as s:
            return await fetch(s, ServerGroup, workspace_id, group_id)

    async def list(self, workspace_id: str) -> builtins.list[ServerGroup]:
        async with self.db.transaction() as s:
            query = scoped(ServerGroup, workspace_id).order_by(col(ServerGroup.name))
            return list((await s.exec(query)).all())

    async def delete(self, workspace_id: str, group_id: str, *, actor: Actor) -> None:
        async with self.db.transaction() as s:
            group = await fetch(s, ServerGroup, workspace_id, group_id)
            await s.exec(
                delete(ServerGroupMembership).where(
                    col(ServerGroupMembership.server_group_id) == group.id
                )
            )
            await s.delete(group)
            await self.audit.emit(
                workspace_id,
                Category.CONFIGURATION,
                "server_group.deleted",
                actor=actor,
                target=group_id,
                session=s,
            )

    async def add_server(
        self, workspace_id: str, group_id: str, server_id: str, *, actor: Actor
    ) -> None:
        async with self.db.transaction() as s:
            await fetch(s, ServerGroup, workspace_id, group_id)
            await fetch(s, Server, workspace_id, server_id)
            s.add(
                ServerGroupMembership(
                    workspace_id=workspace_id, server_group_id=group_id, server_id=server_id
                )
            )
            await unique(s, "server group membership")
            await self.audit.emit(
                workspace_id,
                Category.CONFIGURATION,
                "server_group.server_added",
                actor=actor,
                target=group_id,
                server_id=server_id,
                session=s,
            )

    async def remove_server(
        self, workspace_id: str, group_id: str, server_id: str, *, actor: Actor
    ) -> None:
        async with self.db.transaction() as s:
            await fetch(s, ServerGroup, workspace_id, group_id)
            query = scoped(ServerGroupMembership, workspace_id).where(
                ServerGroupMembership.server_group_id == group_id,
                ServerGroupMembership.server_id == server_id,
            )
            membership = (await s.exec(query)).first()
            if membership is None:
                raise InvalidInput(f"server {server_id} is not in server group {group_id}")
            await s.delete(membership)
            await self.audit.emit(
                workspace_id,
                Category.CONFIGURATION,
                "server_group.server_removed",
                actor=actor,
                target=group_id,
                server_id=server_id,
                session=s,
            )

    async def servers(self, workspace_id: str, group_id: str) -> builtins.list[Server]:
        async with self.db.transaction() as s:
            await fetch(s, ServerGroup, workspace_id, group_id)
            query = (
                scoped(Server, workspace_id)
                .join(ServerGroupMembership, col(ServerGroupMembership.server_id) == col(Server.id))
                .where(ServerGroupMembership.server_group_id == group_id)
                .order_by(col(Server.name))
            )
            return list((await s.exec(query)).all())

    async def groups_of(self, workspace_id: str, server_id: str) -> builtins.list[ServerGroup]:
        async with self.db.transaction() as s:
            await fetch(s, Server, workspace_id, server_id)
            query = (
                scoped(ServerGroup, workspace_id)
                .join(
                    ServerGroupMembership,
                    col(ServerGroupMembership.server_group_id) == col(ServerGroup.id),
                )
                .where(ServerGroupMembership.server_id == server_id)
                .order_by(col(ServerGroup.name))
            )
            return list((await s.exec(query)).all())
