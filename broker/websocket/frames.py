"""WebSocket frames on the broker's side: parsed as they arrive, written at once.

The layer of :class:`broker.websocket.WebSocketProtocol` that knows RFC 6455's wire format.
Frames are parsed in :meth:`Frames._frames` (called from ``data_received``) with integer
operations and unmasked with ``websockets.speedups.apply_mask``; RFC 6455 is enforced
(client frames masked, RSV bits clear, control frames short and whole, UTF-8 text, valid
close codes): a protocol error closes with 1002, bad UTF-8 with 1007, an oversized message
(over the ``max_size`` the protocol is made with) with 1009. Pings are answered here. A
whole message goes to the listener as it is parsed, or waits in a ``deque`` made only
while one is queued; reading pauses when the queued bytes pass :data:`READ_HIGH`.

This is the per-message hot path: everything it uses is a global of this module or a
slot of the connection, and it must stay so (no calls or lookups through other modules).
It must never interpret payloads or block: it moves bytes and enforces the framing rules.
"""

from __future__ import annotations

import asyncio
import struct
from collections import deque
from typing import TYPE_CHECKING

from uvicorn.protocols.utils import ClientDisconnected
from websockets.speedups import apply_mask

if TYPE_CHECKING:
    from broker.websocket.connection import Listener

__all__ = [
    "ENTRY",
    "PEER_CODES",
    "READ_HIGH",
    "Frames",
    "close_payload",
    "frame_header",
]

#: Queued bytes (plus :data:`ENTRY` per message) above which reading pauses.
READ_HIGH = 256 * 1024
#: What one queued message counts for besides its payload (so empty messages count too).
ENTRY = 64

_CONT, _TEXT, _BINARY, _CLOSE, _PING, _PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
#: The close codes a peer may send (besides 3000-4999, for applications).
PEER_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})
_PACK_16 = struct.Struct("!BBH").pack
_PACK_64 = struct.Struct("!BBQ").pack


def frame_header(opcode: int, length: int) -> bytes:
    """A final, unmasked frame's header (the server never masks)."""
    if length < 126:
        return bytes((0x80 | opcode, length))
    if length < 65536:
        return _PACK_16(0x80 | opcode, 126, length)
    return _PACK_64(0x80 | opcode, 127, length)


def close_payload(code: int, reason: str) -> bytes:
    """A close frame's payload; the reason cut to fit a control frame (125 bytes)."""
    if code in (1005, 1006, 1015):
        return b""
    data = reason.encode()[:123]
    return code.to_bytes(2, "big") + data.decode(errors="ignore").encode()


