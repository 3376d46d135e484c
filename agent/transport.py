"""A WebSocket client on one non-blocking socket, for the agent's epoll loop.

The agent holds one control connection and one data connection per session, all driven
by the same epoll loop (asyncio + ``websockets`` alone would cost ~8 MB of the
20 MB budget). ``agent.wsframe`` does the HTTP upgrade and the framing without any I/O;
``agent.tlsstream`` (this class's base) connects TCP, runs TLS 1.3 over memory BIOs and
moves the bytes. This module joins the two: it starts the upgrade once the stream is up,
feeds what arrives to the framing and keeps the complete messages, writes what the
framing produces (pongs, the echo of a close), and runs the closing handshake and the
connect and close timeouts. It also maps the broker's ``http(s)`` URL to ``ws(s)``.

Use: ``connect()``, register ``fileno()`` for reading (plus writing while
``wants_write``), call ``on_readable()`` / ``on_writable()`` when the loop says so,
``check_timeouts()`` when it wakes up, and take complete messages from ``messages()``.
I/O failures are raised as ``TransportError`` (the caller drops the connection);
an orderly close by either side sets ``closed`` with ``close_code``/``close_reason``.

This module must never block, never send before the upgrade succeeded, and never buffer
an incoming message beyond ``max_message_size``.
"""

from __future__ import annotations

import contextlib
import ssl
import time
from urllib.parse import urlsplit, urlunsplit

from agent import __version__
from agent.errors import FrameError, HandshakeError, TransportError
from agent.tlsstream import Phase, SocketStream, client_ssl_context
from agent.wsevents import Close, Message
from agent.wsframe import ClientConnection, State

__all__ = ["Phase", "WebSocketClient", "client_ssl_context", "websocket_url"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Union

    Payload = Union[str, bytes]

_ABNORMAL = 1006


def websocket_url(broker_url: str, path: str) -> str:
    """``https://b.example/prefix`` + ``/agent/v1/control`` -> ``wss://b.example/prefix/...``."""
    parts = urlsplit(broker_url)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme.lower())
    if scheme is None or not parts.hostname:
        raise TransportError(f"broker URL {broker_url!r} is not an http(s) URL")
    if not path.startswith("/"):
        raise TransportError(f"WebSocket path {path!r} is not absolute")
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + path, "", ""))


