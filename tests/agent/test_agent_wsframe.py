"""The sans-I/O WebSocket client against the ``websockets`` library's sans-I/O server.

``websockets.server.ServerProtocol`` is the independent implementation: it parses our
upgrade request and our masked frames, and it writes the frames we decode. Broken input
the library would never produce is built byte by byte with ``raw()``.
"""

from __future__ import annotations

import base64
import itertools
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.frames import Close as WsClose
from websockets.frames import Frame, Opcode
from websockets.protocol import State as WsState
from websockets.server import ServerProtocol
from websockets.utils import apply_mask

from agent.errors import AgentError, FrameError, HandshakeError, MessageTooLarge, TransportError
from agent.wsencode import encode_frame
from agent.wsevents import Close, Message, Ping, Pong
from agent.wsframe import ClientConnection, State
from agent.wshandshake import accept_key

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 section 1.3's example


def fixed_random(size: int) -> bytes:
    return bytes(range(1, size + 1))


def raw(first: int, payload: bytes = b"", *, mask: bytes | None = None) -> bytes:
    """One server frame with any first byte (FIN/RSV/opcode), optionally masked."""
    frame = encode_frame(first & 0x0F, payload, mask_key=mask)
    return bytes([first]) + frame[1:]


def response(key: str, *, status: str = "101 Switching Protocols", **headers: str) -> bytes:
    fields = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Accept": accept_key(key),
    }
    for name, value in headers.items():
        fields[name.replace("_", "-")] = value
    lines = [f"HTTP/1.1 {status}"] + [f"{k}: {v}" for k, v in fields.items() if v != "-"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def pair(max_size: int = 1 << 20) -> tuple[ClientConnection, ServerProtocol]:
    """A client and a websockets server, upgraded."""
    client = ClientConnection(
        "broker.test:8443", "/agent/v1/control?x=1", max_message_size=max_size
    )
    server = ServerProtocol(max_size=None)
    server.receive_data(client.data_to_send())
    [request] = server.events_received()
    server.send_response(server.accept(request))
    client.receive_data(b"".join(server.data_to_send()))
    assert client.state is State.OPEN
    return client, server


def to_client(server: ServerProtocol, client: ClientConnection) -> None:
    client.receive_data(b"".join(server.data_to_send()))


def to_server(client: ClientConnection, server: ServerProtocol) -> list[Frame]:
    server.receive_data(client.data_to_send())
    return [event for event in server.events_received() if isinstance(event, Frame)]


def sent_close(client: ClientConnection) -> WsClose:
    """Decode the close frame the client queued, with the library's parser."""
    server = ServerProtocol(max_size=None, state=WsState.OPEN)
    server.receive_data(client.data_to_send())
    [frame] = server.events_received()
    assert isinstance(frame, Frame) and frame.opcode is Opcode.CLOSE
    return WsClose.parse(frame.data)


# ---------------------------------------------------------------------- handshake


def test_accept_key_is_the_rfc_example() -> None:
    assert accept_key(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_request_is_a_valid_upgrade() -> None:
    client = ClientConnection(
        "h.test",
        "/p?q=1",
        origin="https://h.test",
        user_agent="corral-agent/9",
        urandom=fixed_random,
    )
    request = client.data_to_send().decode("ascii")
    assert request.startswith("GET /p?q=1 HTTP/1.1\r\n") and request.endswith("\r\n\r\n")
    assert "\r\nHost: h.test\r\n" in request
    assert "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" in request
    assert "\r\nSec-WebSocket-Version: 13\r\n" in request
    assert "\r\nOrigin: https://h.test\r\nUser-Agent: corral-agent/9\r\n" in request
    assert base64.b64decode(client.key) == fixed_random(16)
    assert f"\r\nSec-WebSocket-Key: {client.key}\r\n" in request
    # Keys differ per connection when they come from os.urandom.
    assert ClientConnection("h.test").key != ClientConnection("h.test").key


def test_handshake_with_websockets_server_and_leftover_frame() -> None:
    client = ClientConnection("h.test")
    server = ServerProtocol()
    server.receive_data(client.data_to_send())
    [request] = server.events_received()
    assert request.headers["Sec-WebSocket-Version"] == "13"
    server.send_response(server.accept(request))
    server.send_text(b"hello")  # arrives in the same read as the 101
    to_client(server, client)
    assert client.state is State.OPEN
    assert client.events() == [Message("hello")]


def test_response_split_byte_by_byte() -> None:
    client = ClientConnection("h.test")
    data = response(client.key, Connection="keep-alive, Upgrade", Upgrade="WebSocket")
    data += raw(0x82, b"\x00\x01")
    for i in range(len(data)):
        client.receive_data(data[i : i + 1])
    assert client.state is State.OPEN
    assert client.events() == [Message(b"\x00\x01")]


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (lambda key: response(key, Sec_WebSocket_Accept=accept_key("x" + key)), 101),
        (lambda key: response(key, Sec_WebSocket_Accept="-"), 101),
        (
            lambda key: (
                response(key)[:-2] + f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n".encode()
            ),
            101,
        ),
        (lambda key: response(key, Upgrade="h2c"), 101),
        (lambda key: response(key, Upgrade="-"), 101),
        (lambda key: response(key, Connection="keep-alive"), 101),
        (lambda key: response(key, Sec_WebSocket_Extensions="permessage-deflate"), 101),
        (lambda key: response(key, Sec_WebSocket_Protocol="chat"), 101),
        (lambda key: response(key).replace(b"HTTP/1.1", b"HTTP/1.0"), None),
        (lambda key: response(key).replace(b"101 Switching", b"1O1 Switching"), None),
        (lambda key: b"SSH-2.0-OpenSSH_9.6\r\n\r\n", None),
        (lambda key: response(key).replace(b"\r\nUpgrade:", b"\r\n Upgrade:"), 101),
        (lambda key: response(key).replace(b"Upgrade: websocket", b"Upgrade websocket"), 101),
        (lambda key: response(key, X_Bad="a\x01b"), 101),
    ],
)
def test_handshake_refused(data: object, status: int | None) -> None:
    client = ClientConnection("h.test")
    assert callable(data)
    payload: bytes = data(client.key)
    with pytest.raises(HandshakeError) as caught:
        client.receive_data(payload)
    assert caught.value.status == status
    assert client.state is State.CLOSED
    client.receive_data(raw(0x81, b"late"))  # ignored once closed
    assert client.events() == []


