"""The Connection state machine: handshake order, routing, closing for good."""

from __future__ import annotations

import pytest
from websh_samples import HELLO, WELCOME

import websh as w

CONTROL, CHANNEL, USER = w.ConnectionKind.CONTROL, w.ConnectionKind.CHANNEL, w.ConnectionKind.USER
CLIENT, SERVER = w.Side.CLIENT, w.Side.SERVER


def transfer(source: w.Connection, target: w.Connection) -> list[w.Message]:
    for payload in source.data_to_send():
        target.receive(payload)
    return target.events_received()


def pair(kind: w.ConnectionKind, **kwargs: object) -> tuple[w.Connection, w.Connection]:
    client = w.Connection(kind, CLIENT, **kwargs)  # type: ignore[arg-type]
    server = w.Connection(kind, SERVER, **kwargs)  # type: ignore[arg-type]
    client.send(HELLO[kind])
    assert transfer(client, server) == [HELLO[kind]]
    assert server.state is w.State.AWAIT_WELCOME
    server.send(WELCOME[kind])
    assert transfer(server, client) == [WELCOME[kind]]
    assert client.state is server.state is w.State.OPEN
    assert client.protocol == server.protocol == "websh/1"
    return client, server


@pytest.mark.parametrize("kind", list(w.ConnectionKind))
def test_handshake(kind: w.ConnectionKind) -> None:
    pair(kind)


@pytest.mark.parametrize("kind", list(w.ConnectionKind))
def test_first_message_must_be_hello(kind: w.ConnectionKind) -> None:
    server = w.Connection(kind, SERVER)
    with pytest.raises(w.UnexpectedMessageError) as info:
        server.receive(w.encode(w.Ping(nonce=1, ts=0)))
    assert info.value.code == w.CloseCode.PROTOCOL_ERROR
    assert server.state is w.State.CLOSED
    assert server.close_code == w.CloseCode.PROTOCOL_ERROR
    assert server.error is info.value


def test_hello_of_another_connection_kind_is_refused() -> None:
    server = w.Connection(CONTROL, SERVER)
    with pytest.raises(w.UnexpectedMessageError):
        server.receive(w.encode(HELLO[USER]))


def test_unknown_major_version_is_refused_with_4009() -> None:
    server = w.Connection(CONTROL, SERVER)
    with pytest.raises(w.UnsupportedVersionError) as info:
        server.receive('{"type":"hello","protocol":"websh/9","agent_id":"a"}')
    assert server.close_code == w.CloseCode.UNSUPPORTED_VERSION == info.value.code
    client = w.Connection(USER, CLIENT)
    client.send(HELLO[USER])
    with pytest.raises(w.UnsupportedVersionError):
        client.receive('{"type":"client_welcome","session_id":"s","protocol":"websh/2"}')


def test_nothing_before_welcome() -> None:
    client = w.Connection(CHANNEL, CLIENT)
    server = w.Connection(CHANNEL, SERVER)
    client.send(HELLO[CHANNEL])
    with pytest.raises(w.UsageError):
        client.send(w.Output(b"early"))
    transfer(client, server)
    with pytest.raises(w.UnexpectedMessageError):
        server.receive(w.encode(w.Output(b"early")))


def test_server_may_refuse_before_welcome() -> None:
    client = w.Connection(CONTROL, CLIENT)
    server = w.Connection(CONTROL, SERVER)
    server.send(w.RetryLater(after=5))  # even before the hello arrived
    client.send(HELLO[CONTROL])
    transfer(client, server)
    server.send(w.ErrorMessage(code="bad_credential", message="unknown agent"))
    assert transfer(server, client) == [
        w.RetryLater(after=5),
        w.ErrorMessage(code="bad_credential", message="unknown agent"),
    ]
    server.close(w.CloseCode.UNAUTHENTICATED, "bad credential")
    assert server.close_code == 4001
    assert client.state is w.State.AWAIT_WELCOME


def test_server_cannot_send_welcome_before_hello_or_events_before_welcome() -> None:
    server = w.Connection(USER, SERVER)
    with pytest.raises(w.UsageError):
        server.send(WELCOME[USER])
    with pytest.raises(w.UsageError):
        server.send(w.Output(b"x"))


def test_client_cannot_skip_hello_or_repeat_it() -> None:
    client = w.Connection(USER, CLIENT)
    with pytest.raises(w.UsageError):
        client.send(w.Input(b"x"))
    client, _server = pair(USER)
    with pytest.raises(w.UsageError):
        client.send(HELLO[USER])


@pytest.mark.parametrize("kind", list(w.ConnectionKind))
def test_duplicate_hello_is_a_protocol_error(kind: w.ConnectionKind) -> None:
    _client, server = pair(kind)
    with pytest.raises(w.UnexpectedMessageError):
        server.receive(w.encode(HELLO[kind]))


