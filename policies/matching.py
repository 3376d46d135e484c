"""The matching primitives every backend calls, so a glob means the same everywhere.

Polar calls these through the registered ``Match`` class, Casbin through custom matcher
functions, and the compiled path through pre-compiled equivalents whose agreement the
differential tests check. Selectors are small strings a security team can read:

* who: ``*``, ``user:<id>``, ``group:<name>``, ``role:user|staff|superuser``
* where: ``*``, ``name:<glob>``, ``group:<server group>``, ``tag:<key>=<glob>``

either may start with ``!`` to negate it. A command rule names a program glob (matched
on the basename, or on the full path when the glob contains ``/``) and an argument
spec: space-separated requirements, each a ``|``-separated list of globs, each satisfied
when any argument matches (``-r|-R|--recursive -f|--force /``).
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from policies.commands import SimpleCommand
from policies.model import Role, Server, Subject

__all__ = [
    "Match",
    "args_match",
    "command_matches",
    "glob",
    "needs_step_up",
    "selector_error",
    "server_matches",
    "subject_matches",
    "target_matches",
]

_WHO_KINDS = ("user", "group", "role")
_WHERE_KINDS = ("name", "group", "tag")
_ROLES = frozenset(r.value for r in Role)


def glob(pattern: str, value: str) -> bool:
    return fnmatchcase(value, pattern)


def selector_error(selector: str, *, who: bool) -> str | None:
    """Why ``selector`` is invalid, or ``None``: load-time validation, never at decide."""
    body = selector[1:] if selector.startswith("!") else selector
    if body == "*":
        return None
    kind, sep, value = body.partition(":")
    kinds = _WHO_KINDS if who else _WHERE_KINDS
    if not sep or kind not in kinds or not value:
        return f"selector {selector!r} must be '*' or one of {', '.join(k + ':…' for k in kinds)}"
    if kind == "role" and value not in _ROLES:
        return f"unknown role {value!r} (roles: {', '.join(sorted(_ROLES))})"
    if kind == "tag" and "=" not in value:
        return f"tag selector {selector!r} must be tag:<key>=<glob>"
    return None


def subject_matches(subject: Subject, who: str) -> bool:
    if who.startswith("!"):
        return not subject_matches(subject, who[1:])
    if who == "*":
        return True
    kind, _, value = who.partition(":")
    if kind == "user":
        return subject.user_id == value
    if kind == "group":
        return value in subject.groups
    if kind == "role":
        return subject.role == value
    return False


def server_matches(server: Server | None, where: str) -> bool:
    if where.startswith("!"):
        return not server_matches(server, where[1:])
    if where == "*":
        return True
    if server is None:
        return False
    kind, _, value = where.partition(":")
    if kind == "name":
        return glob(value, server.name)
    if kind == "group":
        return value in server.groups
    if kind == "tag":
        key, _, pattern = value.partition("=")
        tag = server.tag(key)
        return tag is not None and glob(pattern, tag)
    return False


def args_match(cmd: SimpleCommand, spec: str) -> bool:
    for requirement in spec.split():
        alternatives = requirement.split("|")
        if not any(glob(alt, arg) for arg in cmd.match_args for alt in alternatives):
            return False
    return True


def command_matches(cmd: SimpleCommand, program: str, spec: str) -> bool:
    name = cmd.path if "/" in program else cmd.program
    return glob(program, name) and args_match(cmd, spec)


def target_matches(kind: str, target: object, what: str, spec: str) -> bool:
    """A command rule matches a :class:`SimpleCommand`; session and action rules a string."""
    if kind == "command":
        return isinstance(target, SimpleCommand) and command_matches(target, what, spec)
    return isinstance(target, str) and glob(what, target)


def needs_step_up(subject: Subject, effect: str, within: int) -> bool:
    """A step-up rule only fires when the last MFA is missing or older than ``within``."""
    if effect != "require_mfa":
        return True
    age = subject.mfa_age_seconds
    return age is None or age > within


class Match:
    """The primitives as one class, registered with oso so Polar can call them."""

    @staticmethod
    def subject(subject: Subject, who: str) -> bool:
        return subject_matches(subject, who)

    @staticmethod
    def server(server: Server | None, where: str) -> bool:
        return server_matches(server, where)

    @staticmethod
    def command(cmd: SimpleCommand, program: str, spec: str) -> bool:
        return command_matches(cmd, program, spec)

    @staticmethod
    def glob(pattern: str, value: str) -> bool:
        return glob(pattern, value)

    @staticmethod
    def target(kind: str, target: object, what: str, spec: str) -> bool:
        return target_matches(kind, target, what, spec)

    @staticmethod
    def has_role(subject: Subject, role: str) -> bool:
        return subject.role == role

    @staticmethod
    def step_up(subject: Subject, effect: str, within: int) -> bool:
        return needs_step_up(subject, effect, within)
