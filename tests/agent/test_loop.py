"""The agent's selector loop: declarations reconciled with epoll."""

from __future__ import annotations

import os
import socket

from agent.loop import Interest, Loop


def test_a_reused_descriptor_number_is_registered_afresh() -> None:
    """A socket closed without forget() and a new one given the same number: the new one
    must reach epoll, not only swap the callbacks stored for the old one."""
    loop = Loop()
    heard: list[str] = []
    old_a, old_b = socket.socketpair()
    fd = old_a.fileno()
    loop.poll([Interest(fd, lambda: heard.append("old"))], 0)
    old_a.close()  # the kernel drops it from epoll; the loop is not told
    new_a, new_b = socket.socketpair()
    if new_a.fileno() != fd:
        os.dup2(new_a.fileno(), fd)  # the same number, another file
    try:
        new_b.sendall(b"x")
        loop.poll([Interest(fd, lambda: heard.append("new"))], 1.0)
        assert heard == ["new"]
    finally:
        if new_a.fileno() != fd:
            os.close(fd)
        for s in (old_b, new_a, new_b):
            s.close()
        loop.close()
