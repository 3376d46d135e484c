"""Sans-I/O websh connection: feed it received payloads, collect events and payloads to send.

Modelled on python-websockets' ``protocol.py``: this class never reads or writes a socket,
never sleeps and never looks at a clock, so the broker's asyncio adapter and the agent's
selectors + wsframe adapter drive the very same state machine, and it can be fuzzed
directly. Typical adapter loop::

    conn = Connection(ConnectionKind.CONTROL, Side.CLIENT)
    conn.send(Hello(...)); flush(conn.data_to_send())
    for payload in websocket:                 # str for text, bytes for binary
        try:
            conn.receive(payload)
        except ProtocolError as exc:          # the peer misbehaved
            websocket.close(exc.code, exc.reason); break
        for event in conn.events_received(): handle(event)
        flush(conn.data_to_send())            # e.g. automatic pongs

State machine (both sides): ``AWAIT_HELLO`` -> ``AWAIT_WELCOME`` -> ``OPEN`` -> ``CLOSED``.
The client (agent or user terminal) must send the kind's hello first and wait for the
welcome; the server (broker) must receive the hello first and answer welcome (or
``error``/``retry_later`` and close). Messages not routed for this kind and direction
(``catalog.ROUTES``), a second hello, stream bytes after ``exit`` and a misplaced
``attach`` are protocol errors. The first ``ProtocolError`` closes the connection for
good: every later call raises ``ConnectionClosedError``.

Stream bytes (``input``/``output``/...) on an open connection are the hot path: each
keystroke and each echo crosses two connections in the broker. Once nothing about a
stream message can change the state (open, the peer or this side not finished, no
``attach`` still possible on that side), ``receive`` and ``send`` take an exact-shape
shortcut for it: an exact ``bytes`` payload of an allowed kind within the size limit is
built or framed in a few operations. The shortcut's tables are recomputed after every
call that took the full path (``_refresh_fast``), and it only ever does what the full
path would have done (``tests/websh/test_websh_streams_fastpath.py``).
"""

from __future__ import annotations

import enum

from .base import BinaryMessage, Message, TextMessage
from .catalog import BINARY_KINDS, HELLO, WELCOME, ConnectionKind, Side, allowed_messages
from .channel import Attach, ChannelHello
from .close_codes import CloseCode
from .codec import Payload, decode_text, encode, fast_text, parse_binary, parse_text, validate_text
from .common import ErrorMessage, Exit, Ping, Pong
from .control import ChannelKind, RetryLater
from .errors import (
    ConnectionClosedError,
    ProtocolError,
    UnexpectedMessageError,
    UsageError,
    WebshError,
    safe_reason,
)
from .limits import DEFAULT_LIMITS, Limits
from .terminal import Terminated

__all__ = ["Connection", "State"]

_BEFORE_WELCOME = (ErrorMessage, RetryLater)  # what a server may say before/instead of welcome
_AFTER_FINISH = (Ping, Pong, ErrorMessage)  # what may follow exit / terminated
_FINISH = (Exit, Terminated)


# The stream shortcuts' tables, shared by every connection with the same routes.
_STREAMS_IN: dict[frozenset[type[Message]], dict[int, type[BinaryMessage]] | None] = {}
_STREAMS_OUT: dict[frozenset[type[Message]], dict[type[Message], bytes] | None] = {}


def _streams_in(receivable: frozenset[type[Message]]) -> dict[int, type[BinaryMessage]] | None:
    """Kind byte -> class of the stream messages in ``receivable`` (None if there are none)."""
    if receivable not in _STREAMS_IN:
        table = {kind: cls for kind, cls in BINARY_KINDS.items() if cls in receivable}
        _STREAMS_IN[receivable] = table or None
    return _STREAMS_IN[receivable]


def _streams_out(sendable: frozenset[type[Message]]) -> dict[type[Message], bytes] | None:
    """Class -> kind byte prefix of the stream messages in ``sendable`` (None if none)."""
    if sendable not in _STREAMS_OUT:
        table: dict[type[Message], bytes] = {
            cls: bytes((kind,)) for kind, cls in BINARY_KINDS.items() if cls in sendable
        }
        _STREAMS_OUT[sendable] = table or None
    return _STREAMS_OUT[sendable]


