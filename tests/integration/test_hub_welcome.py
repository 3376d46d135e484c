"""The hub's welcome and farewell: a burst of agents is written to the store one agent at
a time, an agent that leaves while it waits for its turn is not welcomed at all, and
agents that leave together are written off together.

The hub here gets a ``ServerService`` that watches its own ``report`` calls (injected
through ``Services``, as the hub takes them), on a real broker with real WebSockets.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
import websockets

from broker.agents.hub import CONTROL_PATH, AgentHub
from broker.app import create_app
from broker.services.inventory import Departure, ServerService
from broker.serving import server_config
from broker.store.models import Server, ServerStatus
from tests.integration.conftest import Broker, audited, bind
from websh import Connection, ConnectionKind, Hello, Side, State, Welcome


class WatchedServers(ServerService):
    """``report`` as the store has it, counting how many run at once; after ``hold()``
    the next call waits until ``release`` is set."""

    def __init__(self, base: ServerService) -> None:
        super().__init__(base.db, base.audit, clock=base.clock)
        self.running = 0
        self.most = 0
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.holding = False
        self.batches: list[list[str]] = []  # the server ids of each ``departed`` call

    def hold(self) -> None:
        self.holding = True
        self.entered = asyncio.Event()

    async def report(self, *args: Any, **kwargs: Any) -> Server:
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            if self.holding and not self.entered.is_set():
                self.entered.set()
                await self.release.wait()
            await asyncio.sleep(0.005)  # long enough for a second welcome to overlap
            return await super().report(*args, **kwargs)
        finally:
            self.running -= 1

    async def departed(self, workspace_id: str, departures: list[Departure], *args: Any) -> None:
        self.batches.append(sorted(d.server_id for d in departures))
        if self.holding and not self.entered.is_set():
            self.entered.set()
            await self.release.wait()
        await super().departed(workspace_id, departures, *args)


@dataclasses.dataclass
class Watched:
    url: str
    broker: Broker
    hub: AgentHub
    servers: WatchedServers


@pytest.fixture
async def watched(broker: Broker) -> AsyncIterator[Watched]:
    """A second broker app on the same runtime, whose hub reports through WatchedServers."""
    servers = WatchedServers(broker.runtime.services.servers)
    services = dataclasses.replace(broker.runtime.services, servers=servers)
    hub = AgentHub(services, heartbeat_interval=30.0, metrics_interval=60.0)
    server = uvicorn.Server(server_config(create_app(broker.runtime, hub=hub), log_level="warning"))
    sock = bind()
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    port = sock.getsockname()[1]
    try:
        yield Watched(f"ws://127.0.0.1:{port}{CONTROL_PATH}", broker, hub, servers)
    finally:
        servers.release.set()
        await hub.close_all()
        server.should_exit = True
        await task


async def _register(broker: Broker, name: str) -> tuple[str, str]:
    agents = broker.runtime.services.agents
    _, token = await agents.create_registration_token(broker.workspace_id)
    server, _, secret = await agents.register(token, name=name, tags={})
    return server.id, secret


Agent = tuple[websockets.ClientConnection, Connection]


async def _hello(url: str, server_id: str, secret: str) -> Agent:
    """Connect and send the agent's hello (the welcome is not awaited here)."""
    ws = await websockets.connect(url)
    conn = Connection(ConnectionKind.CONTROL, Side.CLIENT)
    conn.send(
        Hello(
            agent_id=server_id,
            secret=secret,
            agent_version="0.0.0",
            sysinfo={"hostname": f"host-{server_id[:8]}", "platform": "linux"},
        )
    )
    for payload in conn.data_to_send():
        await ws.send(payload)
    return ws, conn


async def _welcomed(agent: Agent) -> bool:
    ws, conn = agent
    conn.receive(await asyncio.wait_for(ws.recv(), 10))
    return any(isinstance(event, Welcome) for event in conn.events_received())


async def _audited(broker: Broker, action: str, count: int) -> list[str]:
    return sorted(event.server_id for event in await audited(broker, count, action=action))


async def test_a_burst_of_agents_is_written_one_at_a_time(watched: Watched) -> None:
    broker = watched.broker
    agents = [await _register(broker, f"burst-{i:02d}") for i in range(12)]
    sockets = await asyncio.gather(*(_hello(watched.url, *agent) for agent in agents))
    try:
        assert all(await asyncio.gather(*(_welcomed(agent) for agent in sockets)))

        # the welcome goes out before the presence is written; the audit event after
        connected = await _audited(broker, "agent.connected", len(agents))
        assert connected == sorted(s for s, _ in agents)
        assert watched.servers.most == 1
        assert set(watched.hub.links) == {server_id for server_id, _ in agents}
        for server_id, _ in agents:
            server = await broker.runtime.services.servers.get(broker.workspace_id, server_id)
            assert server.status == ServerStatus.ONLINE
            assert server.sysinfo["hostname"] == f"host-{server_id[:8]}"
            assert server.platform == "linux"
    finally:
        for ws, _ in sockets:
            await ws.close()


