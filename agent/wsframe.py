"""A sans-I/O RFC 6455 WebSocket client: the connection's states and the frames it reads.

The agent used to bundle ``wsproto`` and ``h11`` for this; together with the ``hashlib``
they import they cost about 3 MiB of a 20 MB budget. A client needs only a small part of
either: one fixed HTTP/1.1 request, one strictly checked ``101`` response
(``agent.wshandshake``), then frames, masked on the way out (``agent.wsencode``) and
checked on the way in (here).

``ClientConnection`` takes bytes (``receive_data``) and returns events (``events()``) and
bytes to write (``data_to_send()``); it never touches a socket, a clock or a thread, so
``agent.transport`` drives it from the epoll loop and the tests feed it anything.

Rules it enforces on the server (RFC 6455 section 5): frames are not masked, RSV bits
are 0 (no extension is ever offered), opcodes are known, control frames carry at most 125
bytes and are not fragmented, continuation frames continue something, text is UTF-8,
close codes are valid. A violation raises ``FrameError`` (its ``code`` is the close code,
1002, 1007 or 1009) after queueing that close frame: the caller writes
``data_to_send()`` if it can and drops the connection. ``max_message_size`` is checked
against each frame header before its payload is buffered, ``max_header_size`` against the
handshake response before it is complete.

This module must never send an unmasked frame, never raise anything but an
``AgentError`` from ``receive_data`` and never buffer more than one frame past the caps.
"""

from __future__ import annotations

import os

from agent.errors import FrameError, HandshakeError, MessageTooLarge, TransportError
from agent.wsencode import (
    CONTROL_OPCODES,
    DATA_OPCODES,
    INVALID_DATA,
    NO_STATUS,
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    PROTOCOL_ERROR,
    TOO_BIG,
    VALID_CLOSE_CODES,
    encode_frame,
)
from agent.wsevents import Close, Message, Ping, Pong
from agent.wshandshake import check_accept, parse_response_head, upgrade_request

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, NoReturn

    from agent.wsevents import Event

__all__ = ["ClientConnection", "State"]

#: Mask keys are cut from this many random bytes at a time (RFC 6455 5.3: each is fresh
#: and unpredictable; pooling only saves a system call per frame).
_KEY_POOL = 256


class State:
    """Connection states (plain strings: no ``enum`` needed)."""

    CONNECTING = "connecting"  # request queued, waiting for the 101
    OPEN = "open"
    CLOSING = "closing"  # our close frame is queued, waiting for the server's
    CLOSED = "closed"  # both close frames passed, the peer went away, or it failed


