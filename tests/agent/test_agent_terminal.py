"""Real ptys running a real bash: I/O, resize, exit codes, privilege drop, the table."""

from __future__ import annotations

import os
import pwd
import signal
import time

import pytest
from agent_helpers import read_until

from agent.errors import (
    InputOverflow,
    PrivilegeError,
    TerminalError,
    TooManyTerminals,
    UnknownUser,
)
from agent.replay import OutputBuffer
from agent.terminal import Terminal
from agent.terminal_table import TerminalTable
from agent.users import UnixUser, resolve_user

pytestmark = pytest.mark.slow


def wait_exit(terminal: Terminal, timeout: float = 10.0) -> None:
    read_until(terminal, lambda _: terminal.poll() is not None, timeout)
    deadline = time.monotonic() + timeout
    while terminal.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)


def test_echo_hello(me_bash: UnixUser) -> None:
    terminal = Terminal.open(me_bash)
    try:
        terminal.write(b"echo hel''lo\n")
        out = read_until(terminal, lambda o: b"hello\r\n" in o)
        assert b"hello" in out
        terminal.write(b"echo $TERM:$USER:$0\n")
        out = read_until(terminal, lambda o: b"xterm-256color:" in o.replace(b"$TERM", b""))
        assert f"xterm-256color:{me_bash.name}:-bash".encode() in out
    finally:
        terminal.close()


def test_resize_is_seen_by_stty(me_bash: UnixUser) -> None:
    terminal = Terminal.open(me_bash, cols=80, rows=24)
    try:
        terminal.write(b"stty size\n")
        read_until(terminal, lambda o: b"24 80" in o)
        terminal.resize(132, 43)
        terminal.write(b"stty size\n")
        read_until(terminal, lambda o: b"43 132" in o)
        with pytest.raises(TerminalError):
            terminal.resize(0, 10)
    finally:
        terminal.close()


def test_exit_code(me_bash: UnixUser) -> None:
    terminal = Terminal.open(me_bash)
    terminal.write(b"exit 3\n")
    wait_exit(terminal)
    status = terminal.poll()
    assert status is not None
    assert status.code == 3
    assert status.signal is None
    assert terminal.read() == b""  # output ended
    terminal.close()


def test_read_burst_gathers_a_stream_and_keeps_every_byte(me_bash: UnixUser) -> None:
    terminal = Terminal.open(me_bash)
    try:
        read_until(terminal, lambda o: b"$ " in o or terminal.output_offset > 0, 5.0)
        terminal.write(b"head -c 300000 /dev/zero | tr '\\0' x; echo DO''NE\n")
        scratch = bytearray(64 * 1024)
        out = b""
        sizes: list[int] = []
        deadline = time.monotonic() + 20
        while b"DONE" not in out and time.monotonic() < deadline:
            data = terminal.read_burst(scratch, 1024)
            if data is None:
                time.sleep(0.001)
                continue
            assert data  # the shell is still there
            sizes.append(len(data))
            out += data
        assert b"x" * 300000 in out and b"x" * 300001 not in out
        assert max(sizes) > 8192  # more than one pty read in a burst
        assert max(sizes) <= 64 * 1024  # stops once the scratch buffer is full
        # every byte read is in the replay buffer, once
        assert terminal.replay(0).data.endswith(out[-1000:])
        assert terminal.output_offset >= len(out)
        terminal.write(b"exit 0\n")
        wait_exit(terminal)
        while (data := terminal.read_burst(scratch, 1024)) != b"":
            pass
        assert terminal.read_burst(scratch, 1024) == b""  # end of output, again
    finally:
        terminal.close()


def test_input_the_pty_refuses_is_queued_in_order_and_capped(me_bash: UnixUser) -> None:
    """A keystroke goes straight to the pty; what it does not take waits, in order, behind
    later input, and more than ``max_input`` queued is refused without writing any of it.
    (A pipe stands in for the pty master: its 64 KiB capacity is a full pty's refusal.)"""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    terminal = Terminal(write_end, os.getpid(), me_bash, OutputBuffer(1024), 256 * 1024)
    try:
        terminal.write(b"k")
        assert os.read(read_end, 16) == b"k" and not terminal.wants_write
        first = bytes(i % 251 for i in range(100_000))
        terminal.write(first)
        assert 0 < terminal.pending_input < len(first) and terminal.wants_write
        second = b"after"
        terminal.write(second)
        with pytest.raises(InputOverflow):
            terminal.write(b"x" * (256 * 1024))
        received = b""
        while len(received) < len(first) + len(second):
            received += os.read(read_end, 65536)
            terminal.flush()
        assert received == first + second and not terminal.wants_write
    finally:
        os.close(read_end)
        os.close(write_end)


