"""Data channels: one WebSocket per terminal or exec session, dialled back to the broker.

The broker asks for a session on the control connection (``open_channel``); the agent
dials ``{broker}{path}``, proves it was asked with the one-time token
(``channel_hello``), and after ``channel_welcome`` moves the session's bytes. Each
session has its own TCP connection so one busy terminal cannot stall the others.

A terminal outlives its channel: if the WebSocket drops while the shell lives, the
terminal is detached (kept for the grace period, its output still buffered) and a later
channel with the same id re-attaches with ``attach``. An exec session does not: losing
its channel cancels the command.

This module must never start a process before the broker's welcome, never run anything
as a user the host's policy refuses, and never forward internal error details to the
broker beyond a short code and message.
"""

from __future__ import annotations

import enum

from agent.errors import (
    AgentError,
    ExecError,
    InputOverflow,
    ReplayError,
    SpawnError,
    TerminalError,
    TransportError,
    UserError,
)
from agent.execute import ExecResult, Execution
from agent.log import log
from agent.loop import Interest
from agent.shellmarks import SHELL_MARKS_ENV
from agent.spawn import ExitStatus
from agent.terminal import Terminal, TerminalTable
from agent.transport import WebSocketClient
from agent.users import UnixUser, UserPolicy
from websh import (
    Attach,
    ChannelHello,
    ChannelKind,
    ChannelWelcome,
    CloseCode,
    Connection,
    ConnectionKind,
    Eof,
    ErrorMessage,
    Exit,
    Input,
    Message,
    OpenChannel,
    Output,
    ProtocolError,
    Resize,
    Side,
    Stderr,
    Stdout,
    WebshError,
)
from websh import State as ConnectionState

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

__all__ = ["Channel", "ChannelContext", "ExecChannel", "TerminalChannel"]

#: Stop reading a pty / pipe while this much is queued for the broker; resume below LOW.
#: The queue is only what the kernel's socket buffer (which autotunes to megabytes) has
#: not taken, so it does not set the pace; each queued KiB is resident memory per channel.
HIGH_WATER = 128 * 1024
LOW_WATER = 32 * 1024
#: After the command exited, wait this long for its pipes to reach EOF (daemonized
#: grandchildren may hold them open for ever).
PIPE_DRAIN_SECONDS = 2.0


class ChannelContext:
    """What a channel needs from the agent: injected so tests can pass fakes."""

    __slots__ = (
        "clock",
        "connect",
        "open_terminal",
        "policy",
        "resolve_user",
        "start_exec",
        "terminals",
    )

    def __init__(
        self,
        terminals: TerminalTable,
        policy: UserPolicy,
        resolve_user: Callable[[str, UserPolicy], UnixUser],
        open_terminal: Callable[[UnixUser, int, int, bool], Terminal],
        start_exec: Callable[[UnixUser, OpenChannel], Execution],
        clock: Callable[[], float],
        connect: Callable[[str], WebSocketClient],
    ) -> None:
        self.terminals = terminals
        self.policy = policy
        self.resolve_user = resolve_user
        self.open_terminal = open_terminal
        self.start_exec = start_exec
        self.clock = clock
        self.connect = connect


class Phase(enum.Enum):
    DIALING = "dialing"
    AWAIT_WELCOME = "await_welcome"
    OPEN = "open"
    FINISHED = "finished"  # exit sent or channel refused; closing the WebSocket


def _exit_message(code: int | None, sig: int | None, timed_out: bool = False) -> Exit:
    if sig is not None:
        return Exit(signal=sig, timed_out=timed_out)
    return Exit(status=255 if code is None else code, timed_out=timed_out)


