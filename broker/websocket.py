"""The broker's WebSocket server protocol: uvicorn hands it the socket after the upgrade.

uvicorn's own WebSocket protocols run every message through a general-purpose parser, an
``asyncio.Queue`` and a task switch, then Starlette's wrappers; per idle connection they keep
a parser object, a queue, an event and the wrappers alive. The broker holds thousands of
idle agent sockets and relays a terminal keystroke by keystroke, so this protocol is written
for that job (``uvicorn.Config(ws=WebSocketProtocol)``, ``broker/serving.py``):

* frames are parsed in :meth:`WebSocketProtocol.data_received` with integer operations and
  unmasked with ``websockets.speedups.apply_mask``; RFC 6455 is enforced (client frames
  masked, RSV bits clear, control frames short and whole, UTF-8 text, valid close codes):
  a protocol error closes with 1002, bad UTF-8 with 1007, an oversized message with 1009;
* pings are answered here; the server never pings (the agents' websh heartbeat does that);
* a message waits in a ``deque`` made only while one is queued; reading pauses when the
  queued bytes pass :data:`READ_HIGH`, so a peer cannot outrun an application that is not
  reading; sends are written straight to the transport and only wait while it is paused;
* it speaks ASGI (``websocket.connect/receive/disconnect``, ``accept`` with subprotocol
  and headers, ``close`` before accept answers HTTP 403), so Starlette routes work as
  before, and it puts itself in ``scope["extensions"][EXTENSION]`` so that
  :class:`broker.agents.wire.Wire` can skip the ASGI dictionaries: ``pop`` returns a
  queued payload without suspending and ``send_data`` writes at once.

No compression extension is negotiated (permessage-deflate): terminal traffic is small,
and compressing secrets next to attacker-chosen input under TLS is what CRIME did.

It must never interpret payloads or block: it moves bytes and enforces the framing rules.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import struct
from collections import deque
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import unquote

from uvicorn.protocols.utils import ClientDisconnected, get_local_addr, get_remote_addr, is_ssl
from websockets.speedups import apply_mask

__all__ = [
    "CLOSE_TIMEOUT",
    "EXTENSION",
    "READ_HIGH",
    "ClientDisconnected",
    "Listener",
    "WebSocketProtocol",
]

log = logging.getLogger("uvicorn.error")

#: The key under ``scope["extensions"]`` that holds the protocol (see ``Wire``).
EXTENSION = "corral.websocket"
#: Seconds to wait for the peer's half of a closing handshake the server started.
CLOSE_TIMEOUT = 10.0
#: Queued bytes (plus :data:`_ENTRY` per message) above which reading pauses.
READ_HIGH = 256 * 1024
#: What one queued message counts for besides its payload (so empty messages count too).
_ENTRY = 64
#: The largest request head accepted before the upgrade (uvicorn hands over a whole one).
_MAX_HEAD = 64 * 1024

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_CONT, _TEXT, _BINARY, _CLOSE, _PING, _PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_PEER_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})
_PACK_16 = struct.Struct("!BBH").pack
_PACK_64 = struct.Struct("!BBQ").pack
_CONNECT = {"type": "websocket.connect"}
_ASGI = {"version": "3.0", "spec_version": "2.4"}  # one for every scope: nothing changes it
_NO_OPTIONS: dict[str, Any] = {}
#: The scope of a listened connection whose handler returned: its request (headers, paths,
#: the state copy: about 2 KB) is let go; never mutated.
_SERVED: dict[str, Any] = {}


class Listener(Protocol):
    """Who takes a connection's messages as they arrive (see :meth:`WebSocketProtocol.listen`)."""

    def heard(self, message: str | bytes) -> None: ...

    def ended(self, code: int, reason: str) -> None: ...


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


def _response(status: bytes, headers: list[tuple[bytes, bytes]], extra: bytes = b"") -> bytes:
    parts = [b"HTTP/1.1 ", status, b"\r\n", extra]
    for name, value in headers:
        if b"\r" in value or b"\n" in value or b"\r" in name or b"\n" in name:
            raise RuntimeError("invalid header in WebSocket response")
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


