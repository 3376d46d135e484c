"""The application's side of a WebSocket connection: the direct path, flow control, closing.

The layer of :class:`broker.websocket.WebSocketProtocol` between the frames
(:mod:`broker.websocket.frames`) and whoever reads them. :class:`broker.agents.wire.Wire`
uses it without the ASGI dictionaries: :meth:`Connection.pop` returns a queued payload
without suspending, ``send_data`` writes at once and :meth:`Connection.drain` waits only
while the transport is paused; :meth:`Connection.listen` hands each message to a
:class:`Listener` as it is parsed, so an idle connection holds no task. The closing
handshake the application starts ends at the peer's answer or after :data:`CLOSE_TIMEOUT`.

It must never interpret payloads or block.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Protocol

from broker.websocket.frames import ENTRY, Frames

__all__ = ["CLOSE_TIMEOUT", "Connection", "Listener"]

#: Seconds to wait for the peer's half of a closing handshake the server started.
CLOSE_TIMEOUT = 10.0


class Listener(Protocol):
    """Who takes a connection's messages as they arrive (see :meth:`Connection.listen`)."""

    def heard(self, message: str | bytes) -> None: ...

    def ended(self, code: int, reason: str) -> None: ...


class Connection(Frames):
    """A WebSocket connection as its application sees it, from the upgrade to its end."""

    __slots__ = ("_app_closed", "_close_timer", "_drainer", "accepted", "write_paused")

    def __init__(self, max_size: int) -> None:
        super().__init__(max_size)
        self.accepted = False
        self.write_paused = False
        self._drainer: asyncio.Future[None] | None = None
        self._app_closed = False
        self._close_timer: asyncio.TimerHandle | None = None

    # asyncio.Protocol

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._reading = False
        self._set_disconnect(1005 if self.accepted else 1006)
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        self._wake()
        drainer = self._drainer
        if drainer is not None and not drainer.done():
            drainer.set_result(None)
        if exc is None:
            self.transport.close()
        if not (self._held and self._queue):  # else release() hands the rest over first
            self._end_listener()

    def _end_listener(self) -> None:
        listener = self._listener
        if listener is not None:
            self._listener = None
            code, reason = self._disconnect or (1006, "")
            listener.ended(code, reason)

    def eof_received(self) -> bool | None:
        return None

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        drainer = self._drainer
        if drainer is not None and not drainer.done():
            drainer.set_result(None)

    # The application's side

    async def drain(self) -> None:
        """Return once the transport takes data again (or the connection is gone)."""
        while self.write_paused and not self._lost:
            drainer = self._drainer
            if drainer is None or drainer.done():
                drainer = self._drainer = asyncio.get_running_loop().create_future()
            await drainer
        self._drainer = None

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (the application's close); the peer's answer, or
        :data:`CLOSE_TIMEOUT`, ends the TCP connection."""
        if self._close_sent or self._lost:
            return
        self._set_disconnect(code, reason)
        self._write_close(code, reason)
        self._app_closed = True
        if self._read_paused:
            self._read_paused = False
            self.transport.resume_reading()
        loop = asyncio.get_running_loop()
        self._close_timer = loop.call_later(CLOSE_TIMEOUT, self.transport.close)

    @property
    def disconnect(self) -> tuple[int, str] | None:
        """``(code, reason)`` once the connection is closing or closed, else ``None``."""
        return self._disconnect

    def pop(self) -> str | bytes | None:
        """The next queued message, or ``None``; never suspends."""
        queue = self._queue
        if not queue:
            return None
        message = queue.popleft()
        if not queue:
            self._queue = None
            self._queued = 0
            if self._read_paused:
                self._read_paused = False
                if self._reading:
                    self.transport.resume_reading()
        else:
            self._queued -= len(message) + ENTRY
        return message

    def listen(self, listener: Listener) -> None:
        """From now on hand each message to ``listener.heard`` as it is parsed, and the
        end of the connection to ``listener.ended`` once; the ASGI application may then
        return without the connection ending. Messages already queued go first."""
        while self._listener is None:
            message = self.pop()
            if message is None:
                break
            listener.heard(message)
        if self._lost:
            code, reason = self._disconnect or (1006, "")
            listener.ended(code, reason)
            return
        self._listener = listener

    def hold(self) -> None:
        """Queue messages instead of handing them to the listener until :meth:`release`
        (a listener that must finish something first); reading pauses as for an
        application that does not read (:data:`READ_HIGH`)."""
        self._held = True
        if self._queue is None:
            self._queue = deque()

    def release(self) -> None:
        """Hand the listener what was queued while held, in order, then each message as it
        is parsed again (unless the listener holds once more on the way). Messages that
        arrived before the connection was lost are still handed over, then the end."""
        self._held = False
        while not self._held and self._listener is not None:
            message = self.pop()
            if message is None:
                break
            self._listener.heard(message)
        if not self._held and not self._queue:
            self._queue = None
            if self._lost:
                self._end_listener()

    def readable(self) -> asyncio.Future[None]:
        """A future done when a message is queued or the connection is closing.

        One reader at a time (as ASGI has it): a reader cancelled while waiting cancels
        the future, and the next call makes a new one."""
        waiter = self._waiter
        if waiter is None or waiter.done():
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            if self._queue or self._disconnect is not None:
                waiter.set_result(None)
        return waiter
