"""The broker's WebSocket protocol (broker/websocket/): bytes in, frames and ASGI out.

The first tests feed the protocol bytes through a recording transport (handshake, masked
frames, fragments, limits, close, ping, flow control); the last ones serve a real uvicorn
on loopback and talk to it with the ``websockets`` client.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import uvicorn
import websockets
from starlette.websockets import WebSocket
from uvicorn.server import ServerState
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.speedups import apply_mask

from broker.agents.wire import Closed, Wire
from broker.serving import server_config
from broker.websocket import (
    CLOSE_TIMEOUT,
    EXTENSION,
    READ_HIGH,
    ClientDisconnected,
    WebSocketProtocol,
)
from websh import (
    ClientHello,
    ClientWelcome,
    Connection,
    ConnectionKind,
    Input,
    Ping,
    Pong,
    Side,
    decode,
    encode,
)

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
KEY = base64.b64encode(b"0123456789abcdef")
REQUEST = (
    b"GET /ws?x=1 HTTP/1.1\r\nhost: t\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
    b"sec-websocket-key: " + KEY + b"\r\nsec-websocket-version: 13\r\n"
    b"sec-websocket-protocol: a, b\r\n\r\n"
)


class Transport(asyncio.Transport):
    """Records what the protocol writes and how it drives the connection."""

    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False
        self.reading = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed
        self.out += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 443), "peername": ("127.0.0.1", 5555)}.get(name, default)

    def take(self) -> bytes:
        data = bytes(self.out)
        self.out.clear()
        return data


class Config:
    """The part of uvicorn's Config the protocol reads."""

    def __init__(self, app: App, max_size: int = 1024) -> None:
        self.loaded_app = app
        self.ws_max_size = max_size
        self.root_path = ""


def frame(
    opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, masked: bool = True
) -> bytes:
    """A client frame, masked unless told otherwise."""
    first = (0x80 if fin else 0) | rsv | opcode
    size = len(payload)
    if size < 126:
        head = bytes((first, size | (0x80 if masked else 0)))
    elif size < 65536:
        head = struct.pack("!BBH", first, 126 | (0x80 if masked else 0), size)
    else:
        head = struct.pack("!BBQ", first, 127 | (0x80 if masked else 0), size)
    if not masked:
        return head + payload
    mask = b"\x37\xfa\x21\x3d"
    return head + mask + apply_mask(payload, mask)


def frames(data: bytes) -> list[tuple[int, bytes]]:
    """The server's frames in ``data`` as ``(opcode, payload)``; they must be unmasked."""
    out = []
    while data:
        assert data[0] & 0x80 and not data[1] & 0x80
        size, start = data[1] & 0x7F, 2
        if size == 126:
            size, start = struct.unpack("!H", data[2:4])[0], 4
        elif size == 127:
            size, start = struct.unpack("!Q", data[2:10])[0], 10
        out.append((data[0] & 0x0F, data[start : start + size]))
        data = data[start + size :]
    return out


def close(code: int, reason: bytes = b"") -> tuple[int, bytes]:
    return (8, code.to_bytes(2, "big") + reason)


