"""The running agent: one epoll loop driving the control connection and the sessions.

``Agent`` wires the parts (``agent.control``'s ``ControlLink``, ``agent.sessions``'
``Sessions``, the ``TerminalTable``) and runs them on one ``agent.loop.Loop``, no
threads: on each pass that something changed it declares what to watch (the wake-up
socket, the control socket, every channel's socket, every pty not paused by flow control)
and runs the timers; it installs the SIGTERM/SIGINT/SIGCHLD handlers and shuts down
cleanly (every WebSocket closed with 1001, terminals hung up, commands left running).

The loop re-declares its interests only when a callback changed something they depend
on; a keystroke and its echo go through ``_watched`` and ``_pumping`` callbacks that
compare a channel's ``shape()`` instead. Those two closures are the data path: they
must never gain a call, an indirection or an attribute lookup.

This module must never log a secret or token, never block, and never let one failing
channel take the control connection (or the other sessions) down.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import time
from types import FrameType

from agent import __version__
from agent.backoff import Backoff
from agent.channels import HIGH_WATER, LOW_WATER, Phase
from agent.control import ControlLink
from agent.errors import TransportError
from agent.exec_channel import ExecChannel
from agent.log import log
from agent.loop import Interest, Loop
from agent.metrics import MetricsSource
from agent.sessions import Sessions
from agent.sysinfo import system_info
from agent.terminal_channel import TerminalChannel
from agent.terminal_table import TerminalTable
from agent.transport import WebSocketClient
from websh import CloseCode

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

    from agent.channels import Channel
    from agent.config import AgentConfig
    from agent.execute import Execution
    from agent.terminal import Terminal
    from agent.users import UnixUser, UserPolicy
    from websh import Message, Metrics, OpenChannel

__all__ = ["Agent"]

_MAX_WAIT = 1.0  # wake at least this often to reap children and check timers
#: While a terminal's pty reached end of output but its shell is not reaped yet, look
#: again this often (SIGCHLD normally comes first; without signal handlers it is the way).
_EXIT_POLL = 0.05
_SHUTDOWN_FLUSH = 2.0


class Agent:
    """Everything the running agent does. ``run()`` returns the process exit status.

    Collaborators are injected (clock, backoff, sysinfo and metrics sources, how to
    connect, how to start terminals and commands) so tests drive the real loop against
    a loopback broker without patching.
    """

    def __init__(
        self,
        config: AgentConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        backoff: Backoff | None = None,
        connect: Callable[[str], WebSocketClient] | None = None,
        sysinfo: Callable[[], dict[str, Any]] = system_info,
        metrics: Callable[[], Metrics] | None = None,
        terminals: TerminalTable | None = None,
        resolve: Callable[[str, UserPolicy], UnixUser] | None = None,
        open_terminal: Callable[[UnixUser, int, int, bool], Terminal] | None = None,
        start_exec: Callable[[UnixUser, OpenChannel], Execution] | None = None,
        sysinfo_interval: float = 60.0,
        welcome_timeout: float = 30.0,
        refused_retry: float = 60.0,
    ) -> None:
        self.config = config
        self._clock = clock
        self._connect = connect or self._default_connect
        self.terminals = terminals or TerminalTable(
            grace_seconds=float(config.pty_grace_seconds), clock=clock
        )
        #: The data channels and terminals (what the broker opens through ``control``).
        self.sessions = Sessions(
            config,
            self.terminals,
            send_control=self._send_control,
            connect=self._connect,
            clock=clock,
            resolve=resolve,
            open_terminal=open_terminal,
            start_exec=start_exec,
        )
        #: The control connection.
        self.control = ControlLink(
            config,
            clock=clock,
            backoff=backoff or Backoff(clock=clock),
            connect=self._connect,
            sysinfo=sysinfo,
            metrics=metrics or MetricsSource(),
            terminals=self.terminals,
            on_open_channel=self.sessions.open_channel,
            on_close_channel=self.sessions.close_channel,
            sysinfo_interval=sysinfo_interval,
            welcome_timeout=welcome_timeout,
            refused_retry=refused_retry,
        )
        self._loop = Loop()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stop_signal: int | None = None
        self._stopping = False
        # loop state: re-declare interests and run the checks only when something changed
        # (``_dirty``) or a timer is due; a keystroke and its echo need neither
        self._dirty = True
        self._due = 0.0
        self._signals = False  # SIGCHLD handler installed: reap children when it fires
        self._child_event = False
        #: Terminals whose pty is not read while their channel's queue drains (flow control).
        self._paused: set[str] = set()

    def _default_connect(self, url: str) -> WebSocketClient:
        return WebSocketClient(url, ca_file=self.config.ca_file, clock=self._clock)

    def _send_control(self, message: Message) -> None:
        self.control.send(message)

    # ------------------------------------------------------------------ public

    def stop(self, signum: int | None = None) -> None:
        """Ask the loop to shut down (safe from a signal handler or another thread)."""
        self._stop_signal = signum
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def run(self, *, install_signals: bool = True) -> int:
        """Serve until SIGTERM/SIGINT (or ``stop()``); returns 0 after a clean shutdown."""
        previous: dict[signal.Signals, Any] = {}
        old_wakeup = -1
        if install_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                previous[signum] = signal.signal(signum, self._on_signal)
            previous[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, self._on_child)
            old_wakeup = signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
            self._signals = True
        log.info(
            "corral-agent %s starting: agent %s, broker %s",
            __version__, self.config.agent_id, self.config.broker_url,
        )  # fmt: skip
        try:
            while not self._stopping:
                now = self._clock()
                if not self._dirty and now < self._due:
                    self._loop.poll(None, self._due - now)
                    continue
                self._dirty = False
                children = self._child_event or not self._signals or now >= self._due
                self._child_event = False
                self._tick(children=children)
                if self._stopping:
                    break
                interests = self._interests()
                timeout = self._timeout()
                self._due = self._clock() + timeout
                self._loop.poll(interests, timeout)
            self._shutdown()
        finally:
            self._signals = False
            if install_signals:
                signal.set_wakeup_fd(old_wakeup)
                for signum, handler in previous.items():
                    signal.signal(signum, handler)
            self._loop.close()
            self._wake_r.close()
            self._wake_w.close()
        return 0

    @property
    def connected(self) -> bool:
        """True while the control connection is welcomed."""
        return self.control.connected

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stop(signum)

    def _on_child(self, signum: int, frame: FrameType | None) -> None:
        """SIGCHLD: reap on the next pass (the wakeup fd makes that pass come at once)."""
        self._child_event = True

    # ------------------------------------------------------------------ loop plumbing

    def _interests(self) -> list[Interest]:
        """Everything to watch now; callbacks that may change it set ``_dirty``.

        The hot paths (a terminal channel's socket, a pty) compare the channel's
        ``shape()`` after the callback with its shape now instead, so a keystroke or an
        echo that changes nothing leaves the registrations as they are. (Until one of
        them sees a change, nothing else can have changed it: every other callback
        sets ``_dirty``, and the timers run only on a pass that re-declares.)
        """
        interests = [Interest(self._wake_r.fileno(), self._drain_wakeup)]
        ws = self.control.ws
        if ws is not None and not ws.closed:
            interests.append(
                Interest(
                    ws.fileno(),
                    self._on_control_readable,
                    self._on_control_writable if ws.wants_write else None,
                )
            )
        sessions = self.sessions
        pump = sessions.pump
        for channel in sessions.channels:
            hot = isinstance(channel, TerminalChannel)
            for interest in channel.interests():
                on_read = interest.on_read
                if on_read is not None:
                    on_read = (
                        self._watched(channel, channel.shape(), on_read)
                        if hot
                        else self._dirtying(on_read)
                    )
                on_write = interest.on_write
                if on_write is not None:
                    on_write = self._dirtying(on_write)
                interests.append(Interest(interest.fd, on_read, on_write))
        for channel_id in self.terminals:
            terminal = self.terminals.get(channel_id)
            if terminal is None or terminal.closed:
                continue
            live = sessions.live_terminal_channel(channel_id)
            if live is not None:
                if live.backlog > HIGH_WATER:
                    self._paused.add(channel_id)
                elif live.backlog < LOW_WATER:
                    self._paused.discard(channel_id)
            else:
                self._paused.discard(channel_id)
            on_read = None
            if not terminal.eof and channel_id not in self._paused:
                on_read = self._pumping(channel_id, terminal, live, pump)
            on_write = None
            if terminal.wants_write:
                on_write = self._dirtying(_bind(sessions.flush_terminal, channel_id))
            interests.append(Interest(terminal.fileno(), on_read, on_write))
        return interests

    def _dirtying(self, callback: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            self._dirty = True
            callback()

        return run

    def _watched(
        self, channel: Channel, shape: tuple[object, ...], callback: Callable[[], None]
    ) -> Callable[[], None]:
        def run() -> None:
            callback()
            if channel.shape() != shape:
                self._dirty = True

        return run

    def _pumping(
        self,
        channel_id: str,
        terminal: Terminal,
        channel: TerminalChannel | None,
        pump: Callable[[str, Terminal, TerminalChannel | None], None],
    ) -> Callable[[], None]:
        """The pty's read callback: its output to ``channel`` while that one stays live.

        ``pump`` (``Sessions.pump``, bound once per pass) is called as a free variable."""
        shape = channel.shape() if channel is not None else None

        def run() -> None:
            live = channel
            if live is None or not live.live or live.done:
                self._dirty = True
                self.sessions.read_terminal(channel_id)
                return
            pump(channel_id, terminal, live)
            if live.shape() != shape:
                self._dirty = True

        return run

    def _timeout(self) -> float:
        """Seconds until the next timer is due (at most ``_MAX_WAIT``)."""
        now = self._clock()
        deadlines = self.control.deadlines()
        for channel in self.sessions.channels:
            deadline = channel.deadline()
            if deadline is not None:
                deadlines.append(deadline)
        wait = self.terminals.next_deadline()
        if wait is not None:
            deadlines.append(now + wait)
        if not self._signals:
            for channel_id in self.terminals:
                terminal = self.terminals.get(channel_id)
                if terminal is not None and terminal.eof and terminal.status is None:
                    deadlines.append(now + _EXIT_POLL)
                    break
        timeout = min(deadlines) - now if deadlines else _MAX_WAIT
        return min(max(timeout, 0.0), _MAX_WAIT)

    def _drain_wakeup(self) -> None:
        self._dirty = True  # a signal or stop(): look at everything
        with contextlib.suppress(OSError):
            while self._wake_r.recv(4096):
                pass

    def _tick(self, *, children: bool = True) -> None:
        """Timers and state checks; ``children``: also look for shells that ended."""
        self.control.tick()
        self.sessions.tick(children)
        self.sessions.collect(self._stopping)

    def _on_control_readable(self) -> None:
        self._dirty = True
        self.control.on_readable()

    def _on_control_writable(self) -> None:
        self._dirty = True
        self.control.on_writable()

    # ------------------------------------------------------------------ shutdown

    def _shutdown(self) -> None:
        why = signal.Signals(self._stop_signal).name if self._stop_signal else "stop requested"
        count = len(self.terminals)
        channels = self.sessions.channels
        control = self.control.ws
        running = [c for c in channels if isinstance(c, ExecChannel) and not c.finished]
        log.info(
            "shutting down (%s): hanging up %d terminal(s); %d command(s) left running",
            why, count, len(running),
        )  # fmt: skip
        for channel in channels:
            if not channel.ws.closed:
                channel.phase = Phase.FINISHED
                channel.ws.close(int(CloseCode.GOING_AWAY), "agent shutting down")
        if control is not None and not control.closed:
            control.close(int(CloseCode.GOING_AWAY), "agent shutting down")
        self.terminals.close_all()
        deadline = self._clock() + _SHUTDOWN_FLUSH
        while self._clock() < deadline:
            sockets = [c.ws for c in channels] + ([control] if control else [])
            if all(ws.closed for ws in sockets):
                break
            interests: list[Interest] = []
            for ws in sockets:
                if not ws.closed:
                    interests.append(
                        Interest(
                            ws.fileno(),
                            _quiet(ws.on_readable),
                            _quiet(ws.on_writable) if ws.wants_write else None,
                        )
                    )
            self._loop.poll(interests, 0.05)
            for ws in sockets:
                with contextlib.suppress(TransportError):
                    ws.check_timeouts()
        for channel in channels:
            channel.ws.abort()
        if control is not None:
            control.abort()
        self.terminals.reap()
        log.info("agent stopped")


def _bind(method: Callable[[str], None], channel_id: str) -> Callable[[], None]:
    return lambda: method(channel_id)


def _quiet(method: Callable[[], None]) -> Callable[[], None]:
    def call() -> None:
        with contextlib.suppress(TransportError):
            method()

    return call