def test_rejection_with_body_waits_for_content_length() -> None:
    client = ClientConnection("h.test", "/agent/v1/control")
    head = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 13\r\n\r\n"
    client.receive_data(head + b"agent ")
    assert client.reject_status == 403 and client.state is State.CONNECTING
    with pytest.raises(HandshakeError, match=r"HTTP 403: agent revoked") as caught:
        client.receive_data(b"revoked")
    assert caught.value.status == 403


def test_rejection_body_is_capped_and_eof_ends_it() -> None:
    client = ClientConnection("h.test", max_reject_body=8)
    with pytest.raises(HandshakeError, match=r"HTTP 500: 01234567$"):
        client.receive_data(b"HTTP/1.1 500 Oops\r\nContent-Length: 1000\r\n\r\n0123456789abc")
    client2 = ClientConnection("h.test")
    client2.receive_data(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 100\r\n\r\nshort")
    with pytest.raises(HandshakeError, match=r"HTTP 502: short$"):
        client2.receive_data(b"")
    assert client.state is State.CLOSED


def test_rejection_without_length_raises_at_once() -> None:
    client = ClientConnection("h.test")
    with pytest.raises(HandshakeError, match=r"HTTP 404$") as caught:
        client.receive_data(b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert caught.value.status == 404


@pytest.mark.parametrize("length", ["\xb2", "-1", "1e3", "99999999999999999999999"])
def test_rejection_with_odd_content_length(length: str) -> None:
    client = ClientConnection("h.test", max_reject_body=8)
    head = f"HTTP/1.1 403 No\r\nContent-Length: {length}\r\n\r\n".encode("latin-1")
    with pytest.raises(HandshakeError, match="HTTP 403"):
        client.receive_data(head + b"x" * 10)


def test_eof_during_upgrade() -> None:
    client = ClientConnection("h.test")
    client.receive_data(b"HTTP/1.1 101 Switching")
    with pytest.raises(HandshakeError, match="closed the connection during the upgrade"):
        client.receive_data(b"")


def test_response_header_size_cap() -> None:
    client = ClientConnection("h.test", max_header_size=256)
    with pytest.raises(HandshakeError, match="over 256 bytes"):
        client.receive_data(b"HTTP/1.1 101 OK\r\nX: " + b"a" * 300)
    client = ClientConnection("h.test", max_header_size=256)
    with pytest.raises(HandshakeError, match="over 256 bytes"):
        client.receive_data(response(client.key, X_Pad="b" * 300))


@pytest.mark.parametrize(
    ("host", "target"), [("h.test\r\nX: y", "/"), ("h.test", "/a b"), ("", "/"), ("h", "")]
)
def test_request_injection_refused(host: str, target: str) -> None:
    with pytest.raises(TransportError):
        ClientConnection(host, target)
    with pytest.raises(TransportError):
        ClientConnection("h.test", "/", user_agent="a\r\nX-Injected: 1")


# ---------------------------------------------------------------------- frames


@pytest.mark.parametrize(
    "size", [0, 1, 125, 126, 127, 16383, 16384, 16387, 65535, 65536, 65537, 300_000]
)
def test_round_trip_both_directions(size: int) -> None:
    """Both masking methods (big-integer XOR below 16 KiB, translate above) included."""
    client, server = pair()
    data = bytes(i % 251 for i in range(size))
    text = "é" * (size // 2)
    client.send(data)
    client.send(text)
    frames = to_server(client, server)  # the library refuses unmasked client frames
    assert [(f.opcode, f.data, f.fin) for f in frames] == [
        (Opcode.BINARY, data, True),
        (Opcode.TEXT, text.encode(), True),
    ]
    server.send_binary(data)
    server.send_text(text.encode())
    to_client(server, client)
    assert client.events() == [Message(data), Message(text)]


def test_client_frames_are_masked_with_fresh_keys() -> None:
    keys = iter([b"\x00" * 16, b"\x01\x02\x03\x04", b"\xff\xfe\xfd\xfc"])
    client = ClientConnection("h", urandom=lambda n: next(keys))
    client.receive_data(response(client.key))
    client.data_to_send()
    client.send(b"abcdef")
    client.send(b"abcdef")
    first, second = client.data_to_send().split(b"\x82\x86")[1:]
    assert first[:4] == b"\x01\x02\x03\x04" and second[:4] == b"\xff\xfe\xfd\xfc"
    assert first[4:] != b"abcdef" and first[4:] != second[4:]
    assert (
        bytes(b ^ k for b, k in zip(first[4:], b"\x01\x02\x03\x04\x01\x02", strict=True))
        == b"abcdef"
    )


def test_encode_frame_matches_websockets_serialize() -> None:
    for size in (0, 5, 125, 126, 65535, 65536):
        payload = b"x" * size
        ours = encode_frame(0x2, payload, fin=False)
        theirs = Frame(Opcode.BINARY, payload, fin=False).serialize(mask=False)
        assert ours == theirs


def test_masking_matches_websockets_serialize_across_chunk_edges() -> None:
    """Small payloads are masked as one big integer, large ones one key byte (every
    fourth payload byte) at a time into the frame; every size around the switch, odd
    tails and every header length still get the key repeated from the payload's first
    byte."""
    key = b"\x9a\x03\xf1\x5c"
    for size in (1, 3, 125, 126, 4095, 4096, 4097, 8191, 8195, 65535, 65536, 65539, 70001):
        payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
        head = encode_frame(0x2, b"", mask_key=key)[:2]
        frame = encode_frame(0x2, payload, mask_key=key)
        masked = frame[frame.index(key, len(head)) + 4 :]
        assert len(masked) == size
        assert apply_mask(masked, key) == payload, size


def test_fragmented_message_with_interleaved_ping() -> None:
    client, server = pair()
    server.send_text("naï".encode()[:3], fin=False)  # split inside "ï"
    server.send_ping(b"p1")
    server.send_continuation("naïve".encode()[3:], fin=True)
    server.send_binary(b"a", fin=False)
    server.send_continuation(b"b", fin=False)
    server.send_continuation(b"c", fin=True)
    to_client(server, client)
    assert client.events() == [Ping(b"p1"), Message("naïve"), Message(b"abc")]
    [pong] = to_server(client, server)
    assert (pong.opcode, pong.data) == (Opcode.PONG, b"p1")


def test_pong_event() -> None:
    client, server = pair()
    server.send_pong(b"x")
    to_client(server, client)
    assert client.events() == [Pong(b"x")]
    assert client.data_to_send() == b""


def test_server_initiated_close() -> None:
    client, server = pair()
    server.send_close(4010, "replaced")
    to_client(server, client)
    assert client.events() == [Close(4010, "replaced")]
    assert client.state is State.CLOSED
    [echo] = to_server(client, server)
    assert WsClose.parse(echo.data).code == 4010
    with pytest.raises(TransportError):
        client.send("too late")


def test_close_without_code() -> None:
    client, _ = pair()
    client.receive_data(raw(0x88))
    assert client.events() == [Close(1005, "")]
    assert client.data_to_send()[:2] == b"\x88\x80"  # echoed without a code, masked


def test_client_initiated_close_handshake() -> None:
    client, server = pair()
    client.close(4013, "h" * 200)  # reason cut to 123 bytes
    assert client.state is State.CLOSING
    [frame] = to_server(client, server)
    close = WsClose.parse(frame.data)
    assert (close.code, close.reason) == (4013, "h" * 123)
    to_client(server, client)  # the library echoed our close
    assert client.events() == [Close(4013, "h" * 123)]
    assert client.state is State.CLOSED
    client2, server2 = pair()
    client2.close(1000, "é" * 100)  # never cuts a character in half
    close2 = WsClose.parse(to_server(client2, server2)[0].data)
    assert close2.reason == "é" * 61
    # Data may still arrive until the server's close frame (raw: the library would not).
    client2.receive_data(raw(0x81, b"late") + raw(0x88, struct.pack("!H", 1000)))
    assert client2.events() == [Message("late"), Close(1000, "")]
    assert client2.state is State.CLOSED and client2.data_to_send() == b""
    with pytest.raises(TransportError):
        client2.close()


def test_close_code_one_may_not_send() -> None:
    client, _ = pair()
    for code in (999, 1005, 1006, 1015, 5000):
        with pytest.raises(TransportError):
            client.close(code)
    assert client.state is State.OPEN


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (raw(0x81, b"hi", mask=b"abcd"), 1002),  # the server masked a frame
        (raw(0xC1, b"hi"), 1002),  # RSV1
        (raw(0xA2, b"hi"), 1002),  # RSV2
        (raw(0x92, b"hi"), 1002),  # RSV3
        (raw(0x83, b"hi"), 1002),  # reserved data opcode
        (raw(0x8B, b""), 1002),  # reserved control opcode
        (raw(0x09, b"p"), 1002),  # fragmented ping
        (raw(0x89, b"p" * 126), 1002),  # control frame over 125 bytes
        (raw(0x80, b"x"), 1002),  # continuation without a message
        (raw(0x01, b"a") + raw(0x82, b"b"), 1002),  # new message inside a fragmented one
        (raw(0x88, b"\x03"), 1002),  # 1-byte close payload
        (raw(0x88, struct.pack("!H", 999)), 1002),
        (raw(0x88, struct.pack("!H", 1005)), 1002),
        (raw(0x88, struct.pack("!H", 1006)), 1002),
        (raw(0x88, struct.pack("!H", 5000)), 1002),
        (raw(0x88, struct.pack("!H", 1000) + b"\xff"), 1007),
        (raw(0x81, b"\xc3\x28"), 1007),  # invalid UTF-8
        (raw(0x81, b"\xed\xa0\x80"), 1007),  # a UTF-16 surrogate
        (raw(0x01, b"\xe2\x82") + raw(0x80, b"\x28"), 1007),  # broken across fragments
        (b"\x81\x7f" + (1 << 63).to_bytes(8, "big"), 1002),  # 64-bit length, top bit set
    ],
)
def test_protocol_violations_close_with_code(frame: bytes, code: int) -> None:
    client, _ = pair()
    with pytest.raises(FrameError) as caught:
        client.receive_data(frame)
    assert caught.value.code == code
    assert sent_close(client).code == code
    assert client.state is State.CLOSED
    client.receive_data(raw(0x81, b"ignored"))
    assert client.events() == []


def test_size_cap_before_payload_is_buffered() -> None:
    client, server = pair(max_size=1000)
    server.send_binary(b"x" * 1000)
    to_client(server, client)
    assert client.events() == [Message(b"x" * 1000)]
    # The header alone announces too much: refused without waiting for the payload.
    with pytest.raises(MessageTooLarge) as caught:
        client.receive_data(b"\x82\x7e" + (1001).to_bytes(2, "big"))
    assert caught.value.code == 1009 and sent_close(client).code == 1009
    client, server = pair(max_size=1000)
    with pytest.raises(MessageTooLarge):
        client.receive_data(b"\x82\x7f" + (1 << 40).to_bytes(8, "big"))


def test_small_binary_frames_whole_split_or_together() -> None:
    """One whole small binary frame per read (a keystroke) is taken without buffering;
    the same frames split across reads, several in one read, a text frame, a fragmented
    message and an oversized one still go through the full parser, in order."""
    client, _ = pair(max_size=3)
    client.receive_data(b"\x82\x01k")
    client.receive_data(b"\x82\x00")
    frame = b"\x82\x02ab"
    for byte in frame:
        client.receive_data(bytes([byte]))
    client.receive_data(frame + b"\x81\x02hi" + b"\x02\x01x" + b"\x80\x01y")
    assert client.events() == [
        Message(b"k"),
        Message(b""),
        Message(b"ab"),
        Message(b"ab"),
        Message("hi"),
        Message(b"xy"),
    ]
    with pytest.raises(MessageTooLarge):
        client.receive_data(b"\x82\x04abcd")
    assert sent_close(client).code == 1009


def test_size_cap_counts_fragments() -> None:
    client, server = pair(max_size=1000)
    server.send_text(b"a" * 600, fin=False)
    server.send_ping(b"")
    server.send_continuation(b"a" * 401, fin=True)
    with pytest.raises(MessageTooLarge, match="over 1000 bytes"):
        to_client(server, client)


def test_eof_after_open_closes_quietly() -> None:
    client, _ = pair()
    client.receive_data(b"\x81\x05hel")  # a partial frame is dropped
    client.receive_data(b"")
    assert client.state is State.CLOSED and client.events() == []


def test_send_before_open_is_refused() -> None:
    client = ClientConnection("h.test")
    with pytest.raises(TransportError):
        client.send("early")
    with pytest.raises(TransportError):
        client.ping(b"")


# ---------------------------------------------------------------------- fuzzing

VALID_FRAMES = [
    raw(0x81, b"text"),
    raw(0x82, bytes(200)),
    raw(0x01, b"par") + raw(0x80, b"t"),
    raw(0x89, b"ping"),
    raw(0x8A, b""),
    raw(0x88, struct.pack("!H", 1000) + b"bye"),
    b"\x82\x7e\x01\x00" + bytes(256),
]


def feed(client: ClientConnection, chunks: list[bytes]) -> None:
    for chunk in chunks:
        try:
            client.receive_data(chunk)
        except AgentError:
            assert client.state is State.CLOSED
            return
        client.events()
        client.data_to_send()


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges) if b > a]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    prefix=st.lists(st.sampled_from(VALID_FRAMES), max_size=4),
    noise=st.binary(max_size=300),
    cut=st.integers(min_value=0, max_value=4000),
    cuts=st.lists(st.integers(min_value=0, max_value=5000), max_size=6),
    eof=st.booleans(),
)
def test_fuzz_frames(
    prefix: list[bytes], noise: bytes, cut: int, cuts: list[int], eof: bool
) -> None:
    client, _ = pair(max_size=512)
    stream = (b"".join(prefix) + noise)[: cut or None]
    feed(client, [*chunked(stream, cuts), *([b""] if eof else [])])


