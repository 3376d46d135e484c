"""``corral websh SERVER``, ``corral join SESSION`` and ``corral watch SESSION``: a live
terminal through the broker.

Opens (or joins, or observes) a session over the REST API, attaches to its WebSocket,
puts the local terminal in raw mode and relays bytes both ways; window size changes
(SIGWINCH) are sent as they happen. If the connection drops, it asks for a new ticket and
resumes from the last byte it holds, so nothing is lost or shown twice. The exit status
is the remote shell's.

The broker's own events (a blocked command, a required MFA, an approval pending, granted
or denied, people joining and leaving) are printed as ``corral: ...`` lines between the
screen's bytes. The local terminal is restored on every way out: a normal exit, an error,
and SIGTERM/SIGHUP/SIGINT (then the exit status is 128 + the signal's number).

The token comes from the profile or ``CORRAL_TOKEN``, never from the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import os
import shutil
import signal
import sys
import termios
import tty
from collections.abc import Iterator
from typing import Any

import websockets
from websockets.protocol import State as WsState

from cli.errors import EXIT_AUTH, EXIT_USAGE, CliError
from cli.http import Api
from cli.output import cell, write_all
from cli.resources import connect
from cli.terminal_ws import TerminalConnection
from websh import (
    ApprovalDenied,
    ApprovalGranted,
    ApprovalPending,
    ClientHello,
    ClientWelcome,
    CloseCode,
    CommandBlocked,
    Connection,
    ConnectionKind,
    ErrorMessage,
    Exit,
    Input,
    Message,
    MfaRequired,
    Output,
    ParticipantJoined,
    ParticipantLeft,
    Resize,
    Resume,
    Side,
    State,
    Terminated,
)

__all__ = ["join", "watch", "websh"]

RECONNECTS = 5
SHARE_PREFIX = "crlshr_"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
OUTPUT_KIND = Output.kind
WRITE_BACKLOG = 64 * 1024  # bytes waiting for the socket beyond which keys wait their turn


class Terminal:
    """One attached session: relays until the shell exits or the broker ends it."""

    def __init__(
        self, api: Api, session_id: str, websocket_url: str, *, read_only: bool = False
    ) -> None:
        self.api = api
        self.session_id = session_id
        self.websocket_url = websocket_url
        self.read_only = read_only
        self.received = 0
        self.ws: TerminalConnection | None = None
        self.conn = Connection(ConnectionKind.USER, Side.CLIENT)
        # Keystrokes and resizes, in order; kept across a reconnect.
        self.outbox: asyncio.Queue[Message] = asyncio.Queue()
        self.connected = asyncio.Event()
        self.sending = False  # the sender holds a message taken from the outbox
        self.failure: Exception | None = None  # raised by the relay, in order

    async def _connect(self, url: str, resume: bool) -> None:
        cols, rows = _size()
        self.conn = Connection(ConnectionKind.USER, Side.CLIENT)
        ws = await websockets.connect(
            url,
            ssl=self.api.ssl,
            max_size=4 * 1024 * 1024,
            create_connection=TerminalConnection,
        )
        assert isinstance(ws, TerminalConnection)
        ws.on_message = self._on_output
        self.ws = ws
        await self.send(ClientHello(cols=cols, rows=rows))
        if resume:
            await self.send(Resume(offset=self.received))
        self.connected.set()

    async def send(self, message: Message) -> None:
        assert self.ws is not None
        self.conn.send(message)
        for payload in self.conn.data_to_send():
            await self.ws.send(payload)

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()

    async def run(self) -> int:
        try:
            await self._connect(self.websocket_url, resume=False)
        except (OSError, websockets.InvalidHandshake, websockets.InvalidURI) as exc:
            where = self.websocket_url.split("?", 1)[0]  # never the ticket
            raise CliError(
                f"cannot open the terminal at {where}: {type(exc).__name__}",
                "the broker's public URL (CORRAL_PUBLIC_URL) must be reachable from here",
            ) from None
        loop = asyncio.get_running_loop()
        stdin = sys.stdin.fileno()
        reading = not self.read_only
        if reading:
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
                with contextlib.suppress(CliError, OSError, websockets.InvalidHandshake):
                    ticket = await asyncio.to_thread(
                        self.api.post, f"/api/v1/sessions/{self.session_id}/tickets"
                    )
                    await self._connect(ticket["websocket_url"], resume=True)
            raise CliError(
                "lost the connection to the broker",
                f"re-attach with `corral join {self.session_id}`",
            )
        finally:
            sender.cancel()
            if reading:
                loop.remove_reader(stdin)
            with contextlib.suppress(NotImplementedError, ValueError):
                loop.remove_signal_handler(signal.SIGWINCH)

    async def _relay(self) -> int | None:
        """Relay until the end (the exit status) or a dropped connection (None)."""
        assert self.ws is not None
        try:
            async for payload in self.ws:
                self.ws.taken()
                if self.failure is not None:
                    raise self.failure
                self.conn.receive(payload)
                for event in self.conn.events_received():
                    status = self._on_event(event)
                    if status is not None:
                        return status
        except websockets.ConnectionClosed:
            pass
        self.connected.clear()
        code = self.ws.close_code
        reason = self.ws.close_reason or str(code)
        if code == CloseCode.REVOKED:
            raise CliError(f"the broker closed the terminal: {reason}", "log in again", EXIT_AUTH)
        if code == CloseCode.SESSION_TERMINATED:
            raise CliError(f"the session was ended: {reason}", "see `corral sessions`")
        if code is not None and code >= 4000 and code != CloseCode.RETRY_LATER:
            raise CliError(
                f"the broker closed the terminal: {reason}", "see `corral sessions` and retry"
            )
        return None

    def _on_event(self, event: Message) -> int | None:
        if isinstance(event, Output):
            self.received += len(event.data)
            write_all(sys.stdout.fileno(), event.data)
        elif isinstance(event, Exit):
            return event.status if event.status is not None else 128 + (event.signal or 0)
        elif isinstance(event, Terminated):
            by = f" by {event.by}" if event.by else ""
            _notice(f"session terminated{by}: {event.reason}")
            return 1
        else:
            line = describe(event, self.api.url)
            if line:
                _notice(line)
        return None

    def _on_output(self, payload: bytes) -> bool:
        """The screen's bytes, taken in the callback that read them (see terminal_ws);
        every other message, and one that fails, is left to :meth:`_relay`."""
        if not payload or payload[0] != OUTPUT_KIND or self.failure is not None:
            return False
        try:
            self.conn.receive(payload)
            for event in self.conn.events_received():
                self._on_event(event)  # Output: no exit status
        except Exception as exc:  # the relay raises it, where the full path would have
            self.failure = exc
            return False
        return True

    def _on_stdin(self, fd: int) -> None:
        data = os.read(fd, 4096)
        if not data:
            asyncio.get_running_loop().remove_reader(fd)
            return
        self._submit(Input(data=data))

    def _on_resize(self) -> None:
        cols, rows = _size()
        self._submit(Resize(cols=cols, rows=rows))

    def _submit(self, message: Message) -> None:
        """Send ``message`` now, in this callback, when nothing is ahead of it and the
        socket keeps up; else the sender task sends it in turn (and after a resume). This
        is the keystroke's path: no task switch, no future, one write."""
        ws = self.ws
        if (
            ws is None
            or self.sending
            or not self.outbox.empty()
            or not self.connected.is_set()
            or self.conn.state is not State.OPEN
            or ws.protocol.state is not WsState.OPEN
            or ws.transport.get_write_buffer_size() > WRITE_BACKLOG
        ):
            self.outbox.put_nowait(message)
            return
        self.conn.send(message)
        for payload in self.conn.data_to_send():
            if isinstance(payload, str):
                ws.protocol.send_text(payload.encode())
            else:
                ws.protocol.send_binary(payload)
        for data in ws.protocol.data_to_send():
            ws.transport.write(data)

    async def _sender(self) -> None:
        """The one task that writes: order is kept, and what could not be sent during a
        drop goes out after the resume."""
        message: Message | None = None
        while True:
            if message is None:
                self.sending = False
                message = await self.outbox.get()
                self.sending = True
            await self.connected.wait()
            try:
                await self.send(message)
            except websockets.ConnectionClosed:
                self.connected.clear()
                continue
            message = None


