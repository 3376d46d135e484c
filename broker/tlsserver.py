"""TLS 1.3 for the broker's listening socket, terminated in one lean object per connection.

The event loops' own TLS costs too much per idle connection for a broker that holds
thousands of agents: uvloop's ``SSLProtocol`` allocates a 256 KiB read buffer per
connection (only the pages a read touched are resident at first, but a buffer recycled by
``malloc`` is resident in full) plus a transport object, deques and Cython state; asyncio's
zero-fills its buffer. With 1,000 idle agents that was ~42 KiB per connection on top of
the plain-WebSocket figure (``benchmarks/idle_agents.py``).

Here the server runs without ``ssl=`` and every accepted socket gets a
:class:`TLSConnection`: it is the socket transport's ``BufferedProtocol`` and, once the
handshake is done, the ``Transport`` that the application protocol (uvicorn's HTTP
protocol, then ``broker/websocket/``) writes to. TLS runs over two ``ssl.MemoryBIO``\\ s,
as in ``agent/transport.py``:

* Ciphertext is received into ONE buffer shared by every connection of the process: each
  ``buffer_updated`` moves it into the connection's incoming BIO before returning, and the
  loop runs nothing else in between, so no connection ever sees another's bytes.
* The records complete in that read are decrypted into a second shared buffer and handed
  to the application as one ``bytes`` (one copy, one ``data_received``). Decrypting stops
  when the BIO is drained, so a read of whole records (a keystroke) raises no
  ``SSLWantReadError``; one is raised per slice that ends inside a record (``_receive``).
* Each application ``write`` is encrypted and written with one ``transport.write``.
  Back-pressure is the socket transport's: its ``pause_writing``/``resume_writing`` are
  passed to the application, and its buffer size and limits are the ones reported and set.

It must never hand the application a byte before the handshake is complete, offer less
than TLS 1.3 (the factory refuses such a context), tell the application
``connection_lost`` twice or without ``connection_made``, or send the peer anything but
TLS records (an OpenSSL error ends the connection after its alert, if any).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["HANDSHAKE_TIMEOUT", "TLSConnection", "TLSServer"]

#: Seconds a client has to complete the handshake (asyncio's default) before it is dropped.
HANDSHAKE_TIMEOUT = 60.0
#: Ciphertext taken per socket read, and plaintext handed over per ``data_received``.
_CHUNK = 256 * 1024
#: Reads up to _SMALL_READ enter the incoming BIO _SLICE bytes at a time, larger ones
#: _RECORD at a time (see TLSConnection._receive).
_SLICE = 1024
_SMALL_READ = 8 * 1024
_RECORD = 16 * 1024

# Shared by all connections; see the module docstring for why that is safe.
_CIPHER = memoryview(bytearray(_CHUNK))
_PLAIN = memoryview(bytearray(_CHUNK))

_HANDSHAKE, _OPEN, _LOST = 0, 1, 2


class TLSServer:
    """A protocol factory for ``loop.create_server``: what ``inner`` makes, over TLS 1.3.

    ``inner`` is called with the factory's arguments for every accepted connection (so it
    can stand in for uvicorn's ``http_protocol_class``).
    """

    __slots__ = ("_context", "_handshake_timeout", "_inner")

    def __init__(
        self,
        context: ssl.SSLContext,
        inner: Callable[..., asyncio.BaseProtocol],
        *,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
    ) -> None:
        if context.minimum_version < ssl.TLSVersion.TLSv1_3:
            raise ValueError("the broker's TLS context must require TLS 1.3")
        self._context = context
        self._inner = inner
        self._handshake_timeout = handshake_timeout

    def __call__(self, *args: Any, **kwargs: Any) -> TLSConnection:
        app = self._inner(*args, **kwargs)
        return TLSConnection(self._context, app, self._handshake_timeout)


class TLSConnection(asyncio.BufferedProtocol, asyncio.Transport):
    """One TLS connection: protocol of the socket transport, transport of the application.

    One object plays both parts (rather than a protocol and a transport facade) because it
    is kept for every idle agent; the two interfaces share no method name.
    """

    __slots__ = (
        "_app",
        "_closing",
        "_context",
        "_error",
        "_incoming",
        "_outgoing",
        "_paused",
        "_sslobj",
        "_state",
        "_timeout",
        "_timer",
        "_tls",
        "_transport",
    )

    def __init__(
        self, context: ssl.SSLContext, app: asyncio.BaseProtocol, handshake_timeout: float
    ) -> None:
        super().__init__()
        self._context = context
        self._app: Any = app
        self._timeout = handshake_timeout
        self._state = _HANDSHAKE
        self._closing = False
        self._paused = False
        self._error: BaseException | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._transport: Any = None
        self._tls: ssl.SSLObject | None = None
        self._sslobj: Any = None  # the C object behind ``_tls``: one call less per record
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()

    # -- protocol of the socket transport --------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        tls = self._context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._tls = tls
        # ``SSLObject``'s C object answers the same calls a Python frame sooner; a Python
        # without it (the attribute is private) gets the public wrapper, slower, same result.
        self._sslobj = getattr(tls, "_sslobj", tls)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._timeout, self._handshake_timed_out)

    def get_buffer(self, sizehint: int) -> memoryview:
        return _CIPHER

    def buffer_updated(self, nbytes: int) -> None:
        if self._state == _OPEN:
            self._receive(nbytes)
        elif self._state == _HANDSHAKE:
            self._incoming.write(_CIPHER[:nbytes])
            self._handshake()

    def eof_received(self) -> bool | None:
        """The peer's FIN. TLS has no half-close: tell the application, then close."""
        if self._state == _OPEN and not self._closing:
            self._app.eof_received()
        self._closing = True  # later writes would reach a closed socket transport
        return None  # the socket transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        state, self._state = self._state, _LOST
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._tls = self._sslobj = None  # OpenSSL's state goes now, not with the app's refs
        if state == _OPEN:
            error = self._error
            self._app.connection_lost(error if error is not None else exc)

    def pause_writing(self) -> None:
        if self._state == _OPEN:
            self._app.pause_writing()

    def resume_writing(self) -> None:
        if self._state == _OPEN:
            self._app.resume_writing()

    # -- TLS ---------------------------------------------------------------------------------

    def _handshake(self) -> None:
        try:
            self._sslobj.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        except (ssl.SSLError, OSError):
            self._flush()  # OpenSSL's alert, if it wrote one; never its message
            self._closing = True
            self._transport.close()
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._state = _OPEN
        self._flush()  # the session tickets
        self._app.connection_made(self)
        if self._incoming.pending and not self._closing:  # records right behind the handshake
            self._receive(0)

    def _handshake_timed_out(self) -> None:
        self._timer = None
        if self._state == _HANDSHAKE:
            self._closing = True
            self._transport.abort()

    def _receive(self, nbytes: int) -> None:
        """Decrypt ``nbytes`` of the shared buffer and hand the plaintext over in one piece.

        The ciphertext enters the BIO a slice at a time: a memory BIO keeps the capacity of
        its largest write for the life of the connection, and OpenSSL takes a partial record
        out of it into its own buffer (released once the record is complete), so small
        slices keep an idle agent's BIO small after its 2 KB hello. Bulk reads use slices
        of a record, which still bounds the BIO without a decryption attempt per KiB.
        """
        incoming = self._incoming
        step = _SLICE if nbytes <= _SMALL_READ else _RECORD
        filled = start = 0
        while True:
            if start < nbytes:
                end = min(start + step, nbytes)
                incoming.write(_CIPHER[start:end])
                start = end
            filled = self._decrypt(filled)
            if filled < 0:
                return
            if start >= nbytes:
                break
            if self._paused or self._closing:
                incoming.write(_CIPHER[start:nbytes])  # kept for resume_reading
                break
        self._deliver(filled)
        if self._outgoing.pending:  # what OpenSSL had to answer (a key update)
            self._flush()

    def _decrypt(self, filled: int) -> int:
        """Decrypt the complete records in the BIO into the shared plaintext buffer after
        ``filled`` bytes (handed over whenever it is full); the bytes now in it, or -1 once
        the connection ended (close_notify, or a TLS error)."""
        read = self._sslobj.read
        incoming = self._incoming
        while True:
            try:
                count = read(_CHUNK - filled, _PLAIN[filled:])
            except ssl.SSLWantReadError:
                return filled  # the rest of a record is still on its way
            except ssl.SSLError as exc:
                self._deliver(filled)
                self._fail(exc)
                return -1
            if count == 0:  # close_notify
                self._deliver(filled)
                self._peer_closed()
                return -1
            filled += count
            if filled == _CHUNK:
                self._deliver(filled)
                filled = 0
                if self._paused or self._closing:
                    return 0  # resume_reading drains the rest
            elif not incoming.pending and not self._sslobj.pending():
                return filled

    def _deliver(self, size: int) -> None:
        if size and not self._closing:
            self._app.data_received(_PLAIN[:size].tobytes())

    def _drain(self) -> None:
        """After ``resume_reading``: records that arrived while the application was paused."""
        if self._state == _OPEN and not self._paused and not self._closing:
            self._receive(0)

    def _peer_closed(self) -> None:
        if self._closing:
            return
        if not self._app.eof_received():
            self.close()

    def _fail(self, exc: ssl.SSLError) -> None:
        self._error = exc
        self._flush()
        self.abort()

    def _flush(self) -> None:
        outgoing = self._outgoing
        if outgoing.pending and not self._transport.is_closing():
            self._transport.write(outgoing.read())

    # -- transport of the application --------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        transport = self._transport
        # The socket transport may be closing on an error whose connection_lost is still
        # to come (uvloop raises on a write to a closed handle): the bytes have nowhere to go.
        if self._closing or not data or transport.is_closing():
            return
        try:
            self._sslobj.write(data)
        except ssl.SSLError as exc:
            self._fail(exc)
            return
        transport.write(self._outgoing.read())

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        self.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        raise NotImplementedError("TLS has no half-close")

    def close(self) -> None:
        """Send close_notify after what is queued, then close the socket once it is out."""
        if self._closing:
            return
        self._closing = True
        # SSLWantReadError: our close_notify is written; the peer's is not awaited.
        tls = self._tls
        with contextlib.suppress(ssl.SSLError, OSError, ValueError):
            if tls is not None:  # None: lost already
                tls.unwrap()
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._closing = True
        if self._state != _LOST:
            self._transport.abort()

    def is_closing(self) -> bool:
        return self._closing

    def pause_reading(self) -> None:
        if not self._paused and not self._closing:
            self._paused = True
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._paused and not self._closing:
            self._paused = False
            self._transport.resume_reading()
            if self._incoming.pending or self._sslobj.pending():
                asyncio.get_running_loop().call_soon(self._drain)

    def is_reading(self) -> bool:
        return not self._paused and not self._closing

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        limits: tuple[int, int] = self._transport.get_write_buffer_limits()
        return limits

    def get_write_buffer_size(self) -> int:
        size: int = self._transport.get_write_buffer_size()
        return size

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._app = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        protocol: asyncio.BaseProtocol = self._app
        return protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        tls = self._tls
        if name == "sslcontext":
            return self._context
        if name in ("ssl_object", "peercert", "cipher", "compression"):
            if tls is None:
                return default
            if name == "ssl_object":
                return tls
            return getattr(tls, "getpeercert" if name == "peercert" else name)()
        if self._transport is None:
            return default
        return self._transport.get_extra_info(name, default)
