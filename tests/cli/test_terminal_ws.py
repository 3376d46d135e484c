"""``cli/terminal_ws.py`` against a real websockets server on loopback: messages taken in
the callback and messages read with ``recv`` arrive in the order they were sent."""

from __future__ import annotations

import asyncio

import websockets
from websockets.asyncio.server import ServerConnection, serve

from cli.terminal_ws import TerminalConnection


async def _received(sent: list[bytes | str | list[bytes]], accept: bytes) -> list[str]:
    """What a client sees of ``sent`` (a list is one fragmented message), in order, each
    marked by the path it took; ``on_message`` takes binary messages starting with
    ``accept``."""

    async def handler(ws: ServerConnection) -> None:
        await ws.recv()  # the client's handler is in place
        for message in sent:
            await ws.send(message)
        await ws.close()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        ws = await websockets.connect(
            f"ws://127.0.0.1:{port}", create_connection=TerminalConnection
        )
        assert isinstance(ws, TerminalConnection)
        seen: list[str] = []

        def on_message(payload: bytes) -> bool:
            if not payload.startswith(accept):
                return False
            seen.append(f"fast:{payload.decode()}")
            return True

        ws.on_message = on_message
        await ws.send("go")
        async for payload in ws:
            ws.taken()
            text = payload if isinstance(payload, str) else payload.decode()
            seen.append(f"recv:{text}")
        await asyncio.wait_for(ws.wait_closed(), 10)
        return seen


async def test_fast_messages_never_overtake_one_waiting_for_recv() -> None:
    seen = await _received([b"o1", b"o2", "t3", b"o4", b"x5", b"o6"], accept=b"o")
    # o1 and o2 are taken at once; t3 waits for recv, so o4 (and all after) goes that
    # way too until recv has caught up. Whatever the timing, the order is the same.
    assert [s.split(":")[1] for s in seen] == ["o1", "o2", "t3", "o4", "x5", "o6"]
    assert seen[:3] == ["fast:o1", "fast:o2", "recv:t3"]
    assert "recv:x5" in seen


async def test_after_a_fragmented_message_everything_goes_to_recv() -> None:
    seen = await _received([b"o1", [b"o", b"2"], b"o3"], accept=b"o")
    assert seen == ["fast:o1", "recv:o2", "recv:o3"]
