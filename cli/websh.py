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

Opening the session and the signals that stop it are here; the relay itself (resume,
``corral: ...`` lines) is :mod:`cli.terminal_relay`. This module must never read or write
the session's bytes itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import os
import signal
import sys
import termios
import tty
from collections.abc import Iterator
from typing import Any

from cli.errors import EXIT_USAGE, CliError
from cli.http import Api
from cli.resources import connect
from cli.terminal_relay import Terminal, notice, terminal_size

__all__ = ["join", "watch", "websh"]

SHARE_PREFIX = "crlshr_"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


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
        notice(
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
        cols, rows = terminal_size()
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