def describe(event: Message, base_url: str) -> str:
    """The broker event as one line for the person at the terminal ('' to stay quiet)."""
    if isinstance(event, CommandBlocked):
        rule = f" ({event.rule_id})" if event.rule_id else ""
        return f"blocked: {cell(event.command, 200)}: {event.reason}{rule}"
    if isinstance(event, MfaRequired):
        where = f" at {base_url}{event.url}" if event.url else " in the browser"
        methods = ", ".join(event.methods) or "a second factor"
        return f"MFA required: {event.reason}; verify with {methods}{where}, the command then runs"
    if isinstance(event, ApprovalPending):
        who = " or ".join(event.approvers) or "an approver"
        why = f": {event.reason}" if event.reason else ""
        return (
            f"waiting for approval {event.approval_id} by {who}{why} "
            f"(they run `corral approvals approve {event.approval_id}`)"
        )
    if isinstance(event, ApprovalGranted):
        return f"approval {event.approval_id} granted by {', '.join(event.approvers)}"
    if isinstance(event, ApprovalDenied):
        why = f": {event.reason}" if event.reason else ""
        return f"approval {event.approval_id} denied by {', '.join(event.approvers)}{why}"
    if isinstance(event, ParticipantJoined):
        return f"{event.user} joined as {event.role}"
    if isinstance(event, ParticipantLeft):
        return f"{event.user} left"
    if isinstance(event, ErrorMessage):
        return event.message
    if isinstance(event, ClientWelcome) and event.read_only:
        return "read-only: you are watching"
    return ""


