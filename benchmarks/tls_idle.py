"""What an idle TLS 1.3 connection costs a bare server, by event loop and TLS read buffer.

A server on loopback whose protocol does nothing (no HTTP, no WebSocket) accepts N TLS 1.3
connections from a child process; each client sends ``--touch`` bytes once (an agent's
hello is about 2 KB) and then stays idle. With ``--ws corral`` (or ``websockets-sansio``)
the server is uvicorn as the broker configures it (``broker/serving.py``) with that
WebSocket protocol and an ASGI app that accepts and reads until disconnect, and each
client sends its bytes as one WebSocket message after the upgrade.

With ``--own-tls`` (and ``--ws none``) TLS is terminated by ``broker/tlsserver.py`` on a
plain listening socket, as the broker serves it; with ``--ws corral`` the server is always
the broker's own configuration, so it uses that too.

The figure is the server's VmRSS with all N connected minus its VmRSS before, divided by
N: the floor that the event loop's TLS protocol and OpenSSL (and with ``--ws``, uvicorn
and the WebSocket protocol) put under every agent connection before Corral adds anything.

Usage::

    .venv/bin/python benchmarks/tls_idle.py --loop uvloop
    .venv/bin/python benchmarks/tls_idle.py --loop asyncio --read-buffer 32
    .venv/bin/python benchmarks/tls_idle.py --plain
    .venv/bin/python benchmarks/tls_idle.py --own-tls
"""

# Harness code: short blocking file and process calls outside the measured paths.

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
from asyncio import sslproto
from pathlib import Path
from typing import Any

import uvicorn

from broker.serving import server_config
from broker.tlsserver import TLSServer


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Idle(asyncio.Protocol):
    """Takes what arrives and keeps nothing."""

    __slots__ = ("transport",)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        pass


async def swarm(port: int, count: int, touch: int, ca_file: str | None, ws: bool) -> None:
    context = None
    if ca_file:
        context = ssl.create_default_context(cafile=ca_file)
    writers = []
    for _ in range(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
        if ws:
            writer.write(
                b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2RlZg==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            response = await reader.readuntil(b"\r\n\r\n")
            assert response.startswith(b"HTTP/1.1 101"), response
            head = (
                struct.pack("!BBH", 0x82, 0xFE, touch)
                if touch > 125
                else bytes((0x82, 0x80 | touch))
            )
            writer.write(head + b"\0\0\0\0" + b"x" * touch)  # a zero mask
        else:
            writer.write(b"x" * touch)
        writers.append(writer)
    print("connected", flush=True)
    await asyncio.sleep(3600)


async def serve(args: argparse.Namespace) -> None:
    context = None
    ca_file = None
    workdir = Path(tempfile.mkdtemp(prefix="tls-idle-"))
    if not args.plain:
        import trustme

        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        cert.configure_cert(context)
        if args.num_tickets is not None:
            context.num_tickets = args.num_tickets
        ca_file = str(workdir / "ca.pem")
        ca.cert_pem.write_to_path(ca_file)
        cert.private_key_and_cert_chain_pem.write_to_path(str(workdir / "cert.pem"))
    loop = asyncio.get_running_loop()
    uvicorn_server = None
    if args.ws == "none" and args.own_tls and context is not None:
        factory = TLSServer(context, Idle)
        server = await loop.create_server(factory, "127.0.0.1", 0, backlog=4096)
        port = server.sockets[0].getsockname()[1]
    elif args.ws == "none":
        server = await loop.create_server(Idle, "127.0.0.1", 0, ssl=context, backlog=4096)
        port = server.sockets[0].getsockname()[1]
    else:
        uvicorn_server, serving, port = await start_uvicorn(args, workdir)
    gc.collect()
    before = rss_kib()
    command = [sys.executable, __file__, "--swarm", str(port), "--agents", str(args.agents)]
    command += ["--touch", str(args.touch), "--ws", args.ws]
    command += ["--ca-file", ca_file] if ca_file else []
    child = await asyncio.create_subprocess_exec(*command, stdout=subprocess.PIPE)
    assert child.stdout is not None
    line = await asyncio.wait_for(child.stdout.readline(), 300)
    assert line.strip() == b"connected", line
    await asyncio.sleep(2)
    gc.collect()
    after = rss_kib()
    child.kill()
    await child.wait()
    if uvicorn_server is None:
        server.close()
    else:
        uvicorn_server.should_exit = True
        await serving
    name = "plain" if args.plain else f"TLS 1.3, {args.loop}"
    if not args.plain and args.ws == "none" and args.own_tls:
        name += " + broker/tlsserver.py"
    if args.ws != "none":
        name += f", uvicorn + {args.ws}"
    if args.num_tickets is not None:
        name += f", {args.num_tickets} tickets"
    name += f", {args.touch} bytes sent"
    if not args.plain and args.loop == "asyncio" and not args.own_tls:
        name += f", read buffer {sslproto.SSLProtocol.max_size // 1024} KiB"
    per = (after - before) / args.agents
    print(f"{name}: {args.agents} idle connections, {per:.1f} KiB each (RSS {before} -> {after})")


async def idle_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Accept, then read until the peer leaves (what the hub does at rest)."""
    if scope["type"] == "lifespan":
        while (message := await receive())["type"] != "lifespan.shutdown":
            await send({"type": message["type"] + ".complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await receive()
    await send({"type": "websocket.accept"})
    while (await receive())["type"] != "websocket.disconnect":
        pass


async def start_uvicorn(
    args: argparse.Namespace, workdir: Path
) -> tuple[uvicorn.Server, asyncio.Task[None], int]:
    cert = None if args.plain else str(workdir / "cert.pem")
    config = server_config(idle_app, log_level="warning", certfile=cert, keyfile=cert)
    if args.ws == "websockets-sansio":
        from uvicorn.protocols.websockets.websockets_sansio_impl import (
            WebSocketsSansIOProtocol,
        )

        config.ws_protocol_class = WebSocketsSansIOProtocol
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 (uvicorn has no event for it)
        await asyncio.sleep(0.01)
    return server, serving, sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--read-buffer", type=int, help="asyncio's TLS read buffer, KiB")
    parser.add_argument("--touch", type=int, default=2000, help="bytes each client sends")
    parser.add_argument("--plain", action="store_true")
    parser.add_argument(
        "--own-tls", action="store_true", help="with --ws none: TLS by broker/tlsserver.py"
    )
    parser.add_argument("--num-tickets", type=int, help="TLS 1.3 session tickets sent")
    parser.add_argument("--ws", choices=("none", "corral", "websockets-sansio"), default="none")
    parser.add_argument("--swarm", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ca-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.swarm:
        asyncio.run(swarm(args.swarm, args.agents, args.touch, args.ca_file, args.ws != "none"))
        return
    if args.read_buffer:
        sslproto.SSLProtocol.max_size = args.read_buffer * 1024
    factory = None
    if args.loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    started = time.monotonic()
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve(args))
    print(f"({time.monotonic() - started:.0f} s, load {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
