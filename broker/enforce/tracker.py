"""The line tracker: where the shell's prompt is, and which keystroke is an Enter.

Sans-I/O. ``feed_output`` sits on the output hot path, so it only scans each chunk for the
OSC 133 marks the agent's bash prints (``A`` prompt start, ``B`` prompt end) and keeps a
bounded copy of the bytes since the last prompt start; no screen emulation. ``feed_input``
splits keystrokes at the first Enter while the shell is at a prompt and says what may be
forwarded now; the line itself is read off the screen only when asked (:meth:`line`, at
Enter). Bracketed pastes are cut at each newline so that every pasted line is an Enter of
its own: a paste can never run a line nobody decided.

States: *prompt* (a ``B`` mark arrived since the last forwarded Enter: keystrokes edit the
line), *awaiting* (an Enter was forwarded; input is held by the gate until the next
prompt or a short timeout), *running* (a program has the terminal: keystrokes pass
through untouched). The tracker never raises on odd input and never grows without bound.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from broker.enforce.lines import is_incomplete, join_continued
from broker.enforce.screen import read_edit_line

__all__ = [
    "ACCEPT",
    "PROMPT_END",
    "PROMPT_START",
    "SHELL_MARKS_ENV",
    "InputStep",
    "LineTracker",
    "State",
]

PROMPT_START = b"\x1b]133;A\x07"
PROMPT_END = b"\x1b]133;B\x07"
PASTE_START = b"\x1b[200~"
PASTE_END = b"\x1b[201~"
#: Keys that make readline accept the line: Return, Ctrl-J, Ctrl-O (operate-and-get-next).
ENTER_KEYS = frozenset(b"\r\n\x0f")
#: Ctrl-X Ctrl-E opens an editor and runs what it saves without another Enter: refused.
EDIT_AND_EXECUTE = b"\x18\x05"
#: The only key sequence the agent's bash accepts a line on (agent/shellmarks.py): the
#: gate sends it after a decision and removes it from whatever people type.
ACCEPT = b"\x18\r"
#: Sent in the terminal ``open_channel``'s env to ask the agent for the marks.
SHELL_MARKS_ENV = "CORRAL_SHELL_MARKS"
_ACCEPTS = (ACCEPT, b"\x18\n")
_MARK_TAIL = len(PROMPT_START) - 1


class State(enum.Enum):
    PROMPT = "prompt"
    AWAITING = "awaiting"
    RUNNING = "running"


@dataclass(frozen=True, slots=True)
class InputStep:
    """``forward`` goes to the shell now; ``enter`` (when not ``None``) is the Enter key
    held for a decision, and ``rest`` is the input after it, held until the next prompt."""

    forward: bytes
    enter: bytes | None = None
    rest: bytes = b""


class LineTracker:
    def __init__(self, cols: int, *, max_bytes: int = 256 * 1024) -> None:
        self.cols = cols
        self.max_bytes = max_bytes
        self.state = State.RUNNING
        self.marks_seen = False
        self._since_prompt = bytearray()
        self._prompt_end: int | None = None
        self._overflow = False
        self._carry = b""  # the tail of the last chunk, in case a mark was split
        self._continued: str | None = None
        self._in_paste = False
        self._after_ctrl_x = False

    # ------------------------------------------------------------------ output

    def resize(self, cols: int) -> None:
        self.cols = cols

    def feed_output(self, data: bytes) -> bool:
        """Note the shell's output; True when a prompt-end mark put the shell at a prompt."""
        if b"\x1b" not in data and b"\x1b" not in self._carry:
            self._append(data)
            return False
        scan = self._carry + data
        base = len(self._since_prompt) - len(self._carry)
        prompted = False
        start = scan.rfind(PROMPT_START)
        if start >= 0:
            self.marks_seen = True
            self._continued = None
            self._since_prompt.clear()
            self._prompt_end = None
            self._overflow = False
            rest = scan[start + len(PROMPT_START) :]
            self._since_prompt += rest
            scan, base = rest, 0
        else:
            self._append(data)
        end = scan.rfind(PROMPT_END)
        if end >= 0:
            self.marks_seen = True
            self._prompt_end = base + end + len(PROMPT_END)
            self.state = State.PROMPT
            prompted = True
        self._carry = bytes(scan[-_MARK_TAIL:]) if b"\x1b" in scan[-_MARK_TAIL:] else b""
        return prompted

    def _append(self, data: bytes) -> None:
        if self._overflow:
            return
        if len(self._since_prompt) + len(data) > self.max_bytes:
            self._overflow = True  # unreadable until the next prompt start: fail closed
            return
        self._since_prompt += data

    # ------------------------------------------------------------------- input

    def feed_input(self, data: bytes) -> InputStep:
        """Split ``data`` at the first Enter if the shell is at a prompt."""
        if data in _PLAIN_KEYS and not self._after_ctrl_x and not self._in_paste:
            return _plain_step(data)  # one ordinary key: what _split would conclude
        return self._split(data)

    def _split(self, data: bytes) -> InputStep:
        data = self._strip_accept(data)
        if self.state is not State.PROMPT:
            return InputStep(data)
        data = data.replace(EDIT_AND_EXECUTE, b"")
        out = bytearray()
        i, n = 0, len(data)
        while i < n:
            if self._in_paste:
                close = data.find(PASTE_END, i)
                stop = n if close < 0 else close
                newline = _first_enter(data, i, stop)
                if newline >= 0:
                    out += data[i:newline] + PASTE_END
                    rest = PASTE_START + data[newline + 1 :]
                    if data[newline : newline + 2] == b"\r\n":
                        rest = PASTE_START + data[newline + 2 :]
                    self._in_paste = False
                    return InputStep(bytes(out), b"\r", rest)
                if close < 0:
                    out += data[i:]
                    return InputStep(bytes(out))
                out += data[i : close + len(PASTE_END)]
                self._in_paste = False
                i = close + len(PASTE_END)
                continue
            if data.startswith(PASTE_START, i):
                self._in_paste = True
                out += PASTE_START
                i += len(PASTE_START)
                continue
            if data[i] in ENTER_KEYS:
                return InputStep(bytes(out), data[i : i + 1], data[i + 1 :])
            out.append(data[i])
            i += 1
        return InputStep(bytes(out))

    def _strip_accept(self, data: bytes) -> bytes:
        """Nobody but the gate may send the accept sequence, in any state."""
        if self._after_ctrl_x and data[:1] in (b"\r", b"\n"):
            data = data[1:]
        for seq in _ACCEPTS:
            while seq in data:
                data = data.replace(seq, b"\x18")
        self._after_ctrl_x = data.endswith(b"\x18")
        return data

    # --------------------------------------------------------------- the line

    @property
    def at_prompt(self) -> bool:
        return self.state is State.PROMPT

    @property
    def readable(self) -> bool:
        """False when the bytes since the prompt were too many to keep (fail closed)."""
        return not self._overflow and self._prompt_end is not None

    def line(self) -> str:
        """The whole command bash will run at this Enter (continued lines joined)."""
        text = (
            read_edit_line(bytes(self._since_prompt), self._prompt_end, self.cols)
            if self._prompt_end is not None
            else ""
        )
        if self._continued is not None:
            return join_continued(self._continued, text)
        return text

    def incomplete(self, line: str) -> bool:
        return is_incomplete(line)

    def continued(self, line: str) -> None:
        """The Enter of an incomplete ``line`` was forwarded: bash will ask for more."""
        self._continued = line
        self.state = State.AWAITING

    def entered(self) -> None:
        """An Enter was forwarded (or the line discarded): wait for the next prompt."""
        self._continued = None
        self.state = State.AWAITING

    def running(self) -> None:
        """No prompt came back in time: a program has the terminal."""
        if self.state is State.AWAITING:
            self.state = State.RUNNING


#: Single keystrokes that are never an Enter, part of an accept sequence, Ctrl-X or the
#: start of a paste: forwarded as they are in every state.
_PLAIN_KEYS = frozenset(
    bytes((b,)) for b in range(256) if b not in ENTER_KEYS and b not in (0x18, 0x1B)
)
_PLAIN_STEPS = {key: InputStep(key) for key in _PLAIN_KEYS}
_plain_step = _PLAIN_STEPS.__getitem__


def _first_enter(data: bytes, start: int, stop: int) -> int:
    for j in range(start, stop):
        if data[j] in (0x0D, 0x0A):
            return j
    return -1
