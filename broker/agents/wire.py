"""The asyncio adapter between a Starlette WebSocket and a sans-I/O websh Connection.

It moves payloads both ways and turns the protocol's verdicts into WebSocket close codes.
It must never interpret messages: that is the hub's job.

Under the broker's own WebSocket protocol (``broker/websocket/``, found in
``scope["extensions"]``) the Wire talks to it directly once the socket is accepted: a
queued message is taken without suspending, a send is written at once and only waits
while the transport is paused, so there is no lock and no ASGI dictionary per message.
Under any other ASGI server (or a test client) it goes through Starlette's WebSocket.

A long-lived peer can also be *listened to* (:meth:`Wire.listen`): each websh message is
handed to a :class:`WireListener` as its frame is parsed, and the end of the connection
once, so no task or suspended coroutine waits on the socket between messages (the hub
serves 1,000 idle agents this way).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from broker.websocket import EXTENSION, ClientDisconnected, WebSocketProtocol
from websh import CloseCode, Connection, Message, ProtocolError, State, WebshError

__all__ = ["Closed", "Wire", "WireListener", "peer_address"]

log = logging.getLogger("corral.agents")


class Closed(Exception):
    """The peer went away or the connection was closed; ``code`` says how."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"closed ({code}) {reason}".strip())
        self.code = code
        self.reason = reason


class WireListener(Protocol):
    """What :meth:`Wire.listen` calls: each message, then the end (once)."""

    def heard(self, message: Message) -> None: ...

    def left(self, closed: Closed) -> None: ...


