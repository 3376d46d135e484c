"""Is a line complete, and how bash joins continued lines.

bash asks for more (``PS2``) after a trailing backslash, inside open quotes or a command
substitution, and after a trailing ``|``, ``&&`` or ``||``. The gate still decides such a
line before forwarding its Enter, in its :func:`closed_form` (quotes closed, the dangling
backslash or operator dropped): if this scanner were ever wrong about "incomplete" and
bash ran the line, it would have been decided all the same. At the final Enter the whole
joined command is decided; a deny sends Ctrl-C, which makes bash discard all of it.

Pure functions of the text; they must never execute or expand anything.
"""

from __future__ import annotations

__all__ = ["closed_form", "is_incomplete", "join_continued"]

_CLOSERS = {"'": "'", '"': '"', "`": "`", "$(": ")"}
_WORD_START = frozenset(" \t\n;&|()")


def _scan(text: str) -> tuple[list[str], bool]:
    """(the open quotes/substitutions, innermost last; ends with an unescaped backslash)."""
    stack: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        top = stack[-1] if stack else ""
        if top == "'":
            if ch == "'":
                stack.pop()
        elif ch == "\\":
            if i + 1 >= n:
                return stack, True
            i += 1
        elif top == '"':
            if ch == '"':
                stack.pop()
            elif ch == "`" or text.startswith("$(", i):
                stack.append("`" if ch == "`" else "$(")
                i += 0 if ch == "`" else 1
        elif ch == "#" and (i == 0 or text[i - 1] in _WORD_START):
            newline = text.find("\n", i)
            if newline < 0:
                break
            i = newline
        elif ch in "'\"":
            stack.append(ch)
        elif ch == "`":
            if top == "`":
                stack.pop()
            else:
                stack.append("`")
        elif text.startswith("$(", i):
            stack.append("$(")
            i += 1
        elif ch == ")" and top == "$(":
            stack.pop()
        i += 1
    return stack, False


def _dangling_operator(text: str) -> str | None:
    tail = text.rstrip()
    for op in ("||", "&&", "|"):
        if tail.endswith(op):
            return tail[: -len(op)]
    return None


def is_incomplete(text: str) -> bool:
    """True when bash would prompt with PS2 rather than run ``text``."""
    stack, backslash = _scan(text)
    return bool(stack) or backslash or _dangling_operator(text) is not None


def closed_form(text: str) -> str:
    """``text`` as if it ended here: what bash would run if it disagreed with us."""
    stack, backslash = _scan(text)
    if backslash:
        text = text[:-1]
    if stack:
        return text + "".join(_CLOSERS[s] for s in reversed(stack))
    cut = _dangling_operator(text)
    return text if cut is None else cut


def join_continued(head: str, tail: str) -> str:
    """The text bash holds after ``head`` was continued by ``tail``."""
    stack, backslash = _scan(head)
    if backslash:
        return head[:-1] + tail  # backslash-newline disappears
    if stack:
        return head + "\n" + tail  # the newline is part of the quoted word
    return head + " " + tail  # after | && ||, the newline is blank space
