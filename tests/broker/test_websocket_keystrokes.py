"""The WebSocket protocol's shortcut for a read that is one whole short frame (a keystroke,
an echo) decides exactly like its general parser: differential over a grid of frames."""

from __future__ import annotations

import itertools

import pytest
from websockets.speedups import apply_mask

from tests.broker.test_websocket import Peer, frame

MASK = b"\x37\xfa\x21\x3d"


def outcome(peer: Peer) -> tuple[list[str | bytes], bytes, tuple[int, str] | None]:
    messages = []
    while (message := peer.protocol.pop()) is not None:
        messages.append(message)
    return messages, peer.transport.take(), peer.protocol.disconnect


def frames() -> list[bytes]:
    """Single frames around every condition of the shortcut."""
    out = []
    for first, masked, size in itertools.product(
        (0x81, 0x82, 0x80, 0x01, 0x02, 0x91, 0xC2, 0x83, 0x88, 0x89), (True, False), (0, 1, 5, 125)
    ):
        payload = (b"\xff\xfe" if first == 0x81 and size == 5 else b"k") * size
        payload = payload[:size]
        head = bytes((first, (0x80 if masked else 0) | size))
        out.append(head + (MASK + apply_mask(payload, MASK) if masked else payload))
    out.append(frame(2, b"x" * 126))  # 16-bit length: the general path
    out.append(frame(2, b"x" * 3)[:-1])  # cut short
    out.append(frame(2, b"x" * 3) + b"\x82")  # more behind it
    return out


@pytest.mark.parametrize("data", frames())
@pytest.mark.parametrize("fragmenting", [False, True])
@pytest.mark.parametrize("max_size", [1024, 3])
async def test_one_short_frame_is_read_as_the_general_parser_reads_it(
    data: bytes, fragmenting: bool, max_size: int
) -> None:
    results = []
    for split in (False, True):  # whole: the shortcut may take it; split: it cannot
        peer = Peer(max_size=max_size)
        await peer.open()
        if fragmenting:
            peer.feed(frame(2, b"a", fin=False))
        if split:
            peer.feed(data[:1], data[1:])
        else:
            peer.feed(data)
        results.append(outcome(peer))
        peer.protocol.connection_lost(None)
    assert results[0] == results[1]
