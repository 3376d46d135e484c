"""The agent's one event loop: an epoll set whose interest set is re-declared.

Whenever its state may have changed the agent lists what it wants to hear about (file
descriptor, read or write, callback) and this class brings epoll in line with that list
(an ``epoll_ctl`` only where a registration changed), so a connection that opens, pauses
for flow control or closes never leaves a stale registration behind. The sets are small
(a control socket, a few channels, ptys), so the O(n) reconciliation needs no threads.
When nothing changed (a keystroke in, its echo out) the agent passes ``None`` and the
registrations stand: building and comparing the list each time cost more than the
keystroke itself.

It drives ``select.epoll`` (``select.poll`` where there is none) itself rather than
through ``selectors``: a ready descriptor maps straight to its ``Interest``, where
``selectors`` built a key and an event mask in Python for each, about 1.7 us of every
keystroke's and every echo's wake-up (both are two dispatches of a few microseconds).

This module must never block longer than the timeout it is given and never swallow an
exception raised by a callback.
"""

from __future__ import annotations

import contextlib
import math
import os
import select
import time
from collections import namedtuple

__all__ = ["Interest", "Loop"]

_EPOLL = hasattr(select, "epoll")
if _EPOLL:
    _IN, _OUT = select.EPOLLIN, select.EPOLLOUT
else:  # pragma: no cover - not Linux
    _IN, _OUT = select.POLLIN, select.POLLOUT

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
    """Reconciles declared interests with epoll and dispatches readiness."""

    def __init__(self) -> None:
        self._poller = select.epoll() if _EPOLL else select.poll()
        #: fd -> (events registered, its interest): what a wake-up dispatches to.
        self._registered: dict[int, tuple[int, Interest]] = {}
        self._files: dict[int, tuple[int, int]] = {}

    def poll(self, interests: list[Interest] | None, timeout: float | None) -> None:
        """Wait up to ``timeout`` seconds and run the callbacks of ready descriptors.

        ``interests`` replaces the registered set; ``None`` keeps the last one.
        """
        if interests is not None:
            self._declare(interests)
        registered = self._registered
        if not registered:
            # Nothing to watch: still honour the timeout instead of spinning.
            if timeout:
                time.sleep(timeout)
            return
        if _EPOLL:
            ready = self._poller.poll(-1 if timeout is None else max(timeout, 0.0))
        else:  # pragma: no cover - not Linux
            ready = self._poller.poll(None if timeout is None else math.ceil(timeout * 1e3))
        for fd, event in ready:
            entry = registered.get(fd)
            if entry is None:  # forgotten by a callback of this same wake-up
                continue
            events, interest = entry
            # As ``selectors`` reports them: a hang-up or an error wakes both callbacks.
            if event & ~_IN and events & _OUT and interest.on_write is not None:
                interest.on_write()
            if event & ~_OUT and events & _IN and interest.on_read is not None:
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
        poller = self._poller
        for fd, interest in wanted.items():
            events = (_IN if interest.on_read else 0) | (_OUT if interest.on_write else 0)
            identity = _file_of(fd)
            if fd in self._registered and self._files.get(fd) != identity:
                # Another file behind the same number: the old descriptor was closed without
                # forget() and the number reused. Keeping the registration would only swap
                # the stored callbacks and never tell epoll about the new descriptor.
                self._forget(fd)
            if identity is not None:
                self._files[fd] = identity
            entry = self._registered.get(fd)
            try:
                if entry is None:
                    poller.register(fd, events)
                elif entry[0] != events:
                    poller.modify(fd, events)
            except (OSError, ValueError):
                # The descriptor was closed and its number reused: register afresh.
                self._forget(fd)
                try:
                    poller.register(fd, events)
                except (OSError, ValueError):
                    continue
            self._registered[fd] = (events, interest)

    def forget(self, fd: int) -> None:
        """Unregister ``fd`` now (call before closing a descriptor that may be reused)."""
        self._forget(fd)

    def _forget(self, fd: int) -> None:
        self._files.pop(fd, None)
        if self._registered.pop(fd, None) is not None:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._poller.unregister(fd)

    def close(self) -> None:
        poller = self._poller
        if isinstance(poller, select.epoll):
            poller.close()
        self._registered.clear()


def _file_of(fd: int) -> tuple[int, int] | None:
    """Which open file ``fd`` is now (device, inode); ``None`` once it is closed."""
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    return st.st_dev, st.st_ino
