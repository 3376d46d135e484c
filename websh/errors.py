"""Exceptions raised by websh; nothing else escapes the package.

Tree::

    WebshError
    ├── ProtocolError              the peer broke the protocol: close with .code/.reason
    │   ├── DecodeError            not a websh message: bad JSON, not an object, empty binary (4000)
    │   ├── UnexpectedMessageError valid message on the wrong connection, direction or state (4000)
    │   ├── ValidationError        known type, missing/ill-typed/out-of-range field (4002)
    │   ├── UnknownMessageError    unknown JSON "type" or binary kind byte (4004)
    │   ├── MessageTooBigError     over max size, depth, keys, items or string length (4008)
    │   └── UnsupportedVersionError  hello/welcome names an unknown major version (4009)
    ├── ConnectionClosedError      the Connection was used after it closed
    └── UsageError                 local misuse: sending a message that is invalid or not
                                   allowed in the current state / on this connection

Every ``ProtocolError`` carries a ``CloseCode`` and a *safe* reason: printable ASCII, at
most 123 bytes (the RFC 6455 close-reason limit), built from websh's own schema words plus
at most a short sanitised excerpt of peer input. It must never contain internal details
(tracebacks, paths, secrets), because transports send it to the peer verbatim. json,
unicode and int-conversion errors are translated into these classes inside the codec.
"""

from __future__ import annotations

from .close_codes import CloseCode

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import ClassVar

__all__ = [
    "ConnectionClosedError",
    "DecodeError",
    "MessageTooBigError",
    "ProtocolError",
    "UnexpectedMessageError",
    "UnknownMessageError",
    "UnsupportedVersionError",
    "UsageError",
    "ValidationError",
    "WebshError",
    "excerpt",
    "safe_reason",
]

MAX_REASON_BYTES = 123


def safe_reason(text: str) -> str:
    """Reduce ``text`` to printable ASCII that fits a WebSocket close frame."""
    cleaned = "".join(ch if " " <= ch <= "~" else "?" for ch in text[: MAX_REASON_BYTES * 2])
    if len(cleaned) > MAX_REASON_BYTES:
        cleaned = cleaned[: MAX_REASON_BYTES - 3] + "..."
    return cleaned


def excerpt(value: object, limit: int = 24) -> str:
    """A short, quoted, sanitised excerpt of untrusted input for error reasons."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        text = bytes(value[: limit + 1]).decode("ascii", "replace")
    elif isinstance(value, str):
        text = value[: limit + 1]
    else:
        text = type(value).__name__
    text = "".join(ch if " " <= ch <= "~" and ch not in "'\\" else "?" for ch in text)
    if len(text) > limit:
        text = text[:limit] + "..."
    return f"'{text}'"


class WebshError(Exception):
    """Root of every exception raised by websh."""


class ProtocolError(WebshError):
    """The peer violated websh; the connection is closed with ``code`` and ``reason``."""

    default_code: ClassVar[CloseCode] = CloseCode.PROTOCOL_ERROR

    def __init__(self, reason: str, code: CloseCode | None = None) -> None:
        self.code: CloseCode = self.default_code if code is None else code
        self.reason: str = safe_reason(reason)
        super().__init__(self.reason)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={int(self.code)}, reason={self.reason!r})"


class DecodeError(ProtocolError):
    """The payload is not a websh message at all."""


class UnexpectedMessageError(ProtocolError):
    """A well-formed message arrived where the protocol does not allow it."""


class ValidationError(ProtocolError):
    """A known message type has a missing, ill-typed or out-of-range field."""

    default_code = CloseCode.INVALID_MESSAGE


class UnknownMessageError(ProtocolError):
    """The JSON ``type`` or the binary kind byte is not part of websh/1."""

    default_code = CloseCode.UNKNOWN_MESSAGE_TYPE


class MessageTooBigError(ProtocolError):
    """A limit (size, nesting depth, key/item count, string length) was exceeded."""

    default_code = CloseCode.MESSAGE_TOO_BIG


class UnsupportedVersionError(ProtocolError):
    """The peer speaks a protocol major version this side does not implement."""

    default_code = CloseCode.UNSUPPORTED_VERSION


class ConnectionClosedError(WebshError):
    """The connection already closed (locally or after a protocol error)."""


class UsageError(WebshError):
    """Local misuse of the API; never caused by peer input."""