def _size() -> tuple[int, int]:
    size = shutil.get_terminal_size((80, 24))
    return max(1, min(size.columns, 1000)), max(1, min(size.lines, 1000))


def _notice(text: str) -> None:
    sys.stderr.write(f"\r\ncorral: {text}\r\n")
    sys.stderr.flush()


@contextlib.contextmanager
def _raw_terminal(enabled: bool) -> Iterator[None]:
    fd = sys.stdin.fileno()
    if not enabled or not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


async def attach(api: Api, opened: dict[str, Any], *, read_only: bool = False) -> int:
    """Relay one session until it ends; the terminal is restored however that happens."""
    terminal = Terminal(
        api, str(opened["session_id"]), str(opened["websocket_url"]), read_only=read_only
    )
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    caught: list[int] = []

    def stop(signum: int) -> None:
        caught.append(signum)
        if task is not None:
            task.cancel()

    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop, signum)
    try:
        with _raw_terminal(enabled=not read_only):
            return await terminal.run()
    except asyncio.CancelledError:
        if not caught:
            raise
        name = signal.Signals(caught[0]).name
        _notice(
            f"{name}: detached; the session stays open for a while (`corral join "
            f"{terminal.session_id}` re-attaches)"
        )
        return 128 + caught[0]
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)
        await terminal.close()


async def websh(args: argparse.Namespace) -> int:
    api = connect(args)
    with api:
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
        return await attach(api, opened)


def _share_secret(ref: str) -> str | None:
    """The share secret in a link or a bare secret, else None (then it is a session id)."""
    if ref.startswith(SHARE_PREFIX):
        return ref
    marker = "/api/v1/shares/"
    if marker in ref:
        secret = ref.split(marker, 1)[1].split("/", 1)[0]
        if secret.startswith(SHARE_PREFIX):
            return secret
    return None


async def join(args: argparse.Namespace) -> int:
    """A share link (yours to use) or your own session id (re-attach after a drop)."""
    ref = sys.stdin.readline().strip() if args.session == "-" else args.session
    if not ref:
        raise CliError(
            "no session or share link given", "corral join SESSION_ID|LINK|-", EXIT_USAGE
        )
    api = connect(args)
    with api:
        secret = _share_secret(ref)
        path = (
            f"/api/v1/shares/{secret}/join"
            if secret is not None
            else f"/api/v1/sessions/{ref}/tickets"
        )
        opened = await asyncio.to_thread(api.post, path)
        return await attach(api, opened)


async def watch(args: argparse.Namespace) -> int:
    """Staff observing a live session: output only, nothing typed is sent."""
    api = connect(args)
    with api:
        opened = await asyncio.to_thread(api.post, f"/api/v1/sessions/{args.session}/observe")
        return await attach(api, opened, read_only=True)
