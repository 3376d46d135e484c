"""The stream shortcuts of ``Connection.receive``/``send`` decide exactly like the full path.

Every case drives two connections through the same operations: the real one, and a
``Reference`` whose shortcuts are never enabled. After each operation both must have
returned the same thing or raised the same error (class and close code), reported the
same events, queued the same payloads and be in the same state, for arbitrary bytes,
stream messages of any size, and the text messages that change what a stream message
may do (``attach``, ``exit``, ``terminated``).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websh_samples import HELLO, WELCOME

import websh as w
from websh import connection as connection_module
from websh.catalog import allowed_messages

CHANNEL, USER, CONTROL = w.ConnectionKind.CHANNEL, w.ConnectionKind.USER, w.ConnectionKind.CONTROL
CLIENT, SERVER = w.Side.CLIENT, w.Side.SERVER
TERMINAL, EXEC = w.ChannelKind.TERMINAL, w.ChannelKind.EXEC
SMALL = w.Limits(max_binary_size=8)

SETUPS = [
    (CHANNEL, SERVER, TERMINAL),
    (CHANNEL, CLIENT, TERMINAL),
    (CHANNEL, SERVER, EXEC),
    (CHANNEL, CLIENT, EXEC),
    (CHANNEL, SERVER, None),
    (USER, SERVER, None),
    (USER, CLIENT, None),
    (CONTROL, SERVER, None),
]
TEXTS = [
    w.Attach(channel_id="ch-1", offset=0),
    w.Attach(channel_id="other", offset=3),
    w.Exit(status=0),
    w.Terminated(reason="idle"),
    w.Ping(nonce=1, ts=0),
    w.Resize(cols=100, rows=30),
]


class Reference(w.Connection):
    """A connection that always takes the full path."""

    __slots__ = ()

    def _refresh_fast(self) -> None:
        self._fast_in = self._fast_out = None


def opened(
    cls: type[w.Connection], setup: tuple[w.ConnectionKind, w.Side, object], limits: w.Limits
) -> w.Connection:
    kind, side, channel = setup
    conn = cls(kind, side, channel=channel, limits=limits)  # type: ignore[arg-type]
    if side is CLIENT:
        conn.send(HELLO[kind])
        conn.receive(w.encode(WELCOME[kind]))
    else:
        conn.receive(w.encode(HELLO[kind]))
        conn.send(WELCOME[kind])
    conn.events_received()
    conn.data_to_send()
    return conn


def apply(conn: w.Connection, operation: tuple[str, object]) -> object:
    action, value = operation
    try:
        if action == "receive":
            conn.receive(value)  # type: ignore[arg-type]
        elif action == "send":
            conn.send(value)  # type: ignore[arg-type]
        else:
            conn.close(w.CloseCode.NORMAL, "bye")
    except w.WebshError as exc:
        return (type(exc), getattr(exc, "code", None))
    return None


def snapshot(conn: w.Connection) -> object:
    return (
        conn.events_received(),
        conn.data_to_send(),
        conn.state,
        conn.close_code,
        conn.close_reason,
        conn.channel_id,
        conn._attach_possible,
        conn._peer_finished,
        conn._self_finished,
    )


stream_classes = st.sampled_from([w.Input, w.Output, w.Stdout, w.Stderr])
chunks = st.binary(max_size=24)
payloads = st.one_of(
    st.builds(lambda kind, rest: bytes([kind]) + rest, st.integers(0, 6), chunks),
    st.binary(max_size=12),
    st.builds(lambda kind, rest: bytearray([kind]) + rest, st.integers(1, 4), chunks),
    st.sampled_from([w.encode(message) for message in TEXTS]),
)
sent = st.one_of(
    st.builds(lambda cls, data: cls(data), stream_classes, chunks),
    st.builds(lambda cls, data: cls(bytearray(data)), stream_classes, chunks),
    st.builds(lambda cls: cls("text"), stream_classes),
    st.sampled_from(TEXTS),
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("receive"), payloads),
        st.tuples(st.just("send"), sent),
        st.tuples(st.just("close"), st.none()),
    ),
    max_size=12,
)


def warm_up(setup: tuple[w.ConnectionKind, w.Side, object]) -> list[tuple[str, object]]:
    """A valid stream message each way, where the routes allow one (enables the shortcuts)."""
    kind, side, channel = setup
    ops: list[tuple[str, object]] = []
    for cls in (w.Input, w.Output, w.Stdout, w.Stderr):
        if cls in allowed_messages(kind, side.peer, channel):  # type: ignore[arg-type]
            ops.append(("receive", bytes([cls.kind]) + b"a"))
        if cls in allowed_messages(kind, side, channel):  # type: ignore[arg-type]
            ops.append(("send", cls(b"a")))
    return ops


@settings(max_examples=600, deadline=None)
@given(
    setup=st.sampled_from(SETUPS),
    limits=st.sampled_from([w.DEFAULT_LIMITS, SMALL]),
    warm=st.booleans(),
    ops=operations,
)
def test_the_shortcuts_agree_with_the_full_path(
    setup: tuple[w.ConnectionKind, w.Side, object], limits: w.Limits, warm: bool, ops: list
) -> None:
    fast, full = opened(w.Connection, setup, limits), opened(Reference, setup, limits)
    for operation in (warm_up(setup) if warm else []) + ops:
        assert apply(fast, operation) == apply(full, operation), operation
        assert snapshot(fast) == snapshot(full), operation


def test_an_open_terminal_takes_the_shortcut(monkeypatch: pytest.MonkeyPatch) -> None:
    server = opened(w.Connection, (CHANNEL, SERVER, TERMINAL), w.DEFAULT_LIMITS)
    server.send(w.Input(b"x"))  # the server's first message could have been attach
    server.data_to_send()
    server.receive(b"\x02warm")

    def refuse(*_args: object) -> None:
        raise AssertionError("the full path was taken")

    monkeypatch.setattr(connection_module, "parse_binary", refuse)
    monkeypatch.setattr(w.Connection, "_encode", refuse)
    server.receive(b"\x02echo")
    server.send(w.Input(b"key"))
    assert server.events_received() == [w.Output(b"warm"), w.Output(b"echo")]
    assert server.data_to_send() == [b"\x01key"]


def test_no_shortcut_after_close_or_exit() -> None:
    server = opened(w.Connection, (CHANNEL, SERVER, TERMINAL), w.DEFAULT_LIMITS)
    server.send(w.Input(b"x"))
    server.receive(w.encode(w.Exit(status=0)))
    with pytest.raises(w.UnexpectedMessageError):
        server.receive(b"\x02late")
    assert server.state is w.State.CLOSED
    with pytest.raises(w.ConnectionClosedError):
        server.send(w.Input(b"x"))
