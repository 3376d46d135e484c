"""From words to the programs that run: wrappers, nested shells and ``find -exec``.

The meaning half of command parsing. A segment's leading reserved words and assignments
(``FOO=1 cmd``) are skipped; wrappers (``sudo``, ``env``, ``nice``, ``timeout``,
``xargs``, ...) are peeled off with their options so the wrapped program is what policy
sees; ``sh -c``, ``su -c``, ``watch``, ``env -S`` and ``eval`` of literal text are parsed
again one level deeper, and ``find -exec`` yields the program it runs. Whatever depends on
run-time state (a variable or glob naming the program, ``eval``, ``source``, a script read
from stdin or a file) is reported as unresolved so the policy's default decides it.

It must never execute anything or guess: when the program cannot be known statically it
says so instead of picking one.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from policies.commands.lexer import Segment, Word
from policies.commands.results import PRIVILEGED, SimpleCommand

if TYPE_CHECKING:
    from policies.commands.parser import Context

__all__ = ["SHELLS", "resolve_segment"]

#: Programs that run their arguments as a shell script.
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "fish", "csh", "tcsh"})
#: Reserved words that may precede a command and do not run anything by themselves.
_KEYWORDS = frozenset(
    {"if", "then", "else", "elif", "fi", "do", "done", "while", "until", "!", "{", "}"}
)
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\[[^]]*\])?\+?=")

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


def resolve_segment(
    seg: Segment, depth: int, ctx: Context, wrappers: tuple[str, ...], privileged: bool
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
    _resolve_words(words, seg, depth, ctx, wrappers, privileged)


def _resolve_words(
    words: list[Word],
    seg: Segment,
    depth: int,
    ctx: Context,
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
                ctx.parse(" ".join(argv[1:]), depth + 1, wrappers, privileged)
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
    words: list[Word],
    depth: int,
    ctx: Context,
    wrappers: tuple[str, ...],
    privileged: bool,
) -> list[Word] | None:
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
                ctx.parse(text, depth + 1, (*wrappers, name), privileged)
                return None
            i += 2 if (key in long_arg and "=" not in v) else 1
            continue
        if v.startswith("-") and len(v) > 1 and name != "busybox":
            for j, ch in enumerate(v[1:], start=1):
                if ch in short_arg:
                    if name == "env" and ch == "S":
                        text = v[j + 1 :] or _at(words, i + 1)
                        ctx.parse(text, depth + 1, (*wrappers, name), privileged)
                        return None
                    i += 1 if j + 1 < len(v) else 2
                    break
            else:
                i += 1
            continue
        break
    i += positional
    return words[i:] if i < len(words) else []


def _at(words: list[Word], i: int) -> str:
    return words[i].value if i < len(words) else ""


def _shell(
    name: str,
    words: list[Word],
    seg: Segment,
    depth: int,
    ctx: Context,
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
        ctx.parse(operand.value, depth + 1, wrappers, privileged)
    elif operand is not None:
        ctx.unresolved.append(f"{name} runs a script file")
    elif seg.stdin_piped or seg.stdin_fed:
        ctx.unresolved.append(f"{name} reads its script from stdin")


def _su(words: list[Word], depth: int, ctx: Context, wrappers: tuple[str, ...]) -> None:
    for i, w in enumerate(words[1:], start=1):
        if w.value in ("-c", "--command") or w.value.startswith("--command="):
            text = w.value.split("=", 1)[1] if "=" in w.value else _at(words, i + 1)
            dyn = w.dynamic or (i + 1 < len(words) and words[i + 1].dynamic)
            if dyn:
                ctx.unresolved.append("su -c with a script the parser cannot see")
            else:
                ctx.parse(text, depth + 1, (*wrappers, "su"), True)
            return


def _watch(
    words: list[Word], depth: int, ctx: Context, wrappers: tuple[str, ...], privileged: bool
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
        ctx.parse(" ".join(_quote(w.value) for w in rest), depth + 1, wrappers, privileged)
    else:
        ctx.parse(" ".join(w.value for w in rest), depth + 1, wrappers, privileged)


def _find_exec(
    words: list[Word],
    seg: Segment,
    depth: int,
    ctx: Context,
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
                _resolve_words(inner, Segment(), depth + 1, ctx, wrappers, privileged)
            i = j
        i += 1


def _quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"