class Peer:
    """A protocol on a recording transport, its ASGI application already run."""

    def __init__(self, app: App | None = None, max_size: int = 1024) -> None:
        self.messages: list[dict[str, Any]] = []
        self.state = ServerState()
        self.protocol = WebSocketProtocol(Config(app or self.accepting, max_size), self.state, {})
        self.transport = Transport()
        self.protocol.connection_made(self.transport)
        self.hold = asyncio.Event()

    async def accepting(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept", "subprotocol": "b"})
        await self.hold.wait()

    async def open(self) -> bytes:
        self.protocol.data_received(REQUEST)
        for _ in range(3):
            await asyncio.sleep(0)
        return self.transport.take()

    def feed(self, *data: bytes) -> list[tuple[int, bytes]]:
        for chunk in data:
            self.protocol.data_received(chunk)
        return frames(self.transport.take())


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    peer = Peer()
    response = await peer.open()
    assert response.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    yield peer
    peer.hold.set()
    peer.protocol.connection_lost(None)
    await asyncio.sleep(0)


async def test_handshake_answers_the_key_and_fills_the_scope() -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append({**scope, "extensions": {**scope["extensions"]}})
        await receive()
        await send({"type": "websocket.accept", "subprotocol": "b", "headers": [(b"x-a", b"1")]})

    peer = Peer(app)
    response = await peer.open()
    accept = base64.b64encode(
        hashlib.sha1(KEY + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11", usedforsecurity=False).digest()
    )
    assert b"\r\nSec-WebSocket-Accept: " + accept + b"\r\n" in response
    assert b"\r\nSec-WebSocket-Protocol: b\r\n" in response
    assert b"\r\nx-a: 1\r\n" in response
    assert b"permessage-deflate" not in response
    scope = seen[0]
    assert (scope["path"], scope["query_string"], scope["subprotocols"]) == (
        "/ws",
        b"x=1",
        ["a", "b"],
    )
    assert scope["client"] == ("127.0.0.1", 5555)
    assert scope["scheme"] == "ws"
    assert scope["extensions"][EXTENSION] is peer.protocol
    assert (b"upgrade", b"websocket") in scope["headers"]


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (REQUEST.replace(b"13", b"8"), b"426"),
        (REQUEST.replace(KEY, b"short"), b"400"),
        (REQUEST.replace(b"GET", b"POST"), b"400"),
        (REQUEST.replace(b"upgrade: websocket", b"upgrade: h2c"), b"400"),
    ],
)
async def test_a_bad_handshake_gets_an_http_error(request_bytes: bytes, status: bytes) -> None:
    peer = Peer()
    peer.protocol.data_received(request_bytes)
    assert peer.transport.take().startswith(b"HTTP/1.1 " + status)
    assert peer.transport.closed
    assert peer.protocol.scope is None


async def test_close_before_accept_is_403() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.close", "code": 1008})

    peer = Peer(app)
    response = await peer.open()
    assert response.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert peer.transport.closed


async def test_an_app_that_fails_before_accept_is_500() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise ValueError("boom")

    peer = Peer(app)
    response = await peer.open()
    assert response.startswith(b"HTTP/1.1 500 ")
    assert b"boom" not in response


async def test_text_bytes_and_fragments_arrive_whole(peer: Peer) -> None:
    message = frame(1, "h\u00e9llo".encode())
    assert peer.feed(message[:3], message[3:], frame(2, b"\x00\xff")) == []
    assert peer.feed(frame(1, b"ab", fin=False), frame(9, b"p"), frame(0, b"cd")) == [(10, b"p")]
    big = bytes(range(256)) * 3
    assert peer.feed(frame(2, big[:500], fin=False), frame(0, big[500:])) == []
    receive = peer.protocol.receive
    assert await receive() == {"type": "websocket.receive", "text": "h\u00e9llo"}
    assert await receive() == {"type": "websocket.receive", "bytes": b"\x00\xff"}
    assert await receive() == {"type": "websocket.receive", "text": "abcd"}
    assert await receive() == {"type": "websocket.receive", "bytes": big}
    assert peer.protocol.pop() is None


async def test_frames_split_at_every_byte(peer: Peer) -> None:
    stream = frame(1, b"x" * 300) + frame(2, b"y" * 70000, fin=False) + frame(0, b"z")
    peer.protocol._max_size = 100_000
    for i in range(len(stream)):
        peer.protocol.data_received(stream[i : i + 1])
    assert peer.protocol.pop() == "x" * 300
    assert peer.protocol.pop() == b"y" * 70000 + b"z"


