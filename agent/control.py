"""The control connection: the agent's one long-lived WebSocket to the broker.

``ControlLink`` keeps ``{broker}/agent/v1/control`` up: it dials, sends ``hello`` (the
credential, the inventory and the terminals still alive in this process), waits for
``welcome``, then sends heartbeats, metrics and inventory changes on their intervals,
drops the connection when the broker has been silent for three heartbeats, and whenever
anything breaks schedules the next attempt with jittered backoff. The broker's requests
on it (``open_channel``, ``close_channel``) go to the callbacks it was given (the
agent's ``Sessions``); everything else it receives it handles itself.

Close codes decide the log line, never whether to retry: an agent is a daemon and an
operator may fix the broker side (re-register, un-revoke) at any time, so it always
retries, at the backoff cap when its credential was refused.

It is driven by the agent's loop (``agent.daemon``): ``tick()`` on every pass,
``on_readable``/``on_writable`` when its socket is ready, ``deadlines()`` for the wait.
This module must never log a secret or token, never block, and never touch a data
channel or a terminal itself: a failure here costs the control connection only.
"""

from __future__ import annotations

import socket
import time

from agent import __version__
from agent.errors import TransportError
from agent.log import log
from agent.sysinfo import changed
from agent.transport import websocket_url
from websh import (
    CloseChannel,
    CloseCode,
    Connection,
    ConnectionKind,
    ErrorMessage,
    Hello,
    Message,
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
    from collections.abc import Iterable
    from typing import Any, Callable

    from agent.backoff import Backoff
    from agent.config import AgentConfig
    from agent.transport import WebSocketClient
    from websh import Metrics

__all__ = ["CONTROL_PATH", "ControlLink"]

CONTROL_PATH = "/agent/v1/control"


class ControlLink:
    """The control connection's state and timers, across reconnects.

    ``terminals`` lists the channel ids of the terminals still alive (sent in ``hello``
    so the broker can re-attach them); ``on_open_channel`` / ``on_close_channel`` receive
    the broker's session requests. The rest is injected as ``Agent`` documents it.
    """

    def __init__(
        self,
        config: AgentConfig,
        *,
        clock: Callable[[], float],
        backoff: Backoff,
        connect: Callable[[str], WebSocketClient],
        sysinfo: Callable[[], dict[str, Any]],
        metrics: Callable[[], Metrics],
        terminals: Iterable[str],
        on_open_channel: Callable[[OpenChannel], None],
        on_close_channel: Callable[[str, str], None],
        sysinfo_interval: float,
        welcome_timeout: float,
        refused_retry: float,
    ) -> None:
        self.config = config
        self._clock = clock
        self._backoff = backoff
        self._connect = connect
        self._sysinfo = sysinfo
        self._metrics = metrics
        self._terminals = terminals
        self._on_open_channel = on_open_channel
        self._on_close_channel = on_close_channel
        self._sysinfo_interval = sysinfo_interval
        self._welcome_timeout = welcome_timeout
        self._refused_retry = refused_retry
        #: The control WebSocket while there is one (the loop watches it, shutdown closes it).
        self.ws: WebSocketClient | None = None
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

    @property
    def connected(self) -> bool:
        """True while the control connection is welcomed."""
        return self._conn is not None and self._conn.state is State.OPEN

    def deadlines(self) -> list[float]:
        """When ``tick`` has work next: the reconnect, or the timers of a live connection."""
        ws = self.ws
        if ws is None:
            return [self._reconnect_at]
        deadlines: list[float] = []
        deadline = ws.deadline()
        if deadline is not None:
            deadlines.append(deadline)
        if self.connected:
            deadlines.append(self._next_ping)
            deadlines.append(ws.last_received + 3 * self._heartbeat)
            if self._metrics_interval > 0:
                deadlines.append(self._next_metrics)
            deadlines.append(self._next_sysinfo)
        return deadlines

    def _start(self) -> None:
        url = websocket_url(self.config.broker_url, CONTROL_PATH)
        self._retry_after = None
        self._conn = Connection(ConnectionKind.CONTROL, Side.CLIENT)
        try:
            self.ws = self._connect(url)
            self.ws.connect()
        except TransportError as exc:
            self.ws = None
            self._schedule_reconnect(f"cannot connect: {exc}")
            return
        self._connected_at = self._clock()
        log.info("connecting to %s", url)

    def tick(self) -> None:
        """Every loop pass: reconnect when due, supervise the connection, send on timers."""
        now = self._clock()
        ws = self.ws
        if ws is None:
            if now >= self._reconnect_at:
                self._start()
            return
        try:
            ws.check_timeouts()
        except TransportError as exc:
            self._lost(str(exc))
            return
        if ws.closed:
            self._closed()
            return
        if not self.connected:
            if ws.open and now - self._connected_at > self._welcome_timeout:
                log.warning("no welcome from the broker within %.0fs", self._welcome_timeout)
                ws.abort()
                self._closed()
            return
        if now - ws.last_received > 3 * self._heartbeat:
            log.warning(
                "nothing received from the broker for %.1fs; reconnecting",
                now - ws.last_received,
            )
            ws.close(int(CloseCode.HEARTBEAT_TIMEOUT), "heartbeat timeout")
            ws.abort()
            self._closed()
            return
        if now >= self._next_ping:
            self._ping_nonce += 1
            self.send(Ping(nonce=self._ping_nonce, ts=time.time()))
            self._next_ping = now + self._heartbeat
        if self._metrics_interval > 0 and now >= self._next_metrics:
            self._next_metrics = now + self._metrics_interval
            try:
                self.send(self._metrics())
            except Exception as exc:  # a metrics bug must not cost the connection
                log.warning("metrics sample failed: %s", exc)
        if now >= self._next_sysinfo:
            self._next_sysinfo = now + self._sysinfo_interval
            info = self._sysinfo()
            if changed(self._last_info, info):
                self.send(SysInfo(info=info))
                self._last_info = info
                log.info("inventory changed; sent sysinfo")

    def on_writable(self) -> None:
        """The control socket can take bytes (or finished connecting)."""
        ws = self.ws
        if ws is None:
            return
        try:
            ws.on_writable()
        except TransportError as exc:
            self._lost(str(exc))
            return
        self._after_io()

    def on_readable(self) -> None:
        """The control socket has bytes (or finished connecting): handle what they say."""
        ws = self.ws
        if ws is None:
            return
        try:
            ws.on_readable()
        except TransportError as exc:
            self._lost(str(exc))
            return
        self._after_io()

    def _after_io(self) -> None:
        ws, conn = self.ws, self._conn
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
                self._on_event(event)
        self._flush()
        if self.ws is not None and self.ws.closed:
            self._closed()

    def _send_hello(self) -> None:
        info = self._sysinfo()
        channels = tuple(self._terminals)
        hello = Hello(
            agent_id=self.config.agent_id,
            secret=self.config.secret,
            agent_version=__version__,
            sysinfo=info,
            channels=channels,
        )
        try:
            self.send(hello, strict=True)
        except WebshError as exc:
            log.warning("inventory not sendable (%s); sending a minimal one", exc)
            info = {"hostname": socket.gethostname(), "agent_version": __version__}
            self.send(
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

    def _on_event(self, event: Message) -> None:
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
            self._on_open_channel(event)
        elif isinstance(event, CloseChannel):
            self._on_close_channel(event.channel_id, event.reason)
        elif isinstance(event, RetryLater):
            self._retry_after = event.after
            log.warning(
                "broker asks to retry in %.1fs%s",
                event.after, f": {event.reason}" if event.reason else "",
            )  # fmt: skip
        elif isinstance(event, ErrorMessage):
            log.warning("broker error %s: %s", event.code, event.message)

    def send(self, message: Message, *, strict: bool = False) -> None:
        """Send ``message`` if there is a connection (else drop it: the broker re-learns
        everything from the next ``hello``). ``strict`` raises a message websh refuses."""
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
        self._flush()

    def _flush(self) -> None:
        ws, conn = self.ws, self._conn
        if ws is None or conn is None:
            return
        for payload in conn.data_to_send():
            if not ws.open:
                break
            try:
                ws.send(payload)
            except TransportError as exc:
                self._lost(str(exc))
                break

    def _lost(self, reason: str) -> None:
        if self.ws is not None:
            self.ws.abort()
        log.warning("control connection failed: %s", reason)
        self._closed(logged=True)

    def _closed(self, *, logged: bool = False) -> None:
        ws = self.ws
        self.ws = None
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
