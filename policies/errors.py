"""The one exception tree of the decision layer.

Callers (the broker, the CLI) catch :class:`PolicyError` and nothing else; third-party
errors from oso or pycasbin are translated here at the boundary so an engine swap never
changes what callers must handle::

    PolicyError
    ├── PolicyLoadError        a policy file is invalid; carries file:line when known
    ├── CommandParseError      a command line breaks a parser limit (length, depth)
    └── EngineError            a backend failed while deciding (callers fail closed)
"""

from __future__ import annotations

__all__ = ["CommandParseError", "EngineError", "PolicyError", "PolicyLoadError"]


class PolicyError(Exception):
    """Root of every error raised by ``policies``."""


class PolicyLoadError(PolicyError):
    """A policy could not be loaded; the engine that was in force stays in force.

    ``file`` and ``line`` point at the offending text when the engine (or our own
    validation) can tell; ``str()`` renders ``file:line: message`` like a compiler.
    """

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None):
        self.message = message
        self.file = file
        self.line = line
        where = file or "<policy>"
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {message}")


class CommandParseError(PolicyError):
    """A command line exceeds a parser limit; the decision fails closed."""


class EngineError(PolicyError):
    """A backend raised while deciding; never shown to the end user verbatim."""