class ClientConnection:
    """One client WebSocket as a state machine: bytes in, events and bytes out.

    The upgrade request is queued at construction. ``host`` is the ``Host`` header
    (``netloc``), ``target`` the request target (path and query). ``urandom`` supplies
    the handshake key and the mask keys (injected for tests; ``os.urandom`` otherwise).
    """

    def __init__(
        self,
        host: str,
        target: str = "/",
        *,
        origin: str | None = None,
        user_agent: str | None = None,
        max_message_size: int = 2 * 1024 * 1024,
        max_header_size: int = 16 * 1024,
        max_reject_body: int = 4096,
        urandom: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.key, request = upgrade_request(
            host, target, origin=origin, user_agent=user_agent, urandom=urandom
        )
        self.host = host
        self.target = target
        self.max_message_size = max_message_size
        self.max_header_size = max_header_size
        self.max_reject_body = max_reject_body
        self._urandom = urandom
        self.state = State.CONNECTING
        #: After a refusal: the HTTP status of the response, while its body is read.
        self.reject_status: int | None = None
        self._reject_length = 0
        self._buf = bytearray()
        self._out: list[bytes | bytearray] = []
        self._keys = b""
        self._events: list[Event] = []
        self._fragments: list[bytes] = []
        self._fragment_opcode: int | None = None
        self._fragment_size = 0
        self._close_sent = False
        self._out.append(request)

    def __repr__(self) -> str:
        return f"ClientConnection({self.host!r}, {self.target!r}, {self.state})"

    # ------------------------------------------------------------------ output

    def data_to_send(self) -> bytes | bytearray:
        """Bytes to write to the socket, in order; each call returns only new bytes."""
        out = self._out
        if not out:
            return b""
        self._out = []
        return out[0] if len(out) == 1 else b"".join(out)

    def events(self) -> list[Event]:
        """Events received since the last call, in order."""
        events, self._events = self._events, []
        return events

    def send(self, payload: str | bytes) -> None:
        """Queue one message as a single masked frame (text for ``str``)."""
        if self.state is not State.OPEN:
            raise TransportError(f"cannot send: the WebSocket is {self.state}")
        if isinstance(payload, str):
            self._send_frame(OP_TEXT, payload.encode("utf-8"))
        else:
            self._send_frame(OP_BINARY, bytes(payload))

    def ping(self, payload: bytes = b"") -> None:
        if self.state is not State.OPEN:
            raise TransportError(f"cannot ping: the WebSocket is {self.state}")
        if len(payload) > 125:
            raise TransportError("a ping carries at most 125 bytes")
        self._send_frame(OP_PING, payload)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Queue our close frame (once); the reason is cut to fit 123 bytes of UTF-8."""
        if self.state is not State.OPEN:
            raise TransportError(f"cannot close: the WebSocket is {self.state}")
        if not (code in VALID_CLOSE_CODES or 3000 <= code <= 4999):
            raise TransportError(f"{code} is not a close code one may send")
        self._send_close(code, reason)
        self.state = State.CLOSING

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        self._out.append(encode_frame(opcode, payload, mask_key=self._mask_key()))

    def _mask_key(self) -> bytes:
        """A fresh 4-byte key from a pool of random bytes (one ``getrandom`` per 64 keys)."""
        pool = self._keys
        if len(pool) < 4:
            pool = self._urandom(_KEY_POOL)
        self._keys = pool[4:]
        return pool[:4]

    def _send_close(self, code: int, reason: str) -> None:
        if self._close_sent:
            return
        self._close_sent = True
        if code == NO_STATUS:
            self._send_frame(OP_CLOSE, b"")
            return
        data = reason.encode("utf-8")[:123].decode("utf-8", "ignore").encode("utf-8")
        self._send_frame(OP_CLOSE, code.to_bytes(2, "big") + data)

    # ------------------------------------------------------------------ input

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the socket; ``b""`` means the peer closed the TCP stream.

        Raises ``HandshakeError`` if the server refused or botched the upgrade and
        ``FrameError`` (``MessageTooLarge`` for 1009) if it broke the framing rules.
        """
        if self.state is State.CLOSED:
            return
        if not data:
            self._eof()
            return
        if not self._buf and self.state is State.OPEN and self._fragment_opcode is None:
            # The hot case (a keystroke): exactly one small unmasked final binary frame.
            # What ``_frames`` would conclude, without buffering and slicing it.
            size = len(data) - 2
            if 0 <= size < 126 and data[0] == 0x80 | OP_BINARY and data[1] == size:
                if size > self.max_message_size:
                    raise self._fail(TOO_BIG, f"message over {self.max_message_size} bytes")
                self._events.append(Message(data[2:]))
                return
        self._buf += data
        if self.state is State.CONNECTING:
            if self.reject_status is not None:
                self._reject_body()
                return
            if not self._handshake():
                return
        self._frames()

    def _eof(self) -> None:
        was = self.state
        self.state = State.CLOSED
        if was is State.CONNECTING:
            if self.reject_status is not None:
                self._raise_rejected()
            raise HandshakeError(f"{self.host} closed the connection during the upgrade")

    def _fail(self, code: int, message: str) -> FrameError:
        """Queue the close frame for ``code`` (if ours is not out yet); the caller raises."""
        self._send_close(code, "")
        self.state = State.CLOSED
        self._buf.clear()
        self._fragments, self._fragment_size = [], 0
        cls = MessageTooLarge if code == TOO_BIG else FrameError
        return cls(message, code)

    # -- handshake -------------------------------------------------------------------

    def _handshake(self) -> bool:
        """Parse the response once complete; True when open (frames may follow)."""
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > self.max_header_size:
                self.state = State.CLOSED
                raise HandshakeError(
                    f"{self.host} sent an upgrade response over {self.max_header_size} bytes"
                )
            return False
        if end + 4 > self.max_header_size:
            self.state = State.CLOSED
            raise HandshakeError(
                f"{self.host} sent an upgrade response over {self.max_header_size} bytes"
            )
        head = bytes(self._buf[:end])
        del self._buf[: end + 4]
        try:
            status, headers = parse_response_head(head, self.host)
            if status == 101:
                check_accept(headers, self.key, self.host)
        except HandshakeError:
            self.state = State.CLOSED
            raise
        if status != 101:
            self.reject_status = status
            length = headers.get("content-length", [])
            if len(length) == 1 and length[0].isascii() and length[0].isdigit():
                self._reject_length = min(int(length[0][:18]), self.max_reject_body)
            self._reject_body()
            return False
        self.state = State.OPEN
        return True

    def _reject_body(self) -> None:
        if len(self._buf) >= self._reject_length:
            self._raise_rejected()

    def _raise_rejected(self) -> NoReturn:
        self.state = State.CLOSED
        body = bytes(self._buf[: self.max_reject_body]).decode("utf-8", "replace").strip()
        self._buf.clear()
        detail = f": {body[:200]}" if body else ""
        status = self.reject_status
        raise HandshakeError(
            f"{self.host} refused the WebSocket upgrade for {self.target}: HTTP {status}{detail}",
            status,
        )

    # -- frames ----------------------------------------------------------------------

    def _frames(self) -> None:
        buf = self._buf
        while self.state is not State.CLOSED and len(buf) >= 2:
            first, second = buf[0], buf[1]
            fin, opcode = bool(first & 0x80), first & 0x0F
            if first & 0x70:
                raise self._fail(PROTOCOL_ERROR, "reserved bits set (no extension was agreed)")
            if second & 0x80:
                raise self._fail(PROTOCOL_ERROR, "the server masked a frame")
            size, start = second & 0x7F, 2
            if size == 126:
                if len(buf) < 4:
                    return
                size, start = int.from_bytes(buf[2:4], "big"), 4
            elif size == 127:
                if len(buf) < 10:
                    return
                size, start = int.from_bytes(buf[2:10], "big"), 10
                if size >> 63:
                    raise self._fail(PROTOCOL_ERROR, "frame length has its top bit set")
            self._check_header(fin, opcode, size)
            if len(buf) < start + size:
                return
            payload = bytes(buf[start : start + size])
            del buf[: start + size]
            if opcode in CONTROL_OPCODES:
                self._control(opcode, payload)
            else:
                self._data(fin, opcode, payload)

    def _check_header(self, fin: bool, opcode: int, size: int) -> None:
        if opcode in CONTROL_OPCODES:
            if not fin:
                raise self._fail(PROTOCOL_ERROR, "fragmented control frame")
            if size > 125:
                raise self._fail(PROTOCOL_ERROR, "control frame over 125 bytes")
            return
        if opcode not in DATA_OPCODES:
            raise self._fail(PROTOCOL_ERROR, f"unknown opcode {opcode:#x}")
        if opcode == OP_CONT and self._fragment_opcode is None:
            raise self._fail(PROTOCOL_ERROR, "continuation frame without a message")
        if opcode != OP_CONT and self._fragment_opcode is not None:
            raise self._fail(PROTOCOL_ERROR, "new message before the last one finished")
        if self._fragment_size + size > self.max_message_size:
            raise self._fail(TOO_BIG, f"message over {self.max_message_size} bytes")

    def _data(self, fin: bool, opcode: int, payload: bytes) -> None:
        if opcode != OP_CONT:
            self._fragment_opcode = opcode
        self._fragments.append(payload)
        self._fragment_size += len(payload)
        if not fin:
            return
        data = payload if len(self._fragments) == 1 else b"".join(self._fragments)
        kind = self._fragment_opcode
        self._fragments, self._fragment_size, self._fragment_opcode = [], 0, None
        if kind == OP_TEXT:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                raise self._fail(INVALID_DATA, "text message is not valid UTF-8") from None
            self._events.append(Message(text))
        else:
            self._events.append(Message(data))

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_PING:
            self._events.append(Ping(payload))
            if not self._close_sent:
                self._send_frame(OP_PONG, payload)
        elif opcode == OP_PONG:
            self._events.append(Pong(payload))
        else:
            code, reason = self._parse_close(payload)
            self._events.append(Close(code, reason))
            self._send_close(code, "")  # echo the code, as RFC 6455 5.5.1 asks
            self.state = State.CLOSED
            self._buf.clear()

    def _parse_close(self, payload: bytes) -> tuple[int, str]:
        if not payload:
            return NO_STATUS, ""
        if len(payload) == 1:
            raise self._fail(PROTOCOL_ERROR, "close frame with a 1-byte payload")
        code = int.from_bytes(payload[:2], "big")
        if not (code in VALID_CLOSE_CODES or 3000 <= code <= 4999):
            raise self._fail(PROTOCOL_ERROR, f"invalid close code {code}")
        try:
            reason = payload[2:].decode("utf-8")
        except UnicodeDecodeError:
            raise self._fail(INVALID_DATA, "close reason is not valid UTF-8") from None
        return code, reason
