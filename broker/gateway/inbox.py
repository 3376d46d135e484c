"""Serve a listened-to Wire's messages in order, each in the callback that parsed it.

A terminal relays one small message per keystroke each way. Awaiting them in a loop (a
task waiting on the socket, woken per message, then Starlette's ASGI receive on the
client side) costs a future, a task step and a coroutine chain per message. Under the
broker's own WebSocket protocol a :class:`~broker.agents.wire.Wire` can instead hand each
websh message to a listener as its frame is parsed (``Wire.listen``); the :class:`Inbox`
is that listener for a live session's two sides (its people's WebSockets and the agent's
data channel).

Each message goes to ``handle``, which does what it can at once and returns ``None``, or
returns a coroutine for what has to wait (an audit write, a slow transport, backpressure).
The coroutine is stepped in the caller (:func:`~broker.gateway.eager.start_eagerly`); only
if it suspends does the inbox *hold* the wire (later messages queue in the WebSocket
protocol, and past its high-water mark it stops reading, so TCP slows the peer), let a task
finish it, and release the wire afterwards. So messages are handled strictly in order,
and a peer can never grow the broker's memory faster than the broker handles its input.

Where the Wire cannot call back (another ASGI server, a test client), :meth:`Inbox.run`
serves the same ``handle`` from a receive loop. The inbox never interprets messages.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from broker.agents.wire import Closed, Wire
from broker.gateway.eager import start_eagerly
from websh import CloseCode, Message

__all__ = ["Handle", "Inbox"]

log = logging.getLogger("corral.gateway")

#: Handle one message: ``None`` when done, else a coroutine that finishes the work.
Handle = Callable[[Message], Coroutine[Any, Any, None] | None]


class Inbox:
    """One wire's messages to ``handle``, in order; ``on_end`` once, when the wire closes."""

    __slots__ = ("_backlog", "_done", "_ended", "_handle", "_on_end", "_worker", "wire")

    def __init__(
        self, wire: Wire, handle: Handle, on_end: Callable[[Closed], None] | None = None
    ) -> None:
        self.wire = wire
        self._handle = handle
        self._on_end = on_end
        self._worker: asyncio.Task[None] | None = None
        self._ended: Closed | None = None
        self._done: asyncio.Future[None] | None = None
        #: Messages of one frame that came after one whose work had to wait (rare).
        self._backlog: deque[Message] = deque()

    def listen(self) -> bool:
        """Start being called per message (False: the wire cannot; use :meth:`run`)."""
        return self.wire.listen(self)

    async def run(self) -> None:
        """Serve from a receive loop instead (one message at a time, awaited)."""
        while True:
            try:
                message = await self.wire.receive()
            except Closed as closed:
                self.left(closed)
                return
            work = self._handle(message)
            if work is not None:
                await self._complete(work)

    async def finished(self) -> None:
        """Return once the wire has closed and the last message's work is done."""
        if self._ended is not None and self._worker is None:
            return
        if self._done is None:
            self._done = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._done)

    @property
    def closed(self) -> Closed | None:
        """How the wire closed, once it has."""
        return self._ended

    # broker.agents.wire.WireListener

    def heard(self, message: Message) -> None:
        if self._worker is not None:
            self._backlog.append(message)
            return
        work = self._handle(message)
        if work is None:
            return
        try:
            task = start_eagerly(work)
        except Closed:
            return  # the peer left while it was served: left() follows
        if task is not None:
            self.wire.hold()  # later messages wait in order, behind this one
            self._worker = asyncio.ensure_future(self._finish(task))

    def left(self, closed: Closed) -> None:
        if self._ended is not None:
            return
        self._ended = closed
        if self._worker is None:
            self._end()

    # internals

    async def _complete(self, work: Awaitable[None]) -> bool:
        """Await one message's work; a failure closes the wire without details (False)."""
        try:
            await work
        except Closed:
            pass
        except Exception:
            log.exception("serving a websh message failed")
            await self.wire.close(CloseCode.INTERNAL_ERROR, "internal error")
            return False
        return True

    async def _finish(self, task: asyncio.Task[None]) -> None:
        try:
            ok = await self._complete(task)
            backlog = self._backlog
            while ok and backlog and self._ended is None:
                work = self._handle(backlog.popleft())
                if work is not None:
                    ok = await self._complete(work)
        finally:
            self._worker = None
            if self._ended is not None:
                self._end()
            else:
                self.wire.release()  # may hold again: a new worker takes over

    def _end(self) -> None:
        assert self._ended is not None
        if self._on_end is not None:
            self._on_end(self._ended)
        done = self._done
        if done is not None and not done.done():
            done.set_result(None)
