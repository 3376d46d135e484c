"""Payload <-> message translation with limits; the only place that touches ``json``.

Decoding is defensive in a fixed order, cheapest check first, so hostile input costs
little: size, then JSON nesting depth (scanned with regexes *before* ``json.loads`` so a
deeply nested payload can never reach the recursive parser), then key/item counts and
string lengths, then the message schema. Every foreign exception (``json`` errors,
``RecursionError``, unicode and int-conversion ``ValueError``) is translated here into a
``ProtocolError`` subclass and never escapes.

Duplicate JSON keys, ``NaN``/``Infinity`` and integer literals longer than 20 digits are
refused: different JSON parsers disagree about them, and the broker must see exactly what
the agent or browser will.
"""

from __future__ import annotations

import json
import math
import re

from .base import BinaryMessage, Message, TextMessage, from_json_object, to_json_object
from .catalog import BINARY_KINDS, HELLO, TEXT_TYPES, WELCOME
from .errors import (
    DecodeError,
    MessageTooBigError,
    UnknownMessageError,
    UsageError,
    excerpt,
)
from .limits import DEFAULT_LIMITS, Limits
from .version import check_version

__all__ = ["Payload", "decode", "encode", "parse_binary", "parse_text", "validate_text"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Union

    #: One WebSocket message: ``str`` for a text message, ``bytes`` for a binary one.
    Payload = Union[str, bytes]
else:
    Payload = (str, bytes)  # no typing at run time; still usable with isinstance()

HANDSHAKES: frozenset[type[TextMessage]] = frozenset(HELLO.values()) | frozenset(WELCOME.values())

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)  # "? keeps it linear
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_INNERMOST = re.compile(r"\[\]|\{\}")


def _check_depth(text: str, max_depth: int) -> None:
    skeleton = _NOT_BRACKET.sub("", _STRING.sub("", text))
    for _ in range(max_depth):
        if not skeleton:
            return
        reduced = _INNERMOST.sub("", skeleton)
        if reduced == skeleton:
            return  # unbalanced: json.loads reports it as a decode error
        skeleton = reduced
    if skeleton:
        raise MessageTooBigError("JSON nested deeper than the limit")


def _parse_constant(name: str) -> object:
    raise DecodeError("NaN and Infinity are not allowed")


def _parse_int(literal: str) -> object:
    if len(literal.lstrip("-")) > 20:
        raise DecodeError("integer literal too long")
    return int(literal)


def _parse_float(literal: str) -> object:
    if len(literal) > 64:
        raise DecodeError("number literal too long")
    value = float(literal)
    if not math.isfinite(value):
        raise DecodeError("number out of range")
    return value


def _walk(value: object, depth: int, limits: Limits, items: list[int]) -> None:
    if depth > limits.max_depth:
        raise MessageTooBigError("JSON nested deeper than the limit")
    if isinstance(value, str):
        if len(value) > limits.max_string_length:
            raise MessageTooBigError("JSON string longer than the limit")
    elif isinstance(value, list):
        items[0] += len(value)
        if items[0] > limits.max_items:
            raise MessageTooBigError("too many JSON array items")
        for item in value:
            _walk(item, depth + 1, limits, items)
    elif isinstance(value, dict):
        for key, item in value.items():
            _walk(key, depth, limits, items)
            _walk(item, depth + 1, limits, items)


def _loads(text: str, limits: Limits) -> object:
    keys = [0]

    def object_pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
        keys[0] += len(pairs)
        if keys[0] > limits.max_keys:
            raise MessageTooBigError("too many JSON object keys")
        result = dict(pairs)
        if len(result) != len(pairs):
            raise DecodeError("duplicate JSON object key")
        return result

    try:
        return json.loads(
            text,
            object_pairs_hook=object_pairs,
            parse_constant=_parse_constant,
            parse_int=_parse_int,
            parse_float=_parse_float,
        )
    except RecursionError:
        raise MessageTooBigError("JSON nested deeper than the limit") from None
    except (ValueError, TypeError):  # JSONDecodeError, int/float conversion
        raise DecodeError("text message is not valid JSON") from None


def _text_size_ok(text: str, limit: int) -> bool:
    if len(text) > limit:
        return False
    if len(text) * 4 <= limit:
        return True
    return len(text.encode("utf-8", "surrogatepass")) <= limit


def parse_text(
    text: str, limits: Limits = DEFAULT_LIMITS
) -> tuple[type[TextMessage], dict[str, object]]:
    """Parse a text payload into its message class and raw JSON object (not validated)."""
    if not isinstance(text, str):
        raise UsageError("parse_text() takes a str")
    if not _text_size_ok(text, limits.max_text_size):
        raise MessageTooBigError("text message larger than the limit")
    _check_depth(text, limits.max_depth)
    obj = _loads(text, limits)
    if not isinstance(obj, dict):
        raise DecodeError("text message must be a JSON object")
    _walk(obj, 1, limits, [0])
    name = obj.get("type")
    if not isinstance(name, str):
        raise DecodeError("text message needs a string 'type'")
    cls = TEXT_TYPES.get(name)
    if cls is None:
        raise UnknownMessageError(f"unknown message type {excerpt(name)}")
    return cls, obj


def validate_text(
    cls: type[TextMessage], obj: dict[str, object], limits: Limits = DEFAULT_LIMITS
) -> TextMessage:
    """Build ``cls`` from ``obj``; handshakes have their version checked before any field."""
    if cls in HANDSHAKES:
        check_version(obj.get("protocol"))
    return from_json_object(cls, obj, limits)


def parse_binary(data: bytes, limits: Limits = DEFAULT_LIMITS) -> BinaryMessage:
    """Decode a binary payload (kind byte + stream bytes)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise UsageError("parse_binary() takes bytes")
    data = bytes(data)
    if not data:
        raise DecodeError("empty binary message")
    if len(data) > limits.max_binary_size:
        raise MessageTooBigError("binary message larger than the limit")
    cls = BINARY_KINDS.get(data[0])
    if cls is None:
        raise UnknownMessageError(f"unknown binary message kind 0x{data[0]:02x}")
    return cls(data[1:])  # type: ignore[call-arg]


def decode(payload: str | bytes, limits: Limits = DEFAULT_LIMITS) -> Message:
    """Decode one payload without connection rules (recorders, tools, tests)."""
    if isinstance(payload, str):
        return validate_text(*parse_text(payload, limits), limits=limits)
    return parse_binary(payload, limits)


def encode(message: Message) -> Payload:
    """The WebSocket payload for ``message``: ``bytes`` for streams, compact JSON otherwise."""
    if isinstance(message, BinaryMessage):
        if not isinstance(message.data, (bytes, bytearray)):
            raise UsageError(f"{message.type}.data must be bytes")
        return bytes((message.kind,)) + bytes(message.data)
    if isinstance(message, TextMessage):
        try:
            return json.dumps(
                to_json_object(message),
                separators=(",", ":"),
                ensure_ascii=False,
                allow_nan=False,
            )
        except (TypeError, ValueError) as exc:
            raise UsageError(f"cannot encode {message.type}: {exc}") from None
    raise UsageError("encode() takes a websh Message")
