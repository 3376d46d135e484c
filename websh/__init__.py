"""Websh: the message protocol spoken between Corral's broker, agents and user terminals.

Websh is the layer *inside* WebSocket messages: a text message is one JSON object with a
``type``, a binary message is one kind byte plus stream bytes. ``Connection`` is a sans-I/O
state machine (feed payloads in, get typed events and payloads to send out); it never
imports asyncio or sockets, so the broker (asyncio) and the agent (selectors and its own
RFC 6455 client) share it. Standard library only, Python 3.9+. The full catalog is in
``docs/websh.md``.
"""

from __future__ import annotations

from .base import BinaryMessage, Message, TextMessage
from .catalog import ROUTES, ConnectionKind, Side, allowed_messages
from .channel import Attach, ChannelHello, ChannelWelcome, Eof
from .close_codes import RECONNECTABLE, CloseCode
from .codec import Payload, decode, encode
from .common import ErrorMessage, Exit, Ping, Pong, Resize
from .connection import Connection, State
from .control import (
    ChannelKind,
    CloseChannel,
    Hello,
    Metrics,
    OpenChannel,
    RetryLater,
    SysInfo,
    SystemInfo,
    Welcome,
)
from .errors import (
    ConnectionClosedError,
    DecodeError,
    MessageTooBigError,
    ProtocolError,
    UnexpectedMessageError,
    UnknownMessageError,
    UnsupportedVersionError,
    UsageError,
    ValidationError,
    WebshError,
)
from .limits import DEFAULT_LIMITS, Limits
from .streams import Input, Output, Stderr, Stdout
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
from .version import PROTOCOL_VERSION, SUPPORTED_MAJORS

__all__ = [
    "DEFAULT_LIMITS",
    "PROTOCOL_VERSION",
    "RECONNECTABLE",
    "ROUTES",
    "SUPPORTED_MAJORS",
    "ApprovalDenied",
    "ApprovalGranted",
    "ApprovalPending",
    "Attach",
    "BinaryMessage",
    "ChannelHello",
    "ChannelKind",
    "ChannelWelcome",
    "ClientHello",
    "ClientWelcome",
    "CloseChannel",
    "CloseCode",
    "CommandBlocked",
    "Connection",
    "ConnectionClosedError",
    "ConnectionKind",
    "DecodeError",
    "Eof",
    "ErrorMessage",
    "Exit",
    "Hello",
    "Input",
    "Limits",
    "Message",
    "MessageTooBigError",
    "Metrics",
    "MfaRequired",
    "OpenChannel",
    "Output",
    "ParticipantJoined",
    "ParticipantLeft",
    "Payload",
    "Ping",
    "Pong",
    "ProtocolError",
    "Resize",
    "Resume",
    "RetryLater",
    "Side",
    "State",
    "Stderr",
    "Stdout",
    "SysInfo",
    "SystemInfo",
    "Terminated",
    "TextMessage",
    "UnexpectedMessageError",
    "UnknownMessageError",
    "UnsupportedVersionError",
    "UsageError",
    "ValidationError",
    "WebshError",
    "Welcome",
    "allowed_messages",
    "decode",
    "encode",
]
