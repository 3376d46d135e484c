"""How the broker is served: uvicorn's configuration, its event loop, its listening socket.

One place for the choices that decide what every connection costs, so that ``corral up``,
the integration tests and the benchmarks all run the broker the same way:

* **No uvicorn keepalive pings.** uvicorn pings every WebSocket every 20 s by default. With
  1,000 agents that is 50 pings and 50 pongs a second the broker frames and encrypts in
  Python for nothing (``benchmarks/idle_agents.py``): the agents' own websh heartbeat
  already proves each agent alive, and a peer that vanished without a FIN is found by the
  kernel instead (below), at no cost to the event loop.
* **TCP keepalive on the listening socket.** Linux copies ``SO_KEEPALIVE`` and the
  ``TCP_KEEP*`` timers from a listening socket to every connection it accepts, so a dead
  peer (host gone, cable pulled, laptop asleep) is detected by the kernel about
  ``KEEPALIVE_IDLE + KEEPALIVE_COUNT * KEEPALIVE_INTERVAL`` seconds after it went quiet,
  and uvicorn sees the connection reset.
* **uvloop and httptools when installed** (they are dependencies on Linux and macOS).
  Measured with ``benchmarks/gateway_vs_ssh.py``: a session opens in 67 ms instead of
  188 ms; the relay hop is about a third cheaper. ``event_loop = "asyncio"`` turns it off.
* **The broker's own TLS** (``broker/tlsserver.py``), on either loop: uvicorn serves the
  socket without ``ssl=`` and each connection's HTTP protocol is wrapped in a
  ``TLSConnection`` (TLS 1.3 only), which shares its read buffers with every other
  connection. The loops' own TLS protocols keep a 256 KiB read buffer and their own
  transport per connection: 1,000 idle agents cost 62-64 KiB each with uvloop's, 48-52
  KiB with this (``benchmarks/idle_agents.py``; a bare TLS server in
  ``benchmarks/tls_idle.py``: 26.2 KiB per connection on uvloop, 19.4 KiB with this). It
  is also cheaper per message: 11 us of server CPU per TLS echo against 26 us for
  uvloop's, 0.67 against 1.34 ms per MB received (``benchmarks/tls_echo.py``).
* **The broker's own WebSocket protocol** (``broker/websocket/``) instead of uvicorn's
  ``websockets-sansio``: frames parsed in place, no queue, event or parser object per idle
  connection, and a direct path for ``Wire``. It negotiates no compression.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import socket
import ssl
from collections.abc import Callable
from typing import Any

import uvicorn

from broker.errors import SettingsError
from broker.tlsserver import TLSServer
from broker.websocket import WebSocketProtocol

__all__ = [
    "KEEPALIVE_COUNT",
    "KEEPALIVE_IDLE",
    "KEEPALIVE_INTERVAL",
    "WS_MAX_SIZE",
    "loop_factory",
    "resolve_event_loop",
    "server_config",
    "set_keepalive",
]

#: Seconds of silence before the kernel probes a connection.
KEEPALIVE_IDLE = 30
#: Seconds between probes, and how many unanswered probes end the connection.
KEEPALIVE_INTERVAL = 10
KEEPALIVE_COUNT = 3
#: Largest WebSocket message accepted (websh's own limits are smaller).
WS_MAX_SIZE = 2 * 1024 * 1024


def freeze_startup_heap() -> None:
    """Keep what start-up built out of every later garbage collection.

    A started broker holds some 170,000 objects the cyclic collector tracks (modules,
    routes, the ORM's metadata, the policy), all of them for good. Each full collection
    walked them all: about 35 ms in which no keystroke, echo or agent is served, every so
    often as sessions open and close. Once start-up is done, a collection and
    ``gc.freeze()`` move them to the permanent generation, so later collections only walk
    what was made since (``benchmarks/README.md``, "full collection"). Called once per
    process, by ``corral up``: never in a process that starts many brokers.
    """
    gc.collect()
    gc.freeze()


def resolve_event_loop(choice: str) -> str:
    """``auto`` becomes ``uvloop`` when it is installed, else ``asyncio``."""
    available = importlib.util.find_spec("uvloop") is not None
    if choice == "auto":
        return "uvloop" if available else "asyncio"
    if choice == "uvloop" and not available:
        raise SettingsError("CORRAL_EVENT_LOOP: uvloop is not installed")
    return choice


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory for :class:`asyncio.Runner` (``None``: the standard loop)."""
    if resolve_event_loop(choice) != "uvloop":
        return None
    import uvloop

    return uvloop.new_event_loop


def set_keepalive(sock: socket.socket) -> None:
    """Turn on TCP keepalive for ``sock`` (and so for every connection a listening socket
    accepts on Linux). Platforms without the ``TCP_KEEP*`` options keep their defaults."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (
        ("TCP_KEEPIDLE", KEEPALIVE_IDLE),
        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL),
        ("TCP_KEEPCNT", KEEPALIVE_COUNT),
    ):
        option = getattr(socket, name, None)
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


def server_config(
    app: Any,
    *,
    log_level: str = "info",
    certfile: str | None = None,
    keyfile: str | None = None,
    **extra: Any,
) -> uvicorn.Config:
    """uvicorn's configuration for the broker, loaded; TLS 1.3 only when TLS is on.

    The event loop is not chosen here: the caller runs the server on the loop it made
    (``loop_factory``), and uvicorn's ``loop="none"`` leaves that loop alone.
    """
    config = uvicorn.Config(
        app,
        log_level=log_level,
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
        lifespan="on",
        loop="none",
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
        ws=WebSocketProtocol,
        ws_max_size=WS_MAX_SIZE,
        ws_ping_interval=None,
        ws_ping_timeout=None,
        server_header=False,
        **extra,
    )
    try:
        config.load()
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(f"CORRAL_TLS_CERT_FILE: cannot load certificate ({exc})") from None
    if config.ssl is not None:
        # uvicorn serves the socket without ssl=; broker/tlsserver.py terminates TLS
        # around each connection's HTTP protocol.
        context, config.ssl = config.ssl, None
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        tls = TLSServer(context, config.http_protocol_class)
        config.http_protocol_class = tls  # type: ignore[assignment]
    return config
