"""What a listened-to connection keeps once its handler returned (the hub's idle agents):
not the request (ASGI scope, headers) nor Starlette's WebSocket, and it still works."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

from starlette.websockets import WebSocket

from broker.agents.wire import Wire
from tests.broker.test_websocket import Heard, Peer, close, frame
from websh import ClientHello, ClientWelcome, Connection, ConnectionKind, Input, Side, encode


async def test_a_listened_connection_lets_go_of_its_request() -> None:
    heard = Heard()
    held: list[weakref.ref[WebSocket]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        websocket = WebSocket(scope, receive, send)
        await websocket.accept()
        wire = Wire(websocket, Connection(ConnectionKind.USER, Side.SERVER))
        await wire.receive()
        await wire.send(ClientWelcome(session_id="s"))
        held.append(weakref.ref(websocket))
        assert wire.listen(heard)
        assert wire.websocket is None

    peer = Peer(app)
    await peer.open()
    hello = encode(ClientHello(cols=80, rows=24))
    assert isinstance(hello, str)
    peer.feed(frame(1, hello.encode()))
    for _ in range(3):
        await asyncio.sleep(0)
    gc.collect()
    assert held and held[0]() is None  # nothing keeps Starlette's WebSocket (or its scope)
    assert peer.protocol.scope == {}
    peer.feed()  # the welcome
    key = encode(Input(data=b"k"))
    assert isinstance(key, bytes)
    assert peer.feed(frame(2, key)) == []
    assert heard.messages == [Input(data=b"k")]
    assert peer.feed(frame(8, (1000).to_bytes(2, "big"))) == [close(1000)]
    peer.protocol.connection_lost(None)
    assert [c.code for c in heard.ends] == [1000]
