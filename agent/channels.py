"""Data channels, the common part: one WebSocket per session, dialled back to the broker.

The broker asks for a session on the control connection (``open_channel``); the agent
dials ``{broker}{path}``, proves it was asked with the one-time token
(``channel_hello``), and after ``channel_welcome`` moves the session's bytes. Each
session has its own TCP connection so one busy terminal cannot stall the others.

``Channel`` is that dial, hello/welcome, websh decoding, sending and closing; what a
session does once welcomed is its subclass's: ``agent.terminal_channel`` (a pty, which
outlives its channel) and ``agent.exec_channel`` (one command, which does not). The flow
control marks (``HIGH_WATER``/``LOW_WATER``) live here because every kind obeys them.

This module must never start a process before the broker's welcome, and never forward
internal error details to the broker beyond a short code and message.
"""

from __future__ import annotations

import enum

from agent.errors import TransportError
from agent.log import log
from agent.loop import Interest
from websh import (
    ChannelHello,
    ChannelKind,
    ChannelWelcome,
    CloseCode,
    Connection,
    ConnectionKind,
    ErrorMessage,
    Exit,
    Message,
    OpenChannel,
    ProtocolError,
    Side,
    WebshError,
)
from websh import State as ConnectionState

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

    from agent.execute import Execution
    from agent.terminal import Terminal
    from agent.terminal_table import TerminalTable
    from agent.transport import WebSocketClient
    from agent.users import UnixUser, UserPolicy

__all__ = [
    "HIGH_WATER",
    "LOW_WATER",
    "Channel",
    "ChannelContext",
    "Phase",
    "exit_message",
]

#: Stop reading a pty / pipe while this much is queued for the broker; resume below LOW.
#: The queue is only what the kernel's socket buffer (which autotunes to megabytes) has
#: not taken, so it does not set the pace; each queued KiB is resident memory per channel.
HIGH_WATER = 128 * 1024
LOW_WATER = 32 * 1024


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


def exit_message(code: int | None, sig: int | None, timed_out: bool = False) -> Exit:
    """The ``exit`` a session ends with: a signal if one ended it, else the status."""
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
