"""The broker's WebSocket server protocol as uvicorn and ASGI see it.

uvicorn makes one :class:`WebSocketProtocol` per upgraded connection
(``uvicorn.Config(ws=WebSocketProtocol)``, ``broker/serving.py``) and hands it the request.
This layer answers the opening handshake (or refuses it with an HTTP error), speaks ASGI
(``websocket.connect/receive/disconnect``, ``accept`` with subprotocol and headers,
``close`` before accept answers HTTP 403, the ``websocket.http.response`` denial
extension), so Starlette routes work as before, and puts the protocol in
``scope["extensions"][EXTENSION]`` for :class:`broker.agents.wire.Wire`'s direct path
(:mod:`broker.websocket.connection`). Frames are the layer below
(:mod:`broker.websocket.frames`); ``data_received`` hands them over with no step between.

It must never interpret payloads or block, and nothing internal reaches the peer.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

from uvicorn.protocols.utils import ClientDisconnected, get_local_addr, get_remote_addr, is_ssl

from broker.websocket.connection import Connection

__all__ = ["EXTENSION", "WebSocketProtocol"]

log = logging.getLogger("uvicorn.error")

#: The key under ``scope["extensions"]`` that holds the protocol (see ``Wire``).
EXTENSION = "corral.websocket"
#: The largest request head accepted before the upgrade (uvicorn hands over a whole one).
_MAX_HEAD = 64 * 1024

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_CONNECT = {"type": "websocket.connect"}
_ASGI = {"version": "3.0", "spec_version": "2.4"}  # one for every scope: nothing changes it
_NO_OPTIONS: dict[str, Any] = {}
#: The scope of a listened connection whose handler returned: its request (headers, paths,
#: the state copy: about 2 KB) is let go; never mutated.
_SERVED: dict[str, Any] = {}


def _response(status: bytes, headers: list[tuple[bytes, bytes]], extra: bytes = b"") -> bytes:
    parts = [b"HTTP/1.1 ", status, b"\r\n", extra]
    for name, value in headers:
        if b"\r" in value or b"\n" in value or b"\r" in name or b"\n" in name:
            raise RuntimeError("invalid header in WebSocket response")
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


class WebSocketProtocol(Connection):
    """One WebSocket connection, from uvicorn's upgrade to the end of the TCP connection."""

    __slots__ = (
        "_app",
        "_connect_sent",
        "_denial",
        "_key",
        "_state",
        "app_state",
        "root_path",
        "scope",
    )

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config.ws_max_size)
        self._app: Any = config.loaded_app
        self._state = server_state
        self.root_path: str = config.root_path
        self.app_state = app_state
        self.scope: dict[str, Any] | None = None
        self._key: bytes | None = None
        self._connect_sent = False
        self._denial: tuple[int, list[tuple[bytes, bytes]], list[bytes]] | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._state.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._state.connections.discard(self)
        super().connection_lost(exc)

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
