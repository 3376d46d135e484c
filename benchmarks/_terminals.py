"""One terminal interface over every path the gateway benchmark compares, and the timings.

A :class:`Terminal` has ``write(bytes)`` and ``read(timeout) -> bytes``, nothing else, so
the keystroke, throughput and open timings below are the very same code for a local pty,
``ssh -tt`` (pipes to the ssh client, whose remote side is a pty) and Corral (a websh
connection over a blocking WebSocket, see ``_blockingws``). Everything is synchronous and
single-threaded on the measuring side: the clock is read right before the write and right
after the read that returns the echo.
"""

from __future__ import annotations

import contextlib
import os
import pty
import select
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from _blockingws import BlockingWebSocket

from websh import Connection, Exit, Input, Message, Output, State, Terminated

__all__ = [
    "FdTerminal",
    "Stats",
    "Terminal",
    "WebshTerminal",
    "echo_latencies",
    "local_bash",
    "pty_terminal",
    "ssh_terminal",
    "stats",
    "throughput",
    "wait_prompt",
]

PROMPT = b"$ "
KEYS = b"abcdefghijklmnopqrstuvwxyz"
LINE_RESET = 40  # keys per line before Ctrl-U, well inside 80 columns with the prompt
END_MARK = b"__END__"


class TerminalClosed(Exception):
    pass


