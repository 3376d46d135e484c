"""The terminal's WebSocket: websockets' asyncio client connection, where a whole binary
message can be taken in the callback that parsed it.

websockets hands every message to a task through its assembler and a future: one more
turn of the event loop per screen update, on top of the one that read the socket. A
terminal's output only needs writing to stdout, so :class:`TerminalConnection` offers
each whole binary message to ``on_message`` first; a message it declines (``False``) goes
the ordinary way to ``recv()`` / ``async for``. Order is kept: nothing is offered while an
earlier message still waits in the assembler, and after the first fragmented message no
message is offered at all. ``on_message`` must not block or raise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.frames import Frame, Opcode

__all__ = ["TerminalConnection"]


class TerminalConnection(ClientConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_message: Callable[[bytes], bool] | None = None
        #: Messages handed to the assembler that ``recv()`` has not taken yet; the reader
        #: calls :meth:`taken` for each one it gets.
        self.queued = 0
        self._fragmented = False

    def taken(self) -> None:
        self.queued -= 1

    def process_event(self, event: Any) -> None:
        if self.response is None or not isinstance(event, Frame):
            super().process_event(event)  # the handshake's response
            return
        opcode = event.opcode
        if opcode is Opcode.CONT or (not event.fin and opcode in (Opcode.TEXT, Opcode.BINARY)):
            self._fragmented = True  # from here on, every message goes the ordinary way
        elif opcode is Opcode.BINARY and not self.queued and not self._fragmented:
            handler = self.on_message
            data = event.data
            if handler is not None and handler(data if type(data) is bytes else bytes(data)):
                return
        if event.fin and opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
            self.queued += 1
        super().process_event(event)
