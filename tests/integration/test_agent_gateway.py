"""A real broker, a real agent process, a real bash in a pty: the agent issue end to end."""

from __future__ import annotations

import asyncio
import json
import tomllib
from pathlib import Path

import httpx
import pytest
import websockets

from broker.agents.channels import DataChannel
from broker.store.models import ServerStatus
from tests.integration.conftest import AgentProcess, Broker, audited, register_agent
from websh import (
    ChannelKind,
    Connection,
    ConnectionKind,
    Exit,
    Hello,
    Input,
    Output,
    Resize,
    Side,
)

pytestmark = pytest.mark.slow


async def _registered(
    broker: Broker, files: tuple[Path, Path], name: str = "test-host"
) -> tuple[AgentProcess, str]:
    config, log = files
    done = await asyncio.to_thread(
        register_agent, broker.url, await broker.registration_token(), config, name
    )
    assert done.returncode == 0, done.stderr
    assert config.stat().st_mode & 0o777 == 0o600
    server_id = tomllib.loads(config.read_text())["agent_id"]
    agent = AgentProcess(config, log)
    agent.start()
    await broker.hub.wait_connected(server_id, 20)
    return agent, server_id


async def _read_until(channel: DataChannel, needle: bytes, timeout: float = 10) -> bytes:
    seen = b""

    async def loop() -> bytes:
        nonlocal seen
        while needle not in seen:
            message = await channel.receive()
            if isinstance(message, Output):
                seen += message.data
        return seen

    return await asyncio.wait_for(loop(), timeout)


async def _exit_of(channel: DataChannel, timeout: float = 10) -> Exit:
    async def loop() -> Exit:
        while True:
            message = await channel.receive()
            if isinstance(message, Exit):
                return message

    return await asyncio.wait_for(loop(), timeout)


async def test_terminal_exec_and_presence(
    broker: Broker, agent_files: tuple[Path, Path], shell_user: str
) -> None:
    agent, server_id = await _registered(broker, agent_files)
    try:
        server = await broker.runtime.services.servers.get(broker.workspace_id, server_id)
        assert server.status == ServerStatus.ONLINE
        assert server.tags == {"env": "test"}
        assert server.sysinfo.get("hostname")

        channel = await broker.hub.open_channel(
            broker.workspace_id, server_id, ChannelKind.TERMINAL, user=shell_user, cols=80, rows=24
        )
        await channel.send(Input(data=b"echo hel''lo\n"))
        await _read_until(channel, b"hello\r\n")
        await channel.send(Resize(cols=132, rows=43))
        await channel.send(Input(data=b"stty size\n"))
        await _read_until(channel, b"43 132")
        await channel.send(Input(data=b"exit 3\n"))
        assert (await _exit_of(channel)).status == 3
        await channel.close()

        result = await broker.hub.exec(
            broker.workspace_id, server_id, "echo out; echo err >&2; exit 7", user=shell_user
        )
        assert result.exit.status == 7
        assert result.stdout == b"out\n"
        assert result.stderr == b"err\n"

        async def metrics() -> None:
            while not (
                await broker.runtime.services.servers.get(broker.workspace_id, server_id)
            ).metrics:
                await asyncio.sleep(0.1)

        await asyncio.wait_for(metrics(), 10)
    finally:
        agent.kill()


async def test_agent_killed_and_restarted_reconnects(
    broker: Broker, agent_files: tuple[Path, Path], shell_user: str
) -> None:
    agent, server_id = await _registered(broker, agent_files)
    agent.kill()

    async def offline() -> None:
        while server_id in broker.hub.links:
            await asyncio.sleep(0.05)

    await asyncio.wait_for(offline(), 10)
    agent.start()
    try:
        await broker.hub.wait_connected(server_id, 20)
        result = await broker.hub.exec(broker.workspace_id, server_id, "true", user=shell_user)
        assert result.exit.status == 0
    finally:
        agent.kill()


async def test_terminal_survives_broker_outage(
    broker: Broker, agent_files: tuple[Path, Path], shell_user: str
) -> None:
    agent, server_id = await _registered(broker, agent_files)
    try:
        channel = await broker.hub.open_channel(
            broker.workspace_id, server_id, ChannelKind.TERMINAL, user=shell_user, cols=80, rows=24
        )
        await channel.send(Input(data=b"export MARK=still-here; echo rea''dy\n"))
        seen = await _read_until(channel, b"ready\r\n")
        offset = len(seen)
        await channel.send(Input(data=b"sleep 3; echo after-$MARK\n"))
        await broker.stop()
        await asyncio.sleep(10)
        await broker.start()
        await broker.hub.wait_connected(server_id, 90)
        again = await broker.hub.open_channel(
            broker.workspace_id,
            server_id,
            ChannelKind.TERMINAL,
            user=shell_user,
            cols=80,
            rows=24,
            channel_id=channel.channel_id,
            attach_offset=offset,
        )
        replay = await _read_until(again, b"after-still-here")
        # Exactly the bytes after the offset: the output read before the outage is not
        # sent again, and what the shell printed while the broker was down is not lost.
        assert b"ready\r\n" not in replay
        await again.send(Input(data=b"exit 0\n"))
        assert (await _exit_of(again)).status == 0
    finally:
        agent.kill()