class WebSocketClient(SocketStream):
    """One client WebSocket over TCP or TLS, without threads or blocking I/O.

    ``ssl_context`` is used for ``wss://`` URLs (default: ``client_ssl_context(ca_file)``).
    ``clock`` (monotonic seconds) is injected so timeouts are testable.
    """

    def __init__(
        self,
        url: str,
        *,
        ca_file: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        max_message_size: int = 2 * 1024 * 1024,
        connect_timeout: float = 15.0,
        close_timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise TransportError(f"not a ws:// or wss:// URL: {url!r}")
        super().__init__(
            parts.hostname,
            parts.port or (443 if parts.scheme == "wss" else 80),
            parts.netloc.rpartition("@")[2],
            tls=parts.scheme == "wss",
            ca_file=ca_file,
            ssl_context=ssl_context,
            connect_timeout=connect_timeout,
            clock=clock,
        )
        self.url = url
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._max_message_size = max_message_size
        self._close_timeout = close_timeout
        self._ws: ClientConnection | None = None
        self._messages: list[Payload] = []
        #: Close code and reason: the peer's if it closed first, else ours; 1006 = no close.
        self.close_code: int | None = None
        self.close_reason = ""

    def __repr__(self) -> str:
        return f"WebSocketClient({self.url!r}, {self.phase.value})"

    # ------------------------------------------------------------------ selector API

    @property
    def open(self) -> bool:
        """True once the upgrade succeeded and until a close starts."""
        return self.phase is Phase.OPEN

    def on_writable(self) -> None:
        if self.phase is Phase.CONNECTING:
            self._finish_tcp_connect()
        elif self.phase is not Phase.CLOSED:
            self._flush()
            self._maybe_finish_close()

    def on_readable(self) -> None:
        if self.phase is Phase.CONNECTING:
            self._finish_tcp_connect()
        elif self.phase is not Phase.CLOSED:
            self._read()
            self._maybe_finish_close()

    def deadline(self) -> float | None:
        """Monotonic time at which ``check_timeouts`` has work, if any."""
        return self._deadline if self.phase is not Phase.CLOSED else None

    def check_timeouts(self) -> None:
        """Fail a handshake that takes too long; give up on a peer that never closes."""
        if self._deadline is None or self.phase is Phase.CLOSED:
            return
        if self._clock() < self._deadline:
            return
        if self.phase is Phase.CLOSING:
            self.abort()
            return
        if self.phase is not Phase.OPEN:
            self.abort()
            raise TransportError(f"timed out connecting to {self._netloc}")

    # ------------------------------------------------------------------ messages

    def messages(self) -> list[Payload]:
        """Complete messages received since the last call: ``str`` text, ``bytes`` binary."""
        messages, self._messages = self._messages, []
        return messages

    def send(self, payload: Payload) -> None:
        """Send one message: written at once if nothing is queued, else queued behind.

        Whatever the kernel does not take now stays queued (``wants_write``) for
        ``on_writable``. Raises ``TransportError`` if the WebSocket is not open or the
        write failed (the connection is then dropped).
        """
        if self.phase is not Phase.OPEN or self._ws is None:
            raise TransportError("the WebSocket is not open")
        self._ws.send(payload)
        self._send_wire(self._ws.data_to_send())

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (queued after pending data), or abort if not open."""
        if self.phase is Phase.OPEN and self._ws is not None:
            self.close_code, self.close_reason = code, reason
            try:
                self._ws.close(code, reason)
            except TransportError:  # not a code one may send: drop the connection instead
                self.abort()
                return
            try:
                self._send_wire(self._ws.data_to_send())
            except TransportError:
                return  # the write failed and dropped the connection
            self.phase = Phase.CLOSING
            self._deadline = self._clock() + self._close_timeout
        elif self.phase is not Phase.CLOSING:
            if self.close_code is None:
                self.close_code, self.close_reason = code, reason
            self.abort()

    def abort(self) -> None:
        """Drop the socket now, without a closing handshake."""
        if self.close_code is None:
            self.close_code = _ABNORMAL
        super().abort()

    # ------------------------------------------------------------------ internals

    def _start_upgrade(self) -> None:
        self._ws = ClientConnection(
            self._netloc,
            self._target,
            user_agent=f"corral-agent/{__version__}",
            max_message_size=self._max_message_size,
        )
        self.phase = Phase.UPGRADE
        self._send_wire(self._ws.data_to_send())

    def _feed(self, data: bytes) -> None:
        """Hand received WebSocket bytes to the framing; ``b""`` is the end of the stream."""
        ws = self._ws
        assert ws is not None
        try:
            ws.receive_data(data)
        except HandshakeError:
            self.abort()
            raise
        except FrameError as exc:
            # Best effort: let the broker see the close code before the socket goes.
            with contextlib.suppress(TransportError):
                self._send_wire(ws.data_to_send())
            self.close_code, self.close_reason = exc.code, "protocol error"
            self.abort()
            message = f"WebSocket protocol error from {self._netloc}: {exc}"
            raise type(exc)(message, exc.code) from exc
        self._send_wire(ws.data_to_send())  # pongs, the echo of a close
        if self.phase is Phase.UPGRADE and ws.state is not State.CONNECTING:
            self.phase = Phase.OPEN
            self._deadline = None
        for event in ws.events():
            if isinstance(event, Message):
                self._messages.append(event.data)
            elif isinstance(event, Close):
                if self.phase is not Phase.CLOSING or self.close_code is None:
                    self.close_code, self.close_reason = event.code, event.reason
                if self.phase is not Phase.CLOSING:
                    self.phase = Phase.CLOSING
                    self._deadline = self._clock() + self._close_timeout

    def _maybe_finish_close(self) -> None:
        """Once both close frames have passed and our bytes are out, drop the socket."""
        if self.phase is not Phase.CLOSING or self._out or self._ws is None:
            return
        if self._ws.state is State.CLOSED:
            self.abort()
