"""Data channels: asking a connected agent to dial back, pairing the dial-back, exec.

One session, one data connection: each terminal or exec gets its own WebSocket that the
agent dials back to ``CHANNEL_PATH`` (so each has its own TCP flow control). To open one
the hub sends ``open_channel`` with a one-time token on the agent's control connection and
waits; the agent's ``channel_hello`` must name a pending channel and carry its token
(compared in constant time), else the connection is refused. An agent's ``close_channel``
or channel error on its control connection fails the pending open (``AgentOffline``).

:class:`ChannelDialing` is a base of :class:`~broker.agents.hub.AgentHub`, which sets the
state declared below. It must never decide access (callers have asked the policy layer)
and never read a channel's messages once it is paired, except for :meth:`exec`'s own.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.websockets import WebSocket

from broker.agents.errors import AgentOffline
from broker.agents.wire import Closed, Wire, peer_address
from broker.store.models import new_id
from websh import (
    Attach,
    ChannelHello,
    ChannelKind,
    ChannelWelcome,
    CloseCode,
    Connection,
    ConnectionKind,
    ErrorMessage,
    Exit,
    Limits,
    Message,
    OpenChannel,
    Side,
    Stderr,
    Stdout,
)

if TYPE_CHECKING:
    from broker.agents.hub import AgentLink

__all__ = ["CHANNEL_PATH", "ChannelDialing", "DataChannel", "ExecResult"]

log = logging.getLogger("corral.agents")

CHANNEL_PATH = "/agent/v1/channel"


@dataclass(eq=False)
class DataChannel:
    """A paired data channel: the opener sends and receives websh messages on it."""

    channel_id: str
    kind: ChannelKind
    wire: Wire
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, message: Message) -> None:
        await self.wire.send(message)

    async def receive(self) -> Message:
        return await self.wire.receive()

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        await self.wire.close(code, reason)
        self.done.set()


@dataclass(frozen=True)
class ExecResult:
    exit: Exit
    stdout: bytes
    stderr: bytes


@dataclass
class _Pending:
    workspace_id: str
    server_id: str
    token: str
    kind: ChannelKind
    attach_offset: int | None
    future: asyncio.Future[DataChannel]


class ChannelDialing:
    """Opening data channels through the agents' control links (state set by ``AgentHub``)."""

    links: dict[str, AgentLink]
    limits: Limits
    hello_timeout: float
    channel_timeout: float

    def __init__(self) -> None:
        #: Channels asked for and not yet dialed back, by channel id.
        self._pending: dict[str, _Pending] = {}
        #: Paired channels still open (``close_all`` ends them).
        self.channels: set[DataChannel] = set()

    async def open_channel(
        self,
        workspace_id: str,
        server_id: str,
        kind: ChannelKind,
        *,
        user: str,
        cols: int | None = None,
        rows: int | None = None,
        command: str | tuple[str, ...] | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        channel_id: str | None = None,
        attach_offset: int | None = None,
    ) -> DataChannel:
        """Ask the agent to dial back a channel and wait until it has.

        With ``channel_id`` and ``attach_offset`` it re-attaches a terminal the agent kept
        alive, replaying its output from that offset.
        """
        link = self.links.get(server_id)
        if link is None or link.server.workspace_id != workspace_id:
            raise AgentOffline(f"server {server_id} has no connected agent")
        ident = channel_id or new_id()
        token = secrets.token_hex(24)
        future: asyncio.Future[DataChannel] = asyncio.get_running_loop().create_future()
        self._pending[ident] = _Pending(workspace_id, server_id, token, kind, attach_offset, future)
        try:
            await link.wire.send(
                OpenChannel(
                    channel_id=ident,
                    kind=kind,
                    token=token,
                    path=CHANNEL_PATH,
                    user=user,
                    cols=cols,
                    rows=rows,
                    command=command,
                    env=env or {},
                    timeout=timeout,
                )
            )
            return await asyncio.wait_for(future, self.channel_timeout)
        except Closed:
            raise AgentOffline(f"server {server_id}'s agent went away") from None
        except TimeoutError:
            raise AgentOffline(f"server {server_id}'s agent did not open the channel") from None
        finally:
            self._pending.pop(ident, None)

    def _fail_pending(self, channel_id: str, reason: str) -> None:
        pending = self._pending.get(channel_id)
        if pending is not None and not pending.future.done():
            pending.future.set_exception(AgentOffline(reason))

    async def serve_channel(self, websocket: WebSocket) -> None:
        await websocket.accept()
        wire = Wire(websocket, Connection(ConnectionKind.CHANNEL, Side.SERVER, limits=self.limits))
        try:
            hello = await asyncio.wait_for(wire.receive(), self.hello_timeout)
        except (Closed, TimeoutError):
            await wire.close(CloseCode.UNAUTHENTICATED, "channel_hello expected")
            return
        pending = self._pending.get(hello.channel_id) if isinstance(hello, ChannelHello) else None
        if (
            not isinstance(hello, ChannelHello)
            or pending is None
            or pending.future.done()
            or not hmac.compare_digest(hello.token, pending.token)
        ):
            log.warning(
                "data channel from %s refused: unknown channel or token", peer_address(websocket)
            )
            await wire.close(CloseCode.UNKNOWN_CHANNEL, "unknown channel")
            return
        await wire.send(ChannelWelcome())
        if pending.attach_offset is not None:
            await wire.send(Attach(channel_id=hello.channel_id, offset=pending.attach_offset))
        channel = DataChannel(hello.channel_id, pending.kind, wire)
        pending.future.set_result(channel)
        self.channels.add(channel)
        try:
            await channel.done.wait()
        finally:
            self.channels.discard(channel)

    async def exec(
        self,
        workspace_id: str,
        server_id: str,
        command: str | tuple[str, ...],
        *,
        user: str,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        max_output: int = 16 * 1024 * 1024,
        on_output: Callable[[str, bytes], Awaitable[None]] | None = None,
    ) -> ExecResult:
        """Run one command on the server and collect its output and exit status; with
        ``on_output`` each chunk is handed over as it arrives (``"stdout"``/``"stderr"``,
        awaited, so a slow reader slows the channel) and nothing is collected."""
        channel = await self.open_channel(
            workspace_id,
            server_id,
            ChannelKind.EXEC,
            user=user,
            command=command,
            env=env,
            timeout=timeout,
        )
        out, err = bytearray(), bytearray()
        try:
            while True:
                try:
                    message = await channel.receive()
                except Closed as closed:
                    raise AgentOffline(f"exec channel closed ({closed.code})") from None
                if on_output is not None and isinstance(message, Stdout | Stderr):
                    await on_output(
                        "stdout" if isinstance(message, Stdout) else "stderr", message.data
                    )
                elif isinstance(message, Stdout):
                    out += message.data[: max(0, max_output - len(out))]
                elif isinstance(message, Stderr):
                    err += message.data[: max(0, max_output - len(err))]
                elif isinstance(message, ErrorMessage):
                    raise AgentOffline(message.message)
                elif isinstance(message, Exit):
                    return ExecResult(message, bytes(out), bytes(err))
        finally:
            await channel.close()
