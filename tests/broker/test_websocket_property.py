"""The WebSocket frame parser (broker/websocket/frames.py) under generated input.

Whatever way a stream of valid frames is cut into reads, the same messages come out; and
arbitrary bytes never raise out of ``data_received``: the connection either waits for more
or is closed with a WebSocket close code.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from uvicorn.server import ServerState

from broker.websocket import WebSocketProtocol
from broker.websocket.frames import PEER_CODES
from tests.broker.test_websocket import REQUEST, Config, Transport, frame, frames

MESSAGES = st.lists(
    st.one_of(
        st.text(max_size=300).map(lambda text: (1, text.encode())),
        st.binary(max_size=300).map(lambda data: (2, data)),
    ),
    max_size=8,
)


async def _hold(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await asyncio.sleep(0)


def opened() -> tuple[WebSocketProtocol, Transport]:
    protocol = WebSocketProtocol(Config(_hold, max_size=4096), ServerState(), {})
    transport = Transport()
    protocol.connection_made(transport)
    protocol.data_received(REQUEST)
    return protocol, transport


def stream(messages: list[tuple[int, bytes]], pieces: int) -> bytes:
    out = b""
    for opcode, payload in messages:
        cut = len(payload) // pieces if pieces > 1 else len(payload)
        if pieces > 1 and cut:
            chunks = [payload[i : i + cut] for i in range(0, len(payload), cut)]
            out += frame(opcode, chunks[0], fin=len(chunks) == 1)
            for i, chunk in enumerate(chunks[1:], 2):
                out += frame(9, b"ping") + frame(0, chunk, fin=i == len(chunks))
        else:
            out += frame(opcode, payload)
    return out


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(messages=MESSAGES, pieces=st.integers(1, 4), cuts=st.lists(st.integers(0, 4000)))
def test_any_split_gives_the_same_messages(
    messages: list[tuple[int, bytes]], pieces: int, cuts: list[int]
) -> None:
    async def run() -> None:
        protocol, transport = opened()
        data = stream(messages, pieces)
        points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
        for start, end in itertools.pairwise(points):
            protocol.data_received(data[start:end])
        received = []
        while (message := protocol.pop()) is not None:
            received.append(message)
        expected = [p.decode() if op == 1 else p for op, p in messages]
        assert received == expected
        assert not transport.closed
        assert {opcode for opcode, _ in frames(transport.take())} <= {10}

    asyncio.run(run())


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=600))
def test_arbitrary_bytes_wait_or_close_with_a_code(data: bytes) -> None:
    async def run() -> None:
        protocol, transport = opened()
        protocol.data_received(data)
        sent = frames(transport.take())
        if transport.closed:
            assert sent and sent[-1][0] == 8
            closed = protocol.disconnect
            assert closed is not None
            assert closed[0] in PEER_CODES or closed[0] == 1005 or 3000 <= closed[0] < 5000

    asyncio.run(run())
