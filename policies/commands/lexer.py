"""Split shell text into segments of words, the way a POSIX shell reads it.

This is the syntax half of command parsing: quoting and escapes (``r''m``, ``\rm``,
``$'\x72m'``), the separators ``;`` ``&&`` ``||`` ``|`` ``&`` and subshells, redirections
and here-document bodies (data, never commands), and comments. Each word keeps its literal
value and whether expansion (``$var``, a glob, a brace list) makes it unknowable before the
line runs; what a word *means* (which program runs) is decided in
:mod:`policies.commands.resolve`. ``$(...)``, backticks and ``<(...)`` run commands too,
so their text is handed back to the parse context to be parsed in turn.

It must never execute, expand against the file system or raise; malformed input (an
unterminated quote or substitution) ends the scan and is reported as unresolved.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from policies.commands.parser import Context

__all__ = ["Lexer", "Segment", "Word"]

_PLAIN_RUN = re.compile(r"[^\s'\"\\$`;&|()<>#*?\[{]+")
_SEPARATORS = frozenset({";", "&&", "||", "|", "|&", "&", "(", ")", ";;", ";&", ";;&"})


@dataclass(slots=True)
class Word:
    """A shell word: its literal value and whether expansion makes it unknowable."""

    value: str = ""
    dynamic: bool = False  # contains $var, $(...), `...`, $((...))
    pattern: bool = False  # unquoted glob or brace expansion
    started: bool = False


@dataclass(slots=True)
class Segment:
    words: list[Word] = field(default_factory=list)
    stdin_piped: bool = False
    stdin_fed: bool = False  # here-doc, here-string or '<' redirection


class Lexer:
    """Splits shell text into segments of words; substitutions are parsed recursively."""

    def __init__(self, text: str, depth: int, ctx: Context) -> None:
        self.s = text
        self.i = 0
        self.depth = depth
        self.ctx = ctx
        self.segments: list[Segment] = []
        self.seg = Segment()
        self.word = Word()
        self.redirect_target = False  # the next word is a redirection target, not an argument
        self.heredoc_delims: list[str] = []

    # -- results ----------------------------------------------------------------------
    def end_word(self) -> None:
        if self.word.started:
            if self.redirect_target:
                self.redirect_target = False
            else:
                self.seg.words.append(self.word)
        self.word = Word()

    def end_segment(self, piped: bool = False) -> None:
        self.end_word()
        self.redirect_target = False
        if self.seg.words:
            self.segments.append(self.seg)
        self.seg = Segment(stdin_piped=piped)

    def sub(self, text: str) -> None:
        """Commands inside ``$(...)``, backticks and ``<(...)`` run too: parse them."""
        self.ctx.parse(text, self.depth + 1, ())

    def unresolved(self, why: str) -> None:
        self.ctx.unresolved.append(why)

    # -- scanning ---------------------------------------------------------------------
    def run(self) -> list[Segment]:
        s = self.s
        n = len(s)
        while self.i < n:
            c = s[self.i]
            if c in " \t\r":
                self.end_word()
                self.i += 1
            elif c == "\n":
                self.end_segment()
                self.i += 1
                if self.heredoc_delims:
                    self.skip_heredoc_bodies()
            elif c == "#" and not self.word.started:
                nl = s.find("\n", self.i)
                self.i = n if nl < 0 else nl
            elif c == "'":
                end = s.find("'", self.i + 1)
                if end < 0:
                    self.unresolved("unterminated quote")
                    return self.finish()
                self.word.value += s[self.i + 1 : end]
                self.word.started = True
                self.i = end + 1
            elif c == '"':
                if not self.double_quoted():
                    return self.finish()
            elif c == "\\":
                if self.i + 1 >= n:
                    self.unresolved("line continues past its end")
                    return self.finish()
                if s[self.i + 1] != "\n":
                    self.word.value += s[self.i + 1]
                    self.word.started = True
                self.i += 2
            elif c == "$":
                if not self.dollar(in_double=False):
                    return self.finish()
            elif c == "`":
                if not self.backtick():
                    return self.finish()
            elif c in "<>" and s.startswith("(", self.i + 1):
                inner = self.balanced(self.i + 2)
                if inner is None:
                    return self.finish()
                self.sub(inner)
                self.word.dynamic = self.word.started = True
            elif c in ";&|()<>":
                self.operator()
            elif m := _PLAIN_RUN.match(s, self.i):
                # A run of ordinary characters is taken in one step: the lexer's hot path.
                self.word.value += m.group()
                self.word.started = True
                self.i = m.end()
            else:
                if c in "*?[" or (c == "{" and "," in s[self.i : s.find("}", self.i) + 1]):
                    self.word.pattern = True
                self.word.value += c
                self.word.started = True
                self.i += 1
        return self.finish()

    def finish(self) -> list[Segment]:
        self.end_segment()
        if self.heredoc_delims:
            self.heredoc_delims.clear()
        return self.segments

    def operator(self) -> None:
        s, i = self.s, self.i
        # An all-digit word right before a redirection is its file descriptor.
        if s[i] in "<>" and self.word.started and self.word.value.isdigit():
            self.word = Word()
        for op in ("<<<", "<<-", "&>>", ";;&", "<<", ">>", "<&", ">&", "<>", ">|", "&>"):
            if s.startswith(op, i):
                break
        else:
            op = s[i] if not s.startswith(("&&", "||", "|&", ";;", ";&"), i) else s[i : i + 2]
        self.end_word()
        self.i = i + len(op)
        if op in _SEPARATORS:
            self.end_segment(piped=op in ("|", "|&"))
            return
        # Redirections: the following word is a file name, never an argument.
        if op in ("<<", "<<-"):
            self.seg.stdin_fed = True
            self.read_heredoc_delim()
            return
        if op in ("<<<", "<", "<>"):
            self.seg.stdin_fed = True
        self.redirect_target = True

    def read_heredoc_delim(self) -> None:
        s = self.s
        while self.i < len(s) and s[self.i] in " \t":
            self.i += 1
        m = re.compile(r"""(['"]?)([^\s;&|<>()'"]*)\1""").match(s, self.i)
        if m:
            self.heredoc_delims.append(m.group(2))
            self.i = m.end()

    def skip_heredoc_bodies(self) -> None:
        """Here-document bodies are data for the command, not commands: skip them."""
        s = self.s
        while self.heredoc_delims and self.i < len(s):
            nl = s.find("\n", self.i)
            stop = len(s) if nl < 0 else nl
            if s[self.i : stop].strip("\t") == self.heredoc_delims[0]:
                self.heredoc_delims.pop(0)
            self.i = stop + 1
        self.heredoc_delims.clear()

    def double_quoted(self) -> bool:
        s = self.s
        self.i += 1
        self.word.started = True
        while self.i < len(s):
            c = s[self.i]
            if c == '"':
                self.i += 1
                return True
            if c == "\\" and self.i + 1 < len(s):
                nxt = s[self.i + 1]
                if nxt in '$`"\\':
                    self.word.value += nxt
                elif nxt != "\n":
                    self.word.value += c + nxt
                self.i += 2
            elif c == "$":
                if not self.dollar(in_double=True):
                    return False
            elif c == "`":
                if not self.backtick():
                    return False
            else:
                self.word.value += c
                self.i += 1
        self.unresolved("unterminated quote")
        return False

    def dollar(self, *, in_double: bool) -> bool:
        s, i = self.s, self.i
        nxt = s[i + 1] if i + 1 < len(s) else ""
        self.word.started = True
        if nxt == "'" and not in_double:
            end = i + 2
            while end < len(s) and s[end] != "'":
                end += 2 if s[end] == "\\" else 1
            if end >= len(s):
                self.unresolved("unterminated quote")
                return False
            self.word.value += _ansi_c(s[i + 2 : end])
            self.i = end + 1
            return True
        if nxt == "(":
            inner = self.balanced(i + 2)
            if inner is None:
                return False
            if not inner.startswith("("):  # $((arithmetic)) runs no command
                self.sub(inner)
            self.word.dynamic = True
            return True
        if nxt == "{":
            end = s.find("}", i + 2)
            if end < 0:
                self.unresolved("unterminated parameter expansion")
                return False
            self.word.dynamic = True
            self.i = end + 1
            return True
        m = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9@*#?$!-]").match(s, i + 1)
        if m:
            self.word.dynamic = True
            self.i = m.end()
            return True
        self.word.value += "$"
        self.i += 1
        return True

    def backtick(self) -> bool:
        s = self.s
        j = self.i + 1
        inner: list[str] = []
        while j < len(s) and s[j] != "`":
            if s[j] == "\\" and j + 1 < len(s) and s[j + 1] in "`\\$":
                inner.append(s[j + 1])
                j += 2
            else:
                inner.append(s[j])
                j += 1
        if j >= len(s):
            self.unresolved("unterminated backquote")
            return False
        self.sub("".join(inner))
        self.word.dynamic = self.word.started = True
        self.i = j + 1
        return True

    def balanced(self, start: int) -> str | None:
        """Text up to the ``)`` closing a ``$(``/``<(``, skipping quoted parentheses."""
        s = self.s
        depth = 1
        j = start
        while j < len(s):
            c = s[j]
            if c == "\\":
                j += 2
                continue
            if c == "'":
                end = s.find("'", j + 1)
                if end < 0:
                    break
                j = end + 1
                continue
            if c == '"':
                j += 1
                while j < len(s) and s[j] != '"':
                    j += 2 if s[j] == "\\" else 1
                j += 1
                continue
            if c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
                if depth == 0:
                    self.i = j + 1
                    return s[start:j]
            j += 1
        self.unresolved("unterminated substitution")
        return None


def _ansi_c(body: str) -> str:
    """Decode ``$'...'``: the escapes people use to hide a program name."""
    out: list[str] = []
    i = 0
    simple = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "e": "\x1b", "E": "\x1b"}
    simple |= {"f": "\f", "v": "\v", "\\": "\\", "'": "'", '"': '"', "?": "?"}
    while i < len(body):
        c = body[i]
        if c != "\\" or i + 1 >= len(body):
            out.append(c)
            i += 1
            continue
        e = body[i + 1]
        if e in simple:
            out.append(simple[e])
            i += 2
        elif e == "x" and (m := re.compile(r"[0-9A-Fa-f]{1,2}").match(body, i + 2)):
            out.append(chr(int(m.group(), 16)))
            i = m.end()
        elif e in "uU" and (m := re.compile(r"[0-9A-Fa-f]{1,8}").match(body, i + 2)):
            code = int(m.group(), 16)
            out.append(chr(code) if code < 0x110000 else "?")
            i = m.end()
        elif (m := re.compile(r"[0-7]{1,3}").match(body, i + 1)) is not None:
            out.append(chr(int(m.group(), 8)))
            i = m.end()
        else:
            out.append(c + e)
            i += 2
    return "".join(out)
