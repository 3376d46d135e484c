"""Shared helpers for agent tests (a uniquely named module, not ``conftest``)."""

from __future__ import annotations

import selectors
import time
from collections.abc import Callable

from agent.terminal import Terminal


def read_until(terminal: Terminal, done: Callable[[bytes], bool], timeout: float = 10.0) -> bytes:
    """Drive the terminal the way the agent's loop does until ``done(output)``."""
    out = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(terminal, selectors.EVENT_READ)
        while not done(out):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out; output so far: {out!r}")
            if selector.select(min(left, 0.5)):
                data = terminal.read()
                if data == b"":
                    break
                out += data or b""
    return out