async def test_bad_agents_are_refused_and_audited(
    broker: Broker, agent_files: tuple[Path, Path], shell_user: str
) -> None:
    agent, server_id = await _registered(broker, agent_files)
    ws_url = broker.url.replace("http", "ws") + "/agent/v1/control"
    audit = broker.runtime.services.audit
    try:
        cases = {
            "not json": ("{nope", 4000),
            "unknown type": (json.dumps({"type": "launch_missiles", "protocol": "websh/1"}), 4004),
            "oversized": ("x" * 70_000, 4008),
        }
        for name, (payload, code) in cases.items():
            async with websockets.connect(ws_url) as ws:
                await ws.send(payload)
                with pytest.raises(websockets.ConnectionClosed) as info:
                    await asyncio.wait_for(ws.recv(), 5)
                assert info.value.rcvd is not None, name
                assert info.value.rcvd.code in (code, 4000, 4002), name

        client = Connection(ConnectionKind.CONTROL, Side.CLIENT)
        client.send(
            Hello(
                agent_id=server_id,
                secret="crlagt_" + "0" * 32 + "_" + "0" * 48,
                agent_version="x",
                sysinfo={},
            )
        )
        async with websockets.connect(ws_url) as ws:
            for payload in client.data_to_send():
                await ws.send(payload)
            with pytest.raises(websockets.ConnectionClosed) as info:
                while True:
                    await asyncio.wait_for(ws.recv(), 5)
            assert info.value.rcvd is not None and info.value.rcvd.code == 4001
        events = await audit.events(broker.workspace_id, category="authentication")
        assert any(e.action == "agent.connect_refused" for e in events)

        # Replayed registration token: refused, audited.
        token = await broker.registration_token()
        async with httpx.AsyncClient(base_url=broker.url) as http:
            first = await http.post("/api/v1/agents/register", json={"token": token, "name": "h2"})
            again = await http.post("/api/v1/agents/register", json={"token": token, "name": "h3"})
            garbage = await http.post("/api/v1/agents/register", content=b"\xff{")
        assert first.status_code == 201
        assert again.status_code == 401
        assert again.headers["content-type"] == "application/problem+json"
        assert garbage.status_code == 400
        events = await audit.events(broker.workspace_id, category="authentication")
        assert any(e.action == "agent.registration_refused" for e in events)

        # Everyone else is still served.
        result = await broker.hub.exec(broker.workspace_id, server_id, "echo ok", user=shell_user)
        assert result.stdout == b"ok\n"
    finally:
        agent.kill()


async def test_install_script_and_agent_file_are_served(broker: Broker) -> None:
    async with httpx.AsyncClient(base_url=broker.url, timeout=60) as http:
        script = await http.get("/agent/install.sh")
        pyz = await http.get("/agent/corral-agent.pyz")
    assert script.status_code == 200
    assert broker.url in script.text
    assert pyz.status_code == 200
    assert pyz.content[:2] == b"#!"


class SimulatedAgent:
    """A websh control client with a real credential, for what a real agent never does."""

    def __init__(self, broker: Broker, server_id: str, secret: str) -> None:
        self.url = broker.url.replace("http", "ws") + "/agent/v1/control"
        self.hello = Hello(agent_id=server_id, secret=secret, agent_version="sim", sysinfo={})

    async def connect(self) -> websockets.ClientConnection:
        ws = await websockets.connect(self.url)
        client = Connection(ConnectionKind.CONTROL, Side.CLIENT)
        client.send(self.hello)
        for payload in client.data_to_send():
            await ws.send(payload)
        welcome = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert welcome["type"] == "welcome"
        return ws


async def _registered_directly(broker: Broker, name: str) -> tuple[str, str]:
    token = await broker.registration_token()
    server, _, secret = await broker.runtime.services.agents.register(token, name=name)
    return server.id, secret


async def test_newer_connection_replaces_older(broker: Broker) -> None:
    server_id, secret = await _registered_directly(broker, "sim-1")
    sim = SimulatedAgent(broker, server_id, secret)
    first = await sim.connect()
    second = await sim.connect()
    with pytest.raises(websockets.ConnectionClosed) as info:
        while True:
            await asyncio.wait_for(first.recv(), 5)
    assert info.value.rcvd is not None and info.value.rcvd.code == 4010
    assert broker.hub.links[server_id].version == "sim"
    await second.close()


async def test_a_dropped_connection_is_a_disconnect_not_a_protocol_error(
    broker: Broker,
) -> None:
    """A host or network that goes away ends the TCP connection with no close frame: the
    agent is marked offline and ``agent.disconnected`` records 1005/1006; it did not break
    the protocol, so no ``agent.protocol_error``."""
    server_id, secret = await _registered_directly(broker, "sim-drop")
    ws = await SimulatedAgent(broker, server_id, secret).connect()
    ws.transport.abort()  # RST, no close frame
    await audited(broker, 1, server_id=server_id, action="agent.disconnected")
    events = await broker.runtime.services.audit.events(broker.workspace_id, server_id=server_id)
    actions = [e.action for e in events]
    assert "agent.protocol_error" not in actions
    (gone,) = [e for e in events if e.action == "agent.disconnected"]
    assert json.loads(gone.details)["close_code"] in (1005, 1006)


async def test_authenticated_agent_breaking_protocol_is_closed_and_audited(
    broker: Broker,
) -> None:
    server_id, secret = await _registered_directly(broker, "sim-2")
    sim = SimulatedAgent(broker, server_id, secret)
    for payload, code in (
        ("{nope", 4000),
        (json.dumps({"type": "launch_missiles"}), 4004),
        (b"\x7f" + b"x" * 2_000_000, 1009),
    ):
        ws = await sim.connect()
        await ws.send(payload)
        with pytest.raises(websockets.ConnectionClosed) as info:
            while True:
                await asyncio.wait_for(ws.recv(), 5)
        assert info.value.rcvd is not None
        assert info.value.rcvd.code in (code, 4008), payload[:20]
    # at least two of the three are protocol errors (fails on timeout otherwise)
    await audited(broker, 2, server_id=server_id, action="agent.protocol_error")
