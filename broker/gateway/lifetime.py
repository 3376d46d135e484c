"""How a live session ends: the owner's grace period, and :meth:`SessionLifetime.end`, once.

A session ends when its shell exits, its agent goes away, it is terminated or revoked, the
broker shuts down, or its owner stays away longer than ``grace_seconds`` (participants and
observers alone do not keep it alive). Ending tells every client (through their sender
tasks, after the output they have not yet had), hangs the shell up on the agent, closes
the data channel and the recording, and closes the session row; it is audited by the
sessions service. This module also holds what the other parts of a session share for
their side work: the tasks it spawns and its audit helper.

:class:`SessionLifetime` is a base of :class:`~broker.gateway.session.LiveSession`, which
sets the state declared below. It must never sit on the per-message path (nothing here
runs per keystroke or per output chunk) and never decide access.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from broker.agents.channels import DataChannel
from broker.agents.hub import AgentHub
from broker.agents.wire import Closed
from broker.audit import SYSTEM, Actor, Category, Outcome
from broker.errors import CorralError
from broker.gateway.recorder import AsciicastRecorder
from broker.services import Services
from websh import CloseChannel, CloseCode, Exit, Message, Terminated

if TYPE_CHECKING:
    from broker.enforce import CommandGate
    from broker.gateway.participants import Client

__all__ = ["SessionLifetime"]


class SessionLifetime:
    """The grace period and the end of a live session (state set by ``LiveSession``)."""

    id: str
    workspace_id: str
    server_id: str
    channel: DataChannel
    recorder: AsciicastRecorder
    recording_id: str
    services: Services
    hub: AgentHub
    grace_seconds: float
    clients: set[Client]
    gate: CommandGate | None
    #: The message every client gets last (``exit`` or ``terminated``); None while live.
    final: Message | None
    final_code: int
    ended: asyncio.Event
    _on_end: Callable[[Any], None]
    _pump: asyncio.Task[None] | None
    _grace: asyncio.TimerHandle | None
    _idle_ping: asyncio.TimerHandle | None
    _tasks: set[asyncio.Task[Any]]
    _progress: asyncio.Event

    async def end(
        self,
        final: Message,
        *,
        reason: str,
        terminated: bool = False,
        actor: Actor = SYSTEM,
        code: int = CloseCode.NORMAL,
    ) -> None:
        """End the session once: tell every client, stop the shell, close row and recording."""
        if self.final is not None:
            return
        self.final, self.final_code = final, code
        self._progress.set()
        if self._grace is not None:
            self._grace.cancel()
        if self._idle_ping is not None:
            self._idle_ping.cancel()
            self._idle_ping = None
        if self.gate is not None:
            self.gate.close()
        for client in self.clients:
            client.wake.set()
        if not isinstance(final, Exit):
            await self._kill_shell(reason)
        if self._pump is not None and self._pump is not asyncio.current_task():
            self._pump.cancel()
        await self.channel.close(CloseCode.NORMAL, "session ended")
        size = self.recorder.close()
        try:
            await self.services.recordings.finish(self.workspace_id, self.recording_id, size)
            await self.services.sessions.close(
                self.workspace_id, self.id, reason=reason, actor=actor, terminated=terminated
            )
        finally:
            self.ended.set()
            self._on_end(self)

    async def _kill_shell(self, reason: str) -> None:
        """Ask the agent to hang the terminal up (closing the data channel alone would only
        detach it for the agent's own grace period)."""
        link = self.hub.links.get(self.server_id)
        if link is None:
            return
        with contextlib.suppress(Closed, CorralError):
            await link.wire.send(CloseChannel(channel_id=self.channel.channel_id, reason=reason))

    # -------------------------------------------------------------------- grace

    def _arm_grace(self) -> None:
        if self._grace is not None:
            self._grace.cancel()
        self._grace = asyncio.get_running_loop().call_later(self.grace_seconds, self._expire)

    def _expire(self) -> None:
        self._grace = None
        if self.final is None and not any(c.role == "owner" for c in self.clients):
            self._spawn(
                self.end(
                    Terminated(reason="nobody attached within the grace period"),
                    reason="grace period expired",
                )
            )

    # ------------------------------------------------------------- side work

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _audit(
        self,
        action: str,
        actor: Actor,
        *,
        outcome: Outcome = Outcome.SUCCESS,
        details: dict[str, Any] | None = None,
    ) -> None:
        with contextlib.suppress(CorralError):
            await self.services.audit.emit(
                self.workspace_id,
                Category.RESOURCE_ACCESS,
                action,
                outcome=outcome,
                actor=actor,
                server_id=self.server_id,
                session_id=self.id,
                details=details,
            )
