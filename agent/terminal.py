"""Interactive terminals: a pty running a user's login shell.

A ``Terminal`` is a pty whose slave side is the controlling terminal of the user's login
shell (argv0 prefixed with ``-``, like login(1) and sshd), started with privileges
dropped and a clean login environment. The master side is non-blocking and exposes
``fileno()`` so the agent's epoll loop can drive it; every byte read is kept in a
bounded ``OutputBuffer`` so a broker that reconnects gets exactly what it missed.

Which terminals exist, by channel id, and how long one outlives its broker is
``agent.terminal_table``'s business, not this module's.

This module must never block (no blocking reads, writes or waits), never start a shell
as a user other than the one resolved by ``agent.users``, and never let output buffers
grow without bound.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import pty
import signal
import struct
import termios

from agent.errors import InputOverflow, TerminalError
from agent.replay import OutputBuffer, Replay
from agent.shellmarks import shell_integration
from agent.spawn import ExitStatus, base_environment, decode_wait_status, spawn
from agent.users import UnixUser

__all__ = ["DEFAULT_TERM", "Terminal"]

DEFAULT_TERM = "xterm-256color"
_MAX_DIMENSION = 10000


def _winsize(cols: int, rows: int) -> bytes:
    if not (0 < cols <= _MAX_DIMENSION and 0 < rows <= _MAX_DIMENSION):
        raise TerminalError(f"invalid terminal size {cols}x{rows}")
    return struct.pack("HHHH", rows, cols, 0, 0)


class Terminal:
    """One pty and the login shell on it. Create with ``Terminal.open``."""

    def __init__(
        self, master_fd: int, pid: int, user: UnixUser, buffer: OutputBuffer, max_input: int
    ) -> None:
        self._fd = master_fd
        self.pid = pid
        self.user = user
        self.buffer = buffer
        self._pending = bytearray()
        self._max_input = max_input
        self._status: ExitStatus | None = None
        self._closed = False
        self._eof = False

    @classmethod
    def open(
        cls,
        user: UnixUser,
        *,
        cols: int = 80,
        rows: int = 24,
        term: str = DEFAULT_TERM,
        lang: str | None = None,
        buffer_capacity: int = 256 * 1024,
        max_input: int = 1024 * 1024,
        euid: int | None = None,
        shell_marks: bool = False,
    ) -> Terminal:
        """Start ``user``'s login shell on a new pty of ``cols`` x ``rows``.

        ``shell_marks`` turns on the prompt marks the broker's command gate reads
        (``agent.shellmarks``); the broker asks for them in ``open_channel``.

        ``lang`` defaults to the agent's own ``LANG`` (pass ``""`` to leave it unset);
        ``euid`` defaults to the agent's effective uid and exists for tests.
        Raises ``PrivilegeError``/``SpawnError`` if the shell cannot be started.
        """
        size = _winsize(cols, rows)
        if lang is None:
            lang = os.environ.get("LANG")
        env = base_environment(user, term=term or DEFAULT_TERM, lang=lang or None)
        if shell_marks:
            env.update(shell_integration(user.shell))
        master, slave = pty.openpty()
        try:
            fcntl.ioctl(slave, termios.TIOCSWINSZ, size)
            argv0 = "-" + os.path.basename(user.shell)
            pid = spawn(
                [argv0],
                executable=user.shell,
                user=user,
                env=env,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                controlling_tty=True,
                euid=euid,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        return cls(master, pid, user, OutputBuffer(buffer_capacity), max_input)

    # -- selectors interface ------------------------------------------------------------

    def fileno(self) -> int:
        """The pty master: register it for EVENT_READ (and EVENT_WRITE while ``wants_write``)."""
        return self._fd

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def eof(self) -> bool:
        """True once the pty reported end of output (every holder of the slave is gone)."""
        return self._eof

    def read(self, max_bytes: int = 65536) -> bytes | None:
        """Read available output, append it to ``buffer`` and return it.

        Returns ``None`` when nothing is available yet, ``b""`` at end of output. Linux
        reports a hung-up pty master as EIO; that is end of output, not an error.
        """
        self._check_open()
        if self._eof:
            return b""
        try:
            data = os.read(self._fd, max_bytes)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise TerminalError(f"pty read failed: {exc.strerror}") from exc
            data = b""
        if not data:
            self._eof = True
            return b""
        self.buffer.append(data)
        return data

    def read_burst(self, scratch: bytearray, short: int, *, keep: bool = True) -> bytes | None:
        """Read until the pty is empty or ``scratch`` is full; append the bytes once.

        A pty hands out at most about 4 KiB per read, so a stream takes many reads; this
        is ``read`` in a loop without its per-call overhead. The reads land in the caller's
        ``scratch`` (one buffer the loop reuses), not in a fresh 64 KiB ``bytes`` per read
        that is shrunk to 4 KiB and then joined: one copy of the burst is made, at the end.
        A first read shorter than ``short`` (an echo, a prompt) is returned at once:
        another read would only learn that the pty is empty. Returns like ``read``:
        ``None`` when nothing is available, ``b""`` at end of output (bytes read before
        the end are returned first).

        ``keep=False`` leaves the bytes out of ``buffer``: the caller sends them first and
        then hands them to ``keep`` itself, so an echo does not wait for the replay ring.
        """
        self._check_open()
        if self._eof:
            return b""
        fd = self._fd
        view = memoryview(scratch)
        limit = len(view)
        size = 0
        failure: OSError | None = None
        while size < limit:
            try:
                count = os.readv(fd, (view[size:],))
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno != errno.EIO:
                    failure = exc
                    break
                count = 0
            if not count:
                self._eof = True
                break
            size += count
            if size < short:
                break
        if not size:
            view.release()
            if failure is not None:
                raise TerminalError(f"pty read failed: {failure.strerror}") from failure
            return b"" if self._eof else None
        output = bytes(view[:size])
        view.release()
        if keep:
            self.buffer.append(output)
        return output  # a failure after some output shows again on the next read

    def keep(self, output: bytes) -> None:
        """Add output read with ``read_burst(keep=False)`` to the replay buffer, in order."""
        self.buffer.append(output)

    @property
    def output_offset(self) -> int:
        """Total output bytes produced so far (the offset after the newest byte)."""
        return self.buffer.end_offset

    def replay(self, offset: int) -> Replay:
        """Output after ``offset`` for a reconnecting broker; see ``OutputBuffer.since``."""
        return self.buffer.since(offset)

    @property
    def pending_input(self) -> int:
        """Bytes of input queued because the shell has not read them yet."""
        return len(self._pending)

    @property
    def wants_write(self) -> bool:
        return bool(self._pending)

    def write(self, data: bytes) -> None:
        """Queue ``data`` for the shell and write as much as the pty accepts now.

        Raises ``InputOverflow`` when more than ``max_input`` bytes would be queued; the
        caller should stop reading from its peer while ``pending_input`` is high.
        """
        self._check_open()
        pending = self._pending
        if len(pending) + len(data) > self._max_input:
            raise InputOverflow(f"more than {self._max_input} bytes of input queued")
        if pending:
            pending += data
            self.flush()
            return
        # Nothing queued (a keystroke): write it as it is, queue only what the pty refused.
        try:
            sent = os.write(self._fd, data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise TerminalError(f"pty write failed: {exc.strerror}") from exc
            return  # the shell is gone: its input is dropped, as flush() drops it
        if sent < len(data):
            pending += memoryview(data)[sent:]

    def flush(self) -> None:
        """Write queued input; call on EVENT_WRITE. Input to a dead shell is dropped."""
        self._check_open()
        while self._pending:
            try:
                sent = os.write(self._fd, self._pending)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno != errno.EIO:
                    raise TerminalError(f"pty write failed: {exc.strerror}") from exc
                self._pending.clear()
                return
            del self._pending[:sent]

    def resize(self, cols: int, rows: int) -> None:
        """Set the window size; the kernel sends SIGWINCH to the foreground job."""
        self._check_open()
        try:
            fcntl.ioctl(self._fd, termios.TIOCSWINSZ, _winsize(cols, rows))
        except OSError as exc:
            raise TerminalError(f"resize failed: {exc.strerror}") from exc

    # -- process ------------------------------------------------------------------------

    def poll(self) -> ExitStatus | None:
        """The shell's exit status once it has ended (reaps it), else ``None``."""
        if self._status is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self._status = ExitStatus(None, None)  # reaped elsewhere: status unknown
                return self._status
            if pid:
                self._status = decode_wait_status(status)
        return self._status

    @property
    def status(self) -> ExitStatus | None:
        """The exit status already collected by ``poll`` (never waits)."""
        return self._status

    def send_signal(self, sig: int) -> None:
        """Signal the shell's session (its process group) unless it already ended."""
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL the shell's process group."""
        self.send_signal(signal.SIGKILL)

    def close(self) -> None:
        """Hang up: SIGHUP the shell's process group and close the pty master.

        Closing the master makes the kernel hang up the slave too, so jobs that ignore
        the first SIGHUP still see their terminal vanish. The child may take a moment
        to exit; keep calling ``poll`` (``TerminalTable`` does) to reap it.
        """
        if self._closed:
            return
        self.send_signal(signal.SIGHUP)
        self._closed = True
        self._pending.clear()
        os.close(self._fd)

    def _check_open(self) -> None:
        if self._closed:
            raise TerminalError("terminal is closed")
