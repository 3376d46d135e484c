"""The gateway end to end: a real broker, a real agent process, real bash, and a real
WebSocket client (``websockets``) speaking the websh USER connection."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import time
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from api.sessions import gateway_of
from broker.gateway import GatewaySessions
from broker.store.models import AccessLevel, Role, TokenScope
from tests.integration.conftest import AgentProcess, Broker, register_agent
from websh import (
    ClientHello,
    ClientWelcome,
    Connection,
    ConnectionKind,
    ErrorMessage,
    Exit,
    Input,
    Message,
    Output,
    Ping,
    Resize,
    Resume,
    Side,
    Terminated,
)

pytestmark = pytest.mark.slow

SERVER = "test-host"
SHELL_USER = "corral-e2e"  # see the shell_user fixture: a clean home, not root's dotfiles


@dataclass
class Env:
    broker: Broker
    agent: AgentProcess
    server_id: str
    admin_token: str
    http: httpx.AsyncClient

    @property
    def services(self) -> Any:
        return self.broker.runtime.services

    @property
    def ws(self) -> str:
        return self.broker.workspace_id

    async def token(
        self, email: str, *, role: Role = Role.USER, scope: TokenScope = TokenScope.WRITE
    ) -> tuple[str, str]:
        user = await self.services.users.find_by_email(self.ws, email)
        if user is None:
            user = await self.services.users.create(self.ws, email, role=role)
        _, secret = await self.services.tokens.create(
            self.ws, user.id, name="t", scope=scope, expires_in_days=30
        )
        return user.id, secret

    async def open(self, token: str | None = None, **body: Any) -> httpx.Response:
        payload = {"server": SERVER, "unix_user": SHELL_USER, "cols": 80, "rows": 24, **body}
        return await self.http.post(
            "/api/v1/sessions", json=payload, headers=_auth(token or self.admin_token)
        )

    async def opened(self, token: str | None = None, **body: Any) -> dict[str, Any]:
        response = await self.open(token, **body)
        assert response.status_code == 201, response.text
        data: dict[str, Any] = response.json()
        return data

    async def ticket(self, session_id: str, token: str | None = None) -> httpx.Response:
        return await self.http.post(
            f"/api/v1/sessions/{session_id}/tickets", headers=_auth(token or self.admin_token)
        )

    async def actions(self) -> list[tuple[str, str]]:
        return await _audit(self, self.ws)


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


#: What the agent's bash prints at the end of every prompt (OSC 133;B).
PROMPT_END = b"\x1b]133;B\x07"


class Term:
    """A websh USER client over a real WebSocket."""

    def __init__(self, ws: ClientConnection, welcome: ClientWelcome, conn: Connection) -> None:
        self.ws = ws
        self.welcome = welcome
        self.conn = conn
        self.out = bytearray()
        self.events: list[Message] = []

    @classmethod
    async def connect(cls, url: str, cols: int = 80, rows: int = 24) -> Term:
        ws = await websockets.connect(url, max_size=4 * 1024 * 1024)
        conn = Connection(ConnectionKind.USER, Side.CLIENT)
        conn.send(ClientHello(cols=cols, rows=rows))
        for payload in conn.data_to_send():
            await ws.send(payload)
        conn.receive(await asyncio.wait_for(ws.recv(), 10))
        (welcome,) = conn.events_received()
        assert isinstance(welcome, ClientWelcome)
        return cls(ws, welcome, conn)

    async def send(self, message: Message) -> None:
        self.conn.send(message)
        for payload in self.conn.data_to_send():
            await self.ws.send(payload)

    async def type(self, text: str) -> None:
        await self.send(Input(data=text.encode()))

    async def next(self) -> Message:
        while True:
            self.conn.receive(await self.ws.recv())
            for event in self.conn.events_received():
                if isinstance(event, Output):
                    self.out += event.data
                else:
                    self.events.append(event)
                return event

    async def until(self, needle: bytes, timeout: float = 10) -> None:
        async def loop() -> None:
            while needle not in self.out:
                await self.next()

        await asyncio.wait_for(loop(), timeout)

    def prompts(self) -> int:
        """How many prompts the shell has shown so far (the agent's prompt-end mark)."""
        return self.out.count(PROMPT_END)

    async def until_prompt(self, seen: int, timeout: float = 10) -> None:
        """Wait for a prompt after the first ``seen``. The command gate discards a line
        typed while a command still runs (it was never inspected), so a test that types
        its next command on seeing the last one's output, before the prompt, races it."""

        async def loop() -> None:
            while self.prompts() <= seen:
                await self.next()

        await asyncio.wait_for(loop(), timeout)

    async def final(self, timeout: float = 10) -> Message:
        async def loop() -> Message:
            while True:
                event = await self.next()
                if isinstance(event, (Exit, Terminated)):
                    return event

        return await asyncio.wait_for(loop(), timeout)


async def close_code(
    url: str, messages: list[str | bytes] | None = None, hello: bool = True
) -> int:
    """Connect, send a hello (and ``messages``), return the close code the broker chose."""
    async with websockets.connect(url, max_size=4 * 1024 * 1024) as ws:
        if hello:
            conn = Connection(ConnectionKind.USER, Side.CLIENT)
            conn.send(ClientHello(cols=80, rows=24))
            for payload in conn.data_to_send():
                await ws.send(payload)
        for message in messages or []:
            await ws.send(message)
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        except websockets.ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd is not None else None
    assert code is not None
    return code


async def stalled_client(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    path = url.split("127.0.0.1:", 1)[1]
    port, _, rest = path.partition("/")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", int(port)))
    reader, writer = await asyncio.open_connection(sock=sock, limit=2**20)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET /{rest} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    assert b" 101 " in await reader.readuntil(b"\r\n\r\n")
    conn = Connection(ConnectionKind.USER, Side.CLIENT)
    conn.send(ClientHello(cols=80, rows=24))
    writer.write(_masked_text(conn.data_to_send()[0]))
    await reader.readexactly(2)  # the welcome's frame header ...
    await asyncio.sleep(0.2)
    writer.write(_masked_text('{"type":"resume","offset":0}'))
    await writer.drain()
    return reader, writer


def _masked_text(payload: str | bytes) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    assert len(data) < 126
    mask = os.urandom(4)
    return (
        bytes([0x81, 0x80 | len(data)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    )


def cast_events(text: str) -> tuple[dict[str, Any], list[list[Any]]]:
    lines = text.splitlines()
    return json.loads(lines[0]), [json.loads(line) for line in lines[1:]]


async def recorded_output(env: Env, session_id: str) -> tuple[dict[str, Any], list[list[Any]]]:
    listing = await env.http.get(
        "/api/v1/recordings", params={"session_id": session_id}, headers=_auth(env.admin_token)
    )
    (recording,) = listing.json()["recordings"]
    response = await env.http.get(
        f"/api/v1/recordings/{recording['id']}/download", headers=_auth(env.admin_token)
    )
    assert response.status_code == 200
    return cast_events(response.text)


async def wait_ended(env: Env, session_id: str, timeout: float = 10) -> None:
    gateway = gateway_of(env.broker.server.config.app)  # type: ignore[union-attr]
    live = gateway.live.get(session_id)
    if live is not None:
        await asyncio.wait_for(live.ended.wait(), timeout)


@pytest.fixture
async def env(
    broker: Broker, agent_files: tuple[Path, Path], shell_user: str
) -> AsyncIterator[Env]:
    config, log = agent_files
    done = await asyncio.to_thread(
        register_agent, broker.url, await broker.registration_token(), config, SERVER
    )
    assert done.returncode == 0, done.stderr
    server_id = tomllib.loads(config.read_text())["agent_id"]
    agent = AgentProcess(config, log)
    agent.start()
    try:
        await broker.hub.wait_connected(server_id, 20)
        services = broker.runtime.services
        admin = await services.users.find_by_email(broker.workspace_id, "admin@localhost")
        _, token = await services.tokens.create(
            broker.workspace_id, admin.id, name="test", scope=TokenScope.ADMIN, expires_in_days=30
        )
        async with httpx.AsyncClient(base_url=broker.url, timeout=20) as http:
            yield Env(broker, agent, server_id, token, http)
    finally:
        agent.kill()


def inject_gateway(env: Env, **options: Any) -> GatewaySessions:
    app = env.broker.server.config.app  # type: ignore[union-attr]
    settings = env.broker.runtime.settings
    gateway = GatewaySessions(
        env.services,
        env.broker.hub,
        recordings_dir=settings.data_dir / "recordings",
        **options,
    )
    app.state.gateway = gateway
    return gateway


# --------------------------------------------------------------------------- tests


async def test_open_type_resize_exit_two_sessions_and_recording(env: Env) -> None:
    first = await env.opened(server=SERVER)
    second = await env.opened(server=env.server_id, cols=100, rows=30)
    assert first["websocket_url"].startswith("ws://127.0.0.1:")
    assert "/terminal?ticket=" in first["websocket_url"]
    assert 10 <= first["expires_in"] <= 60
    one = await Term.connect(first["websocket_url"])
    two = await Term.connect(second["websocket_url"], cols=100, rows=30)
    assert one.welcome.session_id == first["session_id"]

    await one.until_prompt(0)
    await two.until_prompt(0)
    shown_one, shown_two = one.prompts(), two.prompts()
    await one.type("echo hel''lo-one\n")
    await two.type("echo hel''lo-two; stty size\n")
    await one.until(b"hello-one\r\n")
    await two.until(b"30 100")
    assert b"hello-two" not in one.out and b"hello-one" not in two.out
    await one.until_prompt(shown_one)
    await two.until_prompt(shown_two)

    await one.send(Resize(cols=132, rows=43))
    shown_one = one.prompts()
    await one.type("stty size\n")
    await one.until(b"43 132")
    await one.until_prompt(shown_one)
    await one.type("exit 3\n")
    final = await one.final()
    assert isinstance(final, Exit) and final.status == 3
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await one.next()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000

    await two.type("exit 0\n")
    assert isinstance(await two.final(), Exit)
    await wait_ended(env, first["session_id"])
    await wait_ended(env, second["session_id"])

    row = await env.services.sessions.get(env.ws, first["session_id"])
    assert str(row.status) == "closed" and row.close_reason == "exit status 3"
    header, events = await recorded_output(env, first["session_id"])
    assert header["version"] == 2 and header["width"] == 80 and header["height"] == 24
    assert isinstance(header["timestamp"], int) and "TERM" in header["env"]
    assert [e[2] for e in events if e[1] == "r"] == ["132x43"]
    output = "".join(e[2] for e in events if e[1] == "o")
    assert output.encode() == bytes(one.out)
    times = [e[0] for e in events]
    assert times == sorted(times)


async def test_drop_and_resume_replays_exactly_the_missed_bytes(env: Env) -> None:
    opened = await env.opened()
    sid = opened["session_id"]
    term = await Term.connect(opened["websocket_url"])
    await term.type("sleep 0.5; for i in $(seq 1 400); do echo line$i; done; echo D''ONE\n")
    await term.until(b"D''ONE")  # the echo of the command line, before its output
    term.ws.transport.abort()  # drop, no close
    held = bytes(term.out)
    await asyncio.sleep(1.2)  # the loop runs while nobody is attached

    ticket = await env.ticket(sid)
    assert ticket.status_code == 201
    again = await Term.connect(ticket.json()["websocket_url"])
    await again.send(Resume(offset=len(held)))
    await again.until(b"DONE\r\n")
    await again.type("exit 0\n")
    assert isinstance(await again.final(), Exit)
    await wait_ended(env, sid)

    whole = held + bytes(again.out)
    assert whole.count(b"line400\r\n") == 1 and whole.count(b"line1\r\n") == 1
    _, events = await recorded_output(env, sid)
    assert "".join(e[2] for e in events if e[1] == "o").encode() == whole


async def test_bad_tickets_sessions_and_frames(env: Env) -> None:
    now = [0.0]
    gateway = inject_gateway(env, clock=lambda: now[0], ticket_ttl=30.0)
    opened = await env.opened()
    sid, url = opened["session_id"], opened["websocket_url"]
    base = url.split("?")[0]

    assert await close_code(base + "?ticket=not-a-ticket") == 4001
    assert await close_code(base) == 4001
    # a valid ticket on another session's path
    stray = await env.ticket(sid)
    other = base.replace(sid, "0" * 32)
    assert await close_code(other + "?" + stray.json()["websocket_url"].split("?")[1]) == 4040
    # the open ticket, used once, then reused
    term = await Term.connect(url)
    await term.type("echo still-here\n")
    await term.until(b"still-here\r\n")
    assert await close_code(url) == 4001
    # an expired ticket
    late = await env.ticket(sid)
    now[0] += 31
    assert await close_code(late.json()["websocket_url"]) == 4001
    # oversized frames close that connection only
    big = await env.ticket(sid)
    assert await close_code(big.json()["websocket_url"], [b"\x01" + b"x" * 1_200_000]) == 4008
    text = await env.ticket(sid)
    assert await close_code(text.json()["websocket_url"], ["{" + " " * 70_000 + "}"]) == 4008
    await term.type("echo after-abuse\n")
    await term.until(b"after-abuse\r\n")

    # unknown session and another workspace's session: 404, audited
    assert (await env.ticket("0" * 32)).status_code == 404
    services = env.services
    other_ws = await services.workspaces.create("elsewhere")
    stranger = await services.users.create(other_ws.id, "x@elsewhere", role=Role.SUPERUSER)
    _, foreign = await services.tokens.create(
        other_ws.id, stranger.id, name="t", scope=TokenScope.ADMIN, expires_in_days=30
    )
    assert (await env.ticket(sid, foreign)).status_code == 404
    assert (
        await env.http.delete(f"/api/v1/sessions/{sid}", headers=_auth(foreign))
    ).status_code == 404
    assert sid in gateway.live

    mine = await _audit(env, env.ws)
    assert ("session.ticket_refused", "denied") in mine
    theirs = await _audit(env, other_ws.id)
    assert ("session.unavailable", "denied") in theirs
    assert ("session.client_protocol_error", "denied") in mine

    await term.type("exit 0\n")
    assert isinstance(await term.final(), Exit)


async def _audit(env: Env, workspace_id: str) -> list[tuple[str, str]]:
    from sqlmodel import select

    from broker.store.models import AuditEvent

    async with env.services.db.transaction() as s:
        rows = await s.exec(select(AuditEvent).where(AuditEvent.workspace_id == workspace_id))
        return [(r.action, r.outcome) for r in rows.all()]


async def test_access_levels_at_open(env: Env) -> None:
    services = env.services
    reader_id, reader = await env.token("reader@example.com")
    await services.grants.grant(
        env.ws, level=AccessLevel.READ_ONLY, user_id=reader_id, server_pattern="test-*"
    )
    refused = await env.open(reader, unix_user="nobody")
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"

    dev_id, dev = await env.token("dev@example.com")
    await services.grants.grant(
        env.ws, level=AccessLevel.TERMINAL, user_id=dev_id, server_tag="env=test"
    )
    assert (await env.open(dev, unix_user="root")).status_code == 403  # root needs full

    _, nobody = await env.token("nobody@example.com")
    assert (await env.open(nobody, unix_user="nobody")).status_code == 403

    ops_id, ops = await env.token("ops@example.com")
    group = await services.groups.create(env.ws, "ops")
    await services.groups.add_member(env.ws, group.id, ops_id, actor=_sys())
    await services.grants.grant(
        env.ws, level=AccessLevel.FULL, group_id=group.id, server_pattern="test-h*"
    )
    ok = await env.opened(ops, unix_user="root")  # only full may open a root shell
    term = await Term.connect(ok["websocket_url"])
    await term.type("exit 0\n")
    assert isinstance(await term.final(), Exit)

    _, readscope = await env.token("ops@example.com", scope=TokenScope.READ)
    assert (await env.open(readscope)).status_code == 403
    denied = [a for a in await _audit(env, env.ws) if a[0] == "session.open_denied"]
    assert denied == [("session.open_denied", "denied")] * 3


def _sys() -> Any:
    from broker.audit import SYSTEM

    return SYSTEM


async def _terminated_within(term: Term, seconds: float, started: float) -> tuple[Terminated, int]:
    final = await term.final(timeout=seconds)
    assert isinstance(final, Terminated)
    assert time.monotonic() - started < seconds
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await term.next()
    assert closed.value.rcvd is not None
    return final, closed.value.rcvd.code


async def test_revocation_ends_sessions_within_a_second(env: Env) -> None:
    services = env.services
    user_id, first_token = await env.token("u@example.com")
    _, second_token = await env.token("u@example.com")
    grant = await services.grants.grant(
        env.ws, level=AccessLevel.FULL, user_id=user_id, server_pattern="*"
    )
    other_id, other_token = await env.token("v@example.com")
    await services.grants.grant(
        env.ws, level=AccessLevel.FULL, user_id=other_id, server_tag="env=test"
    )
    admin_term = await Term.connect((await env.opened())["websocket_url"])
    by_first = await Term.connect((await env.opened(first_token))["websocket_url"])
    by_second = await Term.connect((await env.opened(second_token))["websocket_url"])
    by_other = await Term.connect((await env.opened(other_token))["websocket_url"])
    for term in (admin_term, by_first, by_second, by_other):
        await term.type("echo ready\n")
        await term.until(b"ready\r\n")

    second_id = (await services.tokens.list(env.ws, user_id=user_id))[1].id
    started = time.monotonic()
    response = await env.http.delete(f"/api/v1/tokens/{second_id}", headers=_auth(first_token))
    assert response.status_code == 200
    final, code = await _terminated_within(by_second, 1.0, started)
    assert "revoked" in final.reason and code == 4042

    started = time.monotonic()
    response = await env.http.delete(f"/api/v1/grants/{grant.id}", headers=_auth(env.admin_token))
    assert response.status_code == 200
    final, code = await _terminated_within(by_first, 1.0, started)
    assert final.reason == "access revoked" and code == 4042

    started = time.monotonic()
    response = await env.http.post(
        f"/api/v1/users/{other_id}/disable", headers=_auth(env.admin_token)
    )
    assert response.status_code == 200
    final, code = await _terminated_within(by_other, 1.0, started)
    assert final.reason == "user disabled"

    await admin_term.type("echo unaffected\n")
    await admin_term.until(b"unaffected\r\n")
    live = gateway_of(env.broker.server.config.app)  # type: ignore[union-attr]
    assert len(live.sessions(env.ws)) == 1
    actions = await _audit(env, env.ws)
    assert actions.count(("session.terminated", "success")) == 3
    await admin_term.type("exit 0\n")
    assert isinstance(await admin_term.final(), Exit)


async def test_slow_client_is_dropped_others_and_recording_unaffected(env: Env) -> None:
    inject_gateway(env, buffer_limit=512 * 1024)
    opened = await env.opened()
    sid = opened["session_id"]
    fast = await Term.connect(opened["websocket_url"])
    slow_url = (await env.ticket(sid)).json()["websocket_url"]
    # A raw socket with a small fixed receive buffer that stops reading after the handshake:
    # client libraries (and loopback autotuning) would otherwise absorb megabytes.
    reader, writer = await stalled_client(slow_url)
    # The slow client now never reads; the fast one reads 24 MB of output.
    size = 24 * 1024 * 1024
    await fast.type(f"head -c {size} /dev/zero | tr '\\0' a; echo; echo E''ND\n")
    await fast.until(b"END\r\n", timeout=40)
    assert fast.out.count(b"a") >= size

    gateway = gateway_of(env.broker.server.config.app)  # type: ignore[union-attr]
    assert len(gateway.live[sid].clients) == 1  # the stalled client was dropped
    data = await asyncio.wait_for(reader.read(), 20)  # now drain it: ends with a 4029 close
    assert data.endswith(b"\x88\x19\x0f\xbdclient too slow; resume")  # close 4029
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()

    await fast.type("exit 0\n")
    assert isinstance(await fast.final(timeout=20), Exit)
    await wait_ended(env, sid)
    _, events = await recorded_output(env, sid)
    assert "".join(e[2] for e in events if e[1] == "o").encode() == bytes(fast.out)
    assert ("session.client_dropped", "failure") in await _audit(env, env.ws)
    assert not any(isinstance(e, ErrorMessage) for e in fast.events)


async def test_an_idle_session_pings_its_client_and_keeps_working(env: Env) -> None:
    """The broker does not ping WebSockets itself (broker/serving.py), so a quiet session
    sends websh pings: a proxy in front sees traffic and does not close it."""
    inject_gateway(env, idle_ping_seconds=0.5)
    opened = await env.opened(server=SERVER)
    term = await Term.connect(opened["websocket_url"])
    await term.type("echo rea''dy\n")
    await term.until(b"ready\r\n")

    async def ping() -> Ping:
        while True:
            event = await term.next()
            if isinstance(event, Ping):
                return event

    first = await asyncio.wait_for(ping(), 5)
    answers = [p for p in term.conn.data_to_send() if isinstance(p, str)]
    assert any('"pong"' in p for p in answers)  # websh answers it by itself
    second = await asyncio.wait_for(ping(), 5)
    assert second.nonce > first.nonce
    await term.type("echo sti''ll-here\n")
    await term.until(b"still-here\r\n")
    await term.type("exit\n")
    assert isinstance(await term.final(), Exit)
