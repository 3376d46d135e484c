"""Read the edit line off the screen: what the shell echoed after its prompt.

Called once per Enter (never per output chunk: ``pyte`` runs at well under 1 MB/s) with
the bytes the shell wrote since its last prompt start and the offset of the prompt-end
mark inside them. Whatever readline did to the line (tab completion, history recall,
cursor editing, kill and yank) shows in that echo, so the text after the prompt-end
position, read across wrapped rows, is the line the shell holds. A reverse search
(Ctrl-R) replaces the prompt by ``(reverse-i-search)`q': match``; the match is the line.

This module must never touch the network or keep state between calls.
"""

from __future__ import annotations

import re

import pyte

__all__ = ["read_edit_line"]

#: Rows of the virtual screen: readline moves the cursor relatively, so a tall screen that
#: never scrolls keeps the prompt row where it was drawn.
VIRTUAL_ROWS = 400
#: CSI sequences with a private marker pyte's handlers do not take (``CSI > 4 ; m``, sent
#: by vim and others); they never move the cursor, so dropping them changes nothing.
_PRIVATE_CSI = re.compile(rb"\x1b\[[<=>][0-9;:]*[ -/]*[@-~]")
_SEARCH = re.compile(r"^\((?:failed )?(?:reverse-)?i-search\)`.*?': ", re.S)


def read_edit_line(data: bytes, prompt_end: int, cols: int) -> str:
    """The text after the prompt-end mark at ``prompt_end`` once ``data`` is displayed."""
    cols = max(cols, 2)
    height = min(VIRTUAL_ROWS, data.count(b"\n") + len(data) // cols + 8)
    screen = pyte.Screen(cols, height)
    stream = pyte.ByteStream(screen)
    stream.feed(_PRIVATE_CSI.sub(b"", data[:prompt_end]))
    y0, x0 = screen.cursor.y, screen.cursor.x
    stream.feed(_PRIVATE_CSI.sub(b"", data[prompt_end:]))
    used = [y for y in screen.dirty if y >= y0] + [y0, screen.cursor.y]
    rows = [_row(screen, y) for y in range(y0, max(used) + 1)]
    while len(rows) > 1 and not rows[-1].strip():
        rows.pop()
    whole = "".join(rows[:-1]) + rows[-1].rstrip()
    search = _SEARCH.match(whole)
    if search is not None:
        return whole[search.end() :].strip()
    return whole[x0:].strip()


def _row(screen: pyte.Screen, y: int) -> str:
    line = screen.buffer[y]
    return "".join(line[x].data for x in range(screen.columns))
