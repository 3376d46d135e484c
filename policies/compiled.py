"""The compiled fast path: the loaded policy turned into dict/set lookups.

oso and pycasbin cost milliseconds per decision because they scan every rule; a
terminal Enter key must not wait for that. This module takes the :class:`PolicyData` the
reference engine loaded and indexes it: grants by principal (user, group, role), command
rules and allowlists by program name (exact names in a dict, globs bucketed by their
literal prefix), globs pre-compiled to regexes. A command decision then touches only the
rules that could match its program, whatever the rule count. The decision flow is the
shared :class:`~policies.engine.RuleEngine`, and the differential tests check it decides
exactly as the reference engine.

It fails closed: any exception while deciding becomes a deny (``internal.error``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from fnmatch import translate
from typing import Generic, TypeVar

from policies.commands import SimpleCommand
from policies.engine import NO_GRANT, PolicyEngine, RuleEngine
from policies.model import (
    LEVEL_RANK,
    AccessLevel,
    Decision,
    Effect,
    Request,
    Server,
    Subject,
)
from policies.rules import Hit, PolicyData, Rule

__all__ = ["CompiledEngine", "CompiledSource", "compile_engine"]

log = logging.getLogger(__name__)

_GLOB_CHARS = re.compile(r"[*?\[]")
_RANK = LEVEL_RANK
T = TypeVar("T")
#: (subject, server) pairs whose grant stays resolved; a new policy starts a new cache.
GRANT_CACHE_SIZE = 4096

SubjectTest = Callable[[Subject], bool]
ServerTest = Callable[[Server | None], bool]
CommandTest = Callable[[SimpleCommand], bool]


def _glob(pattern: str) -> Callable[[str], bool]:
    if not _GLOB_CHARS.search(pattern):
        return pattern.__eq__
    match = re.compile(translate(pattern)).match
    return lambda value: match(value) is not None


def _who(selector: str) -> SubjectTest:
    if selector.startswith("!"):
        inner = _who(selector[1:])
        return lambda s: not inner(s)
    if selector == "*":
        return lambda s: True
    kind, _, value = selector.partition(":")
    if kind == "user":
        return lambda s: s.user_id == value
    if kind == "group":
        return lambda s: value in s.groups
    return lambda s: s.role == value


def _where(selector: str) -> ServerTest:
    if selector.startswith("!"):
        inner = _where(selector[1:])
        return lambda s: not inner(s)
    if selector == "*":
        return lambda s: True
    kind, _, value = selector.partition(":")
    if kind == "name":
        name = _glob(value)
        return lambda s: s is not None and name(s.name)
    if kind == "group":
        return lambda s: s is not None and value in s.groups
    key, _, pattern = value.partition("=")
    tag = _glob(pattern)

    def by_tag(s: Server | None) -> bool:
        if s is None:
            return False
        v = s.tag(key)
        return v is not None and tag(v)

    return by_tag


def _args(spec: str) -> CommandTest:
    requirements = []
    for requirement in spec.split():
        joined = "|".join(translate(alt) for alt in requirement.split("|"))
        requirements.append(re.compile(joined).match)
    if not requirements:
        return lambda c: True

    def test(cmd: SimpleCommand) -> bool:
        args = cmd.match_args
        return all(any(m(a) for a in args) for m in requirements)

    return test


class _ProgramIndex(Generic[T]):
    """Items keyed by a program glob; lookup cost depends on the name, not the item count.

    Exact names live in a dict; a glob is filed under its literal prefix (``mkfs*`` under
    ``mkfs``), so a lookup probes each prefix of the name once. Globs containing ``/``
    match the full path and are indexed the same way on it.
    """

    def __init__(self) -> None:
        self.exact: dict[str, list[tuple[int, T]]] = {}
        self.prefixed: dict[str, list[tuple[int, Callable[[str], bool], T]]] = {}
        self.path_exact: dict[str, list[tuple[int, T]]] = {}
        self.path_prefixed: dict[str, list[tuple[int, Callable[[str], bool], T]]] = {}
        self.max_prefix = 0

    def add(self, seq: int, pattern: str, item: T) -> None:
        on_path = "/" in pattern
        m = _GLOB_CHARS.search(pattern)
        if m is None:
            (self.path_exact if on_path else self.exact).setdefault(pattern, []).append((seq, item))
            return
        prefix = pattern[: m.start()]
        self.max_prefix = max(self.max_prefix, len(prefix))
        target = self.path_prefixed if on_path else self.prefixed
        target.setdefault(prefix, []).append((seq, _glob(pattern), item))

    def lookup(self, cmd: SimpleCommand) -> list[tuple[int, T]]:
        found = list(self.exact.get(cmd.program, ()))
        found += self.path_exact.get(cmd.path, ())
        for name, buckets in ((cmd.program, self.prefixed), (cmd.path, self.path_prefixed)):
            if not buckets:
                continue
            for k in range(min(len(name), self.max_prefix) + 1):
                for seq, test, item in buckets.get(name[:k], ()):
                    if test(name):
                        found.append((seq, item))
        found.sort(key=lambda pair: pair[0])
        return found


class _CRule:
    __slots__ = ("args", "hit", "rule", "what", "where", "who")

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.who = _who(rule.who)
        self.where = _where(rule.where)
        self.args = _args(rule.args)
        self.what = _glob(rule.what)
        self.hit = rule.hit()

    def applies(self, subject: Subject, server: Server | None) -> bool:
        if not (self.who(subject) and self.where(server)):
            return False
        if self.hit.effect is Effect.REQUIRE_MFA:
            age = subject.mfa_age_seconds
            return age is None or age > self.rule.mfa_within
        return True


class CompiledSource:
    """A :class:`~policies.engine.RuleSource` over indexes built once at load."""

    def __init__(self, data: PolicyData) -> None:
        self.data = data
        self._grant_cache: dict[tuple[object, ...], tuple[AccessLevel, str]] = {}
        self._grants_by_key: dict[str, list[tuple[int, ServerTest, AccessLevel, str]]] = {}
        self._grants_always: list[tuple[int, SubjectTest, ServerTest, AccessLevel, str]] = []
        for seq, g in enumerate(data.grants):
            entry = (seq, _where(g.where), AccessLevel(g.level), g.id)
            if g.who.startswith("!"):
                self._grants_always.append((seq, _who(g.who), *entry[1:]))
            else:
                self._grants_by_key.setdefault(g.who, []).append(entry)
        self._commands: _ProgramIndex[_CRule] = _ProgramIndex()
        self._session: list[_CRule] = []
        self._action: list[_CRule] = []
        for seq, r in enumerate(data.rules):
            c = _CRule(r)
            if r.kind == "command":
                self._commands.add(seq, r.what, c)
            elif r.kind == "session":
                self._session.append(c)
            else:
                self._action.append(c)
        self._lockdowns: list[tuple[str, SubjectTest, ServerTest, str, _ProgramIndex[CommandTest]]]
        self._lockdowns = []
        allow: dict[str, _ProgramIndex[CommandTest]] = {}
        for seq, e in enumerate(data.allow_entries):
            allow.setdefault(e.lockdown, _ProgramIndex()).add(seq, e.program, _args(e.args))
        for lk in data.lockdowns:
            index = allow.get(lk.id, _ProgramIndex())
            self._lockdowns.append((lk.id, _who(lk.who), _where(lk.where), lk.reason, index))
        self._perms: dict[str, list[tuple[Callable[[str], bool], str]]] = {}
        for p in data.permissions:
            self._perms.setdefault(p.role, []).append((_glob(p.action), p.id))

    def policy_data(self) -> PolicyData:
        return self.data

    def grant(self, subject: Subject, server: Server) -> tuple[AccessLevel, str]:
        """Resolved once per (subject, server), as at session open; later commands reuse it."""
        key = (subject.user_id, subject.role, subject.groups, server)  # not the MFA age
        found = self._grant_cache.get(key)
        if found is None:
            if len(self._grant_cache) >= GRANT_CACHE_SIZE:
                self._grant_cache.clear()
            found = self._grant_cache[key] = self._resolve_grant(subject, server)
        return found

    def _resolve_grant(self, subject: Subject, server: Server) -> tuple[AccessLevel, str]:
        keys = ["*", f"user:{subject.user_id}", f"role:{subject.role.value}"]
        keys += [f"group:{g}" for g in subject.groups]
        found: list[tuple[int, AccessLevel, str]] = []
        for key in keys:
            for seq, where, level, gid in self._grants_by_key.get(key, ()):
                if where(server):
                    found.append((seq, level, gid))
        for seq, who, where, level, gid in self._grants_always:
            if who(subject) and where(server):
                found.append((seq, level, gid))
        found.sort(key=lambda t: t[0])
        best: tuple[AccessLevel, str] = (AccessLevel.NONE, NO_GRANT)
        for _, level, gid in found:
            if level is AccessLevel.NONE:
                return level, gid
            if _RANK[level] > _RANK[best[0]]:
                best = (level, gid)
        return best

    def command_hit(self, subject: Subject, server: Server, cmd: SimpleCommand) -> Hit | None:
        approval: Hit | None = None
        mfa: Hit | None = None
        for _, c in self._commands.lookup(cmd):
            if not (c.args(cmd) and c.applies(subject, server)):
                continue
            effect = c.hit.effect
            if effect is Effect.DENY:
                return c.hit
            if effect is Effect.REQUIRE_APPROVAL:
                approval = approval or c.hit
            else:
                mfa = mfa or c.hit
        for lid, who, where, reason, index in self._lockdowns:
            if (
                who(subject)
                and where(server)
                and not any(test(cmd) for _, test in index.lookup(cmd))
            ):
                return Hit(Effect.DENY, lid, f"{reason}: {cmd.program} is not listed")
        return approval or mfa

    def _first(
        self, rules: list[_CRule], server: Server | None, subject: Subject, target: str
    ) -> Hit | None:
        best: Hit | None = None
        for c in rules:
            if (
                c.what(target)
                and c.applies(subject, server)
                and (best is None or c.hit.effect.rank > best.effect.rank)
            ):
                best = c.hit
        return best

    def session_hit(self, subject: Subject, server: Server, level: AccessLevel) -> Hit | None:
        return self._first(self._session, server, subject, level.value)

    def permission(self, subject: Subject, action: str) -> str | None:
        for test, pid in self._perms.get(subject.role.value, ()):
            if test(action):
                return pid
        return None

    def action_hit(self, subject: Subject, action: str) -> Hit | None:
        return self._first(self._action, None, subject, action)

    def unresolved(self) -> Hit:
        return self.data.unresolved


class CompiledEngine:
    """The fast path as a :class:`PolicyEngine`; fails closed on any internal error."""

    def __init__(self, data: PolicyData, version: str) -> None:
        self._engine = RuleEngine(CompiledSource(data), version)

    @property
    def version(self) -> str:
        return self._engine.version

    def policy_data(self) -> PolicyData:
        return self._engine.policy_data()

    def decide(self, request: Request) -> Decision:
        try:
            return self._engine.decide(request)
        except Exception:
            log.exception("compiled policy failed; denying")
            return Decision(Effect.DENY, "internal.error", "policy evaluation failed", self.version)

    def access_level(self, subject: Subject, server: Server) -> AccessLevel:
        return self.access(subject, server)[0]

    def access(self, subject: Subject, server: Server) -> tuple[AccessLevel, str]:
        try:
            return self._engine.access(subject, server)
        except Exception:
            log.exception("compiled policy failed; hiding the server")
            return AccessLevel.NONE, "internal.error"


def compile_engine(reference: RuleEngine) -> PolicyEngine:
    """Build the fast path from exactly what ``reference`` loaded (same version hash)."""
    return CompiledEngine(reference.policy_data(), reference.version)