class WebSocketProtocol(asyncio.Protocol):
    """One WebSocket connection, from uvicorn's upgrade to the end of the TCP connection."""

    __slots__ = (
        "_app",
        "_app_closed",
        "_buffer",
        "_close_sent",
        "_close_timer",
        "_connect_sent",
        "_denial",
        "_disconnect",
        "_drainer",
        "_frag_op",
        "_frag_size",
        "_frags",
        "_held",
        "_key",
        "_listener",
        "_lost",
        "_max_size",
        "_need",
        "_queue",
        "_queued",
        "_read_paused",
        "_reading",
        "_state",
        "_waiter",
        "accepted",
        "app_state",
        "root_path",
        "scope",
        "transport",
        "write_paused",
    )

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._app: Any = config.loaded_app
        self._state = server_state
        self._max_size: int = config.ws_max_size
        self.root_path: str = config.root_path
        self.app_state = app_state
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.scope: dict[str, Any] | None = None
        self.accepted = False
        self.write_paused = False
        self._key: bytes | None = None
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
        self._drainer: asyncio.Future[None] | None = None
        self._connect_sent = False
        self._denial: tuple[int, list[tuple[bytes, bytes]], list[bytes]] | None = None
        self._close_sent = False
        self._app_closed = False
        self._lost = False
        self._disconnect: tuple[int, str] | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self._listener: Listener | None = None
        self._held = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._state.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._reading = False
        self._state.connections.discard(self)
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

    def data_received(self, data: bytes) -> None:
        if self.scope is None:
            self._handshake(data)
        elif self._reading:
            self._frames(data)

    # uvicorn's server

    def shutdown(self) -> None:
        """The server is stopping: close with 1012 (service restart)."""
        if self._close_sent:
            self.transport.close()
            return
        if self.accepted:
            self._set_disconnect(1012)
            self._write_close(1012, "")
        else:
            self._write_500()
        self.transport.close()

    # The opening handshake

    def _handshake(self, data: bytes) -> None:
        buffered = self._buffer
        if buffered is not None:
            buffered += data
            data = bytes(buffered)
        head, found, rest = data.partition(b"\r\n\r\n")
        if not found:
            if len(data) > _MAX_HEAD:
                self._refuse(b"431 Request Header Fields Too Large")
            else:
                self._buffer = bytearray(data)
            return
        self._buffer = None
        lines = head.split(b"\r\n")
        request = lines[0].split(b" ")
        headers: list[tuple[bytes, bytes]] = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers.append((name.strip().lower(), value.strip()))
        fields: dict[bytes, bytes] = {}
        for name, value in headers:
            fields[name] = fields[name] + b", " + value if name in fields else value
        connection = {token.strip().lower() for token in fields.get(b"connection", b"").split(b",")}
        if (
            len(request) != 3
            or request[0] != b"GET"
            or b"websocket" not in fields.get(b"upgrade", b"").lower()
            or b"upgrade" not in connection
        ):
            self._refuse(b"400 Bad Request")
            return
        if fields.get(b"sec-websocket-version") != b"13":
            self._refuse(b"426 Upgrade Required", b"Sec-WebSocket-Version: 13\r\n")
            return
        key = fields.get(b"sec-websocket-key", b"")
        try:
            valid_key = len(base64.b64decode(key, validate=True)) == 16
        except ValueError:
            valid_key = False
        if not valid_key:
            self._refuse(b"400 Bad Request")
            return
        self._key = key
        target = request[1].decode("latin-1")
        raw_path, _, query = target.partition("?")
        subprotocols = [
            token.strip()
            for token in fields.get(b"sec-websocket-protocol", b"").decode("latin-1").split(",")
            if token.strip()
        ]
        transport = self.transport
        self.scope = {
            "type": "websocket",
            "asgi": _ASGI,
            "http_version": "1.1",
            "scheme": "wss" if is_ssl(transport) else "ws",
            "server": get_local_addr(transport),
            "client": get_remote_addr(transport),
            "root_path": self.root_path,
            "path": self.root_path + unquote(raw_path),
            "raw_path": self.root_path.encode("ascii") + raw_path.encode("latin-1"),
            "query_string": query.encode("latin-1"),
            "headers": headers,
            "subprotocols": subprotocols,
            "state": self.app_state.copy(),
            "extensions": {EXTENSION: self, "websocket.http.response": _NO_OPTIONS},
        }
        task = asyncio.get_running_loop().create_task(self._run())
        tasks = self._state.tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        if rest:  # frames sent before the answer (uvicorn never passes any)
            self._frames(rest)

    def _refuse(self, status: bytes, extra: bytes = b"") -> None:
        """Answer a request that is no WebSocket handshake with an HTTP error."""
        self._close_sent = True
        self._reading = False
        self._set_disconnect(1006)
        self.transport.write(
            _response(
                status,
                self._state.default_headers,
                extra + b"Connection: close\r\nContent-Length: 0\r\n",
            )
        )
        self.transport.close()

    def _write_500(self) -> None:
        if not self.accepted and not self._close_sent:
            self._refuse(b"500 Internal Server Error")

    async def _run(self) -> None:
        scope = self.scope
        assert scope is not None
        try:
            await self._app(scope, self.receive, self.send)
        except ClientDisconnected:
            pass
        except BaseException:
            log.exception("Exception in ASGI application\n")
            self._write_500()
        else:
            if not self.accepted and not self._close_sent:
                log.error("ASGI callable returned without completing handshake.")
                self._write_500()
        scope["extensions"].pop(EXTENSION, None)  # no cycle left for the collector
        if self._listener is not None:  # nothing reads the request again (idle agents)
            self.scope = _SERVED
        elif self._close_timer is None:
            self.transport.close()

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
        self._queued += len(payload) + _ENTRY
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
            if code not in _PEER_CODES and not 3000 <= code < 5000:
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
        connection is closing. Never waits: callers await :meth:`drain` when
        :attr:`write_paused`."""
        if self._close_sent or self._lost:
            raise ClientDisconnected
        if isinstance(data, str):
            payload = data.encode()
            self.transport.write(frame_header(_TEXT, len(payload)) + payload)
        elif len(data) < 126:  # a keystroke or an echo: the header inline
            self.transport.write(bytes((0x82, len(data))) + data)
        else:
            self.transport.write(frame_header(_BINARY, len(data)) + data)

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
            self._queued -= len(message) + _ENTRY
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

    # ASGI

    async def receive(self) -> dict[str, Any]:
        if not self._connect_sent:
            self._connect_sent = True
            return _CONNECT
        while True:
            message = self.pop()
            if message is not None:
                if isinstance(message, str):
                    return {"type": "websocket.receive", "text": message}
                return {"type": "websocket.receive", "bytes": message}
            if self._disconnect is not None:
                code, reason = self._disconnect
                return {"type": "websocket.disconnect", "code": code, "reason": reason}
            await self.readable()

    async def send(self, message: dict[str, Any]) -> None:
        if self.write_paused:
            await self.drain()
        kind = message["type"]
        if self._app_closed:
            raise RuntimeError(f"Unexpected ASGI message {kind!r} after sending 'websocket.close'.")
        if self._lost or self._close_sent:
            raise ClientDisconnected
        if not self.accepted:
            if kind == "websocket.accept":
                self._accept(message.get("subprotocol"), list(message.get("headers") or ()))
            elif kind == "websocket.close" and self._denial is None:
                self._log("403")
                self._refuse(b"403 Forbidden")
                self._app_closed = True
            elif kind == "websocket.http.response.start" and self._denial is None:
                status = int(message["status"])
                if not 100 <= status < 600:
                    raise RuntimeError(f"Invalid HTTP status code {status} in response.")
                self._denial = (status, list(message.get("headers") or ()), [])
            elif kind == "websocket.http.response.body" and self._denial is not None:
                self._deny(self._denial, message.get("body", b""), message.get("more_body", False))
            else:
                raise RuntimeError(
                    "Expected ASGI message 'websocket.accept', 'websocket.close' or "
                    f"'websocket.http.response.*', got {kind!r}."
                )
        elif kind == "websocket.send":
            data = message.get("bytes")
            self.send_data((message.get("text") or "") if data is None else data)
        elif kind == "websocket.close":
            self.close(message.get("code") or 1000, message.get("reason") or "")
        else:
            raise RuntimeError(
                f"Expected ASGI message 'websocket.send' or 'websocket.close', got {kind!r}."
            )

    def _deny(
        self,
        denial: tuple[int, list[tuple[bytes, bytes]], list[bytes]],
        body: bytes,
        more: bool,
    ) -> None:
        """The denial response extension: an HTTP response instead of the upgrade."""
        status, headers, parts = denial
        parts.append(body)
        if more:
            return
        content = b"".join(parts)
        self._log(str(status))
        names = {name.lower() for name, _ in headers}
        if b"content-length" not in names:
            headers.append((b"content-length", str(len(content)).encode()))
        try:
            phrase = HTTPStatus(status).phrase.encode()
        except ValueError:
            phrase = b""
        self._denial = None
        self._app_closed = True
        self._close_sent = True
        self._reading = False
        self._set_disconnect(1006)
        self.transport.write(
            _response(
                b"%d %s" % (status, phrase),
                [*self._state.default_headers, *headers, (b"connection", b"close")],
            )
            + content
        )
        self.transport.close()

    def _accept(self, subprotocol: str | None, headers: list[tuple[bytes, bytes]]) -> None:
        key = self._key
        assert key is not None
        self._key = None
        accept = base64.b64encode(hashlib.sha1(key + _GUID, usedforsecurity=False).digest())
        if subprotocol:
            headers.append((b"Sec-WebSocket-Protocol", subprotocol.encode()))
        self._log("[accepted]")
        self.accepted = True
        self.transport.write(
            _response(
                b"101 Switching Protocols",
                [*self._state.default_headers, *headers],
                b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "
                + accept
                + b"\r\n",
            )
        )

    def _log(self, outcome: str) -> None:
        if log.isEnabledFor(logging.INFO) and self.scope:
            client = self.scope["client"]
            where = f"{client[0]}:{client[1]}" if client else "-"
            path = self.scope["path"]
            query = self.scope["query_string"]
            if query:
                path += "?" + query.decode("latin-1")
            log.info('%s - "WebSocket %s" %s', where, path, outcome)
