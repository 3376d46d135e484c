"""A blocking WebSocket over a plain (or TLS) socket, for benchmark clients and servers.

The benchmarks time single keystrokes, so the measuring side must add as little as
possible and the same amount on every path. The ssh paths are a ``select`` and a
``read`` on a pipe or pty; this is the WebSocket equivalent:

* one thread, no event loop, no reader thread between the socket and the clock;
* the opening handshake (not timed) goes through the ``websockets`` sans-I/O protocol
  (``ClientProtocol``/``ServerProtocol``), which checks it properly;
* after it, frames are built and parsed here, in a few lines: RFC 6455 framing, masking
  with ``websockets``' C ``apply_mask`` (a client masks what it sends with a fresh
  random key per frame, a server unmasks what it receives), fragments joined, pings
  answered and a close echoed inside ``recv``. No UTF-8 check of text messages and no
  size cap beyond ``MAX_SIZE``: the peers are the broker and the agent under test;
* the socket stays in one mode: a fixed timeout set once (so a peer that stops
  answering cannot hang a run), and ``recv(timeout)`` waits with one ``select``, like
  the ssh paths, instead of switching the socket's blocking mode on every call (each
  switch was two ``fcntl`` calls).

It assumes the peer sends no frame before it is spoken to (true of the broker's user
WebSocket and of the agent's channel), so nothing is left inside the handshake parser.
Not for production use.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import ssl
from collections import deque

from websockets.client import ClientProtocol
from websockets.http11 import Request, Response
from websockets.protocol import Protocol
from websockets.server import ServerProtocol
from websockets.speedups import apply_mask
from websockets.uri import parse_uri

__all__ = ["BlockingWebSocket", "HandshakeFailed"]

MAX_SIZE = 8 * 1024 * 1024
RECV_BYTES = 256 * 1024
#: The socket's one timeout after the handshake: a stuck peer fails the run, never hangs it.
IO_TIMEOUT = 60.0

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class HandshakeFailed(Exception):
    pass


class FramingError(Exception):
    pass


class BlockingWebSocket:
    def __init__(self, sock: socket.socket, protocol: Protocol, *, client: bool) -> None:
        self.sock = sock
        self.protocol = protocol  # the opening handshake only
        self.client = client
        self.closed = False
        self._buf = bytearray()
        self._messages: deque[str | bytes] = deque()
        self._fragments: list[bytes] = []
        self._text = False
        self._keys = b""
        self._tls_pending = getattr(sock, "pending", None)

    # ------------------------------------------------------------------ opening

    @classmethod
    def connect(
        cls, url: str, context: ssl.SSLContext | None = None, timeout: float = 10.0
    ) -> BlockingWebSocket:
        uri = parse_uri(url)
        raw = socket.create_connection((uri.host, uri.port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock: socket.socket = raw
        if uri.secure:
            sock = (context or ssl.create_default_context()).wrap_socket(
                raw, server_hostname=uri.host
            )
        protocol = ClientProtocol(uri, max_size=MAX_SIZE)
        protocol.send_request(protocol.connect())
        ws = cls(sock, protocol, client=True)
        ws._handshake_flush()
        response: Response | None = None
        while response is None:
            ws._handshake_chunk()
            for event in protocol.events_received():
                if isinstance(event, Response):
                    response = event
                else:
                    raise HandshakeFailed(f"unexpected {event!r} during the handshake")
        if response.status_code != 101:
            raise HandshakeFailed(f"HTTP {response.status_code}")
        ws._opened()
        return ws

    @classmethod
    def accept(cls, sock: socket.socket) -> tuple[BlockingWebSocket, str]:
        """Server side of the handshake on an accepted socket; returns (ws, request path)."""
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        protocol = ServerProtocol(max_size=MAX_SIZE)
        ws = cls(sock, protocol, client=False)
        request: Request | None = None
        while request is None:
            ws._handshake_chunk()
            for event in protocol.events_received():
                if isinstance(event, Request):
                    request = event
                else:
                    raise HandshakeFailed(f"unexpected {event!r} during the handshake")
        protocol.send_response(protocol.accept(request))
        ws._handshake_flush()
        ws._opened()
        return ws, request.path

    def _handshake_chunk(self) -> None:
        data = self.sock.recv(RECV_BYTES)
        if not data:
            raise HandshakeFailed("the peer closed the connection during the handshake")
        self.protocol.receive_data(data)

    def _handshake_flush(self) -> None:
        for data in self.protocol.data_to_send():
            if data:
                self.sock.sendall(data)

    def _opened(self) -> None:
        reader = getattr(self.protocol, "reader", None)
        leftover = getattr(reader, "buffer", b"")
        if leftover:  # frames right behind the handshake (see the module docstring)
            self._buf += leftover
        self.sock.settimeout(IO_TIMEOUT)

    # ------------------------------------------------------------------ messages

    def send(self, payload: str | bytes) -> None:
        if isinstance(payload, str):
            self._send_frame(OP_TEXT, payload.encode())
        else:
            self._send_frame(OP_BINARY, payload)

    def recv(self, timeout: float | None = None) -> str | bytes | None:
        """The next message; ``None`` after ``timeout`` seconds (or once closed)."""
        while True:
            if self._messages:
                return self._messages.popleft()
            if self.closed:
                return None
            if timeout is not None and not (self._tls_pending and self._tls_pending()):
                ready, _, _ = select.select([self.sock], [], [], timeout)
                if not ready:
                    return None
            try:
                data = self.sock.recv(RECV_BYTES)
            except TimeoutError:
                return None
            if not data:
                self.closed = True
                return None
            self._buf += data
            self._parse()

    def close(self) -> None:
        if self.closed:
            return
        with contextlib.suppress(OSError):
            self._send_frame(OP_CLOSE, (1000).to_bytes(2, "big"))
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.close()

    # ------------------------------------------------------------------ framing

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        size = len(payload)
        mask_bit = 0x80 if self.client else 0
        if size < 126:
            head = bytes((0x80 | opcode, mask_bit | size))
        elif size < 1 << 16:
            head = bytes((0x80 | opcode, mask_bit | 126)) + size.to_bytes(2, "big")
        else:
            head = bytes((0x80 | opcode, mask_bit | 127)) + size.to_bytes(8, "big")
        if self.client:
            if len(self._keys) < 4:
                self._keys = os.urandom(256)
            key, self._keys = self._keys[:4], self._keys[4:]
            self.sock.sendall(head + key + apply_mask(payload, key))
        else:
            self.sock.sendall(head + payload)

    def _parse(self) -> None:
        buf = self._buf
        while len(buf) >= 2:
            first, second = buf[0], buf[1]
            size, start = second & 0x7F, 2
            if size == 126:
                if len(buf) < 4:
                    return
                size, start = int.from_bytes(buf[2:4], "big"), 4
            elif size == 127:
                if len(buf) < 10:
                    return
                size, start = int.from_bytes(buf[2:10], "big"), 10
            if size > MAX_SIZE:
                raise FramingError(f"frame of {size} bytes")
            masked = bool(second & 0x80)
            if masked == self.client:
                raise FramingError("a server masks nothing; a client masks every frame")
            end = start + 4 + size if masked else start + size
            if len(buf) < end:
                return
            if masked:
                payload = apply_mask(bytes(buf[start + 4 : end]), bytes(buf[start : start + 4]))
            else:
                payload = bytes(buf[start:end])
            del buf[:end]
            self._frame(bool(first & 0x80), first & 0x0F, payload)

    def _frame(self, fin: bool, opcode: int, payload: bytes) -> None:
        if opcode in (OP_TEXT, OP_BINARY, OP_CONT):
            if opcode != OP_CONT:
                self._text = opcode == OP_TEXT
            if fin and not self._fragments:
                self._messages.append(payload.decode() if self._text else payload)
                return
            self._fragments.append(payload)
            if fin:
                data = b"".join(self._fragments)
                self._fragments.clear()
                self._messages.append(data.decode() if self._text else data)
        elif opcode == OP_PING:
            self._send_frame(OP_PONG, payload)
        elif opcode == OP_CLOSE:
            with contextlib.suppress(OSError):
                self._send_frame(OP_CLOSE, payload[:2])
            self.closed = True
