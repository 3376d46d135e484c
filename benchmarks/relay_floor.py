"""The floor under the broker's keystroke hop: a minimal uvloop TLS relay's CPU per round trip.

Three processes on loopback, all TLS 1.3 with a ``trustme`` certificate:

* an **echo peer** (blocking ``ssl`` socket) that plays the agent: it answers each message;
* the **relay** (uvloop, two plain ``asyncio.Protocol`` objects per connection, nothing
  else): it accepts the client, dials the peer, and writes whatever one side sends to the
  other in the same ``data_received`` callback;
* the **client** (this process, blocking): sends one small message, waits for its echo,
  ``--trips`` times.

With ``--ws`` the relay also does the least WebSocket work a broker must do per message
each way: parse a masked client frame header, unmask the payload with
``websockets.speedups.apply_mask``, write an unmasked frame to the other side (and the
peers frame their messages the same way). The figure that matters is the relay's CPU per
round trip (``/proc/PID/stat`` around the measured trips), which is what the broker's
"CPU per keystroke echoed" in ``gateway_vs_ssh.py`` would be with no Python above the
transport. Latency is printed too but swings with machine load.

Usage::

    .venv/bin/python benchmarks/relay_floor.py [--trips 5000] [--ws] [--runs 3]
"""

# Harness code: blocking sockets in the client and the echo peer are the point.

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trustme
from websockets.speedups import apply_mask

MESSAGE = b'{"t":"input","d":"a"}'  # about the size of a websh keystroke


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far (``/proc/PID/stat``)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_context(folder: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return context


def client_context(folder: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(folder / "ca.pem"))
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    return context


def masked(payload: bytes) -> bytes:
    """A client's text frame (mask of zeros: the relay still runs the unmasking)."""
    return bytes((0x81, 0x80 | len(payload))) + b"\0\0\0\0" + payload


def unmasked(payload: bytes) -> bytes:
    return bytes((0x81, len(payload))) + payload


# --------------------------------------------------------------------- the relay


class Upstream(asyncio.Protocol):
    """The relay's connection to the echo peer: what it says goes to the client."""

    def __init__(self, downstream: Downstream) -> None:
        self.downstream = downstream
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.downstream.from_peer(data)


class Downstream(asyncio.Protocol):
    """The client's connection: what it says goes to the peer, in the same callback."""

    def __init__(self, peer: tuple[str, int], context: ssl.SSLContext, ws: bool) -> None:
        self.peer, self.context, self.ws = peer, context, ws
        self.transport: asyncio.Transport | None = None
        self.upstream: Upstream | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.pause_reading()
        asyncio.get_running_loop().create_task(self._dial())

    async def _dial(self) -> None:
        loop = asyncio.get_running_loop()
        _, self.upstream = await loop.create_connection(
            lambda: Upstream(self), *self.peer, ssl=self.context, server_hostname="localhost"
        )
        assert self.transport is not None
        self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        assert self.upstream is not None and self.upstream.transport is not None
        if self.ws:
            length = data[1] & 0x7F
            payload = apply_mask(data[6 : 6 + length], data[2:6])
            data = bytes((0x81, 0x80 | length)) + b"\0\0\0\0" + payload
        self.upstream.transport.write(data)

    def from_peer(self, data: bytes) -> None:
        assert self.transport is not None
        if self.ws:
            data = bytes((0x81, data[1] & 0x7F)) + data[2:]
        self.transport.write(data)


def run_relay(folder: Path, peer_port: int, ws: bool, ready: int) -> None:
    import uvloop

    async def main() -> None:
        loop = asyncio.get_running_loop()
        client = client_context(folder)
        server = await loop.create_server(
            lambda: Downstream(("127.0.0.1", peer_port), client, ws),
            "127.0.0.1",
            0,
            ssl=server_context(folder),
        )
        port = server.sockets[0].getsockname()[1]
        os.write(ready, f"{port}\n".encode())
        await asyncio.Event().wait()

    uvloop.run(main())


# ------------------------------------------------------------------ the echo peer


def run_peer(folder: Path, ws: bool, ready: int) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    os.write(ready, f"{listener.getsockname()[1]}\n".encode())
    raw, _ = listener.accept()
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = server_context(folder).wrap_socket(raw, server_side=True)
    while True:
        data = conn.recv(65536)
        if not data:
            return
        conn.sendall(unmasked(data[6:]) if ws else data)


# -------------------------------------------------------------------- the client


def child(role: str, folder: Path, ws: bool, *extra: str) -> tuple[subprocess.Popen[bytes], int]:
    read, write = os.pipe()
    args = [sys.executable, __file__, f"--role={role}", f"--folder={folder}", f"--fd={write}"]
    args += ["--ws"] if ws else []
    args += list(extra)
    process = subprocess.Popen(args, pass_fds=(write,))
    os.close(write)
    with os.fdopen(read) as pipe:
        port = int(pipe.readline())
    return process, port


def measure(folder: Path, ws: bool, trips: int) -> tuple[float, float]:
    """(relay CPU us per round trip, median round trip us)."""
    peer, peer_port = child("peer", folder, ws)
    relay, port = child("relay", folder, ws, f"--peer-port={peer_port}")
    try:
        raw = socket.create_connection(("127.0.0.1", port))
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = client_context(folder).wrap_socket(raw, server_hostname="localhost")
        message = masked(MESSAGE) if ws else MESSAGE
        expected = len(unmasked(MESSAGE) if ws else MESSAGE)
        for _ in range(200):  # warm up: handshakes done, caches hot
            conn.sendall(message)
            conn.recv(expected)
        latencies = []
        before = cpu_seconds(relay.pid)
        for _ in range(trips):
            start = time.perf_counter()
            conn.sendall(message)
            got = conn.recv(expected)
            latencies.append(time.perf_counter() - start)
            assert len(got) == expected, got
        used = cpu_seconds(relay.pid) - before
        conn.close()
        return used / trips * 1e6, statistics.median(latencies) * 1e6
    finally:
        relay.kill()
        peer.kill()
        relay.wait()
        peer.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trips", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ws", action="store_true", help="unmask and reframe each message")
    parser.add_argument("--role", default="client", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--fd", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--peer-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "relay":
        run_relay(args.folder, args.peer_port, args.ws, args.fd)
        return
    if args.role == "peer":
        run_peer(args.folder, args.ws, args.fd)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ca = trustme.CA()
        ca.cert_pem.write_to_path(folder / "ca.pem")
        cert = ca.issue_cert("localhost", "127.0.0.1")
        cert.private_key_pem.write_to_path(folder / "key.pem")
        cert.cert_chain_pems[0].write_to_path(folder / "cert.pem")
        for pem in cert.cert_chain_pems[1:]:
            with open(folder / "cert.pem", "ab") as chain:
                chain.write(pem.bytes())
        kind = "uvloop TLS relay, WebSocket framing" if args.ws else "uvloop TLS relay, bytes"
        load = os.getloadavg()[0]
        print(f"{kind}: {args.trips} round trips x {args.runs} runs (load {load:.2f})")
        cpu, rtt = [], []
        for run in range(args.runs):
            c, r = measure(folder, args.ws, args.trips)
            cpu.append(c)
            rtt.append(r)
            print(f"  run {run + 1}: relay CPU {c:6.1f} us per round trip, median RTT {r:6.1f} us")
        print(
            f"median: relay CPU {statistics.median(cpu):.1f} us per round trip, "
            f"RTT {statistics.median(rtt):.1f} us"
        )


if __name__ == "__main__":
    main()
