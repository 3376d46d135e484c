"""What the store knows of connected agents: online or offline, last seen, system info,
metrics, and the audit events of their arrivals and departures.

The hub (``broker/agents/hub.py``) says what happened; :class:`Presence` writes it, one
writer at a time. Reports are kept and written for all agents at once by the hub's
sweeper; departures that come while earlier ones are being written are written together.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from broker.audit import Actor, Category
from broker.errors import CorralError
from broker.services import Services
from broker.services.inventory import Departure, Report
from broker.store.models import ServerStatus
from websh import Metrics, SysInfo

__all__ = ["Presence", "ServerRef"]

log = logging.getLogger("corral.agents")


@dataclass(frozen=True, slots=True)
class ServerRef:
    """Which server a link is: not the store's row, whose system info, metrics and ORM
    state would otherwise stay in memory for every connected agent."""

    id: str
    workspace_id: str


class Presence:
    """The store side of the agent hub. ``linked(server_id)``: a link of that server is
    connected now (a departure written after a newer welcome leaves it online)."""

    def __init__(self, services: Services, linked: Callable[[str], bool]) -> None:
        self.services = services
        self._linked = linked
        #: What agents reported since the last flush, by workspace and server.
        self.reports: dict[str, dict[str, Report]] = {}
        #: Departures waiting to be written (server, credential, close code, done).
        self._departures: list[tuple[ServerRef, str, int | None, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        #: One agent's welcome or departures write to the store at a time. Their
        #: transactions queue at the database anyway (SQLite's ``BEGIN IMMEDIATE``, the
        #: audit chain's workspace row), so letting a reconnect storm in at once welcomes no
        #: one sooner: it only holds every waiting handshake's session, rows and pool
        #: connection at the same moment, and that peak stays in the broker's RSS as
        #: fragmented arenas (``benchmarks/idle_agents.py --plain``, 1,000 agents arriving
        #: at 200 a second: about 31 -> 10 KiB per agent, and no slower to connect them
        #: all). In turn, a departure and a newer link's welcome for the same server no
        #: longer interleave their writes (a departure that waited behind the welcome
        #: leaves the server online). The hub holds it around a welcome.
        self.turn = asyncio.Lock()

    # ----------------------------------------------------------------- arrivals

    async def online(
        self,
        server: ServerRef,
        credential_id: str,
        version: str,
        sysinfo: dict[str, Any],
        *,
        replaced: bool,
    ) -> None:
        """A welcomed agent: its server online, ``agent.connected`` audited."""
        await self.services.servers.report(
            server.workspace_id,
            server.id,
            status=ServerStatus.ONLINE,
            seen_at=self.services.servers.clock(),
            sysinfo=sysinfo or None,
        )
        await self.services.audit.emit(
            server.workspace_id,
            Category.RESOURCE_ACCESS,
            "agent.connected",
            actor=Actor("agent", server.id, credential_id),
            server_id=server.id,
            details={"version": version, "replaced": replaced},
        )

    # ----------------------------------------------------------------- reports

    def report(self, server: ServerRef, message: Metrics | SysInfo) -> None:
        """Keep what an agent said for the next :meth:`flush` (the latest of each kind)."""
        pending = self.reports.get(server.workspace_id)
        if pending is None:
            pending = self.reports[server.workspace_id] = {}
        previous = pending.get(server.id)
        sysinfo = previous.sysinfo if previous else None
        metrics = previous.metrics if previous else None
        if isinstance(message, SysInfo):
            sysinfo = dict(message.info)
        else:
            metrics = _metrics(message)
        pending[server.id] = Report(
            server.id, self.services.servers.clock(), sysinfo=sysinfo, metrics=metrics
        )

    def forget_report(self, server: ServerRef) -> None:
        """Drop a server's unwritten report (a newer link's welcome supersedes it)."""
        self.reports.get(server.workspace_id, {}).pop(server.id, None)

    async def flush(self) -> None:
        """One transaction per workspace with reports (usually one in all). A failed write
        (the database busy or away) is logged and its reports kept for the next flush,
        unless newer ones came in meanwhile; it never stops the sweeper."""
        pending, self.reports = self.reports, {}
        for workspace_id, reports in pending.items():
            if not reports:
                continue
            try:
                await self.services.servers.report_many(workspace_id, list(reports.values()))
            except Exception:
                log.exception("agent reports of workspace %s not written; retrying", workspace_id)
                newer = self.reports.setdefault(workspace_id, {})
                for server_id, report in reports.items():
                    newer.setdefault(server_id, report)

    # ----------------------------------------------------------------- departures

    async def departed(self, server: ServerRef, credential_id: str, code: int | None) -> None:
        """An agent left: its server offline (unless ``linked`` again by the time this is
        written) and ``agent.disconnected`` with ``code``. Returns once written.

        Departures that arrive while earlier ones are being written are written together
        (:meth:`_write_departures`): when many agents leave at once (a broker shutting
        down, a network cut) a few transactions do it.
        """
        written = asyncio.get_running_loop().create_future()
        self._departures.append((server, credential_id, code, written))
        if self._writer is None:
            self._writer = asyncio.create_task(
                self._write_departures(), name="agent-hub-departures"
            )
        await written

    async def _write_departures(self) -> None:
        """Write the queued departures, a batch per turn of the store, until none is left."""
        try:
            while self._departures:
                batch, self._departures = self._departures, []
                try:
                    async with self.turn:
                        await self.flush()  # their last metrics before they are offline
                        await self._write_batch(batch)
                except Exception:
                    log.exception("writing %d agent departure(s) failed", len(batch))
                finally:
                    for *_, written in batch:
                        if not written.done():
                            written.set_result(None)
        finally:
            self._writer = None

    async def _write_batch(
        self, batch: list[tuple[ServerRef, str, int | None, asyncio.Future[None]]]
    ) -> None:
        seen_at = self.services.servers.clock()
        by_workspace: dict[str, list[Departure]] = {}
        for server, credential_id, code, _ in batch:
            departure = Departure(
                server.id, credential_id, code, offline=not self._linked(server.id)
            )
            by_workspace.setdefault(server.workspace_id, []).append(departure)
        for workspace_id, departures in by_workspace.items():
            try:
                await self.services.servers.departed(workspace_id, departures, seen_at)
            except CorralError as exc:  # the workspace itself is gone
                log.warning("agent departures in workspace %s not written: %s", workspace_id, exc)


def _metrics(message: Metrics) -> dict[str, Any]:
    return {
        "ts": message.ts,
        "cpu_percent": message.cpu,
        "mem_used": message.mem_used,
        "mem_total": message.mem_total,
        "disk_used": message.disk_used,
        "disk_total": message.disk_total,
        "load": list(message.load),
    }
