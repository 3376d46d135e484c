"""The broker's own TLS termination (broker/tlsserver.py), on uvloop and on asyncio.

Real TLS 1.3 clients on loopback against a real listening socket, with trustme
certificates made at run time; and one deterministic test that feeds the protocol every
way a stream of records can be cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import trustme
import uvloop

from broker.tlsserver import TLSConnection, TLSServer

LOOPS = ("uvloop", "asyncio")


def run(loop: str, main: Callable[[], Awaitable[None]]) -> None:
    factory = uvloop.new_event_loop if loop == "uvloop" else None
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(asyncio.wait_for(main(), 30))


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server_ctx(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


@pytest.fixture
def client_ctx(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


class App(asyncio.Protocol):
    """Records what the TLS transport tells it; echoes unless told otherwise."""

    def __init__(self, echo: bool = True) -> None:
        self.echo = echo
        self.transport: Any = None
        self.made = 0
        self.lost: list[Exception | None] = []
        self.eofs = 0
        self.received = bytearray()
        self.paused = 0
        self.resumed = 0
        self.gone = asyncio.get_running_loop().create_future()
        self.arrived = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made += 1
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert isinstance(data, bytes)
        self.received += data
        self.arrived.set()
        if self.echo:
            self.transport.write(data)

    def eof_received(self) -> bool | None:
        self.eofs += 1
        return None

    def pause_writing(self) -> None:
        self.paused += 1

    def resume_writing(self) -> None:
        self.resumed += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)
        if not self.gone.done():
            self.gone.set_result(None)


class Harness:
    """A listening TLSServer whose application protocols are kept for inspection."""

    def __init__(self, context: ssl.SSLContext, timeout: float = 60.0, echo: bool = True):
        self.apps: list[App] = []
        self.factory = TLSServer(context, self._make, handshake_timeout=timeout)
        self.echo = echo
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []
        self.port = 0

    def _make(self) -> App:
        app = App(self.echo)
        self.apps.append(app)
        return app

    async def connect(self, context: ssl.SSLContext) -> Any:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", self.port, ssl=context, server_hostname="127.0.0.1"
        )
        self.writers.append(writer)
        return reader, writer

    async def connected(self, context: ssl.SSLContext, first: bytes) -> tuple[Any, Any, App]:
        """A client connection whose ``first`` bytes the server's application has seen."""
        reader, writer = await self.connect(context)
        writer.write(first)
        while not self.apps or not self.apps[-1].received:
            await asyncio.sleep(0.01)
        return reader, writer, self.apps[-1]

    async def __aenter__(self) -> Harness:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(self.factory, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Whatever a test left open (a failed assertion) is dropped, so the loop closes."""
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        for app in self.apps:
            if app.transport is not None:
                app.transport.abort()
        await asyncio.sleep(0.01)


async def _raw_exchange(port: int, data: bytes, wait: float = 5.0) -> tuple[bytes, float]:
    """Send ``data`` on a plain TCP connection; what comes back before EOF, and how long."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    received = await asyncio.wait_for(reader.read(-1), wait)
    writer.close()
    return received, loop.time() - started


@pytest.mark.parametrize("loop", LOOPS)
def test_large_messages_both_ways_and_extra_info(
    loop: str, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    payload = os.urandom(3 * 1024 * 1024 + 7)  # many shared buffers' worth, odd size

    async def main() -> None:
        async with Harness(server_ctx) as harness:
            reader, writer = await harness.connect(client_ctx)
            writer.write(payload)
            echoed = await reader.readexactly(len(payload))
            assert echoed == payload
            (app,) = harness.apps
            transport = app.transport
            assert isinstance(transport, TLSConnection)
            assert transport.get_extra_info("sslcontext") is server_ctx
            assert transport.get_extra_info("ssl_object").version() == "TLSv1.3"
            assert transport.get_extra_info("cipher")[1] == "TLSv1.3"
            assert transport.get_extra_info("peercert") is None  # no client certificate
            client_port = writer.get_extra_info("sockname")[1]
            assert transport.get_extra_info("peername")[1] == client_port
            assert transport.get_extra_info("sockname")[1] == harness.port
            assert transport.get_extra_info("socket").getpeername()[1] == client_port
            assert transport.get_extra_info("nothing", "default") == "default"
            assert transport.get_protocol() is app
            assert not transport.can_write_eof()
            with pytest.raises(NotImplementedError):
                transport.write_eof()
            transport.writelines([b"one ", bytearray(b"two "), memoryview(b"three")])
            assert await reader.readexactly(13) == b"one two three"
            writer.close()
            await writer.wait_closed()
            await app.gone
            assert (app.made, app.lost) == (1, [None])

    run(loop, main)


@pytest.mark.parametrize("loop", LOOPS)
def test_client_close_notify_is_eof_then_one_connection_lost(
    loop: str, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    async def main() -> None:
        async with Harness(server_ctx) as harness:
            _reader, writer, app = await harness.connected(client_ctx, b"bye")
            writer.close()  # close_notify, then FIN
            await writer.wait_closed()
            await app.gone
            await asyncio.sleep(0.05)
            assert app.eofs == 1
            assert app.lost == [None]
            assert app.transport.is_closing()
            app.transport.write(b"after the end")  # ignored, as on a closed transport
            app.transport.close()
            app.transport.abort()
            assert app.lost == [None]

    run(loop, main)


@pytest.mark.parametrize("loop", LOOPS)
def test_server_close_sends_queued_data_then_close_notify(
    loop: str, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    tail = os.urandom(300_000)

    async def main() -> None:
        async with Harness(server_ctx, echo=False) as harness:
            reader, writer, app = await harness.connected(client_ctx, b"x")
            app.transport.write(tail)
            app.transport.close()
            assert app.transport.is_closing()
            # Everything written before close arrives, then a clean end (close_notify: no
            # "EOF in violation of protocol" error).
            assert await reader.read(-1) == tail
            await app.gone
            assert app.lost == [None]
            writer.close()

    run(loop, main)


@pytest.mark.parametrize("loop", LOOPS)
def test_abort_drops_the_connection_once(
    loop: str, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    async def main() -> None:
        async with Harness(server_ctx, echo=False) as harness:
            reader, writer, app = await harness.connected(client_ctx, b"x")
            app.transport.abort()
            app.transport.abort()
            with pytest.raises((ConnectionError, ssl.SSLError)):
                if await reader.read(-1) == b"":
                    raise ConnectionResetError("ended without close_notify")
            await app.gone
            assert app.lost == [None]
            writer.close()

    run(loop, main)


@pytest.mark.parametrize("loop", LOOPS)
def test_tls_12_client_is_refused_before_the_application(
    loop: str, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    client_ctx.maximum_version = ssl.TLSVersion.TLSv1_2

    async def main() -> None:
        async with Harness(server_ctx) as harness:
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await harness.connect(client_ctx)
            await asyncio.sleep(0.05)
            assert [app.made for app in harness.apps] == [0]

    run(loop, main)


@pytest.mark.parametrize("loop", LOOPS)
def test_plain_http_to_the_tls_port_is_closed(loop: str, server_ctx: ssl.SSLContext) -> None:
    async def main() -> None:
        async with Harness(server_ctx) as harness:
            request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
            received, _elapsed = await _raw_exchange(harness.port, request)
            assert b"HTTP" not in received  # at most a TLS alert record
            assert received == b"" or received[0] == 0x15  # alert
            assert [app.made for app in harness.apps] == [0]
            assert harness.apps[0].lost == []

    run(loop, main)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_stalled_handshake_is_dropped_after_the_timeout(
    loop: str, server_ctx: ssl.SSLContext
) -> None:
    async def main() -> None:
        async with Harness(server_ctx, timeout=0.3) as harness:
            hello_start = bytes.fromhex("160301020001")  # a ClientHello that never finishes
            received, elapsed = await _raw_exchange(harness.port, hello_start)
            assert received == b""
            assert 0.25 < elapsed < 3
            assert [app.made for app in harness.apps] == [0]

    run(loop, main)


@pytest.mark.parametrize("loop", LOOPS)
def test_pause_reading_holds_the_peer_back_until_resumed(
    loop: str, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    payload = os.urandom(8 * 1024 * 1024)

    async def main() -> None:
        async with Harness(server_ctx, echo=False) as harness:
            _reader, writer, app = await harness.connected(client_ctx, b"x")
            app.transport.pause_reading()
            app.transport.pause_reading()
            assert not app.transport.is_reading()
            app.received.clear()
            writer.write(payload)
            await asyncio.sleep(0.3)
            held = len(app.received)
            await asyncio.sleep(0.2)
            assert len(app.received) == held < len(payload)  # nothing more while paused
            app.transport.resume_reading()
            assert app.transport.is_reading()
            while len(app.received) < len(payload):
                await asyncio.sleep(0.01)
            assert app.received == payload
            writer.close()
            await app.gone

    run(loop, main)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_slow_reader_pauses_the_application_writing(
    loop: str, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    chunk = os.urandom(64 * 1024)

    async def main() -> None:
        async with Harness(server_ctx, echo=False) as harness:
            reader, writer, app = await harness.connected(client_ctx, b"x")
            transport = app.transport
            transport.set_write_buffer_limits(high=32 * 1024, low=8 * 1024)
            assert transport.get_write_buffer_limits() == (8 * 1024, 32 * 1024)
            sent = 0
            while not app.paused:  # the client is not reading
                transport.write(chunk)
                sent += len(chunk)
                assert sent < 64 * 1024 * 1024
            assert transport.get_write_buffer_size() > 32 * 1024
            assert app.resumed == 0
            await reader.readexactly(sent)
            while not app.resumed:
                await asyncio.sleep(0.01)
            assert (app.paused, app.resumed) == (1, 1)
            assert transport.get_write_buffer_size() <= 8 * 1024
            writer.close()
            await app.gone

    run(loop, main)


def test_the_factory_refuses_a_context_below_tls_13() -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ValueError, match=r"TLS 1\.3"):
        TLSServer(context, asyncio.Protocol)


# -- every way a record stream can be cut (no sockets, no randomness) --------------------


class Wire(asyncio.Transport):
    """The socket transport's side, in memory: what the protocol wrote, whether it closed."""

    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False

    def write(self, data: Any) -> None:
        self.out += data

    def take(self) -> bytes:
        data, self.out = bytes(self.out), bytearray()
        return data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def feed(connection: TLSConnection, data: bytes, cuts: Iterator[int]) -> None:
    """Deliver ``data`` as the socket would, in pieces ending at each offset of ``cuts``."""
    start = 0
    for end in [*cuts, len(data)]:
        piece = data[start:end]
        if piece:
            buffer = connection.get_buffer(len(piece))
            buffer[: len(piece)] = piece
            buffer[len(piece) : len(piece) + 20_000] = b"\x17" * 20_000  # stale bytes
            connection.buffer_updated(len(piece))
        start = end


def handshake(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> tuple[TLSConnection, App, Wire, ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO]:
    app = App(echo=False)
    connection = TLSServer(server_ctx, lambda: app)()
    wire = Wire()
    connection.connection_made(wire)
    c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="127.0.0.1")
    while True:
        try:
            client.do_handshake()
        except ssl.SSLWantReadError:
            pass
        else:
            break
        feed(connection, c_out.read(), iter(()))
        c_in.write(wire.take())
    feed(connection, c_out.read(), iter(()))  # the client's Finished
    c_in.write(wire.take())  # session tickets
    assert app.made == 1
    return connection, app, wire, client, c_in, c_out


async def test_records_cut_anywhere_arrive_whole_and_in_order(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    connection, app, wire, client, _c_in, c_out = handshake(server_ctx, client_ctx)
    messages = [b"k", b"hello world" * 30, bytes(range(256)) * 100]  # 1 B, 330 B, 2 records
    for message in messages:
        client.write(message)
    stream = c_out.read()
    plaintext = b"".join(messages)
    # Byte by byte, then every two-piece cut of the first record and its neighbours.
    feed(connection, stream, iter(range(1, len(stream))))
    assert app.received == plaintext
    for cut in range(1, 200):
        app.received.clear()
        for message in messages:
            client.write(message)
        feed(connection, c_out.read(), iter((cut,)))
        assert app.received == plaintext, cut
    # A close_notify cut in two is the application's EOF, then our own close_notify.
    with contextlib.suppress(ssl.SSLWantReadError):
        client.unwrap()
    closing = c_out.read()
    feed(connection, closing, iter((3,)))
    assert app.eofs == 1
    assert wire.closed and connection.is_closing()
    assert wire.take()  # our close_notify
    connection.connection_lost(None)
    connection.connection_lost(None)
    assert app.lost == [None]


async def test_a_corrupt_record_ends_the_connection_with_the_error(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    connection, app, wire, client, _c_in, c_out = handshake(server_ctx, client_ctx)
    client.write(b"secret")
    record = bytearray(c_out.read())
    record[-1] ^= 1  # the authentication tag no longer matches
    feed(connection, bytes(record), iter(()))
    assert app.received == b""
    assert wire.closed
    connection.connection_lost(None)
    assert len(app.lost) == 1 and isinstance(app.lost[0], ssl.SSLError)
    assert "secret" not in wire.take().decode("latin-1")


async def test_a_fin_without_close_notify_is_eof_and_the_end_of_writing(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    connection, app, wire, client, _c_in, c_out = handshake(server_ctx, client_ctx)
    client.write(b"last words")
    feed(connection, c_out.read(), iter(()))
    wire.take()
    assert connection.eof_received() is None  # the socket transport closes itself
    assert (app.received, app.eofs) == (b"last words", 1)
    assert connection.is_closing()
    connection.write(b"too late")
    connection.close()
    assert wire.take() == b""
    connection.connection_lost(None)
    assert app.lost == [None]


async def test_no_application_before_the_handshake_completes(
    server_ctx: ssl.SSLContext,
) -> None:
    app = App(echo=False)
    connection = TLSServer(server_ctx, lambda: app)()
    wire = Wire()
    connection.connection_made(wire)
    feed(connection, bytes.fromhex("16030100"), iter(()))  # a ClientHello's first bytes
    assert connection.eof_received() is None
    connection.connection_lost(None)
    assert (app.made, app.eofs, app.lost) == (0, 0, [])
    assert connection.get_extra_info("ssl_object") is None


async def test_nothing_is_written_to_a_socket_transport_that_is_closing(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    connection, _app, wire, *_client = handshake(server_ctx, client_ctx)
    wire.take()
    wire.closed = True  # an error closed it; connection_lost is still to come
    connection.write(b"into the void")
    assert wire.take() == b""
