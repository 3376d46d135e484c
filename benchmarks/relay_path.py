"""The broker's own work per keystroke, in one process, with no sockets and no TLS.

A live session is assembled from the broker's real pieces: two
:class:`~broker.websocket.WebSocketProtocol` objects (the person's WebSocket and the
agent's data channel) on transports that only collect what is written, the
:class:`~broker.agents.wire.Wire` and websh ``Connection`` of each, a
:class:`~broker.gateway.session.LiveSession` with its recording (a real file), its command
gate (the shell is at a prompt, so every key goes through the line tracker) and one
attached client served per message as ``GatewaySessions.serve`` does. Each round trip
feeds one masked client frame carrying a websh ``input`` of one key, checks that an
``input`` frame reached the agent's transport, feeds the agent's masked ``output`` echo
and checks that it reached the client's transport.

The figure is the CPU time per round trip (``time.process_time``): what the Python
layers above the transport cost, without the system calls, TLS and scheduling that
``gateway_vs_ssh.py`` adds (compare ``relay_floor.py`` for those). Deterministic enough to
compare two trees A/B on a loaded machine. Usage::

    .venv/bin/python benchmarks/relay_path.py [--trips 20000] [--runs 5] [--no-gate]
"""

# Harness code: it reaches into the protocol's fields to skip the HTTP handshake.

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from broker.agents.channels import DataChannel
from broker.agents.wire import Wire
from broker.enforce import gate_for
from broker.gateway.inbox import Inbox
from broker.gateway.participants import Client
from broker.gateway.recorder import AsciicastRecorder
from broker.gateway.session import LiveSession
from broker.gateway.terminal_ws import TerminalSockets
from broker.websocket import EXTENSION, WebSocketProtocol
from policies import Decision, Effect
from websh import (
    ChannelHello,
    ChannelKind,
    ChannelWelcome,
    ClientHello,
    ClientWelcome,
    Connection,
    ConnectionKind,
    Input,
    Output,
    Side,
)

PROMPT = b"\x1b]133;A\x07$ \x1b]133;B\x07"


class Collecting:
    """A transport that keeps what is written (and is never full)."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def close(self) -> None: ...

    def is_closing(self) -> bool:
        return False


class Allow:
    async def decide(self, line: str) -> Decision:
        return Decision(Effect.ALLOW, "bench", "", "")

    async def step_up(self, code: str) -> bool:
        return False

    async def approval(self, line: str, decision: Decision) -> bool:
        return False


def masked(payload: str | bytes) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    opcode = 0x1 if isinstance(payload, str) else 0x2
    assert len(data) < 126
    return bytes((0x80 | opcode, 0x80 | len(data))) + b"\0\0\0\0" + data


def protocol() -> tuple[WebSocketProtocol, Collecting]:
    config = SimpleNamespace(loaded_app=None, ws_max_size=1 << 20, root_path="")
    state = SimpleNamespace(connections=set(), tasks=set(), default_headers=[])
    ws = WebSocketProtocol(config, state, {})
    transport = Collecting()
    ws.connection_made(transport)  # type: ignore[arg-type]
    ws.scope = {"type": "websocket", "extensions": {EXTENSION: ws}}
    ws.accepted = True
    return ws, transport


def wire(kind: ConnectionKind, channel: ChannelKind | None = None) -> tuple[Wire, Any, Any]:
    ws, transport = protocol()
    server = Connection(kind, Side.SERVER, channel=channel) if channel else None
    connection = server or Connection(kind, Side.SERVER)
    return Wire(SimpleNamespace(scope=ws.scope), connection), ws, transport  # type: ignore[arg-type]


async def measure(trips: int, gate: bool, folder: Path) -> float:
    user_wire, user_ws, user_out = wire(ConnectionKind.USER)
    agent_wire, agent_ws, agent_out = wire(ConnectionKind.CHANNEL, ChannelKind.TERMINAL)
    user_peer = Connection(ConnectionKind.USER, Side.CLIENT)
    agent_peer = Connection(ConnectionKind.CHANNEL, Side.CLIENT, channel=ChannelKind.TERMINAL)
    user_peer.send(ClientHello(cols=80, rows=24, ticket="t" * 32))
    agent_peer.send(ChannelHello(channel_id="c" * 16, token="s" * 32))
    for peer, ws in ((user_peer, user_ws), (agent_peer, agent_ws)):
        for payload in peer.data_to_send():
            ws.data_received(masked(payload))
    assert await user_wire.receive() and await agent_wire.receive()
    await user_wire.send(ClientWelcome(session_id="s" * 16))
    await agent_wire.send(ChannelWelcome())
    recorder = AsciicastRecorder(folder / "bench.cast", cols=80, rows=24)
    live = LiveSession(
        session_id="s" * 16,
        workspace_id="w",
        user_id="u",
        server_id="v",
        unix_user="bench",
        credential_id="k",
        channel=DataChannel("c" * 16, ChannelKind.TERMINAL, agent_wire),
        recorder=recorder,
        recording_id="r",
        services=None,  # type: ignore[arg-type]  # nothing on the keystroke path uses it
        hub=None,  # type: ignore[arg-type]
        grace_seconds=3600,
        buffer_limit=1 << 20,
        on_end=lambda _: None,
    )
    if gate:
        live.gate = gate_for(live, Allow(), cols=80)
    live.start()
    client = Client(user_wire, "u", "k", read_only=False, cursor=0)
    live.clients.add(client)
    # as serve() wires a client; self is only used for a first or refused input (not here)
    handle = TerminalSockets._client_handler(None, live, client)  # type: ignore[arg-type]
    assert Inbox(user_wire, handle).listen()
    agent_peer.data_to_send()
    for peer, out, name in (
        (agent_peer, agent_out, b"channel_welcome"),
        (user_peer, user_out, b"client_welcome"),
    ):
        (welcome,) = [w for w in out.written if name in w]
        peer.receive(welcome[2:].decode())
    key = masked(_one(user_peer, Input(data=b"a")))
    echo = masked(_one(agent_peer, Output(data=b"a")))
    agent_ws.data_received(masked(_one(agent_peer, Output(data=PROMPT))))
    await asyncio.sleep(0.05)  # the gate's prompt bookkeeping settles
    agent_out.written.clear()
    user_out.written.clear()
    start = time.process_time()
    for _ in range(trips):
        user_ws.data_received(key)
        assert agent_out.written, "the key did not reach the agent"
        agent_out.written.clear()
        agent_ws.data_received(echo)
        assert user_out.written, "the echo did not reach the client"
        user_out.written.clear()
    used = time.process_time() - start
    recorder.close()
    return used / trips * 1e6


def _one(peer: Connection, message: Any) -> bytes:
    peer.send(message)
    (payload,) = peer.data_to_send()
    assert isinstance(payload, bytes)
    return payload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trips", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-gate", action="store_true", help="the session without its gate")
    args = parser.parse_args()
    figures = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.runs):
            figures.append(asyncio.run(measure(args.trips, not args.no_gate, Path(tmp))))
    runs = " ".join(f"{f:.1f}" for f in figures)
    print(f"broker Python per keystroke round trip: median {statistics.median(figures):.1f} us")
    print(f"  ({args.runs} runs of {args.trips}: {runs})")


if __name__ == "__main__":
    main()
