"""A non-blocking TCP stream, TLS 1.3 over memory BIOs when asked: bytes in, bytes out.

The agent's WebSocket client (``agent.transport``) sits on this: it connects TCP (with
keepalive, so a broker host that vanished is noticed), runs the TLS handshake, encrypts
and writes what the WebSocket layer hands it, and reads, decrypts and hands back what
arrives (``_feed``). Everything is driven by the agent's epoll loop, never blocking.

TLS runs over memory BIOs (``SSLContext.wrap_bio``), as asyncio's does: the socket is
read and written here, in one system call each way, instead of by OpenSSL (which reads a
record's header and body separately and writes each 16 KiB record on its own). Bytes are
written at once when nothing is queued; only what the kernel does not take waits, as it
was made (no copy), for ``_flush``. ``buffered_amount`` is that queue, the input to the
channels' flow control.

``SocketStream`` is a base class: the WebSocket layer defines ``_start_upgrade`` (the
stream is connected) and ``_feed`` (bytes arrived; ``b""`` is the end), and drives the
phases after ``TLS``. It is a base class rather than a member so that the output and
input paths (a keystroke's echo, a stream's 64 KiB) call these methods exactly as they
did when they were one class: no extra call or attribute lookup per message.

This module must never block on the network after ``connect()`` (DNS is the one
blocking step), never accept a certificate it cannot verify, never offer less than
TLS 1.3, and never copy a queued chunk to append or trim it.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import errno
import itertools
import socket
import ssl

from agent.errors import TransportError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Union

    Chunk = Union[bytes, bytearray, memoryview]

__all__ = ["Phase", "SocketStream", "client_ssl_context"]

#: One ``recv`` takes up to this much (the broker sends keystrokes and small control
#: messages); a shorter read means the socket is drained (the selector is
#: level-triggered, so anything arriving later is reported again).
_READ_SIZE = 65536
#: Larger than any TLS record's plaintext, so one ``SSLObject.read`` returns a whole record.
_RECORD_READ = 65536
#: A TLS record's largest plaintext: what enters the outgoing memory BIO at a time.
_RECORD_PLAIN = 16384
#: At most this many queued chunks per ``sendmsg`` (records of 16 KiB: 1 MiB).
_FLUSH_CHUNKS = 64


def client_ssl_context(ca_file: str | None = None) -> ssl.SSLContext:
    """TLS 1.3 only, certificate and hostname verified (system CAs, or ``ca_file`` only)."""
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise TransportError(f"cannot load CA file {ca_file!r}: {exc}") from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


class Phase(enum.Enum):
    """Where the client is; ``CLOSED`` is final.

    The stream drives ``NEW`` -> ``CONNECTING`` -> ``TLS``; the WebSocket layer
    ``UPGRADE`` -> ``OPEN`` -> ``CLOSING``; either may end in ``CLOSED``.
    """

    NEW = "new"
    CONNECTING = "connecting"  # TCP connect in progress
    TLS = "tls"  # TLS handshake in progress
    UPGRADE = "upgrade"  # HTTP upgrade sent, waiting for 101
    OPEN = "open"
    CLOSING = "closing"  # close frame sent or received, finishing
    CLOSED = "closed"


class SocketStream:
    """One non-blocking TCP connection, TLS when ``tls``; the WebSocket client's base.

    ``ssl_context`` is used when ``tls`` (default: ``client_ssl_context(ca_file)``);
    ``clock`` (monotonic seconds) is injected so timeouts are testable.
    """

    def __init__(
        self,
        host: str,
        port: int,
        netloc: str,
        *,
        tls: bool,
        ca_file: str | None,
        ssl_context: ssl.SSLContext | None,
        connect_timeout: float,
        clock: Callable[[], float],
    ) -> None:
        self._host = host
        self._port = port
        self._netloc = netloc
        self._tls = tls
        self._ssl_context = ssl_context
        self._ca_file = ca_file
        self._connect_timeout = connect_timeout
        self._clock = clock
        self._sock: socket.socket | None = None
        self._tls_object: ssl.SSLObject | None = None
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        #: Chunks for the wire (TLS records when TLS) that the kernel has not taken yet,
        #: kept as they were made: a ``bytearray`` appended to at the back and cut at the
        #: front reallocated (and over-allocated) its up to 192 KiB on most writes.
        self._out: collections.deque[Chunk] = collections.deque()
        self._queued = 0
        #: When ``check_timeouts`` has work (the connect, later the closing handshake).
        self._deadline: float | None = None
        self.phase = Phase.NEW
        #: Monotonic time of the last bytes received (for heartbeat supervision).
        self.last_received = clock()

    def fileno(self) -> int:
        if self._sock is None:
            raise TransportError("not connected")
        return self._sock.fileno()

    @property
    def closed(self) -> bool:
        return self.phase is Phase.CLOSED

    @property
    def wants_write(self) -> bool:
        if self.phase is Phase.CONNECTING:
            return True
        return bool(self._out) and self.phase is not Phase.CLOSED

    @property
    def buffered_amount(self) -> int:
        """Bytes queued but not yet accepted by the kernel (for flow control)."""
        return self._queued

    def connect(self) -> None:
        """Resolve the host and start a non-blocking TCP connect."""
        if self.phase is not Phase.NEW:
            raise TransportError("connect() called twice")
        if self._tls and self._ssl_context is None:
            self._ssl_context = client_ssl_context(self._ca_file)
        try:
            infos = socket.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise TransportError(f"cannot resolve {self._host!r}: {exc}") from exc
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            # A broker host that vanished is found by the kernel in about a minute, as
            # the broker finds a vanished agent (its listening socket has the same timers).
            for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
                option = getattr(socket, name, None)
                if option is not None:
                    sock.setsockopt(socket.IPPROTO_TCP, option, value)
        except OSError:
            pass
        self._sock = sock
        self._deadline = self._clock() + self._connect_timeout
        self.phase = Phase.CONNECTING
        err = sock.connect_ex(address)
        if err not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
            self.abort()
            raise TransportError(f"cannot connect to {self._netloc}: {errno.errorcode.get(err)}")

    def abort(self) -> None:
        """Drop the socket now (and whatever was queued for it)."""
        self.phase = Phase.CLOSED
        self._deadline = None
        self._out.clear()
        self._queued = 0
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()

    # -- the layer above ----------------------------------------------------------------

    def _start_upgrade(self) -> None:
        """The stream is connected (and TLS is up): start what runs on it."""
        raise NotImplementedError

    def _feed(self, data: bytes) -> None:
        """Bytes arrived (plaintext); ``b""`` is the end of the stream."""
        raise NotImplementedError

    # -- connecting -----------------------------------------------------------------------

    def _fail(self, message: str, exc: BaseException | None = None) -> TransportError:
        self.abort()
        error = TransportError(message)
        if exc is not None:
            error.__cause__ = exc
        return error

    def _finish_tcp_connect(self) -> None:
        assert self._sock is not None
        err = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise self._fail(f"cannot connect to {self._netloc}: {errno.errorcode.get(err, err)}")
        if self._tls:
            assert self._ssl_context is not None
            try:
                self._tls_object = self._ssl_context.wrap_bio(
                    self._incoming, self._outgoing, server_hostname=self._host
                )
            except (OSError, ssl.SSLError) as exc:
                raise self._fail(f"TLS setup for {self._netloc} failed: {exc}", exc) from exc
            self.phase = Phase.TLS
            self._tls_handshake()
        else:
            self._start_upgrade()

    def _tls_handshake(self) -> None:
        tls = self._tls_object
        assert tls is not None
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            self._send_records()
            return
        except ssl.SSLCertVerificationError as exc:
            detail = exc.verify_message or exc.reason or "certificate not trusted"
            raise self._fail(f"TLS certificate of {self._netloc} rejected: {detail}", exc) from exc
        except (ssl.SSLError, OSError) as exc:
            detail = str(getattr(exc, "reason", None) or exc)
            raise self._fail(f"TLS handshake with {self._netloc} failed: {detail}", exc) from exc
        self._send_records()
        self._start_upgrade()

    # -- bytes out: plaintext -> TLS records -> the socket ---------------------------

    def _send_wire(self, data: bytes | bytearray) -> None:
        """Encrypt (under TLS) and write ``data``, queueing what the kernel does not take."""
        if not data:
            return
        if self._tls_object is not None:
            self._send_encrypted(data)
        else:
            self._write([data])

    def _send_encrypted(self, data: bytes | bytearray) -> None:
        """Encrypt ``data`` a record at a time and write the records with one ``sendmsg``.

        A memory BIO keeps the capacity of the most it ever held for the connection's life:
        a 64 KiB output message written at once would leave every streaming channel's
        outgoing BIO at 64 KiB for good. Taking each record out as soon as it is made keeps
        it at one record (as ``broker/tlsserver.py`` slices what enters its incoming BIO).
        """
        tls = self._tls_object
        assert tls is not None
        outgoing = self._outgoing
        if len(data) <= _RECORD_PLAIN:  # one record (an echo): no slicing, no loop
            try:
                tls.write(data)
            except ssl.SSLError as exc:
                raise self._fail(f"TLS with {self._netloc} failed: {exc}", exc) from exc
            self._write([outgoing.read()])
            return
        view = memoryview(data)
        records: list[Chunk] = []
        try:
            for at in range(0, len(view), _RECORD_PLAIN):
                tls.write(view[at : at + _RECORD_PLAIN])
                records.append(outgoing.read())
        except ssl.SSLError as exc:
            raise self._fail(f"TLS with {self._netloc} failed: {exc}", exc) from exc
        self._write(records)

    def _send_records(self) -> None:
        """Move the TLS records OpenSSL produced to the socket (or behind the queue)."""
        if self._outgoing.pending:
            self._write([self._outgoing.read()])

    def _write(self, chunks: list[Chunk]) -> None:
        """Write ``chunks`` with one ``sendmsg`` if nothing is queued, else queue them;
        queue what the kernel did not take."""
        if self._out:
            self._queue(chunks, 0)
            return
        assert self._sock is not None
        try:
            sent = self._sock.sendmsg(chunks)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            raise self._fail(f"connection to {self._netloc} lost: {exc}", exc) from exc
        self._queue(chunks, sent)

    def _queue(self, chunks: list[Chunk], sent: int) -> None:
        """Queue ``chunks`` less their first ``sent`` bytes, as they are (no copy)."""
        for chunk in chunks:
            size = len(chunk)
            if sent >= size:
                sent -= size
                continue
            self._out.append(memoryview(chunk)[sent:] if sent else chunk)
            self._queued += size - sent
            sent = 0

    def _flush(self) -> None:
        """Write queued chunks until the kernel stops taking them (``_FLUSH_CHUNKS`` a call)."""
        sock = self._sock
        assert sock is not None
        out = self._out
        while out:
            try:
                sent = sock.sendmsg(list(itertools.islice(out, _FLUSH_CHUNKS)))
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                raise self._fail(f"connection to {self._netloc} lost: {exc}", exc) from exc
            self._queued -= sent
            while sent:
                size = len(out[0])
                if sent < size:
                    out[0] = memoryview(out[0])[sent:]
                    break
                out.popleft()
                sent -= size

    # -- bytes in: the socket -> TLS records -> plaintext ----------------------------

    def _read(self) -> None:
        sock = self._sock
        assert sock is not None
        while self.phase is not Phase.CLOSED:
            try:
                data = sock.recv(_READ_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                raise self._fail(f"connection to {self._netloc} lost: {exc}", exc) from exc
            self.last_received = self._clock()
            if self._tls_object is not None and self.phase is Phase.TLS:
                if data:
                    self._incoming.write(data)
                else:
                    self._incoming.write_eof()
                self._tls_handshake()  # raises if the stream ended
                if self.phase is Phase.TLS:
                    return
                if self._incoming.pending:  # records right behind the handshake
                    plain = self._decrypt(b"")
                    if plain:
                        self._feed(plain)
                continue
            if not data:
                self._feed(b"")
                self.abort()
                return
            if self._tls_object is not None:
                plain = self._decrypt(data)
                if plain:
                    self._feed(plain)
            else:
                self._feed(data)
            if len(data) < _READ_SIZE:
                return

    def _decrypt(self, data: bytes) -> bytes:
        """Feed ``data`` to TLS; the plaintext of the records now complete (maybe b"")."""
        tls = self._tls_object
        assert tls is not None
        if data:
            self._incoming.write(data)
        chunks: list[bytes] = []
        incoming = self._incoming
        while True:
            try:
                chunk = tls.read(_RECORD_READ)
            except ssl.SSLWantReadError:
                break  # the rest of a record is still on its way
            except ssl.SSLZeroReturnError:
                break  # close_notify: the WebSocket close (or the TCP EOF) follows
            except ssl.SSLError as exc:
                raise self._fail(f"TLS with {self._netloc} failed: {exc}", exc) from exc
            if not chunk:
                break
            chunks.append(chunk)
            if not incoming.pending and not tls.pending():
                break
        self._send_records()  # anything OpenSSL has to answer (a key update)
        if not chunks:
            return b""
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