async def test_sends_are_unmasked_frames_written_at_once(peer: Peer) -> None:
    await peer.protocol.send({"type": "websocket.send", "text": "hi"})
    peer.protocol.send_data(b"x" * 200)
    peer.protocol.send_data(b"y" * 70000)
    assert frames(peer.transport.take()) == [(1, b"hi"), (2, b"x" * 200), (2, b"y" * 70000)]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (frame(1, b"x", masked=False), 1002),
        (frame(1, b"x", rsv=0x40), 1002),
        (frame(3, b"x"), 1002),
        (frame(11, b""), 1002),
        (frame(9, b"x" * 126), 1002),
        (frame(9, b"x", fin=False), 1002),
        (frame(0, b"x"), 1002),
        (frame(1, b"a", fin=False) + frame(2, b"b"), 1002),
        (frame(1, b"\xff\xfe"), 1007),
        (frame(1, b"x" * 1025), 1009),
        (frame(1, b"x" * 600, fin=False) + frame(0, b"x" * 600), 1009),
        (frame(8, b"\x03"), 1002),
        (frame(8, (999).to_bytes(2, "big")), 1002),
        (frame(8, (1005).to_bytes(2, "big")), 1002),
        (frame(8, (1000).to_bytes(2, "big") + b"\xff"), 1007),
    ],
)
async def test_protocol_errors_close_with_their_code(peer: Peer, data: bytes, code: int) -> None:
    sent = peer.feed(data)
    assert sent[-1][0] == 8
    assert int.from_bytes(sent[-1][1][:2], "big") == code
    assert peer.transport.closed
    assert (await peer.protocol.receive())["code"] == code
    assert peer.feed(frame(1, b"more")) == []  # nothing more is read


async def test_an_oversized_frame_fails_before_its_payload_arrives(peer: Peer) -> None:
    header = struct.pack("!BBQ", 0x82, 0xFF, 1 << 40)
    assert peer.feed(header) == [close(1009, b"message too big")]


async def test_ping_is_answered_and_pong_ignored(peer: Peer) -> None:
    assert peer.feed(frame(9, b"nonce"), frame(10, b"x")) == [(10, b"nonce")]
    assert peer.protocol.pop() is None


async def test_peer_close_is_echoed_and_reported(peer: Peer) -> None:
    assert peer.feed(frame(1, b"last"), frame(8, (4001).to_bytes(2, "big") + b"bye")) == [
        (8, (4001).to_bytes(2, "big"))
    ]
    assert peer.transport.closed
    assert await peer.protocol.receive() == {"type": "websocket.receive", "text": "last"}
    assert await peer.protocol.receive() == {
        "type": "websocket.disconnect",
        "code": 4001,
        "reason": "bye",
    }
    with pytest.raises(ClientDisconnected):
        await peer.protocol.send({"type": "websocket.send", "text": "late"})


async def test_empty_close_is_1005(peer: Peer) -> None:
    assert peer.feed(frame(8)) == [(8, b"")]
    assert (await peer.protocol.receive())["code"] == 1005


async def test_app_close_waits_for_the_answer_or_the_timeout(peer: Peer) -> None:
    await peer.protocol.send({"type": "websocket.close", "code": 4003, "reason": "no"})
    assert frames(peer.transport.take()) == [close(4003, b"no")]
    assert not peer.transport.closed
    assert peer.feed(frame(1, b"ignored"), frame(9, b"p")) == []
    assert peer.protocol.pop() is None
    timer = peer.protocol._close_timer
    assert timer is not None
    assert timer.when() - asyncio.get_running_loop().time() == pytest.approx(CLOSE_TIMEOUT, abs=1)
    peer.feed(frame(8, (4003).to_bytes(2, "big")))
    assert peer.transport.closed
    with pytest.raises(RuntimeError, match=r"after sending 'websocket\.close'"):
        await peer.protocol.send({"type": "websocket.send", "text": "x"})


async def test_a_long_close_reason_is_cut_to_fit() -> None:
    peer = Peer()
    await peer.open()
    peer.protocol.close(1000, "\u00e9" * 100)
    [(opcode, payload)] = frames(peer.transport.take())
    assert opcode == 8 and len(payload) <= 125
    payload[2:].decode()


async def test_reading_pauses_while_the_app_is_behind(peer: Peer) -> None:
    peer.protocol._max_size = READ_HIGH
    chunk = b"x" * 1000
    count = 0
    while peer.transport.reading:
        peer.feed(frame(2, chunk))
        count += 1
    assert count * 1000 <= READ_HIGH + 1000
    for _ in range(count - 1):
        assert peer.protocol.pop() == chunk
        assert not peer.transport.reading
    assert peer.protocol.pop() == chunk
    assert peer.transport.reading


