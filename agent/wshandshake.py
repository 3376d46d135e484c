"""The WebSocket opening handshake, client side: the upgrade request and the ``101`` check.

A client needs one fixed HTTP/1.1 request and one strictly checked response, not an HTTP
library: ``upgrade_request`` builds the ``GET`` (a random 16-byte key, version 13, no
extension, no subprotocol), ``parse_response_head`` reads the status line and headers of
the answer, and ``check_accept`` insists on ``Upgrade: websocket``, ``Connection:
upgrade``, exactly one ``Sec-WebSocket-Accept`` matching the key and nothing that was not
offered. ``agent.wsframe`` calls them and keeps the state (buffering, size cap, a refused
upgrade's body).

This module must never import ``hashlib`` when the interpreter has ``_sha1`` (that is
what the 0.7 MiB was), never accept a response the RFC does not allow, and never raise
anything but ``HandshakeError`` for a bad response (``TransportError`` for a bad request).
"""

from __future__ import annotations

import binascii

from agent.errors import HandshakeError, TransportError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, NoReturn

try:
    _sha1 = __import__("_sha1").sha1  # builtin: no OpenSSL wrapper, no hashlib
except ImportError:  # pragma: no cover - interpreters built without _sha1
    from hashlib import sha1 as _sha1

__all__ = ["GUID", "accept_key", "check_accept", "parse_response_head", "upgrade_request"]

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key``: base64(SHA-1(key + GUID))."""
    # SHA-1 is what RFC 6455 specifies here; it proves a WebSocket server answered.
    digest: bytes = _sha1(key.encode("ascii") + GUID).digest()  # noqa: S324
    return binascii.b2a_base64(digest, newline=False).decode("ascii")


def upgrade_request(
    host: str,
    target: str,
    *,
    origin: str | None,
    user_agent: str | None,
    urandom: Callable[[int], bytes],
) -> tuple[str, bytes]:
    """The ``Sec-WebSocket-Key`` and the request bytes; ``TransportError`` for bad fields.

    ``host`` is the ``Host`` header (``netloc``), ``target`` the request target (path and
    query); neither may hold a space or a control character, nor may the optional ones.
    """
    for name, value in (("host", host), ("target", target)):
        if not value or any(ord(c) <= 0x20 or ord(c) >= 0x7F for c in value):
            raise TransportError(f"invalid WebSocket {name} {value!r}")
    for name, optional in (("origin", origin), ("user agent", user_agent)):
        if optional is not None and any(ord(c) < 0x20 or ord(c) >= 0x7F for c in optional):
            raise TransportError(f"invalid WebSocket {name} {optional!r}")
    key = binascii.b2a_base64(urandom(16), newline=False).decode("ascii")
    lines = [
        f"GET {target} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    if user_agent is not None:
        lines.append(f"User-Agent: {user_agent}")
    return key, ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def parse_response_head(head: bytes, host: str) -> tuple[int, dict[str, list[str]]]:
    """Status and headers (lower-case names, every value kept) of a response head.

    ``head`` is everything before the blank line; ``host`` names the server in errors.
    """
    lines = head.split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code = rest[:3]
    if (
        version != b"HTTP/1.1"
        or len(code) != 3
        or not code.isdigit()
        or rest[3:4]
        not in (
            b"",
            b" ",
        )
    ):
        _bad_response(host, None, f"status line {lines[0][:80]!r}")
    status = int(code)
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or not all(byte in _TOKEN for byte in name):
            _bad_response(host, status, f"header line {line[:80]!r}")
        if any((byte < 0x20 and byte != 0x09) or byte == 0x7F for byte in value):
            _bad_response(host, status, f"header line {line[:80]!r}")
        text = value.strip(b" \t").decode("latin-1")
        headers.setdefault(name.decode("ascii").lower(), []).append(text)
    return status, headers


def check_accept(headers: dict[str, list[str]], key: str, host: str) -> None:
    """Raise ``HandshakeError`` unless a ``101``'s headers accept exactly what was asked."""
    upgrade = _tokens(headers.get("upgrade", []))
    if upgrade != ["websocket"]:
        _bad_response(host, 101, f"Upgrade: {', '.join(headers.get('upgrade', []))!r}")
    if "upgrade" not in _tokens(headers.get("connection", [])):
        _bad_response(host, 101, f"Connection: {', '.join(headers.get('connection', []))!r}")
    accept = headers.get("sec-websocket-accept", [])
    if accept != [accept_key(key)]:
        _bad_response(host, 101, f"Sec-WebSocket-Accept {accept!r} does not match the key")
    for name in ("sec-websocket-extensions", "sec-websocket-protocol"):
        if any(value for value in headers.get(name, [])):
            _bad_response(host, 101, f"{name} was not offered")


def _bad_response(host: str, status: int | None, detail: str) -> NoReturn:
    raise HandshakeError(f"{host} sent an invalid upgrade response: {detail}", status)


def _tokens(values: list[str]) -> list[str]:
    """Comma-separated header values, split, stripped and lower-cased."""
    return [part.strip().lower() for value in values for part in value.split(",") if part.strip()]