class Channel:
    """Common part: dial, hello/welcome, websh decoding, closing."""

    kind: ChannelKind

    def __init__(self, request: OpenChannel, url: str, context: ChannelContext) -> None:
        self.request = request
        self.channel_id = request.channel_id
        self.context = context
        self.phase = Phase.DIALING
        self.conn = Connection(ConnectionKind.CHANNEL, Side.CLIENT, channel=self.kind)
        self.ws = context.connect(url)
        self.opened_at = context.clock()
        #: Set when the WebSocket is gone; the agent then forgets the channel.
        self.done = False
        self.failure: str | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.channel_id!r}, {self.phase.value})"

    # -- driving ------------------------------------------------------------------------

    def start(self) -> None:
        """Start dialling (raises ``TransportError`` if that fails at once)."""
        self.ws.connect()

    def interests(self) -> list[Interest]:
        if self.ws.closed:
            return []
        return [
            Interest(
                self.ws.fileno(),
                self._on_readable,
                self._on_writable if self.ws.wants_write else None,
            )
        ]

    def deadline(self) -> float | None:
        return self.ws.deadline()

    def shape(self) -> tuple[object, ...]:
        """What the agent's interest set depends on for this channel: while a callback
        leaves it unchanged, the registrations stand (see ``agent.loop``)."""
        ws = self.ws
        return (ws.phase, ws.wants_write, ws.buffered_amount > HIGH_WATER, self.phase, self.done)

    def tick(self) -> None:
        """Called on every loop iteration: timeouts, process state."""
        try:
            self.ws.check_timeouts()
        except TransportError as exc:
            self._lost(str(exc))
        self._check_closed()

    def _on_writable(self) -> None:
        try:
            self.ws.on_writable()
        except TransportError as exc:
            self._lost(str(exc))
            return
        self._after_io()

    def _on_readable(self) -> None:
        try:
            self.ws.on_readable()
        except TransportError as exc:
            self._lost(str(exc))
            return
        self._after_io()

    def _after_io(self) -> None:
        if self.phase is Phase.DIALING and self.ws.open:
            self.phase = Phase.AWAIT_WELCOME
            self.send(ChannelHello(channel_id=self.channel_id, token=self.request.token))
        for payload in self.ws.messages():
            if self.conn.state is ConnectionState.CLOSED:
                break
            try:
                self.conn.receive(payload)
            except ProtocolError as exc:
                log.warning("channel %s: broker broke the protocol: %s", self.channel_id, exc)
                self.ws.close(exc.code, exc.reason)
                break
            except WebshError:
                break
            for event in self.conn.events_received():
                self._dispatch(event)
        self._flush()
        self._check_closed()

    def _dispatch(self, event: Message) -> None:
        if isinstance(event, ChannelWelcome):
            self.phase = Phase.OPEN
            self.on_welcome()
        elif isinstance(event, ErrorMessage):
            log.warning(
                "channel %s: broker error %s: %s", self.channel_id, event.code, event.message
            )
        else:
            self.on_event(event)

    def _check_closed(self) -> None:
        if self.ws.closed and not self.done:
            self.done = True
            self.on_closed()

    def _lost(self, reason: str) -> None:
        self.failure = reason
        if self.phase is not Phase.FINISHED:
            log.warning("channel %s: connection lost: %s", self.channel_id, reason)
        self.ws.abort()
        self._check_closed()

    # -- sending ------------------------------------------------------------------------

    def send(self, message: Message) -> None:
        if self.ws.closed or self.conn.state is ConnectionState.CLOSED:
            return
        try:
            self.conn.send(message)
        except WebshError as exc:
            log.error("channel %s: cannot send %s: %s", self.channel_id, message.type, exc)
            return
        self._flush()

    def _flush(self) -> None:
        for payload in self.conn.data_to_send():
            if not self.ws.open:
                break
            try:
                self.ws.send(payload)
            except TransportError as exc:
                self._lost(str(exc))
                break

    def refuse(self, code: str, message: str, close: CloseCode) -> None:
        """Tell the broker why this channel cannot run, then close it."""
        self.send(ErrorMessage(code=code, message=message[:512], channel_id=self.channel_id))
        self.finish(close, code)

    def finish(self, code: CloseCode = CloseCode.NORMAL, reason: str = "") -> None:
        self.phase = Phase.FINISHED
        self.ws.close(int(code), reason)
        self._check_closed()

    @property
    def backlog(self) -> int:
        """Bytes queued for the broker (flow control)."""
        return self.ws.buffered_amount

    # -- hooks --------------------------------------------------------------------------

    def on_welcome(self) -> None:
        raise NotImplementedError

    def on_event(self, event: Message) -> None:
        raise NotImplementedError

    def on_closed(self) -> None:
        raise NotImplementedError


