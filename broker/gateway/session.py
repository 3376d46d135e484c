"""One live terminal session: the agent's channel, its output buffer, its recording and
the people attached to it.

The *pump* takes the agent's channel one message at a time and appends every output byte
to the buffer and the recording; it never waits for any one person's WebSocket. Under the
broker's WebSocket protocol it is no task: each message is handled in the callback that
parsed its frame (:class:`~broker.gateway.inbox.Inbox`), otherwise a task reads the channel.
A client that has everything so far and nothing else queued is written to by the pump
itself (:func:`~broker.gateway.eager.start_eagerly`: no task switch unless its transport is
full), so a keystroke's echo goes out in the callback that read it; otherwise the client's
own sender task walks the buffer from its cursor, so a slow client only falls behind
itself. A client further behind than the buffer holds is dropped (it may reconnect and
resume); the session, the recording and the other clients carry on. Only when even the
most advanced client is half a buffer behind does the pump pause (the channel is held:
its reading stops, TCP then slows the agent, the pty and the command), so a client that is
merely slower than the host, such as anyone running ``cat`` of a big file, is not dropped;
a client that stops reading for ``STALL_SECONDS`` no longer holds it. With its owner not
attached the session waits ``grace_seconds`` for a reconnect before it is closed
(participants and observers alone do not keep it alive). Participants are told who joins
and leaves through their own sender task, in order with the output.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from broker.agents.hub import AgentHub, DataChannel
from broker.agents.wire import Closed, Wire
from broker.audit import SYSTEM, Actor, Category, Outcome
from broker.errors import CorralError
from broker.gateway.buffer import OutputBuffer
from broker.gateway.eager import start_eagerly
from broker.gateway.inbox import Inbox
from broker.gateway.recorder import AsciicastRecorder
from broker.services import Services
from broker.store.models import SessionStatus
from websh import (
    CloseChannel,
    CloseCode,
    ErrorMessage,
    Exit,
    Input,
    Message,
    Output,
    ParticipantJoined,
    ParticipantLeft,
    Ping,
    Resize,
    Terminated,
)

__all__ = ["Client", "LiveSession"]

if TYPE_CHECKING:
    from broker.enforce import CommandGate

log = logging.getLogger("corral.gateway")

CHUNK = 64 * 1024
#: A session quiet this long pings its clients and its agent channel (websh ``ping``,
#: answered automatically): the server does not ping WebSockets itself (broker/serving.py),
#: and a proxy in front would otherwise close an idle terminal's connections.
IDLE_PING_SECONDS = 20.0
#: How long the pump waits for the leading client before it carries on without it.
STALL_SECONDS = 10.0


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


class LiveSession:
    def __init__(
        self,
        *,
        session_id: str,
        workspace_id: str,
        user_id: str,
        server_id: str,
        unix_user: str,
        credential_id: str,
        channel: DataChannel,
        recorder: AsciicastRecorder,
        recording_id: str,
        services: Services,
        hub: AgentHub,
        grace_seconds: float,
        buffer_limit: int,
        on_end: Callable[[LiveSession], None],
        gate: CommandGate | None = None,
        idle_ping_seconds: float = IDLE_PING_SECONDS,
    ) -> None:
        self.id = session_id
        self.idle_ping_seconds = idle_ping_seconds
        self.workspace_id = workspace_id
        self.user_id = user_id
        self.server_id = server_id
        self.unix_user = unix_user
        self.credential_id = credential_id
        self.channel = channel
        self.recorder = recorder
        self.recording_id = recording_id
        self.services = services
        self.hub = hub
        self.grace_seconds = grace_seconds
        self.buffer = OutputBuffer(buffer_limit)
        self.clients: set[Client] = set()
        self.final: Message | None = None
        self.final_code: int = CloseCode.NORMAL
        self.ended = asyncio.Event()
        self._on_end = on_end
        self._pump: asyncio.Task[None] | None = None
        self._grace: asyncio.TimerHandle | None = None
        self._idle_ping: asyncio.TimerHandle | None = None
        self._last_traffic = 0.0
        self._loop = asyncio.get_running_loop()  # sessions are opened by a running broker
        self._pings = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self.started_attached = False
        #: Decides each command line at its Enter (None: keystrokes go straight through).
        self.gate = gate
        self._progress = asyncio.Event()  # a client's cursor moved, or a client left
        self._stalled = False  # the leading client made no progress for STALL_SECONDS

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        inbox = Inbox(self.channel.wire, self._from_agent, self._agent_left)
        if not inbox.listen():  # the channel cannot call back: a task reads it instead
            self._pump = asyncio.create_task(inbox.run(), name=f"session-pump-{self.id}")
        self._arm_grace()
        self._last_traffic = self._loop.time()
        self._arm_idle_ping()

    def _arm_idle_ping(self) -> None:
        loop = asyncio.get_running_loop()
        due = self._last_traffic + self.idle_ping_seconds
        floor = loop.time() + min(1.0, self.idle_ping_seconds)
        self._idle_ping = loop.call_at(max(due, floor), self._idle_ping_due)

    def _idle_ping_due(self) -> None:
        self._idle_ping = None
        if self.final is not None:
            return
        now = asyncio.get_running_loop().time()
        if now - self._last_traffic >= self.idle_ping_seconds:
            self._last_traffic = now
            self._pings += 1
            ping = Ping(nonce=self._pings, ts=time.time())
            for client in self.clients:
                self._notify(client, ping)  # through its sender: in order with the output
            self._spawn(self._ping_channel(ping))
        self._arm_idle_ping()

    async def _ping_channel(self, ping: Ping) -> None:
        with contextlib.suppress(Closed):
            await self.channel.send(ping)

    def _from_agent(self, message: Message) -> Coroutine[Any, Any, None] | None:
        """One message from the agent's channel, in the callback that parsed it (or the
        pump's loop): output to everyone at once; what must wait is returned."""
        if self.final is not None:
            return None
        if type(message) is Output:
            if not self._output(message.data) and self._behind():
                return self._backpressure()  # nobody caught up: wait for them
        elif isinstance(message, Exit):
            return self.end(message, reason=_exit_reason(message))
        elif isinstance(message, ErrorMessage):
            log.warning("session %s: agent error %s", self.id, message.code)
        return None

    def _agent_left(self, closed: Closed) -> None:
        if self.final is None:
            self._spawn(
                self.end(
                    Terminated(reason="the server's agent went away"),
                    reason="agent connection lost",
                    terminated=True,
                    code=CloseCode.INTERNAL_ERROR,
                )
            )

    def _output(self, data: bytes, *, injected: bool = False) -> bool:
        """Shell output (or, ``injected``, the gate's own messages) to clients and recording.
        True when a client was written to at once (it has everything: no backpressure)."""
        buffer = self.buffer
        start = buffer.end
        buffer.append(data)
        oldest = buffer.start
        caught_up = False
        try:
            for client in self.clients:  # nothing below adds or removes clients synchronously
                cursor = client.cursor
                if cursor is None:
                    client.wake.set()
                elif cursor < oldest:
                    self._spawn(self._drop_slow(client))
                elif cursor == start and self._send_direct(client, start, data):
                    caught_up = True
                else:
                    client.wake.set()
        finally:
            # Bookkeeping after the writes, so a keystroke's echo is on its way before it
            # runs (and the recording still gets every byte if a write fails).
            if self.gate is not None and not injected:
                self.gate.output(data)
            self.recorder.output(data)
            self._last_traffic = self._loop.time()
        return caught_up

    def _send_direct(self, client: Client, start: int, data: bytes) -> bool:
        """Write ``data`` (output from offset ``start``) to a caught-up, idle client from
        the pump itself; False when its sender task must do it instead."""
        inflight = client.inflight
        if (
            client.notices
            or client.wake.is_set()
            or (inflight is not None and not inflight.done())
            or self.final is not None
            or len(data) > CHUNK
        ):
            return False
        client.cursor = start + len(data)
        try:
            client.inflight = inflight = start_eagerly(client.wire.send(Output(data=data)))
        except Closed:
            return True  # gone: its own connection loop notices and detaches it
        if inflight is not None:
            inflight.add_done_callback(_retrieve)
        self._stalled = False
        self._progress.set()
        return True

    def _behind(self) -> bool:
        """Even the most advanced attached client is half a buffer behind."""
        if self._stalled:
            return False
        cursors = [c.cursor for c in self.clients if c.cursor is not None]
        return bool(cursors) and self.buffer.end - max(cursors) > self.buffer.limit // 2

    async def _backpressure(self) -> None:
        """Stop taking the agent's output while :meth:`_behind` (the channel's reading
        pauses, so TCP slows the agent, the pty and the command)."""
        while self.final is None and self._behind():
            self._progress.clear()
            try:
                await asyncio.wait_for(self._progress.wait(), STALL_SECONDS)
            except TimeoutError:
                self._stalled = True  # nobody reads: carry on, the behind get dropped

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

    # --------------------------------------------------------------- the terminal

    def input(self, data: bytes) -> Coroutine[Any, Any, None] | None:
        """Keystrokes toward the shell: ``None`` when nothing is to be sent, else the
        coroutine that sends them, to be started at once (keystrokes reach the shell in
        the order these are started; see :class:`~broker.gateway.inbox.Inbox`)."""
        if self.final is not None:
            return None
        if self.gate is not None:
            return self.gate.input_now(data)
        return self._send_input(data)

    async def _send_input(self, data: bytes) -> None:
        try:  # noqa: SIM105 (contextlib.suppress costs a context manager per key)
            await self.channel.wire.send(Input(data=data))
        except Closed:
            pass

    async def resize(self, cols: int, rows: int) -> None:
        if self.final is None:
            with contextlib.suppress(Closed):
                await self.channel.send(Resize(cols=cols, rows=rows))
            self.recorder.resize(cols, rows)
            if self.gate is not None:
                self.gate.resize(cols)

    # ------------------------------------------------------------------ clients

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


def _retrieve(task: asyncio.Task[None]) -> None:
    """A direct write's outcome: a client that left is its connection loop's business."""
    if not task.cancelled():
        task.exception()


def _exit_reason(message: Exit) -> str:
    if message.signal is not None:
        return f"killed by signal {message.signal}"
    return f"exit status {message.status}"


def _close_reason(final: Message) -> str:
    if isinstance(final, Terminated):
        return final.reason[:100]
    return "session ended"
