"""The line tracker's shortcut for one ordinary key decides exactly as its general path."""

from __future__ import annotations

import pytest

from broker.enforce.tracker import PROMPT_END, PROMPT_START, LineTracker, State


def _tracker(state: State, *, after_ctrl_x: bool, in_paste: bool) -> LineTracker:
    tracker = LineTracker(80)
    if state is not State.RUNNING:
        tracker.feed_output(PROMPT_START + b"$ " + PROMPT_END)
    if in_paste:
        tracker.feed_input(b"\x1b[200~x")
    if state is State.AWAITING:
        tracker.entered()
    if after_ctrl_x:
        tracker.feed_input(b"\x18")
    return tracker


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("after_ctrl_x", [False, True])
@pytest.mark.parametrize("in_paste", [False, True])
def test_every_single_key_in_every_state(state: State, after_ctrl_x: bool, in_paste: bool) -> None:
    for value in range(256):
        key = bytes((value,))
        fast = _tracker(state, after_ctrl_x=after_ctrl_x, in_paste=in_paste)
        slow = _tracker(state, after_ctrl_x=after_ctrl_x, in_paste=in_paste)
        assert fast.feed_input(key) == slow._split(key), key
        after = (fast.state, fast._after_ctrl_x, fast._in_paste)
        assert after == (slow.state, slow._after_ctrl_x, slow._in_paste), key
