"""Terminal channels: a login shell on a pty for one broker session, and its re-attach.

After the broker's welcome the channel either re-attaches a terminal this agent still
holds for the channel id (the broker's next message, ``attach``, says from which output
offset to replay) or resolves the Unix user, starts the login shell and registers it in
the ``TerminalTable``. Input and resizes go to the pty; the pty's output is read by the
agent's loop (``agent.sessions``), which hands it to ``output``. A terminal outlives its
channel: if the WebSocket drops while the shell lives, the terminal is detached and kept
for the grace period.

This module must never start a shell before the broker's welcome or as a user the host's
policy refuses, never replay output to a channel that did not ask for it, and never
forward internal error details to the broker beyond a short code and message.
"""

from __future__ import annotations

from agent.channels import Channel, Phase, exit_message
from agent.errors import AgentError, InputOverflow, ReplayError, TerminalError, UserError
from agent.log import log
from agent.shellmarks import SHELL_MARKS_ENV
from websh import (
    Attach,
    ChannelKind,
    CloseCode,
    ErrorMessage,
    Input,
    Message,
    OpenChannel,
    Output,
    Resize,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from agent.channels import ChannelContext
    from agent.spawn import ExitStatus
    from agent.terminal import Terminal

__all__ = ["TerminalChannel"]


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
        self.send(exit_message(status.code, status.signal))
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
