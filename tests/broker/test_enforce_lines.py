"""The line tracker and the screen reader, without a shell: synthetic bash output."""

from __future__ import annotations

import pytest

from broker.enforce.lines import closed_form, is_incomplete, join_continued
from broker.enforce.screen import read_edit_line
from broker.enforce.tracker import ACCEPT, PROMPT_END, PROMPT_START, LineTracker, State

PROMPT = PROMPT_START + b"\x1b[?2004h\x1b]0;u@h: ~\x07\x1b[01;32mu@h\x1b[00m:~$ " + PROMPT_END


def at_prompt(cols: int = 80) -> LineTracker:
    tracker = LineTracker(cols)
    assert tracker.feed_output(PROMPT)
    return tracker


@pytest.mark.parametrize(
    ("text", "incomplete", "closed"),
    [
        ("echo hi", False, "echo hi"),
        ('echo "a', True, 'echo "a"'),
        ("echo 'a", True, "echo 'a'"),
        ("echo a \\", True, "echo a "),
        ("ls |", True, "ls "),
        ("true &&", True, "true "),
        ("false ||", True, "false "),
        ("echo $(ls", True, "echo $(ls)"),
        ('echo "$(ls', True, 'echo "$(ls)"'),
        ("echo `ls", True, "echo `ls`"),
        ("rm x # it's", False, "rm x # it's"),
        ("echo it\\'s", False, "echo it\\'s"),
        ("echo 'a'b", False, "echo 'a'b"),
    ],
)
def test_incomplete_lines_and_their_closed_form(text: str, incomplete: bool, closed: str) -> None:
    assert is_incomplete(text) is incomplete
    assert closed_form(text) == closed


def test_continued_lines_join_as_bash_joins_them() -> None:
    assert join_continued("r\\", "m -rf x") == "rm -rf x"
    assert join_continued('echo "a', 'b"') == 'echo "a\nb"'
    assert join_continued("ls |", "wc") == "ls | wc"


def test_screen_reads_after_the_prompt_across_wrapped_rows() -> None:
    data = PROMPT + b"echo " + b"x" * 200
    assert read_edit_line(data, len(PROMPT), 80) == "echo " + "x" * 200
    spaced = PROMPT + b"echo a" + b" " * 80 + b"b"
    assert read_edit_line(spaced, len(PROMPT), 40) == "echo a" + " " * 80 + "b"


def test_screen_follows_cursor_editing_and_completion() -> None:
    # typed "xm -f f", Home, Delete, "r": readline's own redraw sequences
    edited = PROMPT + b"xm -f f" + b"\x08" * 7 + b"\x1b[P" + b"\x1b[1@r"
    assert read_edit_line(edited, len(PROMPT), 80) == "rm -f f"
    completed = PROMPT + b"rm -f /tmp/cor" + b"ral-canary-1 "
    assert read_edit_line(completed, len(PROMPT), 80) == "rm -f /tmp/corral-canary-1"


def test_screen_reads_the_match_of_a_reverse_search() -> None:
    data = PROMPT + b"\r(reverse-i-search)`rm': \x1b[7mrm\x1b[27m -f /tmp/x\x08\x08"
    assert read_edit_line(data, len(PROMPT), 80) == "rm -f /tmp/x"


def test_private_csi_from_programs_does_not_break_the_reader() -> None:
    data = PROMPT + b"\x1b[>4;2mls -l\x1b[>4;m"
    assert read_edit_line(data, len(PROMPT), 80) == "ls -l"


def test_tracker_states_and_enter_split() -> None:
    tracker = LineTracker(80)
    assert tracker.state is State.RUNNING
    assert tracker.feed_input(b"ls\r").forward == b"ls\r"  # a program has the terminal
    tracker.feed_output(PROMPT)
    step = tracker.feed_input(b"echo one\recho two\r")
    assert (step.forward, step.enter, step.rest) == (b"echo one", b"\r", b"echo two\r")
    tracker.feed_output(b"echo one")
    assert tracker.line() == "echo one"
    tracker.entered()
    assert tracker.state is State.AWAITING
    tracker.running()
    assert tracker.state is State.RUNNING


def test_marks_split_across_chunks_are_found() -> None:
    tracker = LineTracker(80)
    for i in range(0, len(PROMPT), 3):
        tracker.feed_output(PROMPT[i : i + 3])
    assert tracker.at_prompt
    tracker.feed_output(b"whoami")
    assert tracker.line() == "whoami"


def test_bracketed_paste_is_cut_at_every_newline() -> None:
    tracker = at_prompt()
    step = tracker.feed_input(b"\x1b[200~echo one\nrm -rf /\n\x1b[201~")
    assert step.forward == b"\x1b[200~echo one\x1b[201~"
    assert step.enter == b"\r"
    assert step.rest == b"\x1b[200~rm -rf /\n\x1b[201~"
    tracker.feed_output(PROMPT)
    again = tracker.feed_input(step.rest)
    assert again.forward == b"\x1b[200~rm -rf /\x1b[201~" and again.enter == b"\r"


def test_nobody_but_the_gate_sends_the_accept_sequence() -> None:
    tracker = at_prompt()
    assert tracker.feed_input(b"rm x" + ACCEPT).forward == b"rm x\x18"
    tracker.entered()
    tracker.running()
    assert tracker.feed_input(b"\x18").forward == b"\x18"
    assert tracker.feed_input(b"\r").forward == b""  # split across two messages
    assert tracker.feed_input(b"\x18\x05").forward == b"\x18\x05"  # running: untouched


def test_control_keys_that_run_a_line_are_enters() -> None:
    for key in (b"\n", b"\x0f"):
        tracker = at_prompt()
        assert tracker.feed_input(b"ls" + key).enter == key
    tracker = at_prompt()
    assert tracker.feed_input(b"ls\x18\x05").forward == b"ls"  # edit-and-execute dropped


def test_overflow_makes_the_line_unreadable_until_the_next_prompt() -> None:
    tracker = LineTracker(80, max_bytes=1000)
    tracker.feed_output(PROMPT)
    tracker.feed_output(b"x" * 2000)
    assert not tracker.readable
    tracker.feed_output(PROMPT)
    assert tracker.readable
