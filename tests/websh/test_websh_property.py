"""Property test: hostile input never escapes as anything but a websh error.

Random, truncated, mutated and oversized payloads (str and bytes) are fed to a Connection
of every kind and side, both fresh and after a completed handshake. The only outcomes
allowed are "accepted" or a ``ProtocolError`` that closes the connection for good; an
``INTERNAL_ERROR`` would mean a foreign exception leaked into the defensive boundary.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websh_samples import SAMPLES

import websh as w
from websh.catalog import TEXT_TYPES

LIMITS = w.Limits(max_text_size=4096, max_binary_size=512, max_string_length=256)
VALID = [w.encode(m) for m in SAMPLES]
HELLOS = {
    w.ConnectionKind.CONTROL: (
        w.Hello(agent_id="a", secret="s", agent_version="1", sysinfo={}),
        w.Welcome(heartbeat_interval=1, metrics_interval=1),
    ),
    w.ConnectionKind.CHANNEL: (w.ChannelHello(channel_id="ch-1", token="t"), w.ChannelWelcome()),
    w.ConnectionKind.USER: (w.ClientHello(cols=80, rows=24), w.ClientWelcome(session_id="s")),
}

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
field_names = st.sampled_from(
    [
        "cols",
        "rows",
        "channel_id",
        "token",
        "offset",
        "status",
        "signal",
        "protocol",
        "kind",
        "command",
        "env",
        "path",
        "user",
        "reason",
        "nonce",
        "ts",
        "approvers",
        "load",
        "info",
    ]
)
json_messages = st.builds(
    lambda type_, fields: json.dumps({"type": type_, **fields}),
    st.sampled_from(sorted(TEXT_TYPES)) | st.text(max_size=12),
    st.dictionaries(field_names, json_values, max_size=6),
)


@st.composite
def mutated(draw: st.DrawFn) -> str | bytes:
    payload = draw(st.sampled_from(VALID))
    action = draw(st.sampled_from(["truncate", "replace", "insert", "repeat"]))
    position = draw(st.integers(0, max(len(payload) - 1, 0)))
    if isinstance(payload, str):
        piece = draw(st.text(min_size=1, max_size=4))
    else:
        piece = draw(st.binary(min_size=1, max_size=4))
    if action == "truncate":
        return payload[:position]
    if action == "replace":
        return payload[:position] + piece + payload[position + 1 :]
    if action == "insert":
        return payload[:position] + piece + payload[position:]
    return payload * draw(st.integers(2, 600))


payloads = (
    st.text(max_size=64)
    | st.binary(max_size=64)
    | st.sampled_from(VALID)
    | json_messages
    | mutated()
    | st.integers(1, 20).map(lambda n: "[" * n * 10 + "]" * n * 10)
    | st.integers(0, 3000).map(lambda n: b"\x02" + b"x" * n)
)


def feed(conn: w.Connection, payload: str | bytes) -> None:
    was_closed = conn.state is w.State.CLOSED
    error: w.WebshError | None = None
    try:
        conn.receive(payload)
    except (w.ConnectionClosedError, w.ProtocolError) as exc:
        error = exc
    if was_closed:
        assert isinstance(error, w.ConnectionClosedError)
    elif isinstance(error, w.ProtocolError):
        assert error.code != w.CloseCode.INTERNAL_ERROR, repr(error)
        assert conn.state is w.State.CLOSED
        assert conn.close_code == error.code
        assert len(error.reason.encode("ascii")) <= 123
    else:
        assert error is None
        assert conn.state is not w.State.CLOSED


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(list(w.ConnectionKind)),
    side=st.sampled_from(list(w.Side)),
    handshake=st.booleans(),
    inputs=st.lists(payloads, min_size=1, max_size=6),
)
def test_hostile_input_only_raises_websh_errors(
    kind: w.ConnectionKind, side: w.Side, handshake: bool, inputs: list[str | bytes]
) -> None:
    conn = w.Connection(kind, side, limits=LIMITS)
    hello, welcome = HELLOS[kind]
    if handshake:
        if side is w.Side.SERVER:
            conn.receive(w.encode(hello))
            conn.send(welcome)
        else:
            conn.send(hello)
            conn.receive(w.encode(welcome))
        assert conn.state is w.State.OPEN
    for payload in inputs:
        feed(conn, payload)
    conn.events_received()
    if conn.state is w.State.CLOSED:
        for payload in VALID[:3]:
            feed(conn, payload)


@settings(max_examples=200, deadline=None)
@given(payload=payloads)
def test_decode_only_raises_protocol_errors(payload: str | bytes) -> None:
    code: int | None = None
    try:
        message = w.decode(payload, LIMITS)
    except w.ProtocolError as exc:
        code = exc.code
    else:
        # whatever decodes re-encodes to something that decodes to the same message
        assert w.decode(w.encode(message), LIMITS) == message
    assert code != w.CloseCode.INTERNAL_ERROR
