"""The agent's one event loop: a ``selectors`` selector whose interest set is re-declared.

Whenever its state may have changed the agent lists what it wants to hear about (file
descriptor, read or write, callback) and this class brings the selector in line with
that list, so a connection that opens, pauses for flow control or closes never leaves a
stale registration behind. The sets are small (a control socket, a few channels, ptys),
so the O(n) reconciliation needs no threads. When nothing changed (a keystroke in, its
echo out) the agent passes ``None`` and the registrations stand: building and comparing
the list each time cost more than the keystroke itself.

This module must never block longer than the timeout it is given and never swallow an
exception raised by a callback.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import time
from collections import namedtuple

__all__ = ["Interest", "Loop"]

_READ, _WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing.NamedTuple for mypy; collections.namedtuple (no typing) at run time
    from typing import Callable, NamedTuple

    Callback = Callable[[], None]

    class Interest(NamedTuple):
        """Call ``on_read`` / ``on_write`` (either may be ``None``) when ``fd`` is ready."""

        fd: int
        on_read: Callback | None = None
        on_write: Callback | None = None

else:
    Interest = namedtuple("Interest", "fd on_read on_write", defaults=(None, None))
    Interest.__doc__ = "Call ``on_read`` / ``on_write`` (either may be None) when ``fd`` is ready."


class Loop:
    """Reconciles declared interests with a selector and dispatches readiness."""

    def __init__(self, selector: selectors.BaseSelector | None = None) -> None:
        self._selector = selector or selectors.DefaultSelector()
        self._registered: dict[int, int] = {}
        self._files: dict[int, tuple[int, int]] = {}

    def poll(self, interests: list[Interest] | None, timeout: float | None) -> None:
        """Wait up to ``timeout`` seconds and run the callbacks of ready descriptors.

        ``interests`` replaces the registered set; ``None`` keeps the last one.
        """
        if interests is not None:
            self._declare(interests)
        if not self._registered:
            # Nothing to watch: still honour the timeout instead of spinning.
            if timeout:
                time.sleep(timeout)
            return
        for key, mask in self._selector.select(timeout):
            interest = key.data
            if mask & _WRITE and interest.on_write is not None:
                interest.on_write()
            if mask & _READ and interest.on_read is not None:
                interest.on_read()

    def _declare(self, interests: list[Interest]) -> None:
        wanted: dict[int, Interest] = {}
        for interest in interests:
            if interest.on_read is None and interest.on_write is None:
                continue
            previous = wanted.get(interest.fd)
            if previous is not None:  # merge two declarations for one descriptor
                interest = Interest(
                    interest.fd,
                    interest.on_read or previous.on_read,
                    interest.on_write or previous.on_write,
                )
            wanted[interest.fd] = interest
        for fd in list(self._registered):
            if fd not in wanted:
                self._forget(fd)
        for fd, interest in wanted.items():
            events = (selectors.EVENT_READ if interest.on_read else 0) | (
                selectors.EVENT_WRITE if interest.on_write else 0
            )
            identity = _file_of(fd)
            if fd in self._registered and self._files.get(fd) != identity:
                # Another file behind the same number: the old descriptor was closed without
                # forget() and the number reused. modify() with unchanged events would only
                # swap the stored callbacks and never tell epoll about the new descriptor.
                self._forget(fd)
            if identity is not None:
                self._files[fd] = identity
            try:
                if fd in self._registered:
                    self._selector.modify(fd, events, interest)
                else:
                    self._selector.register(fd, events, interest)
            except (OSError, ValueError, KeyError):
                # The descriptor was closed and its number reused: register afresh.
                self._forget(fd)
                try:
                    self._selector.register(fd, events, interest)
                except (OSError, ValueError, KeyError):
                    continue
            self._registered[fd] = events

    def forget(self, fd: int) -> None:
        """Unregister ``fd`` now (call before closing a descriptor that may be reused)."""
        self._forget(fd)

    def _forget(self, fd: int) -> None:
        self._files.pop(fd, None)
        if self._registered.pop(fd, None) is not None:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._selector.unregister(fd)

    def close(self) -> None:
        self._selector.close()


def _file_of(fd: int) -> tuple[int, int] | None:
    """Which open file ``fd`` is now (device, inode); ``None`` once it is closed."""
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    return st.st_dev, st.st_ino
