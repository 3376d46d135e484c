"""A person's terminal WebSocket (websh USER connection), from ``client_hello`` to disconnect.

The socket redeems a single-use ticket (from its URL or its ``client_hello``) for the
session in its path, is welcomed and attached to the live session as a
:class:`~broker.gateway.participants.Client` with the role and read-only flag the ticket
carries, and then has its messages served as they arrive (:class:`~broker.gateway.inbox.Inbox`):
keystrokes, resizes and ``resume``. Every refusal closes with a websh close code and,
when it can be attributed to a workspace, is audited; a client that breaks the protocol
is audited as ``session.client_protocol_error``.

:class:`TerminalSockets` is a base of :class:`~broker.gateway.sessions.GatewaySessions`,
which sets the state declared below. The handler built by ``_client_handler`` runs per
keystroke (``benchmarks/relay_path.py``): it must never gain calls, awaits or lookups that
an ordinary keystroke does not need. This module never decides access: the ticket does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from starlette.websockets import WebSocket

from broker.agents.wire import Closed, Wire
from broker.audit import Actor, Category, Outcome
from broker.errors import CorralError
from broker.gateway.inbox import Handle, Inbox
from broker.gateway.participants import Client
from broker.gateway.session import LiveSession
from broker.gateway.tickets import TicketBook, TicketRefused
from broker.services import Services
from websh import (
    ClientHello,
    ClientWelcome,
    CloseCode,
    Connection,
    ConnectionKind,
    Input,
    Limits,
    Message,
    Resize,
    Resume,
    Side,
)

__all__ = ["TerminalSockets"]

log = logging.getLogger("corral.gateway")


class TerminalSockets:
    """Serving people's terminal WebSockets (state set by ``GatewaySessions``)."""

    services: Services
    tickets: TicketBook
    live: dict[str, LiveSession]
    limits: Limits
    hello_timeout: float

    async def serve(self, websocket: WebSocket, session_id: str) -> None:
        """One person's WebSocket, from ``client_hello`` to disconnect."""
        await websocket.accept()
        wire = Wire(websocket, Connection(ConnectionKind.USER, Side.SERVER, limits=self.limits))
        try:
            hello = await asyncio.wait_for(wire.receive(), self.hello_timeout)
        except (Closed, TimeoutError):
            await wire.close(CloseCode.UNAUTHENTICATED, "client_hello expected")
            return
        assert isinstance(hello, ClientHello)  # the USER connection admits nothing else first
        secret = websocket.query_params.get("ticket") or hello.ticket
        if not secret:
            await wire.close(CloseCode.UNAUTHENTICATED, "ticket required")
            return
        try:
            ticket = self.tickets.redeem(secret, session_id)
        except TicketRefused as refused:
            await self._refuse_ticket(wire, refused, session_id)
            return
        actor = Actor("user", ticket.user_id, ticket.credential_id)
        live = self.live.get(session_id)
        if live is None or live.workspace_id != ticket.workspace_id:
            await self._audit_refusal(
                ticket.workspace_id, "session.unavailable", actor, session_id, "not live"
            )
            await wire.close(CloseCode.UNKNOWN_CHANNEL, "unknown session")
            return
        label = ticket.user_id
        with contextlib.suppress(CorralError):
            label = (await self.services.users.get(ticket.workspace_id, ticket.user_id)).email
        await wire.send(ClientWelcome(session_id=session_id, read_only=ticket.read_only))
        client = Client(
            wire,
            ticket.user_id,
            ticket.credential_id,
            read_only=ticket.read_only,
            # The owner's first attach starts at 0; a joiner gets what the buffer still
            # holds, so their screen fills in; a resuming owner says where it stands.
            cursor=None if ticket.resume else (0 if ticket.role == "owner" else live.buffer.start),
            role=ticket.role,
            label=label,
            share_id=ticket.share_id,
        )
        await live.attach(client)
        inbox = Inbox(wire, self._client_handler(live, client))
        try:
            if not inbox.listen():  # the socket cannot call back: read it in this task
                await inbox.run()
            await inbox.finished()
            closed = inbox.closed
            if closed is not None and wire.connection.error is not None:
                await self._audit_refusal(
                    live.workspace_id,
                    "session.client_protocol_error",
                    client.actor,
                    live.id,
                    f"close {closed.code}: {closed.reason}",
                    category=Category.RESOURCE_ACCESS,
                    server_id=live.server_id,
                )
        finally:
            await live.detach(client)

    def _client_handler(self, live: LiveSession, client: Client) -> Handle:
        """What a person's messages do, each handled as it arrives (see ``Inbox``)."""

        def handle(message: Message) -> Coroutine[Any, Any, None] | None:
            if type(message) is Input:
                if client.cursor is not None and not client.read_only:
                    return live.input(message.data)  # every ordinary keystroke
                return self._first_or_refused_input(live, client, message.data)
            if isinstance(message, Resize):
                return None if client.read_only else live.resize(message.cols, message.rows)
            if isinstance(message, Resume):
                return live.resume(client, message.offset)
            return None

        return handle

    async def _first_or_refused_input(self, live: LiveSession, client: Client, data: bytes) -> None:
        """Input from a resuming client that never said what it holds (it gets everything
        the buffer still holds first), or from a read-only participant (refused)."""
        if client.cursor is None:
            await live.resume(client, live.buffer.start)
        if client.read_only:
            await live.refuse_input(client)
            return
        work = live.input(data)
        if work is not None:
            await work

    async def _refuse_ticket(self, wire: Wire, refused: TicketRefused, session_id: str) -> None:
        ticket = refused.ticket
        if ticket is not None:
            await self._audit_refusal(
                ticket.workspace_id,
                "session.ticket_refused",
                Actor("user", ticket.user_id, ticket.credential_id),
                session_id,
                refused.reason,
                category=Category.AUTHENTICATION,
            )
        else:
            log.warning("session websocket refused: unknown ticket")
        if refused.reason == "wrong session":
            await wire.close(CloseCode.UNKNOWN_CHANNEL, "unknown session")
        else:
            await wire.close(CloseCode.UNAUTHENTICATED, f"ticket {refused.reason}")

    async def _audit_refusal(
        self,
        workspace_id: str,
        action: str,
        actor: Actor,
        session_id: str,
        reason: str,
        *,
        category: Category = Category.AUTHORIZATION,
        server_id: str = "",
    ) -> None:
        with contextlib.suppress(CorralError):
            await self.services.audit.emit(
                workspace_id,
                category,
                action,
                outcome=Outcome.DENIED,
                actor=actor,
                server_id=server_id,
                target=session_id[:128],
                details={"reason": reason},
            )
