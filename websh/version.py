"""Protocol version negotiation.

Every connection starts with a handshake message (``hello``, ``channel_hello`` or
``client_hello``) whose ``protocol`` field names the sender's version, answered by a
welcome naming the receiver's. Versions look like ``websh/<major>`` or
``websh/<major>.<minor>``: minors only add optional fields and message types (so unknown
fields are ignored), a different major may change anything, so it is refused with
``UnsupportedVersionError`` (close code 4009) before any other field is looked at.
"""

from __future__ import annotations

import re

from .errors import UnsupportedVersionError, excerpt

__all__ = ["PROTOCOL_VERSION", "SUPPORTED_MAJORS", "check_version", "parse_version"]

PROTOCOL_VERSION = "websh/1"
SUPPORTED_MAJORS: frozenset[int] = frozenset({1})

_VERSION = re.compile(r"websh/([1-9][0-9]{0,3})(?:\.([0-9]{1,4}))?")


def parse_version(value: object) -> tuple[int, int]:
    """Return ``(major, minor)`` or raise ``UnsupportedVersionError``."""
    if not isinstance(value, str):
        raise UnsupportedVersionError(f"protocol must be a string like {PROTOCOL_VERSION!r}")
    match = _VERSION.fullmatch(value)
    if match is None:
        raise UnsupportedVersionError(f"unrecognised protocol {excerpt(value)}")
    return int(match.group(1)), int(match.group(2) or 0)


def check_version(value: object) -> str:
    """Accept ``value`` if its major version is supported; return it unchanged."""
    major, _minor = parse_version(value)
    if major not in SUPPORTED_MAJORS:
        raise UnsupportedVersionError(
            f"unsupported protocol websh/{major}; this peer speaks {PROTOCOL_VERSION}"
        )
    assert isinstance(value, str)
    return value
