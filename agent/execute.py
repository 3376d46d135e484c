"""Non-interactive commands (API calls, deploy scripts) run as a Unix user with a timeout.

The broker has already decided the exact command may run; this module runs exactly that
command, as the resolved user with a clean login environment plus the requested
variables, no pty, stdin from /dev/null, and stdout and stderr on two separate
non-blocking pipes the selectors loop reads. A string command goes through the user's
login shell with ``-c`` (what sshd does), so a user whose shell is ``nologin`` cannot exec
either. On timeout the whole process group gets SIGTERM, then SIGKILL after a grace.

This module must never block, never run the command under the agent's own identity when
another user was asked for, and never let the agent's environment leak into the command.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from collections import namedtuple
from collections.abc import Mapping, Sequence

from agent.errors import ExecError
from agent.spawn import ExitStatus, base_environment, decode_wait_status, spawn
from agent.users import UnixUser

__all__ = ["ExecResult", "Execution"]

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def which(name: str, path: str) -> str | None:
    """The first executable ``name`` on ``path``, as ``shutil.which(name, path=path)``.

    Kept here so the agent does not import ``shutil`` (and with it ``bz2``/``lzma``) just
    for this: an existing, executable, non-directory file; empty entries mean the current
    directory; repeated directories are tried once.
    """
    seen: set[str] = set()
    for directory in path.split(os.pathsep) if path else ():
        if directory in seen:
            continue
        seen.add(directory)
        candidate = os.path.join(directory, name)
        if (
            os.path.exists(candidate)
            and os.access(candidate, os.F_OK | os.X_OK)
            and not os.path.isdir(candidate)
        ):
            return candidate
    return None


TYPE_CHECKING = False
if TYPE_CHECKING:  # typing.NamedTuple for mypy; collections.namedtuple (no typing) at run time
    from typing import Callable, NamedTuple

    class ExecResult(NamedTuple):
        """How the command ended. ``timed_out``: the agent killed it at its deadline."""

        exit_code: int | None
        signal: int | None
        timed_out: bool

else:
    ExecResult = namedtuple("ExecResult", "exit_code signal timed_out")
    ExecResult.__doc__ = "How the command ended. ``timed_out``: killed at its deadline."


class Execution:
    """One running command. Create with ``Execution.start``.

    Register ``stdout_fd`` and ``stderr_fd`` for EVENT_READ; when ``read_stdout`` /
    ``read_stderr`` returns ``b""`` the stream is at EOF: unregister that fd (it stays
    open, so a level-triggered selector would spin) and call ``close()`` once done.
    Call ``check_timeout()`` whenever the loop wakes (``next_deadline`` says when).
    """

    def __init__(
        self,
        pid: int,
        stdout_fd: int,
        stderr_fd: int,
        deadline: float | None,
        kill_grace: float,
        clock: Callable[[], float],
    ) -> None:
        self.pid = pid
        self.stdout_fd = stdout_fd
        self.stderr_fd = stderr_fd
        self._deadline = deadline
        self._kill_grace = kill_grace
        self._clock = clock
        self._terminated_at: float | None = None
        self._status: ExitStatus | None = None
        self._closed = False
        self._cancelled = False

    @classmethod
    def start(
        cls,
        user: UnixUser,
        command: str | Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        kill_grace: float = 5.0,
        lang: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        euid: int | None = None,
    ) -> Execution:
        """Start ``command`` as ``user``.

        ``command`` is a shell string (run as ``<login shell> -c command``) or an argv
        list (``argv[0]`` looked up on the login PATH unless it contains ``/``). ``env``
        adds to or overrides the login environment; names must be valid identifiers.
        ``timeout`` is seconds from now (``None`` = no limit). Raises ``ExecError`` for an
        invalid request and ``SpawnError``/``PrivilegeError`` if it cannot start.
        """
        if timeout is not None and not timeout > 0:
            raise ExecError("timeout must be a positive number of seconds")
        if lang is None:
            lang = os.environ.get("LANG")
        full_env = base_environment(user, lang=lang or None)
        for name, value in (env or {}).items():
            if not _ENV_NAME.fullmatch(name) or "\x00" in value:
                raise ExecError(f"invalid environment variable {name!r}")
            full_env[name] = value
        if isinstance(command, str):
            if not command:
                raise ExecError("empty command")
            executable, argv = user.shell, [user.shell, "-c", command]
        else:
            argv = list(command)
            if not argv or not argv[0]:
                raise ExecError("empty command")
            found = argv[0] if "/" in argv[0] else which(argv[0], full_env["PATH"])
            if found is None:
                raise ExecError(f"command not found: {argv[0]!r}")
            executable = found
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            pid = spawn(
                argv,
                executable=executable,
                user=user,
                env=full_env,
                stdin=null,
                stdout=out_w,
                stderr=err_w,
                euid=euid,
            )
        except BaseException:
            os.close(out_r)
            os.close(err_r)
            raise
        finally:
            for fd in (out_w, err_w, null):
                os.close(fd)
        os.set_blocking(out_r, False)
        os.set_blocking(err_r, False)
        deadline = None if timeout is None else clock() + timeout
        return cls(pid, out_r, err_r, deadline, kill_grace, clock)

    def _read(self, fd: int, max_bytes: int) -> bytes | None:
        if self._closed:
            return b""
        try:
            return os.read(fd, max_bytes)
        except (BlockingIOError, InterruptedError):
            return None

    def read_stdout(self, max_bytes: int = 65536) -> bytes | None:
        """Available stdout bytes; ``None`` if none yet, ``b""`` at EOF."""
        return self._read(self.stdout_fd, max_bytes)

    def read_stderr(self, max_bytes: int = 65536) -> bytes | None:
        """Available stderr bytes; ``None`` if none yet, ``b""`` at EOF."""
        return self._read(self.stderr_fd, max_bytes)

    @property
    def timed_out(self) -> bool:
        return self._terminated_at is not None and not self._cancelled

    def next_deadline(self) -> float | None:
        """Seconds until ``check_timeout`` has something to do; ``None`` if never."""
        if self._status is not None:
            return None
        if self._terminated_at is not None:
            return max(0.0, self._terminated_at + self._kill_grace - self._clock())
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - self._clock())

    def check_timeout(self) -> None:
        """At the deadline SIGTERM the process group; ``kill_grace`` later SIGKILL it."""
        if self.poll() is not None:
            return
        now = self._clock()
        if self._terminated_at is None:
            if self._deadline is not None and now >= self._deadline:
                self._terminated_at = now
                self._signal(signal.SIGTERM)
        elif now >= self._terminated_at + self._kill_grace:
            self._signal(signal.SIGKILL)

    def cancel(self) -> None:
        """Stop the command now (the user or broker gave up): SIGTERM, then SIGKILL later."""
        if self.poll() is None and self._terminated_at is None:
            self._cancelled = True
            self._deadline = self._clock()
            self.check_timeout()

    def poll(self) -> ExecResult | None:
        """The result once the command has ended (reaps it), else ``None``."""
        if self._status is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self._status = ExitStatus(None, None)
            else:
                if pid:
                    self._status = decode_wait_status(status)
        if self._status is None:
            return None
        return ExecResult(self._status.code, self._status.signal, self.timed_out)

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def close(self) -> None:
        """Close both pipes. Does not stop the command (``cancel`` does)."""
        if not self._closed:
            self._closed = True
            os.close(self.stdout_fd)
            os.close(self.stderr_fd)
