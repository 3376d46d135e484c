"""A tiny websh broker for agent tests: a real ``websockets`` server on loopback.

It runs an asyncio loop in a background thread and hands each accepted WebSocket to the
test thread as a ``PeerConn`` with blocking ``recv``/``send``/``close``, speaking websh
through ``websh.Connection`` on the server side, exactly as the real broker must.
"""

from __future__ import annotations

import asyncio
import queue
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from websh import Connection, ConnectionKind, Message, Ping, Pong, ProtocolError, Side

CONTROL = "/agent/v1/control"
CHANNEL = "/agent/v1/channel"


class Closed(Exception):
    """The connection closed while the test waited for a message."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed {code} {reason!r}")
        self.code = code
        self.reason = reason


class PeerConn:
    """One accepted WebSocket, driven from the test thread."""

    def __init__(self, peer: Peer, ws: ServerConnection, kind: ConnectionKind) -> None:
        self.peer = peer
        self.ws = ws
        self.path = ws.request.path if ws.request else ""
        self.conn = Connection(kind, Side.SERVER)
        self.events: queue.Queue[Message | Closed] = queue.Queue()
        self.mute = False  # stop answering pings (simulate a dead broker)
        self.done = threading.Event()
        self.close_code: int | None = None
        self.close_reason = ""

    async def pump(self) -> None:
        try:
            async for payload in self.ws:
                try:
                    self.conn.receive(payload)
                except ProtocolError as exc:
                    await self.ws.close(int(exc.code), exc.reason)
                    break
                for event in self.conn.events_received():
                    self.events.put(event)
                outgoing = self.conn.data_to_send()
                if not self.mute:
                    for item in outgoing:
                        await self.ws.send(item)
        except ConnectionClosed:
            pass
        finally:
            rcvd = self.ws.protocol.close_rcvd
            self.close_code = rcvd.code if rcvd else self.ws.close_code
            self.close_reason = rcvd.reason if rcvd else (self.ws.close_reason or "")
            self.events.put(Closed(self.close_code, self.close_reason))
            self.done.set()

    # -- test-thread API --------------------------------------------------------------

    def recv(self, timeout: float = 10.0, skip: tuple[type, ...] = (Ping, Pong)) -> Message:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("timed out waiting for a message")
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                raise AssertionError("timed out waiting for a message") from None
            if isinstance(event, Closed):
                self.events.put(event)
                raise event
            if not isinstance(event, skip):
                return event

    def send(self, message: Message) -> None:
        async def go() -> None:
            self.conn.send(message)
            for item in self.conn.data_to_send():
                await self.ws.send(item)

        self.peer.call(go())

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.peer.call(self.ws.close(code, reason))

    def wait_closed(self, timeout: float = 10.0) -> tuple[int | None, str]:
        assert self.done.wait(timeout), "connection did not close"
        return self.close_code, self.close_reason


class Peer:
    """The loopback server; ``accept(path)`` returns the next connection on that path."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl = ssl_context
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._accepted: dict[str, queue.Queue[PeerConn]] = {
            CONTROL: queue.Queue(),
            CHANNEL: queue.Queue(),
        }
        self.port = 0

    async def _handler(self, ws: ServerConnection) -> None:
        path = ws.request.path if ws.request else ""
        kind = ConnectionKind.CONTROL if path == CONTROL else ConnectionKind.CHANNEL
        conn = PeerConn(self, ws, kind)
        self._accepted.setdefault(path, queue.Queue()).put(conn)
        await conn.pump()

    def start(self) -> None:
        self._thread.start()

        async def start_server() -> int:
            self._server = await serve(
                self._handler, "127.0.0.1", 0, ssl=self._ssl, ping_interval=None
            )
            return int(self._server.sockets[0].getsockname()[1])

        self.port = self.call(start_server())

    def call(self, coro):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def accept(self, path: str = CONTROL, timeout: float = 10.0) -> PeerConn:
        try:
            return self._accepted[path].get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no connection on {path} within {timeout}s") from None

    def stop(self) -> None:
        async def stop_server() -> None:
            self._server.close()
            await self._server.wait_closed()

        self.call(stop_server())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


@contextmanager
def running_peer(ssl_context: ssl.SSLContext | None = None) -> Iterator[Peer]:
    peer = Peer(ssl_context)
    peer.start()
    try:
        yield peer
    finally:
        peer.stop()
