"""The entry point of command parsing: limits, recursion and the collected result.

:func:`parse_command_line` checks the length limit, then a :class:`Context` drives the
two halves over the text and over every nested piece of it (``$(...)``, ``sh -c``, ...):
:class:`~policies.commands.lexer.Lexer` splits text into words, and
:func:`~policies.commands.resolve.resolve_segment` turns each segment's words into
simple commands. The context is what both halves call to parse nested text again, so the
limits are enforced in one place.

It must never raise anything but :class:`~policies.errors.CommandParseError`, and only
when a limit is exceeded: the length (``max_length``), the total work across all
recursion (a word budget), and the depth (``max_depth``, past which the rest is reported
as unresolved).
"""

from __future__ import annotations

import re

from policies.commands.lexer import Lexer, Segment, Word
from policies.commands.resolve import resolve_segment
from policies.commands.results import ParsedLine, SimpleCommand
from policies.errors import CommandParseError

__all__ = ["MAX_DEPTH", "MAX_LENGTH", "Context", "parse_command_line"]

MAX_LENGTH = 8192
MAX_DEPTH = 6

_SIMPLE_LINE = re.compile(r"[A-Za-z0-9_./,:=+@%^ -]*")


class Context:
    """Accumulates results across recursion and enforces the limits."""

    def __init__(self, max_depth: int) -> None:
        self.max_depth = max_depth
        self.commands: list[SimpleCommand] = []
        self.unresolved: list[str] = []
        self.budget = 10_000  # total words/segments processed across all recursion

    def parse(
        self, text: str, depth: int, wrappers: tuple[str, ...], privileged: bool = False
    ) -> None:
        """Parse ``text`` found at nesting ``depth`` inside ``wrappers``; collect results."""
        if depth > self.max_depth:
            self.unresolved.append("nesting deeper than the parser follows")
            return
        if _SIMPLE_LINE.fullmatch(text):
            # The common case: no quoting, no operators; splitting is what the shell does.
            segments = [Segment([Word(w, started=True) for w in text.split()])]
        else:
            segments = Lexer(text, depth, self).run()
        for seg in segments:
            self.budget -= 1 + len(seg.words)
            if self.budget < 0:
                raise CommandParseError("command line too complex")
            resolve_segment(seg, depth, self, wrappers, privileged)


def parse_command_line(
    line: str, *, max_length: int = MAX_LENGTH, max_depth: int = MAX_DEPTH
) -> ParsedLine:
    """Parse ``line``; raise :class:`CommandParseError` only when it exceeds a limit."""
    if len(line) > max_length:
        raise CommandParseError(f"command line longer than {max_length} characters")
    ctx = Context(max_depth)
    ctx.parse(line, 0, ())
    return ParsedLine(tuple(ctx.commands), tuple(ctx.unresolved))