async def test_send_waits_only_while_the_transport_is_paused(peer: Peer) -> None:
    peer.protocol.pause_writing()
    sending = asyncio.ensure_future(peer.protocol.send({"type": "websocket.send", "bytes": b"x"}))
    await asyncio.sleep(0)
    assert not sending.done() and peer.transport.take() == b""
    peer.protocol.resume_writing()
    await sending
    assert frames(peer.transport.take()) == [(2, b"x")]


async def test_a_receive_waits_without_a_queue_and_wakes_on_loss(peer: Peer) -> None:
    assert peer.protocol._queue is None
    waiting = asyncio.ensure_future(peer.protocol.receive())
    await asyncio.sleep(0)
    peer.feed(frame(2, b"a"))
    assert await waiting == {"type": "websocket.receive", "bytes": b"a"}
    assert peer.protocol._queue is None
    waiting = asyncio.ensure_future(peer.protocol.receive())
    await asyncio.sleep(0)
    peer.protocol.connection_lost(ConnectionResetError())
    assert (await waiting)["type"] == "websocket.disconnect"


async def test_shutdown_closes_with_1012(peer: Peer) -> None:
    peer.protocol.shutdown()
    assert frames(peer.transport.take()) == [close(1012)]
    assert peer.transport.closed
    assert (await peer.protocol.receive())["code"] == 1012


async def test_an_idle_connection_is_small(peer: Peer) -> None:
    assert not hasattr(peer.protocol, "__dict__")
    assert peer.protocol._queue is None and peer.protocol._buffer is None


# A real server on loopback


