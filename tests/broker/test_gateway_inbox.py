"""Serving a wire per message: the WebSocket protocol's hold/release and the gateway's Inbox.

The protocol runs on the recording transport of ``test_websocket.py``; the Inbox on a
real :class:`~broker.agents.wire.Wire` over it, as ``GatewaySessions.serve`` and
``LiveSession`` use it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from starlette.websockets import WebSocket

from broker.agents.wire import Closed, Wire
from broker.gateway.inbox import Inbox
from broker.websocket import READ_HIGH
from tests.broker.test_websocket import Peer, frame, frames
from websh import (
    ClientHello,
    ClientWelcome,
    CloseCode,
    Connection,
    ConnectionKind,
    Input,
    Message,
    Side,
    encode,
)


class Told:
    """A ``broker.websocket.Listener`` that records, and can hold the protocol."""

    def __init__(self, peer: Peer, hold_on: bytes | None = None) -> None:
        self.peer = peer
        self.hold_on = hold_on
        self.payloads: list[str | bytes] = []
        self.ends: list[int] = []

    def heard(self, message: str | bytes) -> None:
        self.payloads.append(message)
        if message == self.hold_on:
            self.peer.protocol.hold()

    def ended(self, code: int, reason: str) -> None:
        self.ends.append(code)


async def opened() -> Peer:
    peer = Peer()
    await peer.open()
    return peer


async def test_held_messages_wait_in_order_and_release_hands_them_over() -> None:
    peer = await opened()
    told = Told(peer)
    peer.protocol.listen(told)
    peer.feed(frame(2, b"1"))
    peer.protocol.hold()
    peer.feed(frame(2, b"2"), frame(2, b"3"))
    assert told.payloads == [b"1"]
    peer.protocol.release()
    assert told.payloads == [b"1", b"2", b"3"]
    peer.feed(frame(2, b"4"))  # released: straight to the listener again
    assert told.payloads == [b"1", b"2", b"3", b"4"]
    peer.protocol.connection_lost(None)


async def test_a_held_connection_stops_reading_past_the_high_water_mark() -> None:
    peer = await opened()
    peer.protocol._max_size = READ_HIGH
    told = Told(peer)
    peer.protocol.listen(told)
    peer.protocol.hold()
    sent = 0
    while peer.transport.reading:
        peer.feed(frame(2, bytes([sent % 256]) * 1000))
        sent += 1
    assert sent * 1000 <= READ_HIGH + 1000 and told.payloads == []
    peer.protocol.release()
    assert peer.transport.reading
    assert [p[0] for p in told.payloads] == [n % 256 for n in range(sent)]
    peer.protocol.connection_lost(None)


async def test_a_listener_that_holds_again_stops_the_release() -> None:
    peer = await opened()
    told = Told(peer, hold_on=b"2")
    peer.protocol.listen(told)
    peer.protocol.hold()
    peer.feed(frame(2, b"1"), frame(2, b"2"), frame(2, b"3"))
    peer.protocol.release()
    assert told.payloads == [b"1", b"2"]  # held again on "2": "3" waits
    peer.feed(frame(2, b"4"))
    assert told.payloads == [b"1", b"2"]
    told.hold_on = None
    peer.protocol.release()
    assert told.payloads == [b"1", b"2", b"3", b"4"]
    peer.protocol.connection_lost(None)


async def test_what_was_held_when_the_peer_left_is_still_handed_over_then_the_end() -> None:
    """An agent's last output and exit can arrive while its session holds the channel."""
    peer = await opened()
    told = Told(peer)
    peer.protocol.listen(told)
    peer.protocol.hold()
    peer.feed(frame(2, b"last"), frame(8, (1000).to_bytes(2, "big")))
    peer.protocol.connection_lost(None)
    assert told.payloads == [] and told.ends == []
    peer.protocol.release()
    assert told.payloads == [b"last"] and told.ends == [1000]


class Served:
    """A user wire served by an Inbox whose handler waits on ``gate`` for key ``w``."""

    def __init__(self) -> None:
        self.handled: list[bytes] = []
        self.gate = asyncio.Event()
        self.fail = False
        self.ends: list[Closed] = []
        self.inbox: Inbox | None = None
        self.peer = Peer(self.app)

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        websocket = WebSocket(scope, receive, send)
        await websocket.accept()
        wire = Wire(websocket, Connection(ConnectionKind.USER, Side.SERVER))
        await wire.receive()
        await wire.send(ClientWelcome(session_id="s"))
        self.inbox = Inbox(wire, self.handle, self.ends.append)
        assert self.inbox.listen()
        await self.inbox.finished()

    def handle(self, message: Message) -> Coroutine[Any, Any, None] | None:
        assert isinstance(message, Input)
        if message.data == b"w":
            return self.wait()
        self.handled.append(message.data)
        return None

    async def wait(self) -> None:
        await self.gate.wait()
        if self.fail:
            raise RuntimeError("a handler bug")
        self.handled.append(b"w")

    async def start(self) -> None:
        await self.peer.open()
        hello = encode(ClientHello(cols=80, rows=24))
        assert isinstance(hello, str)
        self.peer.feed(frame(1, hello.encode()))
        for _ in range(3):
            await asyncio.sleep(0)
        self.peer.feed()  # the welcome

    def keys(self, *keys: bytes) -> list[tuple[int, bytes]]:
        payloads = [encode(Input(data=key)) for key in keys]
        return self.peer.feed(*(frame(2, p) for p in payloads if isinstance(p, bytes)))


async def test_the_inbox_keeps_order_behind_a_message_that_waits() -> None:
    served = Served()
    await served.start()
    served.keys(b"a", b"w", b"b")
    served.keys(b"c")
    assert served.handled == [b"a"]  # "w" waits; "b" and "c" wait behind it
    served.gate.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert served.handled == [b"a", b"w", b"b", b"c"]
    served.keys(b"d")  # nothing waits: handled in the callback
    assert served.handled == [b"a", b"w", b"b", b"c", b"d"]
    served.peer.protocol.connection_lost(None)
    await asyncio.sleep(0)
    assert len(served.ends) == 1  # told once, with the connection's code


async def test_the_end_is_told_after_the_waiting_work_is_done() -> None:
    served = Served()
    await served.start()
    served.keys(b"w")
    served.peer.protocol.connection_lost(None)
    await asyncio.sleep(0)
    assert served.ends == []  # "w" is still being served
    served.gate.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert served.handled == [b"w"] and len(served.ends) == 1


async def test_a_failing_handler_closes_the_wire_without_details() -> None:
    served = Served()
    await served.start()
    served.fail = True
    served.keys(b"w")
    served.gate.set()
    for _ in range(5):
        await asyncio.sleep(0)
    out = frames(served.peer.transport.take())
    assert out[-1][0] == 8
    assert int.from_bytes(out[-1][1][:2], "big") == CloseCode.INTERNAL_ERROR
    assert b"bug" not in out[-1][1]
    served.peer.protocol.connection_lost(None)
