"""The agent's log: one line per event on stderr, in the format ``corral-agent run`` used
with ``logging`` (``2026-11-28 10:00:00,123 INFO message``), without importing ``logging``.

``logging`` pulls in ``threading``, ``traceback``, ``string`` and ``weakref`` and costs the
agent about 0.7 MiB of resident memory; the agent logs from one thread with ``%``
arguments only, so this is all it needs. ``configure`` is called once by ``corral-agent run``;
until then (tests, library use) only warnings and errors are written.
"""

from __future__ import annotations

import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO

__all__ = ["DEBUG", "ERROR", "INFO", "WARNING", "Log", "configure", "log"]

DEBUG, INFO, WARNING, ERROR = 10, 20, 30, 40
_NAMES = {DEBUG: "DEBUG", INFO: "INFO", WARNING: "WARNING", ERROR: "ERROR"}


class Log:
    """``logging.Logger``'s ``debug``/``info``/``warning``/``error`` with ``%`` arguments."""

    def __init__(self, level: int = WARNING, stream: IO[str] | None = None) -> None:
        self.level = level
        self.stream = stream  # None: sys.stderr at the time of writing

    def write(self, level: int, msg: str, *args: object) -> None:
        if level < self.level:
            return
        if args:
            try:
                msg = msg % args
            except (TypeError, ValueError):  # a bad format must not kill the agent
                msg = f"{msg} {args!r}"
        now = time.time()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
        line = f"{stamp},{int(now * 1000) % 1000:03d} {_NAMES.get(level, level)} {msg}\n"
        stream = self.stream if self.stream is not None else sys.stderr
        try:
            stream.write(line)
            stream.flush()
        except (OSError, ValueError):  # stderr closed or gone: keep serving
            pass

    def debug(self, msg: str, *args: object) -> None:
        self.write(DEBUG, msg, *args)

    def info(self, msg: str, *args: object) -> None:
        self.write(INFO, msg, *args)

    def warning(self, msg: str, *args: object) -> None:
        self.write(WARNING, msg, *args)

    def error(self, msg: str, *args: object) -> None:
        self.write(ERROR, msg, *args)


#: The agent's one log (``logging.getLogger("corral.agent")`` before).
log = Log()


def configure(*, verbose: bool = False, stream: IO[str] | None = None) -> None:
    """``INFO`` (``DEBUG`` if ``verbose``) and above to ``stream`` (default: stderr)."""
    log.level = DEBUG if verbose else INFO
    log.stream = stream
