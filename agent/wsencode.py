"""Building the frames the agent sends: RFC 6455 opcodes and close codes, and masking.

Every frame a client sends is masked with a fresh key (RFC 6455 section 5.3), and the
agent sends every message as one unfragmented frame. Masking is on the output path of
every terminal (each ``output`` is one frame), so it is done without a Python loop per
byte; ``encode_frame`` builds a large frame in one buffer, its payload written once.
The opcodes and close codes are here because the reader (``agent.wsframe``) checks the
server's frames against the same table.

This module must never do I/O or keep state, never mask with a key that is not 4 bytes,
and never import ``hashlib`` or anything else the agent's memory budget did not have.
"""

from __future__ import annotations

from agent.errors import TransportError

__all__ = [
    "CONTROL_OPCODES",
    "DATA_OPCODES",
    "INVALID_DATA",
    "NO_STATUS",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONT",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "PROTOCOL_ERROR",
    "TOO_BIG",
    "VALID_CLOSE_CODES",
    "encode_frame",
]

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
DATA_OPCODES = (OP_CONT, OP_TEXT, OP_BINARY)
CONTROL_OPCODES = (OP_CLOSE, OP_PING, OP_PONG)

NO_STATUS = 1005  # a close frame without a code (never sent on the wire)
PROTOCOL_ERROR = 1002
INVALID_DATA = 1007
TOO_BIG = 1009
#: Codes a peer may send (RFC 6455 7.4.1 and the IANA registry); 3000-4999 are private.
VALID_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011})
VALID_CLOSE_CODES |= frozenset({1012, 1013, 1014})


#: Masking XORs the payload with the key repeated, without a Python loop per byte. Up to
#: this size one big-integer XOR does it (two conversions, one operation); from here on
#: four ``bytes.translate`` passes, one per key byte over every fourth byte, are cheaper:
#: about 60 us for a 64 KiB output where the big integers, 4 KiB at a time, took 90
#: (Python 3.8 to 3.13), and the masked bytes go straight into the frame being built.
_TRANSLATE_FROM = 4096
_IDENTITY = int.from_bytes(bytes(range(256)), "big")
#: ``sum(2 ** (8 * j) for j in range(256))``: times a byte, that byte 256 times.
_ONES = int.from_bytes(b"\x01" * 256, "big")


def _mask_small(data: bytes, key: bytes) -> bytes:
    """``data`` (below ``_TRANSLATE_FROM`` bytes) XOR ``key`` repeated from its first byte."""
    size = len(data)
    repeated = key * (size // 4) + key[: size % 4]
    return (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(size, "big")


def _mask_into(out: bytearray, at: int, data: bytes, key: bytes) -> None:
    """Write ``data`` XOR ``key`` repeated into ``out[at:]`` (which is exactly that long)."""
    for lane in range(4):
        table = (_IDENTITY ^ (key[lane] * _ONES)).to_bytes(256, "big")  # b -> b ^ key[lane]
        out[at + lane :: 4] = data[lane::4].translate(table)


def encode_frame(
    opcode: int, payload: bytes, *, fin: bool = True, mask_key: bytes | None = None
) -> bytes | bytearray:
    """One frame; masked with ``mask_key`` (4 bytes) if given, as every client frame is.

    A large masked frame is built in one ``bytearray`` (header, key, masked payload), so
    its payload is written once and never copied behind a header.
    """
    size = len(payload)
    if size < 126 and mask_key is not None and len(mask_key) == 4:
        # The hot case (an echo): two header bytes, the key, the payload masked.
        short = bytes(((0x80 if fin else 0) | opcode, 0x80 | size)) + mask_key
        return short + _mask_small(payload, mask_key) if size else short
    head = bytearray([(0x80 if fin else 0) | opcode])
    mask_bit = 0x80 if mask_key is not None else 0
    if size < 126:
        head.append(mask_bit | size)
    elif size < 1 << 16:
        head.append(mask_bit | 126)
        head += size.to_bytes(2, "big")
    else:
        head.append(mask_bit | 127)
        head += size.to_bytes(8, "big")
    if mask_key is None:
        return bytes(head) + payload
    if len(mask_key) != 4:
        raise TransportError("a WebSocket mask key is 4 bytes")
    head += mask_key
    if size < _TRANSLATE_FROM:
        return bytes(head) + _mask_small(payload, mask_key) if size else bytes(head)
    frame = bytearray(len(head) + size)
    frame[: len(head)] = head
    _mask_into(frame, len(head), payload, mask_key)
    return frame