class Wire:
    """One WebSocket carrying one websh connection."""

    __slots__ = (
        "_closing",
        "_listener",
        "_pending",
        "_send_lock",
        "_socket",
        "connection",
        "websocket",
    )

    def __init__(self, websocket: WebSocket, connection: Connection) -> None:
        #: Starlette's WebSocket, for the path without the broker's protocol; let go once
        #: listened to (it holds the request's ASGI scope, about 2 KB per idle agent).
        self.websocket: WebSocket | None = websocket
        self.connection = connection
        self._pending: list[Message] = []
        self._socket: WebSocketProtocol | None = websocket.scope.get("extensions", {}).get(
            EXTENSION
        )
        self._send_lock: asyncio.Lock | None = None
        self._closing: asyncio.Task[None] | None = None
        self._listener: WireListener | None = None

    @property
    def gone(self) -> bool:
        """The peer has left or the connection is closing, as far as the WebSocket layer
        has said; False where it cannot tell without reading (other ASGI servers)."""
        socket = self._socket
        return socket is not None and socket.disconnect is not None

    def listen(self, listener: WireListener) -> bool:
        """Hand every later message to ``listener.heard`` as it arrives, and the end of the
        connection to ``listener.left`` once; False (nothing changed) where the WebSocket
        layer cannot call back, or while messages already taken wait in this Wire. The
        caller may then return from its ASGI handler: the connection stays open."""
        socket = self._socket
        if socket is None or not socket.accepted or self._pending or self._listener is not None:
            return False
        self._listener = listener
        socket.listen(self)
        self.websocket = None
        return True

    def hold(self) -> None:
        """While listened to: keep later messages queued (reading pauses once enough wait)
        until :meth:`release`, for a listener that has to finish one message first."""
        if self._socket is not None:
            self._socket.hold()

    def release(self) -> None:
        """Hand the listener what waited since :meth:`hold`, then carry on as before."""
        if self._socket is not None:
            self._socket.release()

    # broker.websocket.Listener: called by the protocol while listened to

    def heard(self, payload: str | bytes) -> None:
        listener = self._listener
        socket = self._socket
        if listener is None or socket is None:
            return
        try:
            self._feed(payload)
            messages = self.connection.events_received()
            self._write_direct(socket)  # websh's own answers (pongs)
        except Closed:
            return  # closed with the protocol's code: ended() follows with the loss
        for message in messages:
            try:
                listener.heard(message)
            except Exception:
                log.exception("a listener failed on %s", type(message).__name__)
                self._close_direct(CloseCode.INTERNAL_ERROR, "internal error")
                return

    def ended(self, code: int, reason: str) -> None:
        listener = self._listener
        if listener is None:
            return
        self._listener = None
        if self.connection.state is not State.CLOSED:
            self.connection.close(CloseCode.GOING_AWAY, "peer closed")
        closed = self.connection.close_code if self.connection.error is not None else None
        listener.left(Closed(int(closed or code or CloseCode.GOING_AWAY), reason))

    async def receive(self) -> Message:
        """The next websh message; :class:`Closed` when the peer leaves or breaks protocol."""
        socket = self._socket
        if socket is not None and socket.accepted:  # the direct path (one frame less)
            pending = self._pending
            while not pending:
                payload = socket.pop()
                if payload is None:
                    closed = socket.disconnect
                    if closed is not None:
                        self.connection.close(CloseCode.GOING_AWAY, "peer closed")
                        raise Closed(closed[0] or CloseCode.GOING_AWAY)
                    await socket.readable()
                    continue
                self._feed(payload)
                pending.extend(self.connection.events_received())
                self._write_direct(socket)
                if socket.write_paused:
                    await socket.drain()
            return pending.pop(0)
        while not self._pending:
            try:
                frame = await self._asgi().receive()
            except (WebSocketDisconnect, RuntimeError):
                raise Closed(CloseCode.GOING_AWAY) from None
            if frame["type"] == "websocket.disconnect":
                self.connection.close(CloseCode.GOING_AWAY, "peer closed")
                raise Closed(int(frame.get("code") or CloseCode.GOING_AWAY))
            payload = frame.get("bytes")
            if payload is None:
                payload = frame.get("text") or ""
            try:
                self.connection.receive(payload)
            except ProtocolError as exc:
                await self.close(exc.code, exc.reason)
                raise Closed(exc.code, exc.reason) from None
            except WebshError:
                await self.close(CloseCode.PROTOCOL_ERROR, "protocol error")
                raise Closed(CloseCode.PROTOCOL_ERROR) from None
            self._pending.extend(self.connection.events_received())
            await self.flush()
        return self._pending.pop(0)

    def _feed(self, payload: str | bytes) -> None:
        try:
            self.connection.receive(payload)
        except ProtocolError as exc:
            self._close_direct(exc.code, exc.reason)
            raise Closed(exc.code, exc.reason) from None
        except WebshError:
            self._close_direct(CloseCode.PROTOCOL_ERROR, "protocol error")
            raise Closed(CloseCode.PROTOCOL_ERROR) from None

    def _close_direct(self, code: int, reason: str) -> None:
        self.connection.close(CloseCode(code), reason)
        if self._socket is not None:
            self._socket.close(int(code), self.connection.close_reason)

    def _write_direct(self, socket: WebSocketProtocol) -> None:
        for payload in self.connection.data_to_send():
            try:
                socket.send_data(payload)
            except ClientDisconnected:
                raise Closed(CloseCode.GOING_AWAY) from None

    async def send(self, message: Message) -> None:
        if self.connection.state is State.CLOSED:
            raise Closed(self.connection.close_code or CloseCode.GOING_AWAY)
        self.connection.send(message)
        socket = self._socket
        if socket is not None and socket.accepted:
            self._write_direct(socket)
            if socket.write_paused:
                await socket.drain()
            return
        await self.flush()

    async def flush(self) -> None:
        socket = self._socket
        if socket is not None and socket.accepted:
            self._write_direct(socket)
            if socket.write_paused:
                await socket.drain()
            return
        if self._send_lock is None:
            self._send_lock = asyncio.Lock()
        async with self._send_lock:
            for payload in self.connection.data_to_send():
                try:
                    if isinstance(payload, bytes):
                        await self._asgi().send_bytes(payload)
                    else:
                        await self._asgi().send_text(payload)
                except (WebSocketDisconnect, RuntimeError, OSError):
                    raise Closed(CloseCode.GOING_AWAY) from None

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Close with ``code``; never waits for the peer's half of the closing handshake.

        A peer that already left (or never answers) would otherwise hold the caller for
        the transport's close timeout, so the handshake finishes in the background.
        """
        socket = self._socket
        if socket is not None and socket.accepted:
            self._close_direct(code, reason)
            return
        self.connection.close(CloseCode(code), reason)
        if self._closing is None and self._asgi().application_state == WebSocketState.CONNECTED:
            self._closing = asyncio.create_task(self._close_socket(int(code)))
            await asyncio.sleep(0)

    def _asgi(self) -> WebSocket:
        websocket = self.websocket
        assert websocket is not None, "let go only when listened to, on the direct path"
        return websocket

    async def _close_socket(self, code: int) -> None:
        try:
            await self._asgi().close(code=code, reason=self.connection.close_reason)
        except (WebSocketDisconnect, RuntimeError, OSError):  # already gone
            log.debug("close after the peer left")


def peer_address(websocket: WebSocket) -> str:
    """``host:port`` of the peer, for the log (a refused connection has no other name)."""
    client = websocket.client
    return f"{client.host}:{client.port}" if client else "unknown"