@pytest.mark.parametrize("kind", list(w.ConnectionKind))
def test_duplicate_welcome_is_a_protocol_error(kind: w.ConnectionKind) -> None:
    client, _server = pair(kind)
    with pytest.raises(w.UnexpectedMessageError):
        client.receive(w.encode(WELCOME[kind]))


ROUTING_REFUSALS = [
    (CONTROL, SERVER, w.Output(b"x")),  # no stream bytes on the control connection
    (
        CONTROL,
        CLIENT,
        w.Metrics(ts=0, cpu=0, mem_used=0, mem_total=0, disk_used=0, disk_total=0, load=(0, 0, 0)),
    ),  # broker does not send metrics
    (
        CONTROL,
        SERVER,
        w.OpenChannel(
            channel_id="c", kind=w.ChannelKind.EXEC, token="t", path="/p", user="u", command="ls"
        ),
    ),  # only broker opens
    (CHANNEL, CLIENT, w.Output(b"x")),  # broker does not produce output
    (CHANNEL, SERVER, w.Input(b"x")),  # agent does not send input
    (CHANNEL, SERVER, w.CommandBlocked(command="x", reason="r")),  # user-only event
    (USER, SERVER, w.Output(b"x")),  # the user does not send output
    (USER, CLIENT, w.Input(b"x")),  # the broker does not type
    (USER, SERVER, w.Terminated(reason="r")),  # users cannot terminate by message
    (USER, CLIENT, w.Stdout(b"x")),
    (USER, SERVER, w.Attach(channel_id="c", offset=0)),
]


@pytest.mark.parametrize(("kind", "receiver", "message"), ROUTING_REFUSALS)
def test_routing(kind: w.ConnectionKind, receiver: w.Side, message: w.Message) -> None:
    client, server = pair(kind)
    conn = client if receiver is CLIENT else server
    with pytest.raises(w.UnexpectedMessageError) as info:
        conn.receive(w.encode(message))
    assert info.value.code == w.CloseCode.PROTOCOL_ERROR
    with pytest.raises(w.UsageError):
        (server if receiver is CLIENT else client).send(message)


def test_exec_and_terminal_channels_are_narrowed() -> None:
    client, server = pair(CHANNEL, channel=w.ChannelKind.EXEC)
    client.send(w.Stdout(b"out"))
    client.send(w.Stderr(b"err"))
    server.send(w.Eof())
    assert transfer(client, server) == [w.Stdout(b"out"), w.Stderr(b"err")]
    with pytest.raises(w.UsageError):
        client.send(w.Output(b"x"))
    with pytest.raises(w.UnexpectedMessageError):
        server.receive(w.encode(w.Output(b"x")))
    client, server = pair(CHANNEL, channel=w.ChannelKind.TERMINAL)
    with pytest.raises(w.UnexpectedMessageError):
        client.receive(w.encode(w.Eof()))
    with pytest.raises(w.UsageError):
        w.Connection(CONTROL, SERVER, channel=w.ChannelKind.EXEC)


def test_terminal_channel_session() -> None:
    client, server = pair(CHANNEL)
    server.send(w.Resize(cols=132, rows=43))
    server.send(w.Input(b"exit\r"))
    assert transfer(server, client) == [w.Resize(cols=132, rows=43), w.Input(b"exit\r")]
    client.send(w.Output(b"logout\r\n"))
    client.send(w.Exit(status=0))
    assert transfer(client, server) == [w.Output(b"logout\r\n"), w.Exit(status=0)]
    with pytest.raises(w.UsageError):
        client.send(w.Output(b"late"))
    client.send(w.Ping(nonce=1, ts=1))  # heartbeats may continue until close
    transfer(client, server)
    with pytest.raises(w.UnexpectedMessageError):
        server.receive(w.encode(w.Output(b"late")))


def test_attach_must_come_first_and_name_this_channel() -> None:
    client, server = pair(CHANNEL)
    with pytest.raises(w.UsageError):
        server.send(w.Attach(channel_id="other", offset=0))
    server.send(w.Attach(channel_id="ch-1", offset=10))
    assert transfer(server, client) == [w.Attach(channel_id="ch-1", offset=10)]
    with pytest.raises(w.UsageError):
        server.send(w.Attach(channel_id="ch-1", offset=10))
    with pytest.raises(w.UnexpectedMessageError):
        client.receive(w.encode(w.Attach(channel_id="ch-1", offset=10)))
    client, server = pair(CHANNEL)
    with pytest.raises(w.UnexpectedMessageError):
        client.receive(w.encode(w.Attach(channel_id="ch-2", offset=0)))
    client, server = pair(CHANNEL)
    client.send(w.Output(b"prompt$ "))  # the agent's own output does not close the window
    transfer(client, server)
    server.send(w.Attach(channel_id="ch-1", offset=0))
    assert transfer(server, client) == [w.Attach(channel_id="ch-1", offset=0)]
    client, server = pair(CHANNEL)
    client.receive(w.encode(w.Resize(cols=10, rows=10)))
    with pytest.raises(w.UnexpectedMessageError):
        client.receive(w.encode(w.Attach(channel_id="ch-1", offset=0)))


