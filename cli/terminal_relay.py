"""The raw terminal relay of ``corral websh``, ``join`` and ``watch``: one attached session's
bytes both ways over its WebSocket, with resume after a drop.

:class:`Terminal` sends keystrokes and window sizes (SIGWINCH) as Websh messages and writes
the screen's bytes to stdout as they arrive. If the connection drops it asks for a new
ticket and resumes from the last byte it holds, so nothing is lost or shown twice; the
broker's own events become ``corral: ...`` lines (:func:`describe`). Opening the session,
raw mode and the stop signals are :mod:`cli.websh`'s. It must never put the terminal in
raw mode or exit the process itself, and never print a ticket (URLs are cut at ``?``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys

import websockets
from websockets.protocol import State as WsState

from cli.errors import EXIT_AUTH, CliError
from cli.http import Api
from cli.output import cell, write_all
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

__all__ = ["Terminal", "describe", "notice", "terminal_size"]

RECONNECTS = 5
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
        cols, rows = terminal_size()
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
            notice(f"session terminated{by}: {event.reason}")
            return 1
        else:
            line = describe(event, self.api.url)
            if line:
                notice(line)
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
        cols, rows = terminal_size()
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


def terminal_size() -> tuple[int, int]:
    size = shutil.get_terminal_size((80, 24))
    return max(1, min(size.columns, 1000)), max(1, min(size.lines, 1000))


def notice(text: str) -> None:
    sys.stderr.write(f"\r\ncorral: {text}\r\n")
    sys.stderr.flush()
