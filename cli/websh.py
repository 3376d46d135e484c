"""``corral websh SERVER``: a terminal on a server, through the broker.

Opens a session over the REST API, attaches to its WebSocket, puts the local terminal in
raw mode and relays bytes both ways; window size changes are sent as they happen. If the
connection drops, it asks for a new ticket and resumes from the last byte it holds, so
nothing is lost or shown twice. Its exit status is the remote shell's.

The token comes from ``CORRAL_TOKEN`` (never a command-line argument, which other users
could read in the process list); the broker from ``--url`` or ``CORRAL_URL``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import os
import shutil
import signal
import ssl
import sys
import termios
import tty
import urllib.error
import urllib.request
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from broker.errors import CorralError
from websh import (
    ClientHello,
    CloseCode,
    Connection,
    ConnectionKind,
    ErrorMessage,
    Exit,
    Input,
    Message,
    Output,
    Resize,
    Resume,
    Side,
    Terminated,
)

__all__ = ["ApiClient", "websh"]

DEFAULT_URL = "http://127.0.0.1:7080"
RECONNECTS = 5


class ClientError(CorralError):
    """A refused or failed request; the message is the broker's problem detail."""


class ApiClient:
    """The few REST calls the terminal needs, over the standard library."""

    def __init__(self, url: str, token: str, ca_file: str | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise ClientError(f"the broker URL must start with http:// or https://, got {url!r}")
        self.url = url.rstrip("/")
        self.token = token
        self.ssl = ssl.create_default_context(cafile=ca_file) if url.startswith("https") else None

    def post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        request = urllib.request.Request(  # noqa: S310 (the scheme is checked above)
            self.url + path,
            data=json.dumps(body or {}).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(  # noqa: S310
                request, timeout=30, context=self.ssl
            ) as response:
                data: dict[str, Any] = json.loads(response.read())
                return data
        except urllib.error.HTTPError as exc:
            raise ClientError(_problem(exc)) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ClientError(f"cannot reach the broker at {self.url}: {reason}") from None


def _problem(exc: urllib.error.HTTPError) -> str:
    try:
        problem = json.loads(exc.read())
        return f"{problem.get('title', exc.reason)}: {problem.get('detail', '')}".rstrip(": ")
    except (ValueError, OSError):
        return f"HTTP {exc.code} {exc.reason}"


class Terminal:
    """One attached session: relays until the shell exits or the broker ends it."""

    def __init__(self, api: ApiClient, session_id: str, websocket_url: str) -> None:
        self.api = api
        self.session_id = session_id
        self.websocket_url = websocket_url
        self.received = 0
        self.ws: ClientConnection | None = None
        self.conn = Connection(ConnectionKind.USER, Side.CLIENT)
        # Keystrokes and resizes, in order; kept across a reconnect.
        self.outbox: asyncio.Queue[Message] = asyncio.Queue()
        self.connected = asyncio.Event()

    async def _connect(self, url: str, resume: bool) -> None:
        cols, rows = _size()
        self.conn = Connection(ConnectionKind.USER, Side.CLIENT)
        self.ws = await websockets.connect(url, ssl=self.api.ssl, max_size=4 * 1024 * 1024)
        await self.send(ClientHello(cols=cols, rows=rows))
        if resume:
            await self.send(Resume(offset=self.received))
        self.connected.set()

    async def send(self, message: Message) -> None:
        assert self.ws is not None
        self.conn.send(message)
        for payload in self.conn.data_to_send():
            await self.ws.send(payload)

    async def run(self) -> int:
        await self._connect(self.websocket_url, resume=False)
        loop = asyncio.get_running_loop()
        stdin = sys.stdin.fileno()
        loop.add_reader(stdin, self._on_stdin, stdin)
        with contextlib.suppress(NotImplementedError, ValueError):
            loop.add_signal_handler(signal.SIGWINCH, self._on_resize)
        sender = asyncio.create_task(self._sender())
        try:
            for attempt in range(RECONNECTS + 1):
                final = await self._relay()
                if final is not None:
                    return final
                if attempt == RECONNECTS:
                    break
                await asyncio.sleep(min(2**attempt * 0.5, 8))
                with contextlib.suppress(ClientError, OSError, websockets.InvalidHandshake):
                    ticket = await asyncio.to_thread(
                        self.api.post, f"/api/v1/sessions/{self.session_id}/tickets"
                    )
                    await self._connect(ticket["websocket_url"], resume=True)
            raise ClientError("lost the connection to the broker")
        finally:
            sender.cancel()
            loop.remove_reader(stdin)
            with contextlib.suppress(NotImplementedError, ValueError):
                loop.remove_signal_handler(signal.SIGWINCH)

    async def _relay(self) -> int | None:
        """Relay until the end (the exit status) or a dropped connection (None)."""
        assert self.ws is not None
        try:
            async for payload in self.ws:
                self.conn.receive(payload)
                for event in self.conn.events_received():
                    status = self._on_event(event)
                    if status is not None:
                        return status
        except websockets.ConnectionClosed:
            pass
        self.connected.clear()
        code = self.ws.close_code
        if code is not None and code >= 4000 and code != CloseCode.RETRY_LATER:
            raise ClientError(f"the broker closed the terminal: {self.ws.close_reason or code}")
        return None

    def _on_event(self, event: Message) -> int | None:
        if isinstance(event, Output):
            self.received += len(event.data)
            os.write(sys.stdout.fileno(), event.data)
        elif isinstance(event, Exit):
            return event.status if event.status is not None else 128 + (event.signal or 0)
        elif isinstance(event, Terminated):
            by = f" by {event.by}" if event.by else ""
            _notice(f"session terminated{by}: {event.reason}")
            return 1
        elif isinstance(event, ErrorMessage):
            _notice(event.message)
        return None

    def _on_stdin(self, fd: int) -> None:
        data = os.read(fd, 4096)
        if not data:
            asyncio.get_running_loop().remove_reader(fd)
            return
        self.outbox.put_nowait(Input(data=data))

    def _on_resize(self) -> None:
        cols, rows = _size()
        self.outbox.put_nowait(Resize(cols=cols, rows=rows))

    async def _sender(self) -> None:
        """The one task that writes: order is kept, and what could not be sent during a
        drop goes out after the resume."""
        message: Message | None = None
        while True:
            if message is None:
                message = await self.outbox.get()
            await self.connected.wait()
            try:
                await self.send(message)
            except websockets.ConnectionClosed:
                self.connected.clear()
                continue
            message = None


def _size() -> tuple[int, int]:
    size = shutil.get_terminal_size((80, 24))
    return max(1, min(size.columns, 1000)), max(1, min(size.lines, 1000))


def _notice(text: str) -> None:
    sys.stderr.write(f"\r\ncorral: {text}\r\n")
    sys.stderr.flush()


@contextlib.contextmanager
def _raw_terminal() -> Any:
    fd = sys.stdin.fileno()
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


async def websh(args: argparse.Namespace) -> int:
    token = os.environ.get("CORRAL_TOKEN", "").strip()
    if not token:
        raise ClientError("set CORRAL_TOKEN to your access token (see `corral token`)")
    url = args.url or os.environ.get("CORRAL_URL") or DEFAULT_URL
    api = ApiClient(url, token, args.ca_file or os.environ.get("CORRAL_CA_FILE"))
    cols, rows = _size()
    opened = await asyncio.to_thread(
        api.post,
        "/api/v1/sessions",
        {
            "server": args.server,
            "unix_user": args.user or getpass.getuser(),
            "cols": cols,
            "rows": rows,
        },
    )
    terminal = Terminal(api, opened["session_id"], opened["websocket_url"])
    with _raw_terminal():
        return await terminal.run()