def test_user_session_events() -> None:
    client, server = pair(USER)
    client.send(w.Resume(offset=100))
    client.send(w.Input(b"sudo rm -rf /\r"))
    client.send(w.Resize(cols=90, rows=30))
    assert [type(m) for m in transfer(client, server)] == [w.Resume, w.Input, w.Resize]
    events = [
        w.CommandBlocked(command="sudo rm -rf /", reason="blocked", rule_id="r1"),
        w.MfaRequired(reason="step-up", methods=("totp",)),
        w.ApprovalPending(approval_id="a1", approvers=("alice",)),
        w.ApprovalGranted(approval_id="a1", approvers=("alice",)),
        w.ParticipantJoined(user="bob", role="observer"),
        w.ParticipantLeft(user="bob"),
        w.Output(b"done\r\n"),
        w.Terminated(reason="admin", by="root-admin"),
    ]
    for event in events:
        server.send(event)
    assert transfer(server, client) == events
    with pytest.raises(w.UsageError):
        server.send(w.Output(b"more"))


def test_auto_pong_and_opt_out() -> None:
    client, server = pair(CONTROL)
    client.send(w.Ping(nonce=5, ts=2.5))
    assert transfer(client, server) == [w.Ping(nonce=5, ts=2.5)]
    assert transfer(server, client) == [w.Pong(nonce=5, ts=2.5)]
    client, server = pair(CONTROL, auto_pong=False)
    client.send(w.Ping(nonce=5, ts=2.5))
    transfer(client, server)
    assert server.data_to_send() == []


def test_large_streams_are_split_to_fit_the_limit() -> None:
    limits = w.Limits(max_binary_size=1000)
    client, server = pair(CHANNEL, limits=limits)
    blob = bytes(range(256)) * 10
    client.send(w.Output(blob))
    payloads = client.data_to_send()
    assert len(payloads) == 3
    assert all(isinstance(p, bytes) and len(p) <= 1000 for p in payloads)
    for payload in payloads:
        server.receive(payload)
    assert b"".join(m.data for m in server.events_received()) == blob  # type: ignore[attr-defined]


def test_invalid_outgoing_messages_are_refused_without_state_change() -> None:
    client = w.Connection(CONTROL, CLIENT)
    with pytest.raises(w.UsageError) as info:
        client.send(w.Hello(agent_id="bad id", secret="s", agent_version="1", sysinfo={}))
    assert "agent_id" in str(info.value)
    assert client.state is w.State.AWAIT_HELLO
    with pytest.raises(w.UsageError):
        client.send(
            w.Hello(agent_id="a", secret="s", agent_version="1", sysinfo={}, protocol="websh/2")
        )
    assert client.data_to_send() == []
    with pytest.raises(w.UsageError):
        client.send("hello")  # type: ignore[arg-type]


def test_oversized_outgoing_text_is_refused() -> None:
    client, _server = pair(USER, limits=w.Limits(max_text_size=100))
    with pytest.raises(w.UsageError):
        client.send(w.ErrorMessage(code="x", message="m" * 200))


def test_closed_for_good_after_a_protocol_error() -> None:
    _client, server = pair(USER)
    with pytest.raises(w.DecodeError):
        server.receive("not json")
    assert server.state is w.State.CLOSED
    with pytest.raises(w.ConnectionClosedError):
        server.receive(w.encode(w.Input(b"x")))
    with pytest.raises(w.ConnectionClosedError):
        server.send(w.Output(b"x"))
    assert server.close_code == w.CloseCode.PROTOCOL_ERROR
    assert server.close_reason == "text message is not valid JSON"


def test_close_is_idempotent_and_first_code_wins() -> None:
    conn = w.Connection(USER, SERVER)
    conn.close(w.CloseCode.SESSION_TERMINATED, "terminated\nby admin")
    conn.close(w.CloseCode.NORMAL)
    assert conn.close_code == w.CloseCode.SESSION_TERMINATED
    assert conn.close_reason == "terminated?by admin"
    with pytest.raises(w.ConnectionClosedError):
        conn.receive(w.encode(HELLO[USER]))


def test_receive_helpers_check_payload_types() -> None:
    _client, server = pair(USER)
    server.receive_bytes(bytearray(b"\x01k"))
    server.receive_text(w.encode(w.Resize(cols=1, rows=1)))  # type: ignore[arg-type]
    assert len(server.events_received()) == 2
    with pytest.raises(w.UsageError):
        server.receive_text(b"\x01k")  # type: ignore[arg-type]
    with pytest.raises(w.UsageError):
        server.receive_bytes("x")  # type: ignore[arg-type]
    with pytest.raises(w.UsageError):
        server.receive(42)  # type: ignore[arg-type]
    assert server.state is w.State.OPEN  # local misuse does not close the connection
    with pytest.raises(w.UsageError):
        w.Connection("control", CLIENT)  # type: ignore[arg-type]
    assert "open" in repr(server)
