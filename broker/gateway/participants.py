"""Who is attached to a live session, and each one's sender task.

A session has its owner and, through share links and staff observation, participants and
observers: each is a :class:`Client` (one WebSocket) with a cursor into the session's
output buffer. Here they attach, detach, resume from an offset, are told who joins and
leaves (in order with the output), are refused when they type read-only, are removed
(revoked link, disabled user, revoked token) or dropped when they fall further behind
than the buffer holds, and each has a sender task that walks the buffer from its cursor
when the pump cannot write to it directly. Every change of who is attached is audited;
the owner's attach and detach also set the session row's status and its grace period.

:class:`Participants` is a base of :class:`~broker.gateway.session.LiveSession`, which
sets the state declared below. It must never run per keystroke and never decide access:
a client's role and read-only flag come from its ticket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from broker.agents.wire import Closed, Wire
from broker.audit import Actor, Outcome
from broker.errors import CorralError
from broker.gateway.buffer import OutputBuffer
from broker.gateway.lifetime import SessionLifetime
from broker.store.models import SessionStatus
from websh import (
    CloseCode,
    ErrorMessage,
    Message,
    Output,
    ParticipantJoined,
    ParticipantLeft,
    Terminated,
)

__all__ = ["CHUNK", "Client", "Participants"]

log = logging.getLogger("corral.gateway")

#: Most output one WebSocket message carries.
CHUNK = 64 * 1024


@dataclass(eq=False)
class Client:
    """One attached WebSocket; ``cursor`` is the next output offset it will be sent
    (``None`` until a resuming client has said how much it holds)."""

    wire: Wire
    user_id: str
    credential_id: str
    read_only: bool
    cursor: int | None
    #: ``owner``, ``participant`` (through a share link) or ``observer`` (staff).
    role: str = "owner"
    #: How other participants see this person (their email).
    label: str = ""
    share_id: str | None = None
    #: Control messages (joins, leaves) the sender task delivers before more output.
    notices: list[Message] = field(default_factory=list)
    told_read_only: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    #: The rest of a direct write from the pump that had to wait for the transport; the
    #: sender task lets it finish before it sends anything else (output stays in order).
    inflight: asyncio.Task[None] | None = None

    @property
    def actor(self) -> Actor:
        return Actor("user", self.user_id, self.credential_id)


class Participants(SessionLifetime):
    """The people attached to a live session (state set by ``LiveSession``)."""

    buffer: OutputBuffer
    started_attached: bool
    _stalled: bool

    async def attach(self, client: Client) -> None:
        self.clients.add(client)
        if self._grace is not None and client.role == "owner":
            self._grace.cancel()
            self._grace = None
        client.task = asyncio.create_task(self._send_loop(client), name=f"session-send-{self.id}")
        for other in self.clients:
            if other is not client:
                self._notify(other, ParticipantJoined(user=client.label or "?", role=client.role))
                self._notify(client, ParticipantJoined(user=other.label or "?", role=other.role))
        if client.role != "owner":
            await self._audit(
                "session.joined",
                client.actor,
                details={"role": client.role, "read_only": client.read_only},
            )
            return
        resumed = self.started_attached
        self.started_attached = True
        with contextlib.suppress(CorralError):
            await self.services.sessions.set_status(
                self.workspace_id, self.id, SessionStatus.ACTIVE
            )
        await self._audit("session.resumed" if resumed else "session.attached", client.actor)

    async def detach(self, client: Client) -> None:
        if client not in self.clients:
            return
        self.clients.discard(client)
        self._progress.set()
        if client.task is not None and client.task is not asyncio.current_task():
            client.task.cancel()
        if self.final is None:
            for other in self.clients:
                self._notify(other, ParticipantLeft(user=client.label or "?"))
            if client.role != "owner":
                await self._audit("session.left", client.actor, details={"role": client.role})
                return
            await self._audit("session.detached", client.actor)
            if not any(c.role == "owner" for c in self.clients):
                with contextlib.suppress(CorralError):
                    await self.services.sessions.set_status(
                        self.workspace_id, self.id, SessionStatus.DETACHED
                    )
                self._arm_grace()

    async def resume(self, client: Client, offset: int) -> None:
        """The client holds ``offset`` bytes: send it exactly the rest."""
        if offset > self.buffer.end:
            offset = self.buffer.end
        if offset < self.buffer.start:
            with contextlib.suppress(Closed):
                await client.wire.send(
                    ErrorMessage(code="resume_gap", message="older output is no longer held")
                )
            offset = self.buffer.start
        client.cursor = offset
        client.wake.set()

    def _notify(self, client: Client, message: Message) -> None:
        client.notices.append(message)
        client.wake.set()

    async def refuse_input(self, client: Client) -> None:
        """A read-only participant typed: tell them once, audit once, forward nothing."""
        if client.told_read_only:
            return
        client.told_read_only = True
        self._notify(
            client, ErrorMessage(code="read_only", message="you joined this session read-only")
        )
        await self._audit(
            "session.input_refused",
            client.actor,
            outcome=Outcome.DENIED,
            details={"reason": "read-only participant", "role": client.role},
        )

    async def kick(self, match: Callable[[Client], bool], reason: str, code: int) -> int:
        """Remove the matching participants (not the session): revoked shares, disabled
        users, revoked tokens. Returns how many were removed."""
        kicked = [c for c in self.clients if match(c)]
        for client in kicked:
            if client.task is not None:
                client.task.cancel()
            with contextlib.suppress(Closed):
                await client.wire.send(Terminated(reason=reason[:200]))
            await client.wire.close(code, reason[:100])
            await self._audit(
                "session.participant_removed",
                client.actor,
                outcome=Outcome.DENIED,
                details={"reason": reason, "role": client.role},
            )
            await self.detach(client)
        return len(kicked)

    async def _send_loop(self, client: Client) -> None:
        """The client's sender task: its notices, then the buffer from its cursor, then
        the session's final message and the close."""
        try:
            while True:
                if client.inflight is not None:
                    inflight, client.inflight = client.inflight, None
                    await inflight  # the pump's direct write goes out first
                if client.notices:
                    notices, client.notices = client.notices, []
                    for notice in notices:
                        await client.wire.send(notice)
                    continue
                if client.cursor is not None:
                    chunk = self.buffer.read(client.cursor, CHUNK)
                    if chunk and not isinstance(self.final, Terminated):
                        await client.wire.send(Output(data=chunk))
                        client.cursor += len(chunk)
                        self._stalled = False
                        self._progress.set()
                        continue
                if self.final is not None:
                    await client.wire.send(self.final)
                    await client.wire.close(self.final_code, _close_reason(self.final))
                    return
                client.wake.clear()
                await client.wake.wait()
        except Closed:
            return

    async def _drop_slow(self, client: Client) -> None:
        if client not in self.clients:
            return
        log.warning("session %s: client fell more than %d bytes behind", self.id, self.buffer.limit)
        if client.task is not None:
            client.task.cancel()
        await client.wire.close(CloseCode.RETRY_LATER, "client too slow; resume")
        await self._audit(
            "session.client_dropped",
            client.actor,
            outcome=Outcome.FAILURE,
            details={"reason": "client too slow", "buffer_bytes": self.buffer.limit},
        )
        await self.detach(client)


def _close_reason(final: Message) -> str:
    if isinstance(final, Terminated):
        return final.reason[:100]
    return "session ended"
