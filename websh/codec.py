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

Two shortcuts keep the common small messages cheap (a broker with 1,000 idle agents decodes
about 50 pings and metrics a second) without weakening any of that:

* the pre-checks of nesting depth and of string lengths and item counts are skipped when
  the text is too short and has too few brackets and commas to break them (each count is
  an upper bound on what it limits);
* ``ping``, ``pong`` and ``metrics`` in exactly the compact shape ``encode`` writes are
  matched by one regex that admits only in-range JSON number literals, and built with the
  same field checkers. Anything else, and anything the shortcut has the least doubt about,
  takes the full path, which also produces every error: the shortcut only ever returns
  what the full path would have returned.
"""

from __future__ import annotations

import json
import math
import re

from .base import BinaryMessage, Message, TextMessage, from_json_object, to_json_object
from .catalog import BINARY_KINDS, HELLO, TEXT_TYPES, WELCOME
from .common import Ping, Pong
from .errors import (
    DecodeError,
    MessageTooBigError,
    UnknownMessageError,
    UsageError,
    excerpt,
)
from .limits import DEFAULT_LIMITS, Limits
from .version import check_version

__all__ = [
    "Payload",
    "decode",
    "decode_text",
    "encode",
    "fast_text",
    "parse_binary",
    "parse_text",
    "validate_text",
]

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


def _within_limits(text: str, limits: Limits) -> bool:
    """True when ``text`` cannot exceed the depth, string-length and item limits.

    Container nesting is at most the number of brackets, a scalar sits one level below
    its container, no string is longer than the text, and an array has at most one item
    more than its commas; brackets and commas inside strings only make the bounds looser.
    """
    if len(text) > limits.max_string_length:
        return False
    brackets = text.count("{") + text.count("[")
    return brackets < limits.max_depth and brackets + text.count(",") <= limits.max_items


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
    checked = _within_limits(text, limits)
    if not checked:
        _check_depth(text, limits.max_depth)
    obj = _loads(text, limits)
    if not isinstance(obj, dict):
        raise DecodeError("text message must be a JSON object")
    if not checked:
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


# A JSON number literal the full path accepts: an integer of at most 20 digits, or a float
# literal of at most 51 characters (the limit is 64). Whether a float is finite is checked
# after conversion.
_NUM = r"(-?(?:0|[1-9][0-9]{0,19})(?:\.[0-9]{1,24})?(?:[eE][-+]?[0-9]{1,3})?)"
_SHAPE = re.compile(
    r'\{"type":"(?:(ping|pong)","nonce":' + _NUM + ',"ts":' + _NUM
    + r'|(metrics)","ts":' + _NUM + ',"cpu":' + _NUM + ',"mem_used":' + _NUM
    + ',"mem_total":' + _NUM + ',"disk_used":' + _NUM + ',"disk_total":' + _NUM
    + r',"load":\[' + _NUM + "," + _NUM + "," + _NUM + r"\])\}"
)  # fmt: skip
#: What the fixed shapes need of the limits (they are all ASCII, depth 3, 8 keys, 3 items,
#: no string longer than 10 characters); smaller limits take the full path.
_SHAPE_LIMITS = (3, 8, 3, 10)
_METRICS = ("ts", "cpu", "mem_used", "mem_total", "disk_used", "disk_total")


def _number(literal: str) -> int | float | None:
    if "." in literal or "e" in literal or "E" in literal:
        value = float(literal)
        return value if math.isfinite(value) else None
    return int(literal)


def fast_text(text: str, limits: Limits) -> TextMessage | None:
    """The message for a ``ping``, ``pong`` or ``metrics`` in ``encode``'s own compact
    shape, validated by its field checkers; ``None`` for anything else or any doubt."""
    if (
        len(text) > limits.max_text_size
        or limits.max_depth < _SHAPE_LIMITS[0]
        or limits.max_keys < _SHAPE_LIMITS[1]
        or limits.max_items < _SHAPE_LIMITS[2]
        or limits.max_string_length < _SHAPE_LIMITS[3]
    ):
        return None
    match = _SHAPE.fullmatch(text)
    if match is None:
        return None
    name, nonce, ts, metrics, *numbers = match.groups()
    try:
        if metrics is None:
            obj: dict[str, object] = {"nonce": _number(nonce), "ts": _number(ts)}
        else:
            obj = dict(zip(_METRICS, map(_number, numbers[:6])))
            obj["load"] = [_number(literal) for literal in numbers[6:]]
            name = metrics
        if None in obj.values() or None in obj.get("load", ()):  # type: ignore[operator]
            return None  # a float literal out of range: the full path refuses it
        return from_json_object(TEXT_TYPES[name], obj, limits)
    except Exception:  # the full path produces the error
        return None


def decode_text(text: str, limits: Limits = DEFAULT_LIMITS) -> TextMessage:
    """Decode and validate one text payload (no routing rules)."""
    message = fast_text(text, limits) if isinstance(text, str) else None
    if message is not None:
        return message
    return validate_text(*parse_text(text, limits), limits=limits)


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
        return decode_text(payload, limits)
    return parse_binary(payload, limits)


def encode(message: Message) -> Payload:
    """The WebSocket payload for ``message``: ``bytes`` for streams, compact JSON otherwise."""
    if isinstance(message, BinaryMessage):
        if not isinstance(message.data, (bytes, bytearray)):
            raise UsageError(f"{message.type}.data must be bytes")
        return bytes((message.kind,)) + bytes(message.data)
    cls = type(message)
    if cls is Ping or cls is Pong:  # json.dumps writes exactly this, float repr included
        nonce, ts = message.nonce, message.ts  # type: ignore[attr-defined]
        if type(nonce) is int and (type(ts) is int or (type(ts) is float and math.isfinite(ts))):
            return f'{{"type":"{cls.type}","nonce":{nonce},"ts":{ts!r}}}'
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