class Terminal:
    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def read(self, timeout: float | None) -> bytes:
        """Output available now or within ``timeout`` s (``b""`` if none arrived)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class FdTerminal(Terminal):
    """A pty master (local bash) or the pipes of an ``ssh -tt`` process."""

    def __init__(self, read_fd: int, write_fd: int, process: subprocess.Popen[bytes]) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd
        self.process = process

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.write_fd, view) :]

    def read(self, timeout: float | None) -> bytes:
        ready, _, _ = select.select([self.read_fd], [], [], timeout)
        if not ready:
            return b""
        try:
            data = os.read(self.read_fd, 1 << 20)
        except OSError:  # EIO: the pty's other side hung up
            data = b""
        if not data:
            raise TerminalClosed
        return data

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.write(b"exit\n")
                self.process.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait(5)
        for fd in {self.read_fd, self.write_fd}:
            with contextlib.suppress(OSError):
                os.close(fd)


_INPUT = bytes((Input.kind,))
_OUTPUT = Output.kind


class WebshTerminal(Terminal):
    """A websh connection whose ``Input``/``Output`` carry the terminal bytes: the USER
    connection of a person talking to the broker, or the CHANNEL connection of a broker
    talking to the agent (the "agent directly" path).

    Once the connection is open, keystrokes and output skip the websh ``Connection``
    (an ``input`` is its kind byte and the keys; an ``output`` is taken by its kind byte):
    its checks cost the measuring side more than the ``select`` and ``read`` of the ssh
    paths. Every other message goes through the ``Connection`` as before.
    """

    def __init__(self, ws: BlockingWebSocket, conn: Connection) -> None:
        self.ws = ws
        self.conn = conn
        self.final: Message | None = None
        self._pending = b""
        self._parked: threading.Thread | None = None
        self._unpark = threading.Event()

    def park(self) -> None:
        """Keep reading (and so answering the session's websh pings) while another path
        is measured, so nothing queues up unread on this connection meanwhile."""

        def idle() -> None:
            while not self._unpark.is_set():
                try:
                    self._pending += self._read(0.5)
                except (TerminalClosed, OSError):
                    return

        self._unpark.clear()
        self._parked = threading.Thread(target=idle, daemon=True)
        self._parked.start()

    def unpark(self) -> None:
        if self._parked is not None:
            self._unpark.set()
            self._parked.join()
            self._parked = None

    def send(self, message: Message) -> None:
        self.conn.send(message)
        for payload in self.conn.data_to_send():
            self.ws.send(payload)

    def write(self, data: bytes) -> None:
        if self.conn.state is State.OPEN:
            self.ws.send(_INPUT + data)
        else:
            self.send(Input(data=data))

    def read(self, timeout: float | None) -> bytes:
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        return self._read(timeout)

    def _read(self, timeout: float | None) -> bytes:
        deadline = None if timeout is None else time.monotonic() + timeout
        wait = timeout
        while True:
            payload = self.ws.recv(wait)
            if payload is None:
                if self.ws.closed:
                    raise TerminalClosed
                return b""
            if type(payload) is bytes and payload and payload[0] == _OUTPUT and self.final is None:
                if len(payload) > 1:
                    return payload[1:]
                continue
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            self.conn.receive(payload)
            out = b""
            for event in self.conn.events_received():
                if isinstance(event, Output):
                    out += event.data
                elif isinstance(event, (Exit, Terminated)):
                    self.final = event
            for reply in self.conn.data_to_send():  # pongs
                self.ws.send(reply)
            if out:
                return out
            if self.final is not None:
                raise TerminalClosed

    def close(self) -> None:
        self.unpark()
        if self.final is None and not self.ws.closed:
            try:
                self.write(b"exit\n")
                end = time.monotonic() + 5
                while self.final is None and time.monotonic() < end:
                    self.read(0.5)
            except (TerminalClosed, OSError):
                pass
        self.ws.close()


# --------------------------------------------------------------------------- opening


def local_bash(user: str) -> FdTerminal:
    """``user``'s login bash on a fresh pty, as its controlling terminal."""
    import fcntl
    import pwd
    import termios

    entry = pwd.getpwnam(user)
    master, slave = pty.openpty()

    def child_setup() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    env = {
        "HOME": entry.pw_dir,
        "USER": user,
        "LOGNAME": user,
        "SHELL": "/bin/bash",
        "TERM": "xterm-256color",
        "PATH": "/usr/local/bin:/usr/bin:/bin",
    }
    process = subprocess.Popen(
        ["/bin/bash", "--login", "-i"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=entry.pw_dir,
        env=env,
        user=entry.pw_uid,
        group=entry.pw_gid,
        extra_groups=[],
        start_new_session=True,
        preexec_fn=child_setup,
    )
    os.close(slave)
    return FdTerminal(master, master, process)


def pty_terminal(
    argv: list[str], env: dict[str, str], cwd: str, cols: int, rows: int
) -> FdTerminal:
    """``argv`` on a fresh ``cols`` x ``rows`` pty, as its controlling terminal: a terminal
    client as a person runs it (``corral websh`` puts this pty in raw mode and reads its
    window size from it)."""
    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def child_setup() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    process = subprocess.Popen(
        argv,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=cwd,
        env=env,
        start_new_session=True,
        preexec_fn=child_setup,
    )
    os.close(slave)
    return FdTerminal(master, master, process)


def ssh_terminal(argv: list[str]) -> FdTerminal:
    """``ssh -tt`` with pipes for its stdin/stdout (the remote side gets the pty)."""
    process = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert process.stdin is not None and process.stdout is not None
    return FdTerminal(process.stdout.fileno(), process.stdin.fileno(), process)


def wait_prompt(term: Terminal, timeout: float = 15.0) -> tuple[float, float]:
    """Block until the shell's prompt; return (first output byte, prompt) perf_counter times."""
    seen = b""
    first = 0.0
    end = time.monotonic() + timeout
    while PROMPT not in seen:
        if time.monotonic() > end:
            raise TimeoutError(f"no prompt; got {seen[-200:]!r}")
        data = term.read(1.0)
        now = time.perf_counter()
        if data and not first:
            first = now
        seen += data
    return first, now


def drain(term: Terminal, quiet: float = 0.05) -> None:
    """Read until nothing has arrived for ``quiet`` seconds."""
    while term.read(quiet):
        pass


# --------------------------------------------------------------------------- timings


def echo_latencies(term: Terminal, count: int, warmup: int) -> list[float]:
    """Send keys one at a time; microseconds from each write until its echo came back."""
    drain(term, 0.2)
    samples: list[float] = []
    on_line = 0
    clock = time.perf_counter_ns
    for i in range(warmup + count):
        if on_line >= LINE_RESET:
            term.write(b"\x15")  # Ctrl-U: readline discards the line
            drain(term)
            on_line = 0
        key = KEYS[i % len(KEYS) : i % len(KEYS) + 1]
        got = b""
        start = clock()
        term.write(key)
        while key not in got:
            got += term.read(5.0)
        took = clock() - start
        on_line += 1
        if i >= warmup:
            samples.append(took / 1000)
    term.write(b"\x15")
    drain(term)
    return samples


def throughput(term: Terminal, path: str) -> tuple[int, float]:
    """``cat path`` in the shell; (output bytes, seconds) from Enter until the end mark."""
    drain(term, 0.2)
    # The typed line echoes "__%s__" and "END" apart: only the output holds the mark.
    term.write(f"cat {path}; printf '__%s__\\n' END".encode())
    drain(term)
    received = 0
    tail = b""
    start = time.perf_counter()
    term.write(b"\r")
    while True:
        data = term.read(30.0)
        if not data:
            raise TimeoutError("no output for 30 s")
        received += len(data)
        seen = tail + data[-4096:]
        if END_MARK in seen:
            break
        tail = seen[-16:]
    took = time.perf_counter() - start
    drain(term, 0.2)
    return received, took


@dataclass(frozen=True)
class Stats:
    n: int
    median: float
    p90: float
    p99: float
    mean: float


def stats(values: list[float]) -> Stats:
    ordered = sorted(values)

    def q(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]

    return Stats(len(values), statistics.median(values), q(90), q(99), statistics.fmean(values))


OpenFn = Callable[[], tuple[Terminal, float, float, float]]
