"""Exec channels: one command for one broker session, stdout and stderr apart, then ``exit``.

After the broker's welcome the channel resolves the Unix user and starts the command
(``agent.execute``); it streams the two pipes as ``stdout``/``stderr`` (not while its
socket's queue is past ``HIGH_WATER``), waits a little for them to drain once the command
ended, and sends ``exit``. Unlike a terminal, a command does not outlive its channel: a
dropped channel cancels it (SIGTERM, SIGKILL later).

This module must never start a command before the broker's welcome or as a user the
host's policy refuses, never feed it input (stdin is /dev/null), and never forward
internal error details to the broker beyond a short code and message.
"""

from __future__ import annotations

from agent.channels import HIGH_WATER, Channel, Phase, exit_message
from agent.errors import ExecError, SpawnError, UserError
from agent.execute import ExecResult, Execution
from agent.log import log
from agent.loop import Interest
from websh import (
    ChannelKind,
    CloseCode,
    Eof,
    ErrorMessage,
    Exit,
    Input,
    Message,
    OpenChannel,
    Stderr,
    Stdout,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from agent.channels import ChannelContext
    from agent.users import UnixUser

__all__ = ["PIPE_DRAIN_SECONDS", "ExecChannel", "start_exec"]

#: After the command exited, wait this long for its pipes to reach EOF (daemonized
#: grandchildren may hold them open for ever).
PIPE_DRAIN_SECONDS = 2.0


def start_exec(user: UnixUser, request: OpenChannel) -> Execution:
    """Start ``request``'s command as ``user`` (the agent's default ``start_exec``)."""
    command = request.command
    assert command is not None
    env: Mapping[str, str] = request.env
    return Execution.start(
        user,
        command if isinstance(command, str) else list(command),
        env=dict(env),
        timeout=request.timeout,
    )


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
                self.send(exit_message(result.exit_code, result.signal, result.timed_out))
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