class TerminalChannel(Channel):
    """A pty session. The pty itself is read by the agent's loop (``read_terminal``)."""

    kind = ChannelKind.TERMINAL

    def __init__(self, request: OpenChannel, url: str, context: ChannelContext) -> None:
        super().__init__(request, url, context)
        self.terminal: Terminal | None = None
        #: True while output may flow to the broker (after a new spawn or an attach).
        self.live = False
        self._await_attach = False
        #: Exit status to send once the terminal's output has been drained.
        self.exit_status: ExitStatus | None = None

    def on_welcome(self) -> None:
        table = self.context.terminals
        existing = table.attach(self.channel_id)
        if existing is not None:
            self.terminal = existing
            self._await_attach = True  # the broker's next message says from where
            log.info("channel %s: terminal re-attached", self.channel_id)
            return
        request = self.request
        try:
            user = self.context.resolve_user(request.user, self.context.policy)
        except UserError as exc:
            log.warning("channel %s: refused user %r: %s", self.channel_id, request.user, exc)
            self.refuse("user_refused", str(exc), CloseCode.FORBIDDEN)
            return
        try:
            marks = request.env.get(SHELL_MARKS_ENV) == "1"  # a flag, never put in the shell
            terminal = self.context.open_terminal(
                user, request.cols or 80, request.rows or 24, marks
            )
        except AgentError as exc:
            log.error(
                "channel %s: cannot start a shell for %s: %s", self.channel_id, user.name, exc
            )
            self.refuse("spawn_failed", "the shell could not be started", CloseCode.INTERNAL_ERROR)
            return
        try:
            table.add(self.channel_id, terminal)
        except TerminalError as exc:
            terminal.close()
            self.refuse("too_many_terminals", str(exc), CloseCode.RETRY_LATER)
            return
        self.terminal = terminal
        self.live = True
        log.info(
            "channel %s: terminal started for %s (pid %d, %dx%d)",
            self.channel_id, user.name, terminal.pid, request.cols or 80, request.rows or 24,
        )  # fmt: skip

    def on_event(self, event: Message) -> None:
        if self._await_attach:
            self._await_attach = False
            if isinstance(event, Attach):
                self._replay(event.offset)
                return
            self.live = True  # no attach: carry on live from now
        elif isinstance(event, Attach):
            # A fresh terminal cannot honour an attach: the old process is gone.
            self.refuse(
                "unknown_channel", "the terminal no longer exists", CloseCode.UNKNOWN_CHANNEL
            )
            self.kill()
            return
        terminal = self.terminal
        if terminal is None or terminal.closed:
            return
        try:
            if isinstance(event, Input):
                terminal.write(bytes(event.data))
            elif isinstance(event, Resize):
                terminal.resize(event.cols, event.rows)
        except InputOverflow as exc:
            log.warning("channel %s: %s", self.channel_id, exc)
            self.refuse("input_overflow", "too much unread input", CloseCode.MESSAGE_TOO_BIG)
        except TerminalError as exc:
            log.warning("channel %s: %s", self.channel_id, exc)

    def _replay(self, offset: int) -> None:
        assert self.terminal is not None
        try:
            replay = self.terminal.replay(offset)
        except ReplayError:
            replay = self.terminal.replay(self.terminal.buffer.start_offset)
            self.send(
                ErrorMessage(
                    code="attach_gap",
                    message=f"offset {offset} is beyond the output produced",
                    channel_id=self.channel_id,
                )
            )
        else:
            if replay.gap:
                self.send(
                    ErrorMessage(
                        code="attach_gap",
                        message=f"{replay.gap} bytes of output were lost",
                        channel_id=self.channel_id,
                    )
                )
        if replay.data:
            self.send(Output(data=replay.data))
        self.live = True
        log.info(
            "channel %s: replayed %d bytes from offset %d",
            self.channel_id, len(replay.data), replay.offset,
        )  # fmt: skip

    def shape(self) -> tuple[object, ...]:
        terminal = self.terminal
        if terminal is None:
            return (*super().shape(), self.live)
        return (*super().shape(), self.live, terminal.closed, terminal.eof, terminal.wants_write)

    def output(self, data: bytes) -> None:
        """Pty bytes read by the loop."""
        if self.live and self.phase is Phase.OPEN:
            self.send(Output(data=data))

    def report_exit(self, status: ExitStatus) -> None:
        """The shell ended: send ``exit`` and close normally."""
        if self.phase is not Phase.OPEN or not self.live:
            self.exit_status = status
            return
        self.send(_exit_message(status.code, status.signal))
        log.info(
            "channel %s: shell exited (status %s, signal %s)",
            self.channel_id, status.code, status.signal,
        )  # fmt: skip
        self.finish(CloseCode.NORMAL, "exited")

    def kill(self) -> None:
        """Hang the terminal up (broker ``close_channel`` or a refused attach)."""
        if self.terminal is not None and self.context.terminals.get(self.channel_id) is (
            self.terminal
        ):
            self.context.terminals.remove(self.channel_id)
        self.live = False

    def on_closed(self) -> None:
        table = self.context.terminals
        if self.terminal is not None and table.get(self.channel_id) is self.terminal:
            if self.terminal.poll() is None:
                table.detach(self.channel_id)
                log.info(
                    "channel %s: broker link lost, terminal detached (grace %ss)",
                    self.channel_id, table.grace_seconds,
                )  # fmt: skip
            else:
                table.remove(self.channel_id)
        self.live = False


