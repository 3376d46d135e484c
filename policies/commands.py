"""Turn a command line into the simple commands a POSIX shell would run.

Policy decides on *programs*, but people type *lines*: ``FOO=1 sudo -u root env rm -rf /``,
``r''m -rf /``, ``echo x && bash -c 'shutdown now'``. This module rebuilds what the shell
will execute: quoting and escapes, ``;`` ``&&`` ``||`` ``|`` ``&``, subshells, ``$(...)``
and backticks (whose commands run too), wrappers (``sudo``, ``env``, ``nice``, ``nohup``,
``timeout``, ``xargs``, ``command``, ``exec``, ...), ``sh -c`` recursion and
``find -exec``. Anything whose meaning depends on run-time state (``eval``, a variable or
substitution in command position, a glob or brace expansion naming the program, a
script read from stdin, ``source``) is reported as *unresolved*: the policy's default
decides it. It is a static approximation and documented as such (docs/policy.md).

It must never execute, expand against the file system or raise anything but
:class:`~policies.errors.CommandParseError`; every loop is bounded by ``max_length`` and
``max_depth``.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field

from policies.errors import CommandParseError

__all__ = ["ParsedLine", "SimpleCommand", "parse_command_line"]

MAX_LENGTH = 8192
MAX_DEPTH = 6

#: Programs that run their arguments as a shell script.
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "fish", "csh", "tcsh"})
#: Programs whose use always means escalation (checked against the access level).
PRIVILEGED = frozenset({"sudo", "su", "doas", "pkexec", "sudoedit", "run0"})
#: Reserved words that may precede a command and do not run anything by themselves.
_KEYWORDS = frozenset(
    {"if", "then", "else", "elif", "fi", "do", "done", "while", "until", "!", "{", "}"}
)
_PLAIN_RUN = re.compile(r"[^\s'\"\\$`;&|()<>#*?\[{]+")
_SIMPLE_LINE = re.compile(r"[A-Za-z0-9_./,:=+@%^ -]*")
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\[[^]]*\])?\+?=")
_SHORT_FLAGS = re.compile(r"-[A-Za-z]{2,}")
_SEPARATORS = frozenset({";", "&&", "||", "|", "|&", "&", "(", ")", ";;", ";&", ";;&"})


@dataclass(frozen=True, slots=True)
class SimpleCommand:
    """One program invocation after wrappers are peeled off.

    ``program`` is the basename used for matching; ``path`` keeps what was typed
    (``/usr/bin/rm``). ``match_args`` adds normalised spellings of the arguments
    (``-rf`` also as ``-r`` and ``-f``; ``//`` and ``/.`` as ``/``) so one rule catches
    the variants.
    """

    program: str
    path: str
    args: tuple[str, ...] = ()
    wrappers: tuple[str, ...] = ()
    privileged: bool = False
    match_args: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    @classmethod
    def build(
        cls, argv: list[str], wrappers: tuple[str, ...] = (), privileged: bool = False
    ) -> SimpleCommand:
        path = argv[0]
        program = path.rsplit("/", 1)[-1] or path
        args = tuple(argv[1:])
        return cls(
            program,
            path,
            args,
            wrappers,
            privileged or program in PRIVILEGED,
            _normalise_args(args),
        )

    @property
    def line(self) -> str:
        return " ".join((self.path, *self.args))


@dataclass(frozen=True, slots=True)
class ParsedLine:
    """Every simple command of a line, plus what could not be resolved statically."""

    commands: tuple[SimpleCommand, ...]
    unresolved: tuple[str, ...] = ()

    @property
    def privileged(self) -> bool:
        return any(c.privileged for c in self.commands)


def _normalise_args(args: tuple[str, ...]) -> frozenset[str]:
    out = set(args)
    for a in args:
        if _SHORT_FLAGS.fullmatch(a):
            out.update("-" + ch for ch in a[1:])
        elif a.startswith("/"):
            collapsed = posixpath.normpath(re.sub("/+", "/", a))
            out.add("/" if collapsed in ("/.", "//") else collapsed)
    return frozenset(out)


@dataclass(slots=True)
class _Word:
    """A shell word: its literal value and whether expansion makes it unknowable."""

    value: str = ""
    dynamic: bool = False  # contains $var, $(...), `...`, $((...))
    pattern: bool = False  # unquoted glob or brace expansion
    started: bool = False


@dataclass(slots=True)
class _Segment:
    words: list[_Word] = field(default_factory=list)
    stdin_piped: bool = False
    stdin_fed: bool = False  # here-doc, here-string or '<' redirection


class _Context:
    """Accumulates results across recursion and enforces the limits."""

    def __init__(self, max_depth: int) -> None:
        self.max_depth = max_depth
        self.commands: list[SimpleCommand] = []
        self.unresolved: list[str] = []
        self.budget = 10_000  # total words/segments processed across all recursion


def parse_command_line(
    line: str, *, max_length: int = MAX_LENGTH, max_depth: int = MAX_DEPTH
) -> ParsedLine:
    """Parse ``line``; raise :class:`CommandParseError` only when it exceeds a limit."""
    if len(line) > max_length:
        raise CommandParseError(f"command line longer than {max_length} characters")
    ctx = _Context(max_depth)
    _parse(line, 0, ctx, ())
    return ParsedLine(tuple(ctx.commands), tuple(ctx.unresolved))


def _parse(
    text: str, depth: int, ctx: _Context, wrappers: tuple[str, ...], privileged: bool = False
) -> None:
    if depth > ctx.max_depth:
        ctx.unresolved.append("nesting deeper than the parser follows")
        return
    if _SIMPLE_LINE.fullmatch(text):
        # The common case: no quoting, no operators; splitting is what the shell does.
        segments = [_Segment([_Word(w, started=True) for w in text.split()])]
    else:
        segments = _Lexer(text, depth, ctx).run()
    for seg in segments:
        ctx.budget -= 1 + len(seg.words)
        if ctx.budget < 0:
            raise CommandParseError("command line too complex")
        _simple(seg, depth, ctx, wrappers, privileged)


class _Lexer:
    """Splits shell text into segments of words; substitutions are parsed recursively."""

    def __init__(self, text: str, depth: int, ctx: _Context) -> None:
        self.s = text
        self.i = 0
        self.depth = depth
        self.ctx = ctx
        self.segments: list[_Segment] = []
        self.seg = _Segment()
        self.word = _Word()
        self.redirect_target = False  # the next word is a redirection target, not an argument
        self.heredoc_delims: list[str] = []

    # -- results ----------------------------------------------------------------------
    def end_word(self) -> None:
        if self.word.started:
            if self.redirect_target:
                self.redirect_target = False
            else:
                self.seg.words.append(self.word)
        self.word = _Word()

    def end_segment(self, piped: bool = False) -> None:
        self.end_word()
        self.redirect_target = False
        if self.seg.words:
            self.segments.append(self.seg)
        self.seg = _Segment(stdin_piped=piped)

    def sub(self, text: str) -> None:
        """Commands inside ``$(...)``, backticks and ``<(...)`` run too: parse them."""
        _parse(text, self.depth + 1, self.ctx, ())

    def unresolved(self, why: str) -> None:
        self.ctx.unresolved.append(why)

    # -- scanning ---------------------------------------------------------------------
    def run(self) -> list[_Segment]:
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

    def finish(self) -> list[_Segment]:
        self.end_segment()
        if self.heredoc_delims:
            self.heredoc_delims.clear()
        return self.segments

    def operator(self) -> None:
        s, i = self.s, self.i
        # An all-digit word right before a redirection is its file descriptor.
        if s[i] in "<>" and self.word.started and self.word.value.isdigit():
            self.word = _Word()
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


# -- from words to simple commands ------------------------------------------------------

# Wrappers: options taking a value (short letters, long names), positional operands that
# come before the wrapped command.
_WRAPPERS: dict[str, tuple[str, frozenset[str], int]] = {
    "sudo": ("ugpChDrtUTR", frozenset({"--user", "--group", "--prompt", "--chdir"}), 0),
    "doas": ("uC", frozenset(), 0),
    "env": ("uCS", frozenset({"--unset", "--chdir", "--split-string"}), 0),
    "nice": ("n", frozenset({"--adjustment"}), 0),
    "nohup": ("", frozenset(), 0),
    "timeout": ("sk", frozenset({"--signal", "--kill-after"}), 1),
    "xargs": ("adEILnPs", frozenset({"--arg-file", "--delimiter", "--max-args"}), 0),
    "command": ("", frozenset(), 0),
    "builtin": ("", frozenset(), 0),
    "exec": ("a", frozenset(), 0),
    "time": ("of", frozenset({"--output", "--format"}), 0),
    "stdbuf": ("ioe", frozenset({"--input", "--output", "--error"}), 0),
    "ionice": ("cn", frozenset({"--class", "--classdata"}), 0),
    "chroot": ("", frozenset({"--userspec", "--groups"}), 1),
    "setsid": ("", frozenset(), 0),
    "busybox": ("", frozenset(), 0),
    "unbuffer": ("", frozenset(), 0),
    "chrt": ("", frozenset(), 1),
    "taskset": ("", frozenset(), 1),
}


def _simple(
    seg: _Segment, depth: int, ctx: _Context, wrappers: tuple[str, ...], privileged: bool
) -> None:
    words = seg.words
    # Leading reserved words, assignments (FOO=1 cmd) and `function` definitions.
    i = 0
    while i < len(words):
        w = words[i]
        if w.value in _KEYWORDS and not w.dynamic:
            i += 1
        elif w.value in ("for", "select", "case", "function") and not w.dynamic:
            if w.value == "case":
                ctx.unresolved.append("case statement")
            return  # `for x in ...`: the words are data; the body comes as its own segment
        elif _ASSIGNMENT.match(w.value):
            i += 1
        else:
            break
    words = words[i:]
    if not words:
        return
    _resolve(words, seg, depth, ctx, wrappers, privileged)


def _resolve(
    words: list[_Word],
    seg: _Segment,
    depth: int,
    ctx: _Context,
    wrappers: tuple[str, ...],
    privileged: bool,
) -> None:
    while words:
        head = words[0]
        if head.dynamic:
            ctx.unresolved.append("a variable or substitution names the program")
            return
        if head.pattern:
            ctx.unresolved.append("a glob or brace expansion names the program")
            return
        if head.value[:1] in ("!", "^") and len(head.value) > 1:
            ctx.unresolved.append("history expansion names the program")
            return
        name = head.value.rsplit("/", 1)[-1]
        argv = [w.value for w in words]
        if name in _WRAPPERS:
            rest = _unwrap(name, words, depth, ctx, wrappers, privileged or name in PRIVILEGED)
            if rest is None:
                return
            if rest:
                wrappers = (*wrappers, name)
                privileged = privileged or name in PRIVILEGED
                words = rest
                continue
            # A wrapper with nothing to run (`sudo -i`, `env`, `exec 3>f`) is itself the command.
            if name in ("exec", "command", "builtin"):
                return
        if name in ("eval", "source", ".") or (name == "trap" and len(words) > 1):
            ctx.unresolved.append(f"{name} runs text the parser cannot see")
            if name == "eval" and not any(w.dynamic for w in words[1:]):
                _parse(" ".join(argv[1:]), depth + 1, ctx, wrappers, privileged)
        elif name in SHELLS:
            _shell(name, words, seg, depth, ctx, wrappers, privileged)
        elif name == "su":
            _su(words, depth, ctx, wrappers)
        elif name == "watch":
            _watch(words, depth, ctx, wrappers, privileged)
        elif name == "find":
            _find_exec(words, seg, depth, ctx, wrappers, privileged)
        ctx.commands.append(SimpleCommand.build(argv, wrappers, privileged))
        return


def _unwrap(
    name: str,
    words: list[_Word],
    depth: int,
    ctx: _Context,
    wrappers: tuple[str, ...],
    privileged: bool,
) -> list[_Word] | None:
    """Skip a wrapper's options; return the wrapped command's words ([] if none)."""
    short_arg, long_arg, positional = _WRAPPERS[name]
    i = 1
    while i < len(words):
        w = words[i]
        v = w.value
        if w.dynamic and v.startswith("-"):
            ctx.unresolved.append(f"{name} option hidden by expansion")
            return None
        if v == "--":
            i += 1
            break
        if name == "env" and (_ASSIGNMENT.match(v) or v == "-"):
            i += 1
            continue
        if name == "nice" and re.fullmatch(r"-[0-9]+", v):
            i += 1
            continue
        if v.startswith("--") and len(v) > 2:
            key = v.split("=", 1)[0]
            if name == "env" and key == "--split-string":
                text = v.split("=", 1)[1] if "=" in v else _at(words, i + 1)
                _parse(text, depth + 1, ctx, (*wrappers, name), privileged)
                return None
            i += 2 if (key in long_arg and "=" not in v) else 1
            continue
        if v.startswith("-") and len(v) > 1 and name != "busybox":
            for j, ch in enumerate(v[1:], start=1):
                if ch in short_arg:
                    if name == "env" and ch == "S":
                        text = v[j + 1 :] or _at(words, i + 1)
                        _parse(text, depth + 1, ctx, (*wrappers, name), privileged)
                        return None
                    i += 1 if j + 1 < len(v) else 2
                    break
            else:
                i += 1
            continue
        break
    i += positional
    return words[i:] if i < len(words) else []


def _at(words: list[_Word], i: int) -> str:
    return words[i].value if i < len(words) else ""


def _shell(
    name: str,
    words: list[_Word],
    seg: _Segment,
    depth: int,
    ctx: _Context,
    wrappers: tuple[str, ...],
    privileged: bool,
) -> None:
    has_c = False
    i = 1
    while i < len(words):
        v = words[i].value
        if words[i].dynamic:
            ctx.unresolved.append(f"{name} arguments hidden by expansion")
            return
        if v in ("--", "-"):
            i += 1
            break
        if v in ("-o", "+o", "-O", "+O", "--rcfile", "--init-file"):
            i += 2
            continue
        if v.startswith("--"):
            i += 1
            continue
        if v.startswith(("-", "+")) and len(v) > 1:
            has_c = has_c or "c" in v[1:]
            i += 1
            continue
        break
    operand = words[i] if i < len(words) else None
    if has_c:
        if operand is None or operand.dynamic:
            ctx.unresolved.append(f"{name} -c with a script the parser cannot see")
            return
        _parse(operand.value, depth + 1, ctx, wrappers, privileged)
    elif operand is not None:
        ctx.unresolved.append(f"{name} runs a script file")
    elif seg.stdin_piped or seg.stdin_fed:
        ctx.unresolved.append(f"{name} reads its script from stdin")


def _su(words: list[_Word], depth: int, ctx: _Context, wrappers: tuple[str, ...]) -> None:
    for i, w in enumerate(words[1:], start=1):
        if w.value in ("-c", "--command") or w.value.startswith("--command="):
            text = w.value.split("=", 1)[1] if "=" in w.value else _at(words, i + 1)
            dyn = w.dynamic or (i + 1 < len(words) and words[i + 1].dynamic)
            if dyn:
                ctx.unresolved.append("su -c with a script the parser cannot see")
            else:
                _parse(text, depth + 1, ctx, (*wrappers, "su"), True)
            return


def _watch(
    words: list[_Word], depth: int, ctx: _Context, wrappers: tuple[str, ...], privileged: bool
) -> None:
    i = 1
    exec_mode = False
    while i < len(words) and words[i].value.startswith("-"):
        v = words[i].value
        exec_mode = exec_mode or v in ("-x", "--exec")
        i += 2 if v in ("-n", "--interval", "-d") else 1
    rest = words[i:]
    if not rest:
        return
    if any(w.dynamic for w in rest):
        ctx.unresolved.append("watch command hidden by expansion")
    elif exec_mode:
        _parse(" ".join(_quote(w.value) for w in rest), depth + 1, ctx, wrappers, privileged)
    else:
        _parse(" ".join(w.value for w in rest), depth + 1, ctx, wrappers, privileged)


def _find_exec(
    words: list[_Word],
    seg: _Segment,
    depth: int,
    ctx: _Context,
    wrappers: tuple[str, ...],
    privileged: bool,
) -> None:
    """``find / -exec rm -rf {} +`` runs ``rm``: decide on it too."""
    i = 1
    while i < len(words):
        if words[i].value in ("-exec", "-execdir", "-ok", "-okdir"):
            j = i + 1
            while j < len(words) and words[j].value not in (";", "+"):
                j += 1
            inner = words[i + 1 : j]
            if inner:
                _resolve(inner, _Segment(), depth + 1, ctx, wrappers, privileged)
            i = j
        i += 1


def _quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"
