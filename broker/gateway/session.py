"""One live terminal session: the relay between the agent's channel and the people attached.

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
a client that stops reading for ``STALL_SECONDS`` no longer holds it. Keystrokes go the
other way through the command gate, if any. A quiet session pings its clients and channel.

:class:`LiveSession` is built from three layers, a module each: this relay (the
per-message path), its people (:mod:`broker.gateway.participants`: attach, detach, notices,
each client's sender task) and its lifetime (:mod:`broker.gateway.lifetime`: the owner's
grace period and the one end). They are base classes, not objects calling each other, so
a keystroke takes the same calls and attribute lookups as it would in one module
(``benchmarks/relay_path.py`` measures it). This module must never await a person's
WebSocket on the pump's path, and never take on per-message work that could be done
elsewhere: every call and lookup here is paid per keystroke.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from broker.agents.channels import DataChannel
from broker.agents.hub import AgentHub
from broker.agents.wire import Closed
from broker.gateway.buffer import OutputBuffer
from broker.gateway.eager import start_eagerly
from broker.gateway.inbox import Inbox
from broker.gateway.participants import CHUNK, Client, Participants
from broker.gateway.recorder import AsciicastRecorder
from broker.services import Services
from websh import (
    CloseCode,
    ErrorMessage,
    Exit,
    Input,
    Message,
    Output,
    Ping,
    Resize,
    Terminated,
)

__all__ = ["LiveSession"]

if TYPE_CHECKING:
    from broker.enforce import CommandGate

log = logging.getLogger("corral.gateway")

#: A session quiet this long pings its clients and its agent channel (websh ``ping``,
#: answered automatically): the server does not ping WebSockets itself (broker/serving.py),
#: and a proxy in front would otherwise close an idle terminal's connections.
IDLE_PING_SECONDS = 20.0
#: How long the pump waits for the leading client before it carries on without it.
STALL_SECONDS = 10.0


class LiveSession(Participants):
    """One live terminal session (see the module docstring)."""

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

    # ----------------------------------------------------------------- the pump

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


def _retrieve(task: asyncio.Task[None]) -> None:
    """A direct write's outcome: a client that left is its connection loop's business."""
    if not task.cancelled():
        task.exception()


def _exit_reason(message: Exit) -> str:
    if message.signal is not None:
        return f"killed by signal {message.signal}"
    return f"exit status {message.status}"
