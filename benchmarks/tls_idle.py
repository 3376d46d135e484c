"""What an idle TLS 1.3 connection costs a bare server, by event loop and TLS read buffer.

A server on loopback whose protocol does nothing (no HTTP, no WebSocket) accepts N TLS 1.3
connections from a child process; each client sends ``--touch`` bytes once (an agent's
hello is about 2 KB) and then stays idle. The figure is the server's VmRSS with all N
connected minus its VmRSS before, divided by N: the floor that the event loop's TLS
protocol and OpenSSL put under every agent connection before Corral adds anything.

Usage::

    .venv/bin/python benchmarks/tls_idle.py --loop uvloop
    .venv/bin/python benchmarks/tls_idle.py --loop asyncio --read-buffer 32
    .venv/bin/python benchmarks/tls_idle.py --plain
"""

# Harness code: short blocking file and process calls outside the measured paths.

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import ssl
import subprocess
import sys
import tempfile
import time
from asyncio import sslproto
from pathlib import Path


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


async def swarm(port: int, count: int, touch: int, ca_file: str | None) -> None:
    context = None
    if ca_file:
        context = ssl.create_default_context(cafile=ca_file)
    writers = []
    for _ in range(count):
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
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
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Idle, "127.0.0.1", 0, ssl=context, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    gc.collect()
    before = rss_kib()
    command = [sys.executable, __file__, "--swarm", str(port), "--agents", str(args.agents)]
    command += ["--touch", str(args.touch)] + (["--ca-file", ca_file] if ca_file else [])
    child = await asyncio.create_subprocess_exec(*command, stdout=subprocess.PIPE)
    assert child.stdout is not None
    line = await asyncio.wait_for(child.stdout.readline(), 300)
    assert line.strip() == b"connected", line
    await asyncio.sleep(2)
    gc.collect()
    after = rss_kib()
    child.kill()
    await child.wait()
    server.close()
    name = "plain" if args.plain else f"TLS 1.3, {args.loop}"
    if args.num_tickets is not None:
        name += f", {args.num_tickets} tickets"
    name += f", {args.touch} bytes sent"
    if not args.plain and args.loop == "asyncio":
        name += f", read buffer {sslproto.SSLProtocol.max_size // 1024} KiB"
    per = (after - before) / args.agents
    print(f"{name}: {args.agents} idle connections, {per:.1f} KiB each (RSS {before} -> {after})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--read-buffer", type=int, help="asyncio's TLS read buffer, KiB")
    parser.add_argument("--touch", type=int, default=2000, help="bytes each client sends")
    parser.add_argument("--plain", action="store_true")
    parser.add_argument("--num-tickets", type=int, help="TLS 1.3 session tickets sent")
    parser.add_argument("--swarm", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ca-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.swarm:
        asyncio.run(swarm(args.swarm, args.agents, args.touch, args.ca_file))
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