class ExecChannel(Channel):
    """One command with separate stdout/stderr; ends with ``exit``."""

    kind = ChannelKind.EXEC

    def __init__(self, request: OpenChannel, url: str, context: ChannelContext) -> None:
        super().__init__(request, url, context)
        self.execution: Execution | None = None
        self._stdout_open = False
        self._stderr_open = False
        self._exited_at: float | None = None
        self._result: ExecResult | None = None

    def on_welcome(self) -> None:
        request = self.request
        try:
            user = self.context.resolve_user(request.user, self.context.policy)
        except UserError as exc:
            log.warning("channel %s: refused user %r: %s", self.channel_id, request.user, exc)
            self.refuse("user_refused", str(exc), CloseCode.FORBIDDEN)
            return
        try:
            self.execution = self.context.start_exec(user, request)
        except (ExecError, SpawnError) as exc:
            log.warning("channel %s: exec failed: %s", self.channel_id, exc)
            self.send(ErrorMessage(code="exec_failed", message=str(exc)[:512]))
            self.send(Exit(status=127))
            self.finish(CloseCode.NORMAL, "exec failed")
            return
        self._stdout_open = self._stderr_open = True
        log.info(
            "channel %s: exec started for %s (pid %d)", self.channel_id, user.name,
            self.execution.pid,
        )  # fmt: skip

    def on_event(self, event: Message) -> None:
        # stdin is /dev/null: Input and Eof have nothing to feed.
        if not isinstance(event, (Input, Eof)):
            log.debug("channel %s: ignoring %s", self.channel_id, event.type)

    def interests(self) -> list[Interest]:
        interests = super().interests()
        execution = self.execution
        if execution is None or self.backlog > HIGH_WATER:
            return interests
        if self._stdout_open:
            interests.append(Interest(execution.stdout_fd, self._read_stdout))
        if self._stderr_open:
            interests.append(Interest(execution.stderr_fd, self._read_stderr))
        return interests

    def _read_stdout(self) -> None:
        if self.execution is None or not self._stdout_open:
            return
        data = self.execution.read_stdout()
        if data == b"":
            self._stdout_open = False
        elif data:
            self.send(Stdout(data=data))

    def _read_stderr(self) -> None:
        if self.execution is None or not self._stderr_open:
            return
        data = self.execution.read_stderr()
        if data == b"":
            self._stderr_open = False
        elif data:
            self.send(Stderr(data=data))

    def deadline(self) -> float | None:
        deadlines = [d for d in (super().deadline(),) if d is not None]
        execution = self.execution
        if execution is not None and self._result is None:
            wait = execution.next_deadline()
            if wait is not None:
                deadlines.append(self.context.clock() + wait)
        if self._exited_at is not None:
            deadlines.append(self._exited_at + PIPE_DRAIN_SECONDS)
        return min(deadlines) if deadlines else None

    def tick(self) -> None:
        super().tick()
        execution = self.execution
        if execution is None or (self._result is not None and self.phase is Phase.FINISHED):
            return
        execution.check_timeout()
        result = execution.poll()
        if result is None:
            return
        now = self.context.clock()
        if self._exited_at is None:
            self._exited_at = now
        pipes_open = self._stdout_open or self._stderr_open
        if pipes_open and now - self._exited_at < PIPE_DRAIN_SECONDS:
            return
        if self._result is None:
            self._result = result
            execution.close()
            self._stdout_open = self._stderr_open = False
            log.info(
                "channel %s: exec finished (status %s, signal %s%s)",
                self.channel_id, result.exit_code, result.signal,
                ", timed out" if result.timed_out else "",
            )  # fmt: skip
            if self.phase is Phase.OPEN:
                self.send(_exit_message(result.exit_code, result.signal, result.timed_out))
                self.finish(CloseCode.NORMAL, "exited")

    def kill(self) -> None:
        if self.execution is not None and self._result is None:
            self.execution.cancel()

    def on_closed(self) -> None:
        if self.execution is not None and self._result is None:
            log.info("channel %s: broker link lost, cancelling the command", self.channel_id)
            self.execution.cancel()

    @property
    def finished(self) -> bool:
        """True once nothing more can happen on this exec channel."""
        return self.execution is None or self._result is not None
