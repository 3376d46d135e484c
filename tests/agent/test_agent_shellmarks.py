"""The bash prompt marks and key bindings the broker's command gate relies on."""

from __future__ import annotations

import time

import pytest
from agent_helpers import read_until

from agent.shellmarks import ACCEPT, PROMPT_END, PROMPT_START, shell_integration
from agent.terminal import Terminal
from agent.users import UnixUser

pytestmark = pytest.mark.slow


def quiet_for(terminal: Terminal, seconds: float) -> bytes:
    out = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        chunk = terminal.read()
        if chunk:
            out += chunk
        time.sleep(0.01)
    return out


def prompt(terminal: Terminal) -> bytes:
    return read_until(terminal, lambda o: PROMPT_END in o)


def test_only_bash_gets_the_hook() -> None:
    assert shell_integration("/bin/sh") == {}
    env = shell_integration("/usr/bin/bash")
    assert env["PROMPT_COMMAND"] == "__corral_prompt"
    assert env["BASH_FUNC___corral_prompt%%"].startswith("() {")


def test_without_the_flag_a_plain_return_runs_the_line(me_bash: UnixUser) -> None:
    terminal = Terminal.open(me_bash)
    try:
        terminal.write(b"echo pl''ain\r")
        out = read_until(terminal, lambda o: b"plain\r\n" in o)
        assert PROMPT_START not in out and PROMPT_END not in out
    finally:
        terminal.close()


def test_marks_and_only_the_broker_accept_runs_a_line(me_bash: UnixUser) -> None:
    terminal = Terminal.open(me_bash, shell_marks=True)
    try:
        first = prompt(terminal)
        assert PROMPT_START in first and first.rstrip().endswith(PROMPT_END)
        terminal.write(b"echo ty''ped\r")  # a Return: readline's abort, nothing runs
        assert b"typed\r\n" not in quiet_for(terminal, 0.5)
        terminal.write(ACCEPT)
        out = read_until(terminal, lambda o: b"typed\r\n" in o and PROMPT_END in o)
        assert out.index(PROMPT_START) < out.rindex(PROMPT_END)
        # the hook cannot be removed, and rewriting PS1 keeps the prompt-end mark
        terminal.write(b"unset PROMPT_COMMAND; PS1='$ '" + ACCEPT)
        out = read_until(terminal, lambda o: b"readonly" in o and o.endswith(PROMPT_END))
        assert out.endswith(b"$ " + PROMPT_END)
        # a line continued with PS2 also ends with the mark
        terminal.write(b'echo "a' + ACCEPT)
        assert read_until(terminal, lambda o: o.endswith(b"> " + PROMPT_END))
        terminal.write(b'b"' + ACCEPT)
        read_until(terminal, lambda o: b"a\r\nb\r\n" in o)
    finally:
        terminal.close()


def test_type_ahead_lines_are_discarded_and_bind_x_removed(me_bash: UnixUser) -> None:
    terminal = Terminal.open(me_bash, shell_marks=True)
    try:
        prompt(terminal)
        terminal.write(b"sleep 0.5" + ACCEPT)
        time.sleep(0.1)
        terminal.write(b"echo ah''ead\n")  # complete line typed while sleep runs
        out = read_until(terminal, lambda o: b"discarded" in o and o.endswith(PROMPT_END))
        assert b"ahead\r\n" not in out
        terminal.write(b"bind -x '\"\\C-t\": echo BO''UND'" + ACCEPT)
        prompt(terminal)
        terminal.write(b"\x14")
        assert b"BOUND" not in quiet_for(terminal, 0.5)
    finally:
        terminal.close()