class Frames(asyncio.Protocol):
    """A WebSocket connection's frames, in and out; the state of reading it."""

    __slots__ = (
        "_buffer",
        "_close_sent",
        "_disconnect",
        "_frag_op",
        "_frag_size",
        "_frags",
        "_held",
        "_listener",
        "_lost",
        "_max_size",
        "_need",
        "_queue",
        "_queued",
        "_read_paused",
        "_reading",
        "_waiter",
        "transport",
    )

    def __init__(self, max_size: int) -> None:
        self._max_size = max_size
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self._buffer: bytearray | None = None
        self._need = 0
        self._frags: list[bytes] | None = None
        self._frag_op = 0
        self._frag_size = 0
        self._queue: deque[str | bytes] | None = None
        self._queued = 0
        self._read_paused = False
        self._reading = True
        self._waiter: asyncio.Future[None] | None = None
        self._close_sent = False
        self._lost = False
        self._disconnect: tuple[int, str] | None = None
        self._listener: Listener | None = None
        self._held = False

    # Frames in

    def _frames(self, data: bytes) -> None:
        buffer = self._buffer
        if buffer is None:
            # One whole, final, short, masked data frame and nothing more (a keystroke, an
            # echo): what _parse would conclude, without its loop.
            length = len(data) - 6
            if (
                0 < length < 126
                and (data[0] == 0x82 or data[0] == 0x81)
                and data[1] == 0x80 | length
                and length <= self._max_size
                and self._frags is None
            ):
                self._deliver(data[0] & 0x0F, apply_mask(data[6:], data[2:6]))
                return
            view = memoryview(data)
            used = self._parse(data, view)
            if used < len(data) and self._reading:
                self._buffer = bytearray(view[used:])
            view.release()
            return
        buffer += data
        if len(buffer) < self._need:
            return
        view = memoryview(buffer)
        used = self._parse(buffer, view)
        view.release()
        if self._buffer is buffer:
            del buffer[:used]
            if not buffer:
                self._buffer = None

    def _parse(self, data: bytes | bytearray, view: memoryview) -> int:
        """Handle every whole frame in ``data``; how many bytes they took."""
        size = len(data)
        pos = 0
        self._need = 0
        while size - pos >= 2 and self._reading:
            first = data[pos]
            second = data[pos + 1]
            if not second & 0x80:
                self.fail(1002, "unmasked frame")
                return size
            if first & 0x70:
                self.fail(1002, "reserved bits set")
                return size
            opcode = first & 0x0F
            final = first & 0x80
            length = second & 0x7F
            start = pos + 2
            if length == 126:
                if size - start < 2:
                    break
                length = (data[start] << 8) | data[start + 1]
                start += 2
            elif length == 127:
                if size - start < 8:
                    break
                length = int.from_bytes(data[start : start + 8], "big")
                start += 8
            if opcode >= 8:
                if opcode > _PONG:
                    self.fail(1002, "unknown opcode")
                    return size
                if length > 125 or not final:
                    self.fail(1002, "bad control frame")
                    return size
            elif opcode > _BINARY:
                self.fail(1002, "unknown opcode")
                return size
            elif (opcode == _CONT) == (self._frags is None):
                self.fail(1002, "bad fragment")
                return size
            elif length + (self._frag_size if opcode == _CONT else 0) > self._max_size:
                self.fail(1009, "message too big")
                return size
            end = start + 4 + length
            if end > size:
                self._need = end - pos
                break
            payload = apply_mask(view[start + 4 : end], data[start : start + 4]) if length else b""
            pos = end
            if opcode in (_TEXT, _BINARY):
                if final:
                    self._deliver(opcode, payload)
                else:
                    self._frags = [payload]
                    self._frag_op = opcode
                    self._frag_size = length
            elif opcode == _CONT:
                frags = self._frags
                assert frags is not None
                frags.append(payload)
                self._frag_size += length
                if final:
                    self._frags = None
                    self._frag_size = 0
                    self._deliver(self._frag_op, b"".join(frags))
            elif opcode == _PING:
                if not self._close_sent:
                    self.transport.write(frame_header(_PONG, length) + payload)
            elif opcode == _CLOSE:
                self._closed_by_peer(payload)
                return size
        return pos

    def _deliver(self, opcode: int, payload: bytes) -> None:
        if self._close_sent:
            return  # the application is past its close: nothing more for it
        message: str | bytes = payload
        if opcode == _TEXT:
            try:
                message = payload.decode()
            except UnicodeDecodeError:
                self.fail(1007, "invalid UTF-8")
                return
        queue = self._queue
        listener = self._listener
        if listener is not None and queue is None:
            listener.heard(message)
            return
        if queue is None:
            queue = self._queue = deque()
        queue.append(message)
        self._queued += len(payload) + ENTRY
        if self._queued > READ_HIGH and not self._read_paused:
            self._read_paused = True
            self.transport.pause_reading()
        self._wake()

    def _closed_by_peer(self, payload: bytes) -> None:
        if len(payload) == 1:
            self.fail(1002, "bad close frame")
            return
        code = 1005
        reason = ""
        if payload:
            code = int.from_bytes(payload[:2], "big")
            if code not in PEER_CODES and not 3000 <= code < 5000:
                self.fail(1002, "bad close code")
                return
            try:
                reason = payload[2:].decode()
            except UnicodeDecodeError:
                self.fail(1007, "invalid UTF-8")
                return
        self._reading = False
        if self._close_sent:  # the peer's answer to our close: the handshake is done
            self.transport.close()
            return
        self._set_disconnect(code, reason)
        self._close_sent = True
        self.transport.write(frame_header(_CLOSE, len(payload[:2])) + payload[:2])
        self.transport.close()

    def fail(self, code: int, reason: str) -> None:
        """Fail the connection: send a close frame with ``code`` and drop the TCP connection.

        ``reason`` is a fixed phrase of this module's (never the application's details)."""
        self._set_disconnect(code, reason)
        if not self._close_sent:
            self._write_close(code, reason)
        self._reading = False
        self._close_sent = True
        self._buffer = None
        self.transport.close()

    def _set_disconnect(self, code: int, reason: str = "") -> None:
        if self._disconnect is None:
            self._disconnect = (code, reason)
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # Messages out

    def _write_close(self, code: int, reason: str) -> None:
        payload = close_payload(code, reason)
        self.transport.write(frame_header(_CLOSE, len(payload)) + payload)
        self._close_sent = True

    def send_data(self, data: str | bytes) -> None:
        """Write one message now (text for ``str``); :class:`ClientDisconnected` once the
        connection is closing. Never waits: callers await ``drain`` when
        ``write_paused``."""
        if self._close_sent or self._lost:
            raise ClientDisconnected
        if isinstance(data, str):
            payload = data.encode()
            self.transport.write(frame_header(_TEXT, len(payload)) + payload)
        elif len(data) < 126:  # a keystroke or an echo: the header inline
            self.transport.write(bytes((0x82, len(data))) + data)
        else:
            self.transport.write(frame_header(_BINARY, len(data)) + data)
