"""The agent's main loop: the control connection, its channels, and the terminals.

One epoll loop (``agent.loop``), no threads: it keeps the control WebSocket to
``{broker}/agent/v1/control`` up (hello with the credential and surviving terminals,
heartbeats, inventory and metrics), dials a data channel for every ``open_channel``,
pumps pty and pipe output to those channels (pausing a source while its channel's send
queue is full), and reconnects with jittered backoff whenever anything breaks.

Close codes decide the log line, never whether to retry: an agent is a daemon and an
operator may fix the broker side (re-register, un-revoke) at any time, so it always
retries, at the backoff cap when its credential was refused.

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
from agent.channels import HIGH_WATER, LOW_WATER, Channel, ChannelContext, Phase
from agent.config import AgentConfig
from agent.errors import TerminalError, TransportError
from agent.exec_channel import ExecChannel
from agent.exec_channel import start_exec as _start_exec
from agent.execute import Execution
from agent.log import log
from agent.loop import Interest, Loop
from agent.metrics import MetricsSource
from agent.spawn import ExitStatus
from agent.sysinfo import changed, system_info
from agent.terminal import Terminal
from agent.terminal_channel import TerminalChannel
from agent.terminal_table import TerminalTable
from agent.transport import WebSocketClient, websocket_url
from agent.users import UnixUser, UserPolicy, resolve_user
from websh import (
    ChannelKind,
    CloseChannel,
    CloseCode,
    Connection,
    ConnectionKind,
    ErrorMessage,
    Hello,
    Message,
    Metrics,
    OpenChannel,
    Ping,
    ProtocolError,
    RetryLater,
    Side,
    State,
    SysInfo,
    WebshError,
    Welcome,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

__all__ = ["CONTROL_PATH", "Agent"]

CONTROL_PATH = "/agent/v1/control"
_MAX_WAIT = 1.0  # wake at least this often to reap children and check timers
#: While a terminal's pty reached end of output but its shell is not reaped yet, look
#: again this often (SIGCHLD normally comes first; without signal handlers it is the way).
_EXIT_POLL = 0.05
_SHUTDOWN_FLUSH = 2.0
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
        self._backoff = backoff or Backoff(clock=clock)
        self._connect = connect or self._default_connect
        self._sysinfo = sysinfo
        self._metrics = metrics or MetricsSource()
        self.terminals = terminals or TerminalTable(
            grace_seconds=float(config.pty_grace_seconds), clock=clock
        )
        self._sysinfo_interval = sysinfo_interval
        self._welcome_timeout = welcome_timeout
        self._refused_retry = refused_retry
        self._context = ChannelContext(
            terminals=self.terminals,
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
            connect=self._connect,
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
        # control connection state
        self._ws: WebSocketClient | None = None
        self._conn: Connection | None = None
        self._reconnect_at = clock()
        self._connected_at = 0.0
        self._retry_after: float | None = None
        self._heartbeat = 0.0
        self._metrics_interval = 0.0
        self._next_ping = 0.0
        self._next_metrics = 0.0
        self._next_sysinfo = 0.0
        self._ping_nonce = 0
        self._last_info: dict[str, Any] | None = None
        self.welcomed = 0  # number of welcomes received (for tests and logs)
        # sessions
        self._channels: list[Channel] = []
        self._paused: set[str] = set()
        self._exit_pending: dict[str, ExitStatus] = {}
        #: Where pty reads land (``Terminal.read_burst``); made at the first terminal output.
        self._burst: bytearray | None = None

    def _default_connect(self, url: str) -> WebSocketClient:
        return WebSocketClient(url, ca_file=self.config.ca_file, clock=self._clock)

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
        return self._conn is not None and self._conn.state is State.OPEN

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
        ws = self._ws
        if ws is not None and not ws.closed:
            interests.append(
                Interest(
                    ws.fileno(),
                    self._on_control_readable,
                    self._on_control_writable if ws.wants_write else None,
                )
            )
        for channel in self._channels:
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
            live = self._live_terminal_channel(channel_id)
            if live is not None:
                if live.backlog > HIGH_WATER:
                    self._paused.add(channel_id)
                elif live.backlog < LOW_WATER:
                    self._paused.discard(channel_id)
            else:
                self._paused.discard(channel_id)
            on_read = None
            if not terminal.eof and channel_id not in self._paused:
                on_read = self._pumping(channel_id, terminal, live)
            on_write = None
            if terminal.wants_write:
                on_write = self._dirtying(_bind(self._flush_terminal, channel_id))
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
        self, channel_id: str, terminal: Terminal, channel: TerminalChannel | None
    ) -> Callable[[], None]:
        """The pty's read callback: its output to ``channel`` while that one stays live."""
        shape = channel.shape() if channel is not None else None

        def run() -> None:
            live = channel
            if live is None or not live.live or live.done:
                self._dirty = True
                self._read_terminal(channel_id)
                return
            self._pump(channel_id, terminal, live)
            if live.shape() != shape:
                self._dirty = True

        return run

    def _timeout(self) -> float:
        """Seconds until the next timer is due (at most ``_MAX_WAIT``)."""
        now = self._clock()
        deadlines: list[float] = []
        if self._ws is None:
            deadlines.append(self._reconnect_at)
        else:
            deadline = self._ws.deadline()
            if deadline is not None:
                deadlines.append(deadline)
            if self.connected:
                deadlines.append(self._next_ping)
                deadlines.append(self._ws.last_received + 3 * self._heartbeat)
                if self._metrics_interval > 0:
                    deadlines.append(self._next_metrics)
                deadlines.append(self._next_sysinfo)
        for channel in self._channels:
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
        self._tick_control()
        for channel in list(self._channels):
            channel.tick()
        self._tick_terminals(children)
        self._collect_channels()

    # ------------------------------------------------------------------ control link

    def _start_control(self) -> None:
        url = websocket_url(self.config.broker_url, CONTROL_PATH)
        self._retry_after = None
        self._conn = Connection(ConnectionKind.CONTROL, Side.CLIENT)
        try:
            self._ws = self._connect(url)
            self._ws.connect()
        except TransportError as exc:
            self._ws = None
            self._schedule_reconnect(f"cannot connect: {exc}")
            return
        self._connected_at = self._clock()
        log.info("connecting to %s", url)

    def _tick_control(self) -> None:
        now = self._clock()
        ws = self._ws
        if ws is None:
            if now >= self._reconnect_at:
                self._start_control()
            return
        try:
            ws.check_timeouts()
        except TransportError as exc:
            self._control_lost(str(exc))
            return
        if ws.closed:
            self._control_closed()
            return
        if not self.connected:
            if ws.open and now - self._connected_at > self._welcome_timeout:
                log.warning("no welcome from the broker within %.0fs", self._welcome_timeout)
                ws.abort()
                self._control_closed()
            return
        if now - ws.last_received > 3 * self._heartbeat:
            log.warning(
                "nothing received from the broker for %.1fs; reconnecting",
                now - ws.last_received,
            )
            ws.close(int(CloseCode.HEARTBEAT_TIMEOUT), "heartbeat timeout")
            ws.abort()
            self._control_closed()
            return
        if now >= self._next_ping:
            self._ping_nonce += 1
            self._control_send(Ping(nonce=self._ping_nonce, ts=time.time()))
            self._next_ping = now + self._heartbeat
        if self._metrics_interval > 0 and now >= self._next_metrics:
            self._next_metrics = now + self._metrics_interval
            try:
                self._control_send(self._metrics())
            except Exception as exc:  # a metrics bug must not cost the connection
                log.warning("metrics sample failed: %s", exc)
        if now >= self._next_sysinfo:
            self._next_sysinfo = now + self._sysinfo_interval
            info = self._sysinfo()
            if changed(self._last_info, info):
                self._control_send(SysInfo(info=info))
                self._last_info = info
                log.info("inventory changed; sent sysinfo")

    def _on_control_writable(self) -> None:
        self._dirty = True
        ws = self._ws
        if ws is None:
            return
        try:
            ws.on_writable()
        except TransportError as exc:
            self._control_lost(str(exc))
            return
        self._after_control_io()

    def _on_control_readable(self) -> None:
        self._dirty = True
        ws = self._ws
        if ws is None:
            return
        try:
            ws.on_readable()
        except TransportError as exc:
            self._control_lost(str(exc))
            return
        self._after_control_io()

    def _after_control_io(self) -> None:
        ws, conn = self._ws, self._conn
        if ws is None or conn is None:
            return
        if conn.state is State.AWAIT_HELLO and ws.open:
            self._send_hello()
        for payload in ws.messages():
            if conn.state is State.CLOSED:
                break
            try:
                conn.receive(payload)
            except ProtocolError as exc:
                log.warning("broker broke the protocol on the control connection: %s", exc)
                ws.close(int(exc.code), exc.reason)
                break
            except WebshError:
                break
            for event in conn.events_received():
                self._on_control_event(event)
        self._flush_control()
        if self._ws is not None and self._ws.closed:
            self._control_closed()

    def _send_hello(self) -> None:
        info = self._sysinfo()
        channels = tuple(self.terminals)
        hello = Hello(
            agent_id=self.config.agent_id,
            secret=self.config.secret,
            agent_version=__version__,
            sysinfo=info,
            channels=channels,
        )
        try:
            self._control_send(hello, strict=True)
        except WebshError as exc:
            log.warning("inventory not sendable (%s); sending a minimal one", exc)
            info = {"hostname": socket.gethostname(), "agent_version": __version__}
            self._control_send(
                Hello(
                    agent_id=self.config.agent_id,
                    secret=self.config.secret,
                    agent_version=__version__,
                    sysinfo=info,
                    channels=channels,
                )
            )
        self._last_info = info
        log.info("sent hello (%d surviving terminal(s))", len(channels))

    def _on_control_event(self, event: Message) -> None:
        if isinstance(event, Welcome):
            now = self._clock()
            self._heartbeat = event.heartbeat_interval
            self._metrics_interval = event.metrics_interval
            self._next_ping = now + self._heartbeat
            self._next_metrics = now + self._metrics_interval
            self._next_sysinfo = now + self._sysinfo_interval
            self._backoff.connected()
            self.welcomed += 1
            log.info(
                "connected to the broker (heartbeat %.1fs, metrics %s)",
                self._heartbeat,
                f"{self._metrics_interval:.0f}s" if self._metrics_interval else "off",
            )
        elif isinstance(event, OpenChannel):
            self._open_channel(event)
        elif isinstance(event, CloseChannel):
            self._close_channel(event.channel_id, event.reason)
        elif isinstance(event, RetryLater):
            self._retry_after = event.after
            log.warning(
                "broker asks to retry in %.1fs%s",
                event.after, f": {event.reason}" if event.reason else "",
            )  # fmt: skip
        elif isinstance(event, ErrorMessage):
            log.warning("broker error %s: %s", event.code, event.message)

    def _control_send(self, message: Message, *, strict: bool = False) -> None:
        conn = self._conn
        if conn is None or conn.state is State.CLOSED:
            return
        try:
            conn.send(message)
        except WebshError as exc:
            if strict:
                raise
            log.error("cannot send %s: %s", message.type, exc)
            return
        self._flush_control()

    def _flush_control(self) -> None:
        ws, conn = self._ws, self._conn
        if ws is None or conn is None:
            return
        for payload in conn.data_to_send():
            if not ws.open:
                break
            try:
                ws.send(payload)
            except TransportError as exc:
                self._control_lost(str(exc))
                break

    def _control_lost(self, reason: str) -> None:
        if self._ws is not None:
            self._ws.abort()
        log.warning("control connection failed: %s", reason)
        self._control_closed(logged=True)

    def _control_closed(self, *, logged: bool = False) -> None:
        ws = self._ws
        self._ws = None
        self._conn = None
        if ws is None:
            return
        code = ws.close_code or 1006
        reason = ws.close_reason
        retry_after: float | None = self._retry_after
        if code == CloseCode.REPLACED:
            log.warning("control connection replaced by a newer one for this agent (4010)")
        elif code in (CloseCode.UNAUTHENTICATED, CloseCode.REVOKED):
            log.error(
                "broker refused this agent's credential (%d %s); re-register with "
                "'corral-agent register' - retrying every ~%.0fs",
                code, reason or CloseCode(code).name.lower(), self._refused_retry,
            )  # fmt: skip
            retry_after = self._refused_retry
        elif not logged:
            log.warning("control connection closed (%d%s)", code, f" {reason}" if reason else "")
        delay = self._backoff.next_delay(retry_after=retry_after)
        self._reconnect_at = self._clock() + delay
        log.info("reconnecting in %.1fs", delay)

    def _schedule_reconnect(self, why: str) -> None:
        delay = self._backoff.next_delay(retry_after=self._retry_after)
        self._reconnect_at = self._clock() + delay
        log.warning("%s; retrying in %.1fs", why, delay)

    # ------------------------------------------------------------------ channels

    def _open_channel(self, request: OpenChannel) -> None:
        channel_id = request.channel_id
        url = websocket_url(self.config.broker_url, request.path)
        channel: Channel
        if request.kind is ChannelKind.TERMINAL:
            channel = TerminalChannel(request, url, self._context)
        else:
            channel = ExecChannel(request, url, self._context)
        for old in self._channels:
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
            self._control_send(CloseChannel(channel_id=channel_id, reason="agent cannot connect"))
            return
        self._channels.append(channel)

    def _close_channel(self, channel_id: str, reason: str) -> None:
        log.info("channel %s: closed by the broker%s", channel_id, f": {reason}" if reason else "")
        found = False
        for channel in self._channels:
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

    def _collect_channels(self) -> None:
        keep: list[Channel] = []
        for channel in self._channels:
            if not channel.done:
                keep.append(channel)
                continue
            if isinstance(channel, ExecChannel) and not channel.finished:
                keep.append(channel)  # keep reaping the cancelled command
                continue
            if channel.phase in (Phase.DIALING, Phase.AWAIT_WELCOME) and not self._stopping:
                self._control_send(
                    CloseChannel(channel_id=channel.channel_id, reason="agent cannot connect")
                )
        self._channels = keep

    def _live_terminal_channel(self, channel_id: str) -> TerminalChannel | None:
        for channel in self._channels:
            if (
                isinstance(channel, TerminalChannel)
                and channel.channel_id == channel_id
                and channel.live
                and not channel.done
            ):
                return channel
        return None

    # ------------------------------------------------------------------ terminals

    def _read_terminal(self, channel_id: str) -> None:
        terminal = self.terminals.get(channel_id)
        if terminal is None or terminal.closed:
            return
        self._pump(channel_id, terminal, self._live_terminal_channel(channel_id))

    def _pump(self, channel_id: str, terminal: Terminal, channel: TerminalChannel | None) -> None:
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

    def _flush_terminal(self, channel_id: str) -> None:
        terminal = self.terminals.get(channel_id)
        if terminal is not None and not terminal.closed:
            with contextlib.suppress(TerminalError):
                terminal.flush()

    def _tick_terminals(self, children: bool = True) -> None:
        exited = self.terminals.exited() if children else []
        for channel_id, status in exited:
            terminal = self.terminals.get(channel_id)
            while terminal is not None and not terminal.closed and not terminal.eof:
                before = terminal.output_offset
                self._read_terminal(channel_id)
                if terminal.output_offset == before:
                    break
            self._exit_pending[channel_id] = status
        for channel_id, status in list(self._exit_pending.items()):
            channel = self._live_terminal_channel(channel_id)
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

    # ------------------------------------------------------------------ shutdown

    def _shutdown(self) -> None:
        why = signal.Signals(self._stop_signal).name if self._stop_signal else "stop requested"
        count = len(self.terminals)
        running = [c for c in self._channels if isinstance(c, ExecChannel) and not c.finished]
        log.info(
            "shutting down (%s): hanging up %d terminal(s); %d command(s) left running",
            why, count, len(running),
        )  # fmt: skip
        for channel in self._channels:
            if not channel.ws.closed:
                channel.phase = Phase.FINISHED
                channel.ws.close(int(CloseCode.GOING_AWAY), "agent shutting down")
        if self._ws is not None and not self._ws.closed:
            self._ws.close(int(CloseCode.GOING_AWAY), "agent shutting down")
        self.terminals.close_all()
        deadline = self._clock() + _SHUTDOWN_FLUSH
        while self._clock() < deadline:
            sockets = [c.ws for c in self._channels] + ([self._ws] if self._ws else [])
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
        for channel in self._channels:
            channel.ws.abort()
        if self._ws is not None:
            self._ws.abort()
        self.terminals.reap()
        log.info("agent stopped")


def _bind(method: Callable[[str], None], channel_id: str) -> Callable[[], None]:
    return lambda: method(channel_id)


def _quiet(method: Callable[[], None]) -> Callable[[], None]:
    def call() -> None:
        with contextlib.suppress(TransportError):
            method()

    return call
