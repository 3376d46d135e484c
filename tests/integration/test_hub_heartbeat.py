"""The hub's heartbeat: it pings only an agent that has gone quiet (the agent pings on its
own, so pinging it too would double the idle traffic of every connected agent)."""

from __future__ import annotations

import asyncio
import time

import websockets

from broker.agents.hub import CONTROL_PATH
from tests.integration.conftest import Broker
from websh import Connection, ConnectionKind, Hello, Message, Ping, Pong, Side, Welcome


async def _connect(broker: Broker, name: str) -> tuple[websockets.ClientConnection, Connection]:
    agents = broker.runtime.services.agents
    _, token = await agents.create_registration_token(broker.workspace_id)
    server, _, secret = await agents.register(token, name=name, tags={})
    ws = await websockets.connect(broker.url.replace("http", "ws", 1) + CONTROL_PATH)
    conn = Connection(ConnectionKind.CONTROL, Side.CLIENT)
    conn.send(Hello(agent_id=server.id, secret=secret, agent_version="0.0.0", sysinfo={}))
    for payload in conn.data_to_send():
        await ws.send(payload)
    conn.receive(await asyncio.wait_for(ws.recv(), 10))
    assert isinstance(conn.events_received()[0], Welcome)
    return ws, conn


async def _listen(
    ws: websockets.ClientConnection, conn: Connection, seconds: float, ping_every: float | None
) -> list[Message]:
    """Collect what the broker sends for ``seconds``, pinging it every ``ping_every``."""
    seen: list[Message] = []
    end = time.monotonic() + seconds
    next_ping = time.monotonic()
    nonce = 0
    while (now := time.monotonic()) < end:
        if ping_every is not None and now >= next_ping:
            nonce += 1
            conn.send(Ping(nonce=nonce, ts=time.time()))
            next_ping = now + ping_every
        for payload in conn.data_to_send():  # our pings, pongs to the broker's
            await ws.send(payload)
        try:
            conn.receive(await asyncio.wait_for(ws.recv(), 0.05))
        except TimeoutError:
            continue
        seen += conn.events_received()
    return seen


async def test_a_quiet_agent_is_pinged(broker: Broker) -> None:
    ws, conn = await _connect(broker, "quiet")
    try:
        seen = await _listen(ws, conn, 3.5, ping_every=None)  # heartbeat_interval = 1 s
        assert any(isinstance(m, Ping) for m in seen)
        assert len(broker.hub.links) == 1  # our pongs kept it connected
    finally:
        await ws.close()


async def test_an_agent_that_pings_is_not_pinged_back(broker: Broker) -> None:
    ws, conn = await _connect(broker, "chatty")
    try:
        seen = await _listen(ws, conn, 3.0, ping_every=0.3)
        assert not any(isinstance(m, Ping) for m in seen)
        assert any(isinstance(m, Pong) for m in seen)  # the broker still answers
        assert len(broker.hub.links) == 1
    finally:
        await ws.close()
