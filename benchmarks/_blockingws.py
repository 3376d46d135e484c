"""A blocking WebSocket over a plain (or TLS) socket, for benchmark clients and servers.

The benchmarks time single keystrokes, so the measuring side must add as little as
possible and the same amount on every path: one thread, blocking ``send``/``recv`` on the
socket, and the ``websockets`` sans-I/O protocol (``ClientProtocol``/``ServerProtocol``)
for framing. No event loop and no reader thread sit between the socket and the clock.
Control frames (ping, close) are answered inside ``recv``. Not for production use.
"""

from __future__ import annotations

import contextlib
import socket
import ssl

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import Protocol
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

__all__ = ["BlockingWebSocket", "HandshakeFailed"]

MAX_SIZE = 8 * 1024 * 1024
RECV_BYTES = 256 * 1024


class HandshakeFailed(Exception):
    pass


class BlockingWebSocket:
    def __init__(self, sock: socket.socket, protocol: Protocol) -> None:
        self.sock = sock
        self.protocol = protocol
        self._frames: list[Frame] = []
        self._fragments: list[bytes] = []
        self._text = False
        self.closed = False

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
        ws = cls(sock, protocol)
        ws._flush()
        response: Response | None = None
        while response is None:
            ws._receive_chunk()
            for event in protocol.events_received():
                if isinstance(event, Response):
                    response = event
                elif isinstance(event, Frame):
                    ws._frames.append(event)
        if response.status_code != 101:
            raise HandshakeFailed(f"HTTP {response.status_code}")
        sock.settimeout(None)
        return ws

    @classmethod
    def accept(cls, sock: socket.socket) -> tuple[BlockingWebSocket, str]:
        """Server side of the handshake on an accepted socket; returns (ws, request path)."""
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        protocol = ServerProtocol(max_size=MAX_SIZE)
        ws = cls(sock, protocol)
        request: Request | None = None
        while request is None:
            ws._receive_chunk()
            for event in protocol.events_received():
                if isinstance(event, Request):
                    request = event
                elif isinstance(event, Frame):
                    ws._frames.append(event)
        protocol.send_response(protocol.accept(request))
        ws._flush()
        return ws, request.path

    # ------------------------------------------------------------------ messages

    def send(self, payload: str | bytes) -> None:
        if isinstance(payload, bytes):
            self.protocol.send_binary(payload)
        else:
            self.protocol.send_text(payload.encode())
        self._flush()

    def recv(self, timeout: float | None = None) -> str | bytes | None:
        """The next message; ``None`` after ``timeout`` seconds (or once closed)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                while self._frames:
                    message = self._take(self._frames.pop(0))
                    if message is not None:
                        return message
                if self.closed:
                    return None
                self._receive_chunk()
                self._frames.extend(
                    e for e in self.protocol.events_received() if isinstance(e, Frame)
                )
                self._flush()  # pongs, close replies
        except TimeoutError:
            return None
        finally:
            if not self.closed:
                self.sock.settimeout(None)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.protocol.send_close(1000)
            self._flush()
        except (OSError, Exception):
            pass
        with contextlib.suppress(OSError):
            self.sock.close()

    # ------------------------------------------------------------------ plumbing

    def _take(self, frame: Frame) -> str | bytes | None:
        if frame.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
            if frame.opcode is not Opcode.CONT:
                self._text = frame.opcode is Opcode.TEXT
            self._fragments.append(frame.data)
            if not frame.fin:
                return None
            data = b"".join(self._fragments)
            self._fragments.clear()
            return data.decode() if self._text else data
        if frame.opcode is Opcode.CLOSE:
            self.closed = True
        return None

    def _receive_chunk(self) -> None:
        data = self.sock.recv(RECV_BYTES)
        if data:
            self.protocol.receive_data(data)
        else:
            self.protocol.receive_eof()
            self.closed = True

    def _flush(self) -> None:
        for data in self.protocol.data_to_send():
            if data:
                self.sock.sendall(data)
