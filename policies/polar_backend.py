"""The Polar backend: decisions by oso over a ``.polar`` file (the reference engine).

oso is frozen upstream (wheels for CPython <= 3.12, x86_64 and macOS), so it stays behind
:class:`~policies.engine.PolicyEngine`; nothing outside this module imports it. Loading
translates oso's parser and rule-type errors into :class:`PolicyLoadError` with file:line,
then our own validation checks values oso cannot (roles, selectors, levels).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from policies.commands import SimpleCommand
from policies.engine import NO_GRANT, RuleEngine
from policies.errors import EngineError, PolicyLoadError
from policies.matching import Match
from policies.model import AccessLevel, Effect, Server, Subject
from policies.rules import (
    AllowEntry,
    Grant,
    Hit,
    Lockdown,
    Permission,
    PolicyData,
    Rule,
    validate,
)

__all__ = ["PolarSource", "load_polar", "polar_from_text"]

#: The shipped default, installed with the package. The repository's root ``policies.polar``
#: is the copy security teams read and edit; a test keeps the two byte-identical.
DEFAULT_POLICY = Path(__file__).resolve().parent / "default.polar"
_LINE = re.compile(r"at line (\d+)")


def load_polar(path: str | Path = DEFAULT_POLICY) -> RuleEngine:
    """Build a Polar engine from ``path``; raise :class:`PolicyLoadError` if it is bad."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyLoadError(f"cannot read policy: {exc}", file=str(path)) from None
    return polar_from_text(text, str(path))


def polar_from_text(text: str, file: str = "<policy>") -> RuleEngine:
    """Build a Polar engine from policy text (``file`` names it in errors)."""
    return RuleEngine(PolarSource(text, file), hashlib.sha256(text.encode()).hexdigest())