@pytest.fixture
async def served() -> AsyncIterator[str]:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": message["type"] + ".complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await receive()
        if scope["path"] == "/deny":
            await send({"type": "websocket.close"})
            return
        offered = "websh" if "websh" in scope["subprotocols"] else None
        await send({"type": "websocket.accept", "subprotocol": offered})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") == "close":
                await send({"type": "websocket.close", "code": 4000, "reason": "asked"})
                continue
            await send({"type": "websocket.send", **{k: message.get(k) for k in ("text", "bytes")}})

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = server_config(app, log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    yield f"ws://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    await task


async def test_a_real_client_round_trip(served: str) -> None:
    async with websockets.connect(served + "/x", subprotocols=["websh"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "websh"
        await ws.send("h\u00e9")
        assert await ws.recv() == "h\u00e9"
        await ws.send(b"\x00" * 100_000)
        assert await ws.recv() == b"\x00" * 100_000
        await ws.ping()
        await ws.send("close")
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4000, "asked")


async def test_a_real_client_denied_and_oversized(served: str) -> None:
    with pytest.raises(InvalidStatus) as denied:
        async with websockets.connect(served + "/deny"):
            pass
    assert denied.value.response.status_code == 403
    async with websockets.connect(served + "/x", max_size=None) as ws:
        await ws.send(b"x" * (2 * 1024 * 1024 + 1))
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


async def test_frames_sent_with_the_request_are_read() -> None:
    peer = Peer()
    peer.protocol.data_received(REQUEST + frame(1, b"early"))
    assert peer.protocol.pop() == "early"


async def test_wire_takes_the_direct_path() -> None:
    """Wire (broker/agents/wire.py) reads and writes through the protocol itself once the
    Starlette WebSocket is accepted: a queued message comes back without suspending."""
    wires: list[Wire] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        websocket = WebSocket(scope, receive, send)
        await websocket.accept()
        wires.append(Wire(websocket, Connection(ConnectionKind.USER, Side.SERVER)))
        await asyncio.Event().wait()

    peer = Peer(app)
    await peer.open()
    [wire] = wires
    hello = encode(ClientHello(cols=80, rows=24))
    assert isinstance(hello, str)
    peer.feed(frame(1, hello.encode()))
    receiving = wire.receive()
    with pytest.raises(StopIteration) as done:
        receiving.send(None)  # completes in one step: nothing to wait for
    assert done.value.value == ClientHello(cols=80, rows=24)
    await wire.send(ClientWelcome(session_id="s"))
    [(opcode, payload)] = peer.feed()
    assert (opcode, decode(payload.decode())) == (1, ClientWelcome(session_id="s"))
    await wire.close(4040, "gone")
    assert peer.feed() == [close(4040, b"gone")]
    with pytest.raises(Closed) as closed:
        await wire.receive()
    assert closed.value.code == 4040
    peer.protocol.connection_lost(None)


class Heard:
    """A WireListener that records what it is told."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.ends: list[Closed] = []

    def heard(self, message: Any) -> None:
        self.messages.append(message)

    def left(self, closed: Closed) -> None:
        self.ends.append(closed)


async def test_a_listened_wire_needs_no_task_and_hears_every_message() -> None:
    """Wire.listen: the handler returns, the connection stays; each message reaches the
    listener as its frame is parsed, websh pings are answered, the end is told once."""
    heard = Heard()
    listening: list[bool] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        websocket = WebSocket(scope, receive, send)
        await websocket.accept()
        wire = Wire(websocket, Connection(ConnectionKind.USER, Side.SERVER))
        assert await wire.receive() == ClientHello(cols=80, rows=24)
        await wire.send(ClientWelcome(session_id="s"))
        listening.append(wire.listen(heard))

    peer = Peer(app)
    await peer.open()
    hello = encode(ClientHello(cols=80, rows=24))
    assert isinstance(hello, str)
    peer.feed(frame(1, hello.encode()))
    for _ in range(3):
        await asyncio.sleep(0)
    assert listening == [True] and not peer.state.tasks  # the handler is done
    assert not peer.transport.closed
    peer.feed()  # the welcome
    keys = [encode(Input(data=b"l")), encode(Input(data=b"s"))]
    ping = encode(Ping(nonce=7, ts=1.5))
    assert all(isinstance(k, bytes) for k in keys) and isinstance(ping, str)
    out = peer.feed(b"".join(frame(2, k) for k in keys if isinstance(k, bytes)))
    assert out == [] and heard.messages == [Input(data=b"l"), Input(data=b"s")]
    [(opcode, payload)] = peer.feed(frame(1, ping.encode()))
    assert opcode == 1
    assert decode(payload.decode()) == Pong(nonce=7, ts=1.5)
    assert heard.ends == []
    peer.feed(frame(8, (1000).to_bytes(2, "big")))
    peer.protocol.connection_lost(None)
    peer.protocol.connection_lost(None)
    assert [c.code for c in heard.ends] == [1000]


async def test_a_protocol_error_ends_a_listened_wire_with_its_code() -> None:
    heard = Heard()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        websocket = WebSocket(scope, receive, send)
        await websocket.accept()
        wire = Wire(websocket, Connection(ConnectionKind.USER, Side.SERVER))
        await wire.receive()
        await wire.send(ClientWelcome(session_id="s"))
        assert wire.listen(heard)

    peer = Peer(app)
    await peer.open()
    hello = encode(ClientHello(cols=80, rows=24))
    assert isinstance(hello, str)
    peer.feed(frame(1, hello.encode()))
    for _ in range(3):
        await asyncio.sleep(0)
    peer.feed()
    out = peer.feed(frame(1, b'{"type": "no-such-message"}'))
    assert out and out[-1][0] == 8  # closed with the websh code
    code = int.from_bytes(out[-1][1][:2], "big")
    peer.protocol.connection_lost(None)
    assert [c.code for c in heard.ends] == [code] and code >= 4000
    assert heard.messages == []


async def test_the_denial_extension_answers_with_the_app_response() -> None:
    """Starlette sends a handled exception's response this way before ``accept``."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert "websocket.http.response" in scope["extensions"]
        await receive()
        headers = [(b"content-type", b"application/problem+json")]
        await send({"type": "websocket.http.response.start", "status": 401, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": b"{", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"}"})
        with pytest.raises(RuntimeError):
            await send({"type": "websocket.accept"})

    peer = Peer(app)
    response = await peer.open()
    assert response.startswith(b"HTTP/1.1 401 Unauthorized\r\n")
    assert b"\r\ncontent-type: application/problem+json\r\n" in response
    assert b"\r\ncontent-length: 2\r\n" in response
    assert response.endswith(b"\r\n\r\n{}")
    assert peer.transport.closed