async def test_an_agent_that_leaves_while_waiting_is_not_welcomed(watched: Watched) -> None:
    broker = watched.broker
    first_id, first_secret = await _register(broker, "first")
    gone_id, gone_secret = await _register(broker, "gone")
    watched.servers.hold()
    first = await _hello(watched.url, first_id, first_secret)
    await asyncio.wait_for(watched.servers.entered.wait(), 10)  # first holds the store
    gone = await _hello(watched.url, gone_id, gone_secret)
    await asyncio.sleep(0.5)  # its hello is read; it waits for its turn
    await gone[0].close()
    await asyncio.sleep(0.5)  # the broker has seen it leave
    watched.servers.release.set()
    try:
        assert await _welcomed(first)
        await asyncio.sleep(0.3)  # the turn passes to the agent that left
        assert set(watched.hub.links) == {first_id}
        server = await broker.runtime.services.servers.get(broker.workspace_id, gone_id)
        assert server.status == ServerStatus.PENDING
        assert not await broker.runtime.services.audit.events(
            broker.workspace_id, action="agent.connected", server_id=gone_id
        )
    finally:
        await first[0].close()


async def test_a_farewell_after_a_newer_welcome_leaves_the_server_online(
    watched: Watched,
) -> None:
    """The old connection of a server drops while its new one already waits for its
    welcome: the farewell comes second and must not mark the server offline."""
    broker = watched.broker
    server_id, secret = await _register(broker, "flapping")
    other_id, other_secret = await _register(broker, "other")
    old = await _hello(watched.url, server_id, secret)
    assert await _welcomed(old)
    watched.servers.hold()
    other = await _hello(watched.url, other_id, other_secret)  # holds the store
    await asyncio.wait_for(watched.servers.entered.wait(), 10)
    new = await _hello(watched.url, server_id, secret)
    await asyncio.sleep(0.3)  # the new hello is read and waits for its turn
    await old[0].close()

    async def old_link_gone() -> None:  # its farewell then waits behind the welcome
        while server_id in watched.hub.links:
            await asyncio.sleep(0.02)

    await asyncio.wait_for(old_link_gone(), 10)
    watched.servers.release.set()
    try:
        assert await _welcomed(other) and await _welcomed(new)

        async def farewell() -> None:
            while not await broker.runtime.services.audit.events(
                broker.workspace_id, action="agent.disconnected", server_id=server_id
            ):
                await asyncio.sleep(0.05)

        await asyncio.wait_for(farewell(), 10)
        assert watched.hub.links[server_id].wire.connection.state is State.OPEN
        server = await broker.runtime.services.servers.get(broker.workspace_id, server_id)
        assert server.status == ServerStatus.ONLINE
    finally:
        await other[0].close()
        await new[0].close()


async def test_agents_that_leave_together_are_written_off_together(watched: Watched) -> None:
    """While one departure is being written the others queue; they are then written in
    one transaction: every server offline, one ``agent.disconnected`` each."""
    broker = watched.broker
    agents = [await _register(broker, f"leaving-{i:02d}") for i in range(20)]
    sockets = [await _hello(watched.url, *agent) for agent in agents]
    assert all(await asyncio.gather(*(_welcomed(agent) for agent in sockets)))
    while len(watched.hub.links) < len(agents):  # the welcome goes out before the link
        await asyncio.sleep(0.02)
    watched.servers.hold()
    await sockets[0][0].close()
    await asyncio.wait_for(watched.servers.entered.wait(), 10)  # the first one holds the store
    await asyncio.gather(*(ws.close() for ws, _ in sockets[1:]))
    while watched.hub.links:  # all of them have left and wait for the store
        await asyncio.sleep(0.02)
    watched.servers.release.set()

    ids = sorted(server_id for server_id, _ in agents)
    assert await _audited(broker, "agent.disconnected", len(agents)) == ids
    first = agents[0][0]
    assert watched.servers.batches == [[first], [i for i in ids if i != first]]
    for server_id, _ in agents:
        server = await broker.runtime.services.servers.get(broker.workspace_id, server_id)
        assert server.status == ServerStatus.OFFLINE
        assert server.last_seen_at is not None
