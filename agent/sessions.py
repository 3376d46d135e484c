"""The agent's sessions: the data channels the broker opened and the terminals' output.

``Sessions`` holds every live data channel (``agent.terminal_channel``,
``agent.exec_channel``) and the ``TerminalTable``. It opens a channel for the broker's
``open_channel`` (closing a stale one for the same terminal with 4010), closes one for
``close_channel``, forgets the finished ones, reads each pty and hands its output to the
terminal's live channel (``pump``: one ``output`` for up to 64 KiB, an echo sent at once,
then kept in the replay ring), and reports a shell's exit once its output has gone out.

``pump`` is the pty -> frame -> TLS -> send path of every terminal: the loop
(``agent.daemon``) calls it straight from the pty's read callback, so it must stay one
call with nothing added in front of it. This module must never block, never send a
terminal's output to any channel but its live one, and never let one channel's failure
reach another session or the control connection.
"""

from __future__ import annotations

import contextlib

from agent.channels import Channel, ChannelContext, Phase
from agent.errors import TerminalError, TransportError
from agent.exec_channel import ExecChannel
from agent.exec_channel import start_exec as _start_exec
from agent.log import log
from agent.terminal import Terminal
from agent.terminal_channel import TerminalChannel
from agent.transport import websocket_url
from agent.users import UserPolicy, resolve_user
from websh import ChannelKind, CloseChannel, CloseCode

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

    from agent.config import AgentConfig
    from agent.execute import Execution
    from agent.spawn import ExitStatus
    from agent.terminal_table import TerminalTable
    from agent.transport import WebSocketClient
    from agent.users import UnixUser
    from websh import Message, OpenChannel

__all__ = ["Sessions"]

#: A pty hands out at most about 4 KiB per read; while a command streams output, keep
#: reading (until the pty is empty or this much is gathered) and send one ``output``, so
#: every stage after it (websh, TLS, the broker's relay and recording) handles 16x fewer
#: messages. An echoed keystroke still leaves at once.
_READ_COALESCE = 64 * 1024
#: A first read shorter than this is interactive output (an echo, a prompt): send it now
#: rather than read again only to learn the pty is empty (on Linux that read waits for
#: the tty's flush work). The selector is level-triggered, so bytes that arrive meanwhile
#: are reported at once. A stream's first read is full, and its reads go on as above.
_SHORT_READ = 1024


