"""Server CPU per TLS 1.3 message: the event loop's TLS against ``broker/tlsserver.py``.

A server on loopback echoes small messages (a keystroke-sized 40 bytes: one record in,
one record out) and swallows a bulk upload, with TLS by the loop (``--tls loop``) or by
``broker/tlsserver.py`` (``--tls own``). The client is a blocking ``ssl`` socket in a child
process, so the server's ``os.times()`` over each phase is its cost alone: CPU per echo
round trip and CPU per MB received. That is the TLS share of the broker's per-keystroke
and per-MB figures in ``benchmarks/gateway_vs_ssh.py``, without the broker around it.

Usage::

    .venv/bin/python benchmarks/tls_echo.py --tls own --loop uvloop
    .venv/bin/python benchmarks/tls_echo.py --tls loop --loop asyncio --echoes 5000
"""

# Harness code: short blocking file and process calls outside the measured paths.

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import socket
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from broker.tlsserver import TLSServer  # noqa: E402

KEY = b"k" * 40
CHUNK = b"B" * 65536


class Echo(asyncio.Protocol):
    """Echoes the last keystroke of what arrives; bulk bytes are only taken."""

    __slots__ = ("transport",)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if data.endswith(KEY):
            self.transport.write(KEY)


def client(port: int, ca_file: str, echoes: int, megabytes: int) -> None:
    context = ssl.create_default_context(cafile=ca_file)
    raw = socket.create_connection(("127.0.0.1", port))
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        for phase in ("warm-up", "echo", "bulk"):
            if phase != "warm-up":
                print("ready", flush=True)
                sys.stdin.readline()
            if phase == "bulk":
                for _ in range(megabytes * 16):
                    sock.sendall(CHUNK)
            for _ in range(200 if phase == "warm-up" else echoes if phase == "echo" else 1):
                sock.sendall(KEY)
                received = b""
                while not received.endswith(KEY):
                    received += sock.recv(4096)
        print("done", flush=True)


async def serve(args: argparse.Namespace) -> None:
    import trustme

    ca = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = str(Path(tempfile.mkdtemp(prefix="tls-echo-")) / "ca.pem")
    ca.cert_pem.write_to_path(ca_file)
    loop = asyncio.get_running_loop()
    if args.tls == "own":
        server = await loop.create_server(TLSServer(context, Echo), "127.0.0.1", 0)
    else:
        server = await loop.create_server(Echo, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    command = [sys.executable, __file__, "--client", str(port), "--ca-file", ca_file]
    command += ["--echoes", str(args.echoes), "--megabytes", str(args.megabytes)]
    child = await asyncio.create_subprocess_exec(
        *command, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert child.stdin is not None and child.stdout is not None
    # The child says "ready" after its warm-up and after the echoes, "done" after the bulk.
    assert await child.stdout.readline() == b"ready\n"
    marks = [os.times()]
    for expected in (b"ready\n", b"done\n"):
        child.stdin.write(b"go\n")
        assert await child.stdout.readline() == expected
        marks.append(os.times())
    cpu = [b.user - a.user + b.system - a.system for a, b in itertools.pairwise(marks)]
    await child.wait()
    server.close()
    mb = args.megabytes * 16 * len(CHUNK) / 1e6
    print(
        f"TLS by {'broker/tlsserver.py' if args.tls == 'own' else 'the loop'} on {args.loop}: "
        f"{cpu[0] / args.echoes * 1e6:.1f} us server CPU per echo ({args.echoes}), "
        f"{cpu[1] / mb * 1e3:.2f} ms per MB received ({mb:.0f} MB); "
        f"load {os.getloadavg()[0]:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tls", choices=("own", "loop"), default="own")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--echoes", type=int, default=20000)
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument("--client", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ca-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client(args.client, args.ca_file, args.echoes, args.megabytes)
        return
    factory = None
    if args.loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve(args))


if __name__ == "__main__":
    main()