def test_read_burst_can_leave_keeping_to_the_caller(me_bash: UnixUser) -> None:
    terminal = Terminal.open(me_bash)
    try:
        read_until(terminal, lambda o: b"$ " in o or terminal.output_offset > 0, 5.0)
        before = terminal.output_offset
        terminal.write(b"echo ke''pt\n")
        scratch = bytearray(64 * 1024)
        out = b""
        deadline = time.monotonic() + 10
        while b"kept" not in out and time.monotonic() < deadline:
            data = terminal.read_burst(scratch, 1024, keep=False)
            if data is None:
                time.sleep(0.001)
                continue
            assert terminal.output_offset == before  # not kept yet
            terminal.keep(data)
            before += len(data)
            out += data
        assert terminal.output_offset == before
        assert terminal.replay(before - len(out)).data == out
    finally:
        terminal.close()


def test_killed_by_signal(me_bash: UnixUser) -> None:
    terminal = Terminal.open(me_bash)
    read_until(terminal, lambda o: len(o) > 0 or terminal.output_offset > 0, 2.0)
    terminal.kill()
    wait_exit(terminal)
    status = terminal.poll()
    assert status is not None
    assert status.signal == signal.SIGKILL
    terminal.close()


def test_privilege_drop_to_nobody(nobody_bash: UnixUser) -> None:
    terminal = Terminal.open(nobody_bash)
    try:
        terminal.write(b"echo uid=$(id -u) gid=$(id -g) home=$HOME cwd=$PWD\n")
        uid = pwd.getpwnam("nobody").pw_uid
        out = read_until(terminal, lambda o: f"uid={uid} ".encode() in o)
        assert f"gid={nobody_bash.gid} home={nobody_bash.home} cwd=/".encode() in out
    finally:
        terminal.close()


def test_non_root_agent_cannot_switch_user(me_bash: UnixUser) -> None:
    other = UnixUser("someone", me_bash.uid + 1, me_bash.gid, "/", me_bash.shell)
    with pytest.raises(PrivilegeError):
        Terminal.open(other, euid=me_bash.uid + 2)


def test_unknown_user_refused() -> None:
    with pytest.raises(UnknownUser):
        resolve_user("no-such-user-corral")


def test_replay_after_reconnect_is_exact(me_bash: UnixUser) -> None:
    terminal = Terminal.open(me_bash, buffer_capacity=4096)
    try:
        terminal.write(b"echo first-part\n")
        seen = read_until(terminal, lambda o: b"first-part\r\n" in o)
        broker_has = terminal.output_offset
        assert broker_has == len(seen)
        terminal.write(b"echo second-part\n")  # "the broker is disconnected" from here
        missed = read_until(terminal, lambda o: b"second-part\r\n" in o)
        replay = terminal.replay(broker_has)
        assert replay.gap == 0
        assert replay.offset == broker_has
        assert replay.data == missed
        assert seen + replay.data == terminal.replay(0).data
        terminal.write(b"head -c 10000 /dev/zero | tr '\\0' x; echo; echo END\n")
        read_until(terminal, lambda o: b"END\r\n" in o.replace(b"echo END", b""))
        overflow = terminal.replay(broker_has)
        assert overflow.gap > 0
        assert len(overflow.data) == 4096
        assert overflow.offset == broker_has + overflow.gap == terminal.buffer.start_offset
    finally:
        terminal.close()


def test_table_reaps_detached_after_grace(me_bash: UnixUser) -> None:
    now = [0.0]
    table = TerminalTable(grace_seconds=300, max_terminals=2, clock=lambda: now[0])
    first, second = Terminal.open(me_bash), Terminal.open(me_bash)
    table.add("a", first)
    table.add("b", second)
    with pytest.raises(TooManyTerminals):
        table.add("c", first)
    table.detach("a")
    now[0] = 200
    table.detach("b")
    assert table.next_deadline() == pytest.approx(100)
    assert table.reap() == []
    assert table.attach("b") is second  # broker came back in time
    now[0] = 300
    assert table.reap() == ["a"]
    assert first.closed
    assert "a" not in table
    assert table.get("b") is second
    deadline = time.monotonic() + 10
    while table.next_deadline() is not None and time.monotonic() < deadline:
        table.reap()  # the hung-up shell gets reaped
        time.sleep(0.02)
    assert first.poll() is not None
    second.write(b"exit 5\n")
    wait_exit(second)
    exits = table.exited()
    assert [(cid, st.code) for cid, st in exits] == [("b", 5)]
    assert table.exited() == []  # reported once
    table.close_all()
    assert len(table) == 0


def test_closed_terminal_rejects_io(me_bash: UnixUser) -> None:
    terminal = Terminal.open(me_bash)
    terminal.close()
    with pytest.raises(TerminalError):
        terminal.write(b"x")
    deadline = time.monotonic() + 10
    while terminal.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert terminal.poll() is not None


def test_no_fd_leak(me_bash: UnixUser) -> None:
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        terminal = Terminal.open(me_bash)
        terminal.write(b"exit\n")
        wait_exit(terminal)
        terminal.close()
    assert len(os.listdir("/proc/self/fd")) == before