@settings(max_examples=300, deadline=None)
@given(
    head=st.binary(max_size=200),
    mutate=st.lists(st.tuples(st.integers(0, 300), st.integers(0, 255)), max_size=4),
    tail=st.binary(max_size=50),
    cuts=st.lists(st.integers(min_value=0, max_value=500), max_size=4),
    eof=st.booleans(),
)
def test_fuzz_handshake(
    head: bytes, mutate: list[tuple[int, int]], tail: bytes, cuts: list[int], eof: bool
) -> None:
    client = ClientConnection("h.test", max_header_size=256, max_message_size=64)
    data = bytearray(response(client.key) if not head else head + b"\r\n\r\n")
    for index, value in mutate:
        if data:
            data[index % len(data)] = value
    feed(client, [*chunked(bytes(data) + tail, cuts), *([b""] if eof else [])])


@settings(max_examples=50, deadline=None)
@given(size=st.integers(min_value=0, max_value=100_000), chunk=st.integers(1, 70_000))
def test_fuzz_oversized_terminates(size: int, chunk: int) -> None:
    client, _ = pair(max_size=4096)
    data = b"\x82\x7f" + size.to_bytes(8, "big") + bytes(min(size, 20_000))
    feed(client, [data[i : i + chunk] for i in range(0, len(data), chunk)])
    if size > 4096:
        assert client.state is State.CLOSED