class Sessions:
    """The data channels and terminals of this agent process.

    ``send_control`` sends on the control connection (``close_channel`` when a channel
    cannot be dialled). ``resolve``, ``open_terminal`` and ``start_exec`` default to the
    real thing (``agent.users``, a login shell on a pty, ``agent.execute``); tests inject.
    """

    def __init__(
        self,
        config: AgentConfig,
        terminals: TerminalTable,
        *,
        send_control: Callable[[Message], None],
        connect: Callable[[str], WebSocketClient],
        clock: Callable[[], float],
        resolve: Callable[[str, UserPolicy], UnixUser] | None = None,
        open_terminal: Callable[[UnixUser, int, int, bool], Terminal] | None = None,
        start_exec: Callable[[UnixUser, OpenChannel], Execution] | None = None,
    ) -> None:
        self.terminals = terminals
        #: Live data channels, oldest first (re-bound by ``collect``: never keep a copy).
        self.channels: list[Channel] = []
        self._context = ChannelContext(
            terminals=terminals,
            policy=UserPolicy.from_lists(config.allow_users, config.deny_users),
            resolve_user=resolve or (lambda name, policy: resolve_user(name, policy)),
            open_terminal=open_terminal
            or (
                lambda user, cols, rows, marks: Terminal.open(
                    user, cols=cols, rows=rows, shell_marks=marks
                )
            ),
            start_exec=start_exec or _start_exec,
            clock=clock,
            connect=connect,
        )
        self._broker_url = config.broker_url
        self._send_control = send_control
        self._exit_pending: dict[str, ExitStatus] = {}
        #: Where pty reads land (``Terminal.read_burst``); made at the first terminal output.
        self._burst: bytearray | None = None

    def tick(self, children: bool = True) -> None:
        """Channels' timers and process state; ``children``: also look for ended shells."""
        for channel in list(self.channels):
            channel.tick()
        self._tick_terminals(children)

    def open_channel(self, request: OpenChannel) -> None:
        """The broker's ``open_channel``: dial it (``close_channel`` back if that fails)."""
        channel_id = request.channel_id
        url = websocket_url(self._broker_url, request.path)
        channel: Channel
        if request.kind is ChannelKind.TERMINAL:
            channel = TerminalChannel(request, url, self._context)
        else:
            channel = ExecChannel(request, url, self._context)
        for old in self.channels:
            if old.channel_id == channel_id and isinstance(old, TerminalChannel) and not old.done:
                # The broker re-opened this session: the old link is stale.
                old.terminal = None
                old.live = False
                old.finish(CloseCode.REPLACED, "replaced")
        log.info("channel %s: opening %s for user %s", channel_id, request.kind.value, request.user)
        try:
            channel.start()
        except TransportError as exc:
            log.warning("channel %s: cannot connect: %s", channel_id, exc)
            self._send_control(CloseChannel(channel_id=channel_id, reason="agent cannot connect"))
            return
        self.channels.append(channel)

    def close_channel(self, channel_id: str, reason: str) -> None:
        """The broker's ``close_channel``: hang the terminal up or cancel the command."""
        log.info("channel %s: closed by the broker%s", channel_id, f": {reason}" if reason else "")
        found = False
        for channel in self.channels:
            if channel.channel_id != channel_id:
                continue
            found = True
            if isinstance(channel, TerminalChannel):
                channel.kill()
                channel.finish(CloseCode.NORMAL, "closed by broker")
            elif isinstance(channel, ExecChannel):
                channel.kill()
        if channel_id in self.terminals:
            found = True
            self.terminals.remove(channel_id)
        self._exit_pending.pop(channel_id, None)
        if not found:
            log.info("channel %s: nothing to close", channel_id)

    def collect(self, stopping: bool) -> None:
        """Forget finished channels (a cancelled command's once it is reaped); tell the
        broker about those that never got through, unless the agent is ``stopping``."""
        keep: list[Channel] = []
        for channel in self.channels:
            if not channel.done:
                keep.append(channel)
                continue
            if isinstance(channel, ExecChannel) and not channel.finished:
                keep.append(channel)  # keep reaping the cancelled command
                continue
            if channel.phase in (Phase.DIALING, Phase.AWAIT_WELCOME) and not stopping:
                self._send_control(
                    CloseChannel(channel_id=channel.channel_id, reason="agent cannot connect")
                )
        self.channels = keep

    def live_terminal_channel(self, channel_id: str) -> TerminalChannel | None:
        """The channel a terminal's output goes to now, if any."""
        for channel in self.channels:
            if (
                isinstance(channel, TerminalChannel)
                and channel.channel_id == channel_id
                and channel.live
                and not channel.done
            ):
                return channel
        return None

    def read_terminal(self, channel_id: str) -> None:
        """Read a terminal's pty whether or not a channel is live (detached: only kept)."""
        terminal = self.terminals.get(channel_id)
        if terminal is None or terminal.closed:
            return
        self.pump(channel_id, terminal, self.live_terminal_channel(channel_id))

    def pump(self, channel_id: str, terminal: Terminal, channel: TerminalChannel | None) -> None:
        """Read what the pty has (up to ``_READ_COALESCE``) and send it as one output.

        The bytes go to the replay buffer right after the send, not before: an echo
        leaves without waiting for the ring, and nothing can ask for a replay in between.
        """
        if terminal.closed:
            return
        burst = self._burst
        if burst is None:
            burst = self._burst = bytearray(_READ_COALESCE)
        try:
            data = terminal.read_burst(burst, _SHORT_READ, keep=False)
        except TerminalError as exc:
            log.warning("channel %s: %s", channel_id, exc)
            return
        if data:
            try:
                if channel is not None:
                    channel.output(data)
            finally:
                terminal.keep(data)

    def flush_terminal(self, channel_id: str) -> None:
        """Write a terminal's queued input (its pty is writable again)."""
        terminal = self.terminals.get(channel_id)
        if terminal is not None and not terminal.closed:
            with contextlib.suppress(TerminalError):
                terminal.flush()

    def _tick_terminals(self, children: bool = True) -> None:
        """Drain and report shells that ended; hang up terminals past their grace."""
        exited = self.terminals.exited() if children else []
        for channel_id, status in exited:
            terminal = self.terminals.get(channel_id)
            while terminal is not None and not terminal.closed and not terminal.eof:
                before = terminal.output_offset
                self.read_terminal(channel_id)
                if terminal.output_offset == before:
                    break
            self._exit_pending[channel_id] = status
        for channel_id, status in list(self._exit_pending.items()):
            channel = self.live_terminal_channel(channel_id)
            if channel is None or channel.phase is not Phase.OPEN:
                if channel_id not in self.terminals:
                    del self._exit_pending[channel_id]
                continue
            del self._exit_pending[channel_id]
            channel.report_exit(status)
            self.terminals.remove(channel_id)
        for channel_id in self.terminals.reap():
            self._exit_pending.pop(channel_id, None)
            log.info("channel %s: terminal hung up after the grace period", channel_id)