class PolarSource:
    """Answers the engine's questions with oso queries."""

    def __init__(self, text: str, file: str = "<policy>") -> None:
        from oso import Oso
        from polar.exceptions import OsoError

        self._oso_error = OsoError
        self.file = file
        self.text = text
        self.oso = Oso()
        for cls in (Subject, Server, SimpleCommand, Match):
            self.oso.register_class(cls)  # type: ignore[no-untyped-call]
        try:
            self.oso.load_str(text)
        except OsoError as exc:
            raise _load_error(exc, text, file) from None
        self.data = self._extract()
        validate(self.data, file, self._locate)
        self._seq = {r.id: i for i, r in enumerate(self.data.rules)}
        self._lock_seq = {lk.id: i for i, lk in enumerate(self.data.lockdowns)}
        self._grant_seq = {g.id: i for i, g in enumerate(self.data.grants)}
        self._perm_seq = {p.id: i for i, p in enumerate(self.data.permissions)}
        self._rules = {r.id: r for r in self.data.rules}

    # -- loading ------------------------------------------------------------------------
    def _facts(self, name: str, arity: int) -> list[list[Any]]:
        from polar import Variable

        names = [f"v{i}" for i in range(arity)]
        try:
            results = self.oso.query_rule(  # type: ignore[no-untyped-call]
                name, *(Variable(n) for n in names)
            )
            return [[r["bindings"][n] for n in names] for r in results]
        except self._oso_error as exc:
            raise PolicyLoadError(f"cannot read {name} facts: {exc}", file=self.file) from None

    def _extract(self) -> PolicyData:
        defaults = self._facts("unresolved_default", 4)
        if len(defaults) != 1:
            raise PolicyLoadError(
                f"exactly one unresolved_default fact is needed, found {len(defaults)}",
                file=self.file,
            )
        d = defaults[0]
        if d[1] not in {e.value for e in Effect}:
            raise PolicyLoadError(
                f"unresolved_default effect {d[1]!r} is not an effect",
                file=self.file,
                line=self._locate(d[0]),
            )
        unresolved = Hit(Effect(d[1]), d[0], d[3], tuple(d[2].split()))
        return PolicyData(
            grants=tuple(Grant(*f) for f in self._facts("grant", 4)),
            rules=tuple(Rule(*f) for f in self._facts("rule", 10)),
            lockdowns=tuple(Lockdown(*f) for f in self._facts("lockdown", 4)),
            allow_entries=tuple(AllowEntry(*f) for f in self._facts("allow_command", 3)),
            permissions=tuple(Permission(*f) for f in self._facts("permission", 3)),
            unresolved=unresolved,
        )

    def _locate(self, key: str) -> int | None:
        needle = f'"{key}"'
        for n, line in enumerate(self.text.splitlines(), start=1):
            if needle in line:
                return n
        return None

    # -- queries ------------------------------------------------------------------------
    def _query(self, name: str, *args: Any) -> list[dict[str, Any]]:
        try:
            results = self.oso.query_rule(name, *args)  # type: ignore[no-untyped-call]
            return [r["bindings"] for r in results]
        except self._oso_error as exc:
            raise EngineError(f"polar query {name} failed: {exc}") from None

    def policy_data(self) -> PolicyData:
        return self.data

    def grant(self, subject: Subject, server: Server) -> tuple[AccessLevel, str]:
        from polar import Variable

        found = self._query("grant_for", subject, server, Variable("id"), Variable("level"))
        found.sort(key=lambda b: self._grant_seq[b["id"]])
        for b in found:
            if b["level"] == AccessLevel.NONE:
                return AccessLevel.NONE, b["id"]
        best: tuple[AccessLevel, str] = (AccessLevel.NONE, NO_GRANT)
        for b in found:
            level = AccessLevel(b["level"])
            if _LEVELS.index(level) > _LEVELS.index(best[0]):
                best = (level, b["id"])
        return best

    def _rule_hits(
        self, subject: Subject, server: Server | None, kind: str, target: Any
    ) -> list[str]:
        from polar import Variable

        found = self._query(
            "rule_for",
            subject,
            server,
            kind,
            target,
            Variable("id"),
            Variable("effect"),
            Variable("approvers"),
            Variable("within"),
            Variable("reason"),
        )
        return sorted({b["id"] for b in found}, key=self._seq.__getitem__)

    def _first(self, ids: list[str]) -> Hit | None:
        for effect in (Effect.DENY, Effect.REQUIRE_APPROVAL, Effect.REQUIRE_MFA):
            for rid in ids:
                if self._rules[rid].effect == effect:
                    return self._rules[rid].hit()
        return None

    def command_hit(self, subject: Subject, server: Server, cmd: SimpleCommand) -> Hit | None:
        from polar import Variable

        ids = self._rule_hits(subject, server, "command", cmd)
        deny = [rid for rid in ids if self._rules[rid].effect == Effect.DENY]
        if deny:
            return self._rules[deny[0]].hit()
        locks = self._query(
            "lockdown_for", subject, server, cmd, Variable("id"), Variable("reason")
        )
        if locks:
            first = min(locks, key=lambda b: self._lock_seq[b["id"]])
            return Hit(Effect.DENY, first["id"], f"{first['reason']}: {cmd.program} is not listed")
        return self._first(ids)

    def session_hit(self, subject: Subject, server: Server, level: AccessLevel) -> Hit | None:
        return self._first(self._rule_hits(subject, server, "session", level.value))

    def permission(self, subject: Subject, action: str) -> str | None:
        from polar import Variable

        found = self._query("permitted", subject, action, Variable("id"))
        if not found:
            return None
        return str(min(found, key=lambda b: self._perm_seq[b["id"]])["id"])

    def action_hit(self, subject: Subject, action: str) -> Hit | None:
        return self._first(self._rule_hits(subject, None, "action", action))

    def unresolved(self) -> Hit:
        return self.data.unresolved


_LEVELS = [AccessLevel.NONE, AccessLevel.READ_ONLY, AccessLevel.TERMINAL, AccessLevel.FULL]


def _load_error(exc: Exception, text: str, file: str) -> PolicyLoadError:
    message = str(exc).split("\n\tGet help", 1)[0].strip()
    line: int | None = None
    if m := _LINE.search(message):
        line = int(m.group(1))
    else:
        details = getattr(exc, "details", None) or {}
        loc = details.get("loc") if isinstance(details, dict) else None
        if isinstance(loc, int):
            line = text.count("\n", 0, loc) + 1
    first = message.splitlines()[0] if message else type(exc).__name__
    return PolicyLoadError(first, file=file, line=line)
