"""Turn a command line into the simple commands a POSIX shell would run.

Policy decides on *programs*, but people type *lines*: ``FOO=1 sudo -u root env rm -rf /``,
``r''m -rf /``, ``echo x && bash -c 'shutdown now'``. This package rebuilds what the shell
will execute: quoting and escapes, ``;`` ``&&`` ``||`` ``|`` ``&``, subshells, ``$(...)``
and backticks (whose commands run too), wrappers (``sudo``, ``env``, ``nice``, ``nohup``,
``timeout``, ``xargs``, ``command``, ``exec``, ...), ``sh -c`` recursion and
``find -exec``. Anything whose meaning depends on run-time state (``eval``, a variable or
substitution in command position, a glob or brace expansion naming the program, a
script read from stdin, ``source``) is reported as *unresolved*: the policy's default
decides it. It is a static approximation and documented as such (docs/policy.md).

Where each part lives:

* ``parser`` — :func:`parse_command_line`, the limits and the recursion context;
* ``lexer`` — shell syntax: quoting, operators, substitutions, redirections, here-docs;
* ``resolve`` — which program runs: keywords, assignments, wrappers, nested shells,
  ``find -exec``, and what stays unresolved;
* ``results`` — :class:`SimpleCommand` and :class:`ParsedLine`, argument normalisation.

It must never execute, expand against the file system or raise anything but
:class:`~policies.errors.CommandParseError`; every loop is bounded by ``max_length`` and
``max_depth``.
"""

from policies.commands.parser import MAX_DEPTH, MAX_LENGTH, parse_command_line
from policies.commands.resolve import SHELLS
from policies.commands.results import PRIVILEGED, ParsedLine, SimpleCommand

__all__ = [
    "MAX_DEPTH",
    "MAX_LENGTH",
    "PRIVILEGED",
    "SHELLS",
    "ParsedLine",
    "SimpleCommand",
    "parse_command_line",
]
