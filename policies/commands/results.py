"""What parsing a command line yields: the simple commands policy decides on.

:class:`SimpleCommand` is the one type the rest of ``policies`` sees (the matchers, the
backends and the compiled fast path all decide on it); :class:`ParsedLine` adds what could
not be resolved statically. Building a command also normalises its arguments so one rule
catches every spelling (``-rf`` as ``-r`` and ``-f``; ``//`` and ``/.`` as ``/``).

This module must never parse shell text or look at the file system: it only shapes an
argv that :mod:`policies.commands.resolve` has already reconstructed.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field

__all__ = ["PRIVILEGED", "ParsedLine", "SimpleCommand"]

#: Programs whose use always means escalation (checked against the access level).
PRIVILEGED = frozenset({"sudo", "su", "doas", "pkexec", "sudoedit", "run0"})
_SHORT_FLAGS = re.compile(r"-[A-Za-z]{2,}")


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
