"""The agent hub: who is connected, over their control connections.

One control connection per server; a newer one replaces the older (close 4010). Presence,
system info and metrics go to the store (:mod:`broker.agents.presence`); every refusal
goes to the audit log of the workspace it can be attributed to (a credential's, or the
server id the agent claimed) and to the security log otherwise. One sweeper task for the
whole hub writes the agents' reports, pings the quiet and closes the silent. The data
channels the agents dial back are opened and paired by :mod:`broker.agents.channels`, a
base of :class:`AgentHub`.

The hub never decides access: callers have already asked the policy layer. Its per-message
work (``_heard``) must stay synchronous and cheap: a broker holds thousands of agents.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from starlette.websockets import WebSocket

from broker.agents.channels import ChannelDialing
from broker.agents.presence import Presence, ServerRef
from broker.agents.wire import Closed, Wire, peer_address
from broker.audit import Actor, Category, Outcome
from broker.errors import AuthenticationFailed
from broker.services import Services
from broker.store.models import Server
from websh import (
    CloseChannel,
    CloseCode,
    Connection,
    ConnectionKind,
    ErrorMessage,
    Hello,
    Limits,
    Message,
    Metrics,
    Ping,
    Pong,
    Side,
    SysInfo,
    Welcome,
)

__all__ = ["CONTROL_PATH", "HEARTBEAT_INTERVAL", "AgentHub", "AgentLink"]

log = logging.getLogger("corral.agents")

CONTROL_PATH = "/agent/v1/control"
#: Seconds between an agent's pings (told in ``welcome``); silence for three of them ends
#: the link. 30 s, not 15: a host or network that died is found sooner by the kernel's TCP
#: keepalive (broker/serving.py, about 60 s), so this only has to catch an agent process
#: that hangs with its socket open, and every ping costs the broker a TLS read, a pong and
#: a TLS write (1,000 agents at 15 s: 133 messages a second at rest).
HEARTBEAT_INTERVAL = 30.0
#: Closes that are no protocol error worth an audit event.
#: Ends that are not the agent breaking the protocol: a proper close, a newer connection,
#: and a connection that ended without a close code (1005: an empty close frame; 1006:
#: TCP closed or reset, as when the host or the network goes away). ``agent.disconnected``
#: records every close code, these included.
_ORDINARY_CLOSE = frozenset(
    {CloseCode.NORMAL, CloseCode.GOING_AWAY, CloseCode.REPLACED, 1005, 1006}
)


@dataclass(eq=False, slots=True)
class AgentLink:
    """One connected agent. Kept small: a broker holds thousands of these at rest.

    It is also what the ``Wire`` calls per message once the hub listens (``heard`` and
    ``left``): one reference instead of a closure or two bound callables per agent."""

    server: ServerRef
    credential_id: str
    wire: Wire
    version: str
    channels: tuple[str, ...]
    hub: AgentHub
    last_heard: float = 0.0
    pinged: int = 0

    def heard(self, message: Message) -> None:
        self.hub._heard(self, message)

    def left(self, closed: Closed) -> None:
        self.hub._left(self, closed)


class AgentHub(ChannelDialing):
    """Every agent connected to this broker, and the data channels they dial back."""

    def __init__(
        self,
        services: Services,
        *,
        heartbeat_interval: float = HEARTBEAT_INTERVAL,
        metrics_interval: float = 60.0,
        report_interval: float = 5.0,
        hello_timeout: float = 10.0,
        channel_timeout: float = 15.0,
        limits: Limits | None = None,
    ) -> None:
        super().__init__()
        self.services = services
        self.heartbeat_interval = heartbeat_interval
        self.metrics_interval = metrics_interval
        self.hello_timeout = hello_timeout
        self.channel_timeout = channel_timeout
        self.limits = limits or Limits()
        #: How often metrics and system info are written (all agents in one transaction).
        self.report_interval = min(report_interval, metrics_interval or report_interval)
        self.links: dict[str, AgentLink] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._connected = asyncio.Condition()
        #: Detaching agents served per message (``_left``), awaited by ``close_all``.
        self._leaving: set[asyncio.Task[None]] = set()
        #: The store side: presence, reports and departures, one writer at a time.
        self.presence = Presence(services, linked=self.links.__contains__)

    # ----------------------------------------------------------- control side

    async def serve_control(self, websocket: WebSocket) -> None:
        await websocket.accept()
        wire = Wire(websocket, Connection(ConnectionKind.CONTROL, Side.SERVER, limits=self.limits))
        source = peer_address(websocket)
        try:
            hello = await asyncio.wait_for(wire.receive(), self.hello_timeout)
        except (Closed, TimeoutError) as exc:
            # A slow hello is not a bad credential: let the agent retry on its normal backoff.
            code = exc.code if isinstance(exc, Closed) else CloseCode.HEARTBEAT_TIMEOUT
            await wire.close(code, "hello expected")
            log.warning("agent from %s refused before hello: close %s", source, int(code))
            return
        if not isinstance(hello, Hello):
            await wire.close(CloseCode.PROTOCOL_ERROR, "hello expected")
            return
        async with self.presence.turn:
            if wire.gone:
                log.info("agent from %s left before its welcome", source)
                return
            link = await self._authenticate(wire, hello, source)
            if link is None:
                return
            await self._attach(link, dict(hello.sysinfo))
        del hello  # its sysinfo is in the store now; nothing per agent keeps it
        # Where the WebSocket layer can call us per message, the agent is served without
        # a task or a suspended coroutine chain of its own (1,000 idle agents: 1,000
        # fewer tasks and stacks); elsewhere (other ASGI servers, test clients) a loop.
        listen = getattr(wire, "listen", None)
        if listen is not None and listen(link):
            return
        ended: int | None = None
        try:
            ended = await self._control_loop(link)
        finally:
            await self._detach(link, ended)

    async def _authenticate(self, wire: Wire, hello: Hello, source: str) -> AgentLink | None:
        try:
            credential, server = await self.services.agents.authenticate(hello.secret)
            if server.id != hello.agent_id:
                raise AuthenticationFailed("credential belongs to another server")
        except AuthenticationFailed as exc:
            await self._audit_refusal(hello.agent_id, str(exc), source)
            await wire.send(ErrorMessage(code="unauthenticated", message="agent not recognised"))
            await wire.close(CloseCode.UNAUTHENTICATED, "unauthenticated")
            return None
        await wire.send(
            Welcome(
                heartbeat_interval=self.heartbeat_interval, metrics_interval=self.metrics_interval
            )
        )
        return AgentLink(
            ServerRef(server.id, server.workspace_id),
            credential.id,
            wire,
            hello.agent_version,
            hello.channels,
            self,
            self._now(),
        )

    async def _audit_refusal(self, claimed_server: str, reason: str, source: str) -> None:
        """A refused agent is audited in the workspace of the server it claimed to be."""
        async with self.services.db.transaction() as s:
            server = await s.get(Server, claimed_server)
        if server is None:
            log.warning("unknown agent %r from %s refused: %s", claimed_server[:64], source, reason)
            return
        await self.services.audit.emit(
            server.workspace_id,
            Category.AUTHENTICATION,
            "agent.connect_refused",
            outcome=Outcome.DENIED,
            actor=Actor("agent", server.id),
            server_id=server.id,
            details={"reason": reason, "source": source},
        )

    async def _attach(self, link: AgentLink, sysinfo: dict[str, Any]) -> None:
        server = link.server
        self.presence.forget_report(server)  # a replaced link's unflushed report is older
        previous = self.links.get(server.id)
        self.links[server.id] = link
        if previous is not None:
            await previous.wire.close(CloseCode.REPLACED, "replaced by a newer connection")
        await self.presence.online(
            server, link.credential_id, link.version, sysinfo, replaced=previous is not None
        )
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(self._sweep(), name="agent-hub-sweeper")
        async with self._connected:
            self._connected.notify_all()

    async def _detach(self, link: AgentLink, code: int | None = None) -> None:
        """Mark the server offline (unless a newer link owns it) and audit the end with
        ``code``, the close code the connection ended with (else the websh one); returns
        once that is written (departures that come together are written together)."""
        server = link.server
        if self.links.get(server.id) is not link:
            return  # replaced: the newer link owns the presence
        del self.links[server.id]
        ended = link.wire.connection.close_code if code is None else code
        await self.presence.departed(server, link.credential_id, ended)

    async def _control_loop(self, link: AgentLink) -> int:
        """Read the agent's messages until it leaves; the close code. The only task per
        agent: liveness and the store writes are the sweeper's, for all agents at once."""
        receive = link.wire.receive
        while True:
            try:
                message = await receive()
            except Closed as closed:
                if closed.code not in _ORDINARY_CLOSE:
                    await self._audit_protocol_error(link, closed)
                return closed.code
            self._heard(link, message)

    def _left(self, link: AgentLink, closed: Closed) -> None:
        """A listened-to agent's connection ended: audit and detach in a task of its own."""
        task = asyncio.get_running_loop().create_task(self._leave(link, closed))
        self._leaving.add(task)
        task.add_done_callback(self._leaving.discard)

    async def _leave(self, link: AgentLink, closed: Closed) -> None:
        try:
            if closed.code not in _ORDINARY_CLOSE:
                await self._audit_protocol_error(link, closed)
        finally:
            await self._detach(link, closed.code)

    def _heard(self, link: AgentLink, message: Message) -> None:
        """One message from a welcomed agent. Synchronous and cheap: at rest a broker
        with 1,000 agents gets some 50 of these a second, nearly all pings (answered by
        the websh ``Connection`` itself) and metrics (kept for the sweeper's next write)."""
        link.last_heard = self._now()
        cls = type(message)
        if cls is Ping or cls is Pong:
            return
        if isinstance(message, Metrics | SysInfo):
            self.presence.report(link.server, message)
        elif isinstance(message, CloseChannel):
            self._fail_pending(message.channel_id, "agent closed the channel")
        elif isinstance(message, ErrorMessage) and message.channel_id:
            self._fail_pending(message.channel_id, message.message)

    async def _sweep(self) -> None:
        """Every ``report_interval`` (at most every heartbeat): write what the agents
        reported, close the silent, ping the quiet.

        One task and one transaction for the whole hub instead of a watchdog task per
        agent and a transaction per metrics message (``benchmarks/idle_agents.py``).
        The agent pings every ``heartbeat_interval`` itself (and our pong proves us alive
        to it), so a ping of ours is only sent to an agent quiet for a whole interval;
        one silent for three intervals is closed.
        """
        tick = min(self.heartbeat_interval, self.report_interval)
        while True:
            await asyncio.sleep(tick)
            await self.presence.flush()
            now = self._now()
            for link in list(self.links.values()):
                silent = now - link.last_heard
                if silent > 3 * self.heartbeat_interval:
                    await link.wire.close(CloseCode.HEARTBEAT_TIMEOUT, "no heartbeat")
                elif silent >= self.heartbeat_interval:
                    link.pinged += 1
                    with contextlib.suppress(Closed):
                        await link.wire.send(Ping(nonce=link.pinged, ts=now))

    async def _audit_protocol_error(self, link: AgentLink, closed: Closed) -> None:
        server = link.server
        await self.services.audit.emit(
            server.workspace_id,
            Category.RESOURCE_ACCESS,
            "agent.protocol_error",
            outcome=Outcome.FAILURE,
            actor=Actor("agent", server.id, link.credential_id),
            server_id=server.id,
            details={"close_code": closed.code, "reason": closed.reason},
        )

    async def wait_connected(self, server_id: str, timeout: float) -> AgentLink:
        async def present() -> AgentLink:
            async with self._connected:
                await self._connected.wait_for(lambda: server_id in self.links)
                return self.links[server_id]

        return await asyncio.wait_for(present(), timeout)

    async def close_all(self, code: int = CloseCode.SERVICE_RESTART, reason: str = "") -> None:
        """Graceful shutdown: end every data channel and tell every agent to come back
        (they reconnect with jitter; terminals wait on the host for their grace period)."""
        for channel in list(self.channels):
            await channel.close(code, reason or "broker restarting")
        for link in list(self.links.values()):
            await link.wire.close(code, reason or "broker restarting")
        if self._leaving:
            await asyncio.wait(set(self._leaving), timeout=10)
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        await self.presence.flush()

    async def disconnect(self, server_id: str, reason: str) -> None:
        """Hang up a server's agent for good (it was removed): its credential is gone, so
        its reconnects are refused."""
        link = self.links.get(server_id)
        if link is not None:
            await link.wire.close(CloseCode.REVOKED, reason[:100])

    def _now(self) -> float:
        return asyncio.get_running_loop().time()