class State(enum.Enum):
    """Where a connection is in its life."""

    AWAIT_HELLO = "await_hello"
    AWAIT_WELCOME = "await_welcome"
    OPEN = "open"
    CLOSED = "closed"


class Connection:
    """One end of one websh connection.

    ``channel`` (data channels only) narrows the routes to a terminal or an exec channel.
    ``auto_pong`` answers every received ``Ping`` with a ``Pong`` queued in
    ``data_to_send()`` (the ``Ping`` is still reported as an event).
    """

    # A broker holds one per agent and per terminal: no instance __dict__.
    __slots__ = (
        "_attach_possible",
        "_events",
        "_fast_in",
        "_fast_out",
        "_hello",
        "_outgoing",
        "_peer_finished",
        "_receivable",
        "_self_finished",
        "_sendable",
        "_state",
        "_welcome",
        "auto_pong",
        "channel",
        "channel_id",
        "close_code",
        "close_reason",
        "error",
        "kind",
        "limits",
        "protocol",
        "side",
    )

    def __init__(
        self,
        kind: ConnectionKind,
        side: Side,
        *,
        limits: Limits = DEFAULT_LIMITS,
        channel: ChannelKind | None = None,
        auto_pong: bool = True,
    ) -> None:
        if not isinstance(kind, ConnectionKind) or not isinstance(side, Side):
            raise UsageError("Connection(kind, side) takes ConnectionKind and Side members")
        if channel is not None and kind is not ConnectionKind.CHANNEL:
            raise UsageError("channel= only applies to ConnectionKind.CHANNEL")
        self.kind = kind
        self.side = side
        self.limits = limits
        self.channel = channel
        self.auto_pong = auto_pong
        self._state = State.AWAIT_HELLO
        self._sendable = allowed_messages(kind, side, channel)
        self._receivable = allowed_messages(kind, side.peer, channel)
        self._hello = HELLO[kind]
        self._welcome = WELCOME[kind]
        self._events: list[Message] = []
        self._outgoing: list[Payload] = []
        self._attach_possible = kind is ConnectionKind.CHANNEL
        self._peer_finished = False
        self._self_finished = False
        #: The peer's protocol version string, once its hello/welcome arrived.
        self.protocol: str | None = None
        #: Data channels: the channel id named in ``channel_hello`` (sent or received).
        self.channel_id: str | None = None
        self.close_code: CloseCode | None = None
        self.close_reason = ""
        #: The ``ProtocolError`` that closed the connection, if one did.
        self.error: ProtocolError | None = None
        # kind byte -> class, and class -> kind byte prefix, of the stream messages the
        # shortcuts may take now; None while the full path must decide.
        self._fast_in: dict[int, type[BinaryMessage]] | None = None
        self._fast_out: dict[type[Message], bytes] | None = None

    def __repr__(self) -> str:
        return f"Connection({self.kind.value}, {self.side.value}, state={self._state.value})"

    @property
    def state(self) -> State:
        """Current state; ``CLOSED`` is final."""
        return self._state

    # ---------------------------------------------------------------- receiving

    def receive(self, payload: str | bytes | bytearray | memoryview) -> None:
        """Process one received WebSocket message (``str`` = text, bytes-like = binary).

        Raises ``ProtocolError`` (and closes) if the peer broke the protocol, or
        ``ConnectionClosedError`` if the connection was already closed.
        """
        fast = self._fast_in
        if fast is not None and type(payload) is bytes and payload:
            cls = fast.get(payload[0])
            if cls is not None and len(payload) <= self.limits.max_binary_size:
                self._events.append(cls(payload[1:]))  # type: ignore[call-arg]
                return
        if self._state is State.CLOSED:
            raise ConnectionClosedError("connection is closed")
        if not isinstance(payload, (str, bytes, bytearray, memoryview)):
            raise UsageError("receive() takes str or bytes")
        try:
            message = self._decode(payload)
            self._accept(message)
        except ProtocolError as exc:
            self._fail(exc)
            raise
        except WebshError:
            raise
        except Exception as exc:  # defensive boundary: a bug here must not leak details
            error = ProtocolError("internal error", CloseCode.INTERNAL_ERROR)
            self._fail(error)
            raise error from exc
        self._refresh_fast()
        self._events.append(message)
        if self.auto_pong and isinstance(message, Ping):
            self._outgoing.append(encode(Pong(nonce=message.nonce, ts=message.ts)))

    def receive_text(self, text: str) -> None:
        """``receive()`` for a text message."""
        if not isinstance(text, str):
            raise UsageError("receive_text() takes str")
        self.receive(text)

    def receive_bytes(self, data: bytes | bytearray | memoryview) -> None:
        """``receive()`` for a binary message."""
        if isinstance(data, str):
            raise UsageError("receive_bytes() takes bytes")
        self.receive(data)

    def events_received(self) -> list[Message]:
        """Messages received since the last call, oldest first."""
        events, self._events = self._events, []
        return events

    def _decode(self, payload: str | bytes | bytearray | memoryview) -> Message:
        if isinstance(payload, str):
            fast = fast_text(payload, self.limits)
            if fast is not None:
                self._route(type(fast))
                return fast
            cls, obj = parse_text(payload, self.limits)
            self._route(cls)
            return validate_text(cls, obj, self.limits)
        message = parse_binary(bytes(payload), self.limits)
        self._route(type(message))
        return message

    def _route(self, cls: type[Message]) -> None:
        if cls not in self._receivable:
            raise UnexpectedMessageError(
                f"{cls.type} is not allowed from the {self.side.peer.value} "
                f"on a {self.kind.value} connection"
            )

    def _accept(self, message: Message) -> None:
        cls = type(message)
        state = self._state
        if state is not State.OPEN:
            if self.side is Side.SERVER:
                if state is State.AWAIT_WELCOME:
                    raise UnexpectedMessageError(f"{cls.type} before {self._welcome.type}")
                if cls is not self._hello:
                    raise UnexpectedMessageError(f"first message must be {self._hello.type}")
                self._record_handshake(message)
                self._state = State.AWAIT_WELCOME
            elif cls is self._welcome and state is State.AWAIT_WELCOME:
                self._record_handshake(message)
                self._state = State.OPEN
            elif cls not in _BEFORE_WELCOME:
                raise UnexpectedMessageError(f"{cls.type} before {self._welcome.type}")
            return
        if cls is self._hello or cls is self._welcome:
            raise UnexpectedMessageError(f"duplicate {cls.type}")
        if self._peer_finished and cls not in _AFTER_FINISH:
            raise UnexpectedMessageError(f"{cls.type} after the session ended")
        if isinstance(message, Attach):
            if not self._attach_possible:
                raise UnexpectedMessageError("attach must directly follow channel_welcome")
            if message.channel_id != self.channel_id:
                raise UnexpectedMessageError("attach names another channel")
        if cls not in _AFTER_FINISH and self.side is Side.CLIENT:
            self._attach_possible = False  # only the server's first message may be attach
        if cls in _FINISH:
            self._peer_finished = True

    def _record_handshake(self, message: Message) -> None:
        self.protocol = getattr(message, "protocol", None)
        if isinstance(message, ChannelHello):
            self.channel_id = message.channel_id

    def _fail(self, error: ProtocolError) -> None:
        self.error = error
        self.close(error.code, error.reason)

    # ------------------------------------------------------------------ sending

    def send(self, message: Message) -> None:
        """Validate ``message``, queue its payload(s) for ``data_to_send()``.

        Raises ``UsageError`` if the message is invalid, not routed for this side and
        kind, or not allowed in the current state; ``ConnectionClosedError`` if closed.
        Stream chunks larger than ``max_binary_size`` are split.
        """
        fast = self._fast_out
        if fast is not None:
            prefix = fast.get(type(message))
            if prefix is not None:
                data = message.data  # type: ignore[attr-defined]
                if type(data) is bytes and len(data) < self.limits.max_binary_size:
                    self._outgoing.append(prefix + data)
                    return
        if self._state is State.CLOSED:
            raise ConnectionClosedError("connection is closed")
        if not isinstance(message, Message):
            raise UsageError("send() takes a websh Message")
        cls = type(message)
        if cls not in self._sendable:
            raise UsageError(
                f"{cls.type} cannot be sent by the {self.side.value} "
                f"on a {self.kind.value} connection"
            )
        next_state = self._check_send(message)
        payloads = self._encode(message)
        self._state = next_state
        if next_state is not State.OPEN or cls is self._welcome:
            if isinstance(message, ChannelHello):
                self.channel_id = message.channel_id
        elif cls not in _AFTER_FINISH and self.side is Side.SERVER:
            self._attach_possible = False
        if cls in _FINISH:
            self._self_finished = True
        self._refresh_fast()
        self._outgoing.extend(payloads)

    def _refresh_fast(self) -> None:
        """Enable the stream shortcuts where a stream message can no longer change state.

        Receiving: open, the peer not finished, and (client side) ``attach`` no longer
        possible, which the full path would clear on the first stream message. Sending:
        open, this side not finished, and (server side) ``attach`` no longer possible.
        """
        if self._state is not State.OPEN:
            self._fast_in = self._fast_out = None
            return
        client = self.side is Side.CLIENT
        if self._peer_finished or (client and self._attach_possible):
            self._fast_in = None
        else:
            self._fast_in = _streams_in(self._receivable)
        if self._self_finished or (not client and self._attach_possible):
            self._fast_out = None
        else:
            self._fast_out = _streams_out(self._sendable)

    def _check_send(self, message: Message) -> State:
        cls, state = type(message), self._state
        if state is not State.OPEN:
            if cls is self._hello and self.side is Side.CLIENT and state is State.AWAIT_HELLO:
                return State.AWAIT_WELCOME
            if cls is self._welcome and state is State.AWAIT_WELCOME:
                return State.OPEN
            if self.side is Side.SERVER and cls in _BEFORE_WELCOME:
                return state
            if self.side is Side.CLIENT:
                raise UsageError(
                    f"send {self._hello.type} first, then wait for {self._welcome.type}"
                )
            raise UsageError(f"receive {self._hello.type}, then send {self._welcome.type} first")
        if cls is self._hello or cls is self._welcome:
            raise UsageError(f"{cls.type} was already exchanged")
        if self._self_finished and cls not in _AFTER_FINISH:
            raise UsageError(f"cannot send {cls.type} after the session ended")
        if isinstance(message, Attach):
            if not self._attach_possible:
                raise UsageError("attach must be the first message after channel_welcome")
            if message.channel_id != self.channel_id:
                raise UsageError("attach must name the channel of this connection")
        return state

    def _encode(self, message: Message) -> list[Payload]:
        if isinstance(message, BinaryMessage):
            data = message.data
            if not isinstance(data, (bytes, bytearray)):
                raise UsageError(f"{message.type}.data must be bytes")
            step = self.limits.max_binary_size - 1
            prefix = bytes((message.kind,))
            if len(data) <= step:
                return [prefix + bytes(data)]
            return [prefix + bytes(data[i : i + step]) for i in range(0, len(data), step)]
        assert isinstance(message, TextMessage)
        payload = encode(message)
        assert isinstance(payload, str)
        try:  # refuse to emit anything our own receiver would refuse
            decode_text(payload, self.limits)
        except ProtocolError as exc:
            raise UsageError(f"refusing to send invalid {message.type}: {exc.reason}") from None
        return [payload]

    def data_to_send(self) -> list[Payload]:
        """Payloads queued since the last call: ``str`` -> text message, ``bytes`` -> binary."""
        outgoing, self._outgoing = self._outgoing, []
        return outgoing

    # ------------------------------------------------------------------ closing

    def close(self, code: CloseCode = CloseCode.NORMAL, reason: str = "") -> None:
        """Mark the connection closed (locally decided or reported by the transport).

        Idempotent: the first code and reason win. The adapter closes the WebSocket with
        ``close_code``/``close_reason``; queued ``data_to_send()`` may still be flushed.
        """
        if self._state is State.CLOSED:
            return
        self._state = State.CLOSED
        self._fast_in = self._fast_out = None
        self.close_code = CloseCode(code)
        self.close_reason = safe_reason(reason)
