"""Which message may travel on which connection, in which direction.

This table is the protocol's routing contract: the ``Connection`` state machine refuses
(close code 4000) any message whose type is known but not listed for the connection kind
and the sending side, and refuses unknown types with 4004. Keeping it as data makes the
documentation table in ``docs/websh.md`` and the enforcement one and the same thing.
"""

from __future__ import annotations

import enum

from .base import BinaryMessage, Message, TextMessage
from .channel import Attach, ChannelHello, ChannelWelcome, Eof
from .common import ErrorMessage, Exit, Ping, Pong, Resize
from .control import (
    ChannelKind,
    CloseChannel,
    Hello,
    Metrics,
    OpenChannel,
    RetryLater,
    SysInfo,
    Welcome,
)
from .streams import STREAM_KINDS, Input, Output, Stderr, Stdout
from .terminal import (
    ApprovalDenied,
    ApprovalGranted,
    ApprovalPending,
    ClientHello,
    ClientWelcome,
    CommandBlocked,
    MfaRequired,
    ParticipantJoined,
    ParticipantLeft,
    Resume,
    Terminated,
)

__all__ = [
    "BINARY_KINDS",
    "HELLO",
    "ROUTES",
    "TEXT_TYPES",
    "WELCOME",
    "ConnectionKind",
    "Side",
    "allowed_messages",
]


class ConnectionKind(str, enum.Enum):
    """The three kinds of websh connection."""

    CONTROL = "control"  # agent <-> broker, one per agent
    CHANNEL = "channel"  # agent <-> broker data channel, one per session
    USER = "user"  # browser/CLI terminal <-> broker


class Side(str, enum.Enum):
    """Which end of a connection this is. The broker is always the WebSocket server."""

    CLIENT = "client"  # the dialer: agent (control, channel) or user terminal (user)
    SERVER = "server"  # the broker

    @property
    def peer(self) -> Side:
        """The other end."""
        return Side.SERVER if self is Side.CLIENT else Side.CLIENT


_C = frozenset({Side.CLIENT})
_S = frozenset({Side.SERVER})
_CS = _C | _S

#: kind -> message class -> the sides allowed to send it.
ROUTES: dict[ConnectionKind, dict[type[Message], frozenset[Side]]] = {
    ConnectionKind.CONTROL: {
        Hello: _C,
        Welcome: _S,
        Ping: _CS,
        Pong: _CS,
        SysInfo: _C,
        Metrics: _C,
        OpenChannel: _S,
        CloseChannel: _CS,
        ErrorMessage: _CS,
        RetryLater: _S,
    },
    ConnectionKind.CHANNEL: {
        ChannelHello: _C,
        ChannelWelcome: _S,
        Attach: _S,
        Input: _S,
        Output: _C,
        Stdout: _C,
        Stderr: _C,
        Resize: _S,
        Eof: _S,
        Exit: _C,
        Ping: _CS,
        Pong: _CS,
        ErrorMessage: _CS,
    },
    ConnectionKind.USER: {
        ClientHello: _C,
        ClientWelcome: _S,
        Input: _C,
        Output: _S,
        Resize: _C,
        Resume: _C,
        CommandBlocked: _S,
        MfaRequired: _S,
        ApprovalPending: _S,
        ApprovalGranted: _S,
        ApprovalDenied: _S,
        ParticipantJoined: _S,
        ParticipantLeft: _S,
        Exit: _S,
        Terminated: _S,
        Ping: _CS,
        Pong: _CS,
        ErrorMessage: _CS,
    },
}

#: The handshake pair of each connection kind.
HELLO: dict[ConnectionKind, type[TextMessage]] = {
    ConnectionKind.CONTROL: Hello,
    ConnectionKind.CHANNEL: ChannelHello,
    ConnectionKind.USER: ClientHello,
}
WELCOME: dict[ConnectionKind, type[TextMessage]] = {
    ConnectionKind.CONTROL: Welcome,
    ConnectionKind.CHANNEL: ChannelWelcome,
    ConnectionKind.USER: ClientWelcome,
}

#: Messages a data channel of one kind never carries.
_NOT_ON_CHANNEL: dict[ChannelKind, frozenset[type[Message]]] = {
    ChannelKind.TERMINAL: frozenset({Stdout, Stderr, Eof}),
    ChannelKind.EXEC: frozenset({Output, Resize, Attach}),
}

TEXT_TYPES: dict[str, type[TextMessage]] = {
    cls.type: cls for routes in ROUTES.values() for cls in routes if issubclass(cls, TextMessage)
}
BINARY_KINDS: dict[int, type[BinaryMessage]] = dict(STREAM_KINDS)


_ALLOWED: dict[tuple[ConnectionKind, Side, ChannelKind | None], frozenset[type[Message]]] = {}


def allowed_messages(
    kind: ConnectionKind, sender: Side, channel: ChannelKind | None = None
) -> frozenset[type[Message]]:
    """The message classes ``sender`` may send on a ``kind`` connection.

    Computed once per combination and shared: every connection asks twice, and a broker
    holds thousands of connections (``benchmarks/idle_agents.py``).
    """
    key = (kind, sender, channel)
    allowed = _ALLOWED.get(key)
    if allowed is None:
        excluded: frozenset[type[Message]] = frozenset()
        if kind is ConnectionKind.CHANNEL and channel is not None:
            excluded = _NOT_ON_CHANNEL[channel]
        allowed = _ALLOWED[key] = frozenset(
            cls
            for cls, senders in ROUTES[kind].items()
            if sender in senders and cls not in excluded
        )
    return allowed
