"""Start a child process as a given Unix user: the one place privileges are dropped.

Terminals and exec commands both come here. The child becomes a session leader (so
signals reach its whole process tree and a pty can become its controlling terminal),
drops privileges in the only safe order (setgid, initgroups, setuid, then verifies it
cannot regain root), gets a clean login environment, ``cd``s to the user's home and execs.
Failures in the child are reported back over a close-on-exec pipe and raised in the
parent as ``SpawnError``, the way ``subprocess`` does.

This module must never exec anything with the agent's own environment or credentials
when another user was asked for, and must never run Python code in the child beyond the
few syscalls needed before ``execve``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import termios
from collections.abc import Mapping, Sequence

from agent.errors import SpawnError
from agent.users import UnixUser, needs_switch

__all__ = [
    "ExitStatus",
    "base_environment",
    "decode_wait_status",
    "spawn",
]

ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
USER_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games"


class ExitStatus:
    """How a child ended: ``code`` for a normal exit, ``signal`` when killed by one."""

    __slots__ = ("code", "signal")

    def __init__(self, code: int | None, sig: int | None) -> None:
        self.code = code
        self.signal = sig

    def __repr__(self) -> str:
        return f"ExitStatus(code={self.code!r}, signal={self.signal!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExitStatus):
            return NotImplemented
        return (self.code, self.signal) == (other.code, other.signal)

    def __hash__(self) -> int:
        return hash((self.code, self.signal))


def decode_wait_status(status: int) -> ExitStatus:
    """Turn a ``waitpid`` status into an ``ExitStatus``."""
    if os.WIFSIGNALED(status):
        return ExitStatus(None, os.WTERMSIG(status))
    return ExitStatus(os.WEXITSTATUS(status), None)


def base_environment(
    user: UnixUser,
    *,
    term: str | None = None,
    lang: str | None = None,
) -> dict[str, str]:
    """The environment a login gives ``user``: nothing inherited from the agent but LANG."""
    env = {
        "HOME": user.home,
        "SHELL": user.shell,
        "USER": user.name,
        "LOGNAME": user.name,
        "PATH": ROOT_PATH if user.uid == 0 else USER_PATH,
    }
    if term:
        env["TERM"] = term
    if lang:
        env["LANG"] = lang
    return env


def spawn(
    argv: Sequence[str],
    *,
    executable: str,
    user: UnixUser,
    env: Mapping[str, str],
    stdin: int,
    stdout: int,
    stderr: int,
    controlling_tty: bool = False,
    euid: int | None = None,
) -> int:
    """Fork and exec ``executable`` with ``argv`` as ``user``; return the child's pid.

    ``stdin``/``stdout``/``stderr`` are fds the child gets as 0/1/2. With
    ``controlling_tty`` the stdin fd must be a pty slave, which becomes the child's
    controlling terminal. Raises ``PrivilegeError`` if the agent cannot become ``user``
    and ``SpawnError`` if the child failed before ``execve`` succeeded.
    """
    switch = needs_switch(user, os.geteuid() if euid is None else euid)
    env_list = {str(k): str(v) for k, v in env.items()}
    args: list[str] = list(argv)
    if not args:
        raise SpawnError("empty argv")
    for item in [executable, *args, *env_list, *env_list.values()]:
        if "\x00" in item:
            raise SpawnError("NUL byte in argv or environment")
    err_r, err_w = os.pipe()  # both close-on-exec (PEP 446)
    try:
        pid = os.fork()
    except OSError as exc:
        os.close(err_r)
        os.close(err_w)
        raise SpawnError(f"fork failed: {exc.strerror}") from exc
    if pid == 0:  # pragma: no cover - runs in the child, reported through err_w
        _child(
            args, executable, user, env_list, stdin, stdout, stderr, controlling_tty, switch, err_w
        )
    os.close(err_w)
    try:
        report = b""
        while True:
            try:
                chunk = os.read(err_r, 4096)
            except InterruptedError:
                continue
            if not chunk:
                break
            report += chunk
    finally:
        os.close(err_r)
    if report:
        # exec failed: the child is exiting; reap it so it never lingers as a zombie.
        while True:
            try:
                os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
            except ChildProcessError:
                break
        step, _, rest = report.decode("utf-8", "replace").partition(":")
        _code, _, message = rest.partition(":")
        raise SpawnError(f"cannot start {executable} as {user.name!r}: {step}: {message}")
    return pid


def _child(
    argv: list[str],
    executable: str,
    user: UnixUser,
    env: Mapping[str, str],
    stdin: int,
    stdout: int,
    stderr: int,
    controlling_tty: bool,
    switch: bool,
    err_w: int,
) -> None:  # pragma: no cover - child side of fork
    step = "setup"
    try:
        # Python ignores SIGPIPE and the agent may block signals; a shell must see defaults.
        step = "signals"
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGQUIT):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        step = "setsid"
        os.setsid()
        if controlling_tty:
            step = "controlling tty"
            fcntl.ioctl(stdin, termios.TIOCSCTTY, 0)
        step = "dup2"
        # Move the fds out of the way first so dup2 onto 0/1/2 never clobbers a source.
        fds = [os.dup(stdin), os.dup(stdout), os.dup(stderr)]
        for target, fd in enumerate(fds):
            os.dup2(fd, target)  # inheritable
        for fd in fds:
            os.close(fd)
        if switch:
            step = "setgid"
            os.setgid(user.gid)
            step = "initgroups"
            os.initgroups(user.name, user.gid)
            step = "setuid"
            os.setuid(user.uid)
            step = "verify drop"
            try:
                os.setuid(0)
            except PermissionError:
                pass
            else:
                raise OSError(errno.EPERM, "could regain root after setuid")
        step = "chdir"
        try:
            os.chdir(user.home)
        except OSError:
            os.chdir("/")  # like login(1): "No directory, logging in with HOME=/"
        step = "execve"
        os.execve(executable, argv, dict(env))  # noqa: S606 - argv, no shell
    except BaseException as exc:
        code = getattr(exc, "errno", None) or 0
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        try:
            os.write(err_w, f"{step}:{code}:{reason}".encode("utf-8", "replace"))
        finally:
            os._exit(127)
    os._exit(127)
