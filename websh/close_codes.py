"""WebSocket close codes that websh peers use to say why a connection ended.

The broker, the agent and the CLI all close connections with these codes so that the
other side can decide whether to reconnect, back off, re-authenticate or give up without
parsing the human-readable reason. Codes 4000-4999 are reserved by RFC 6455 for
applications; 1000 and 1001 are the standard codes, listed here so callers never need a
second enum.

========  ====================  ==========================================================
code      name                  meaning / what the receiver should do
========  ====================  ==========================================================
1000      NORMAL                orderly end (session exited); do not reconnect
1001      GOING_AWAY            peer shutting down; reconnect with backoff
4000      PROTOCOL_ERROR        malformed message or message in the wrong state; a bug
4001      UNAUTHENTICATED       credential, ticket or channel token missing/invalid
4002      INVALID_MESSAGE       known message with a missing, ill-typed or out-of-range field
4003      FORBIDDEN             authenticated but not allowed (policy)
4004      UNKNOWN_MESSAGE_TYPE  unknown JSON "type" or binary kind byte
4008      MESSAGE_TOO_BIG       over a size/depth/key/item/string limit (like 1009)
4009      UNSUPPORTED_VERSION   hello names a protocol major version the peer cannot speak
4010      REPLACED              a newer connection for the same agent/session took over
4011      INTERNAL_ERROR        the closing side failed; retry with backoff
4012      SERVICE_RESTART       broker restarting or draining; reconnect with backoff
4013      HEARTBEAT_TIMEOUT     no ping/pong within the heartbeat deadline
4029      RETRY_LATER           overloaded; honour RetryLater.after before reconnecting
4040      UNKNOWN_CHANNEL       data channel or session id not known (or expired)
4041      SESSION_TERMINATED    an administrator or policy ended the session
4042      REVOKED               agent credential or user access revoked; do not reconnect
4043      IDLE_TIMEOUT          session idle for too long
========  ====================  ==========================================================
"""

from __future__ import annotations

import enum

__all__ = ["RECONNECTABLE", "CloseCode"]


class CloseCode(enum.IntEnum):
    """Close codes used on every websh connection (see the module table)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 4000
    UNAUTHENTICATED = 4001
    INVALID_MESSAGE = 4002
    FORBIDDEN = 4003
    UNKNOWN_MESSAGE_TYPE = 4004
    MESSAGE_TOO_BIG = 4008
    UNSUPPORTED_VERSION = 4009
    REPLACED = 4010
    INTERNAL_ERROR = 4011
    SERVICE_RESTART = 4012
    HEARTBEAT_TIMEOUT = 4013
    RETRY_LATER = 4029
    UNKNOWN_CHANNEL = 4040
    SESSION_TERMINATED = 4041
    REVOKED = 4042
    IDLE_TIMEOUT = 4043


#: Codes after which an agent should reconnect (with jittered backoff). Everything else
#: means "a human or a code change must intervene first".
RECONNECTABLE: frozenset[CloseCode] = frozenset(
    {
        CloseCode.GOING_AWAY,
        CloseCode.INTERNAL_ERROR,
        CloseCode.SERVICE_RESTART,
        CloseCode.HEARTBEAT_TIMEOUT,
        CloseCode.RETRY_LATER,
    }
)
