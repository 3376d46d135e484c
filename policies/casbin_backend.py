"""The Casbin backend: the same policy as a pycasbin model + policy CSV.

For teams that already run Casbin elsewhere. The model (``default_casbin_model.conf``)
holds the matchers; the CSV holds the facts with the columns the model names. We read the
CSV ourselves (Python's ``csv``: quoting, and a line number for every row) so errors
carry file:line, validate it with the Polar backend's validator, then hand the rows to
the enforcer. pycasbin is imported only here; its exceptions never escape.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
from pathlib import Path
from typing import Any

from policies.commands import SimpleCommand
from policies.engine import NO_GRANT, RuleEngine
from policies.errors import EngineError, PolicyLoadError
from policies.matching import (
    args_match,
    command_matches,
    glob,
    needs_step_up,
    server_matches,
    subject_matches,
    target_matches,
)
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

__all__ = ["CasbinSource", "casbin_from_text", "load_casbin"]

HERE = Path(__file__).resolve().parent
DEFAULT_MODEL = HERE / "default_casbin_model.conf"
DEFAULT_POLICY = HERE / "default_casbin_policy.csv"

_ARITY = {"p": 10, "p2": 4, "p3": 4, "p4": 3, "p5": 3, "p6": 4}
_LEVEL_ORDER = (AccessLevel.NONE, AccessLevel.FULL, AccessLevel.TERMINAL, AccessLevel.READ_ONLY)


def load_casbin(
    model: str | Path = DEFAULT_MODEL, policy: str | Path = DEFAULT_POLICY
) -> RuleEngine:
    """Build a Casbin engine; raise :class:`PolicyLoadError` if either file is bad."""
    texts = []
    for path in (Path(model), Path(policy)):
        try:
            texts.append(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyLoadError(f"cannot read policy: {exc}", file=str(path)) from None
    return casbin_from_text(texts[0], texts[1], str(model), str(policy))


def casbin_from_text(
    model_text: str,
    policy_text: str,
    model_file: str = "<model>",
    policy_file: str = "<policy>",
) -> RuleEngine:
    """Build a Casbin engine from the model and policy texts."""
    source = CasbinSource(model_text, policy_text, model_file, policy_file)
    version = hashlib.sha256(model_text.encode() + b"\0" + policy_text.encode()).hexdigest()
    return RuleEngine(source, version)


def _rows(text: str, file: str) -> tuple[dict[str, list[list[str]]], dict[str, int]]:
    """Rows by policy type, and the line of each row's first field (for errors)."""
    rows: dict[str, list[list[str]]] = {k: [] for k in _ARITY}
    lines: dict[str, int] = {}
    for n, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        try:
            fields = next(csv.reader(io.StringIO(raw), skipinitialspace=True))
        except (csv.Error, StopIteration) as exc:
            raise PolicyLoadError(f"malformed CSV: {exc}", file=file, line=n) from None
        ptype, values = fields[0].strip(), [f.strip() for f in fields[1:]]
        if ptype not in _ARITY:
            raise PolicyLoadError(
                f"unknown policy type {ptype!r} ({', '.join(_ARITY)})", file=file, line=n
            )
        if len(values) != _ARITY[ptype]:
            raise PolicyLoadError(
                f"{ptype} rows have {_ARITY[ptype]} fields, this one has {len(values)}",
                file=file,
                line=n,
            )
        if ptype == "p" and not values[8].lstrip("-").isdigit():
            raise PolicyLoadError(f"mfa_within {values[8]!r} is not a number", file=file, line=n)
        rows[ptype].append(values)
        lines.setdefault(values[0], n)
    return rows, lines


def _rule(r: list[str]) -> Rule:
    return Rule(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], int(r[8]), r[9])


class CasbinSource:
    """Answers the engine's questions with pycasbin ``enforce_ex`` calls."""

    def __init__(
        self, model_text: str, policy_text: str, model_file: str, policy_file: str
    ) -> None:
        import casbin

        rows, lines = _rows(policy_text, policy_file)
        if len(rows["p6"]) != 1:
            raise PolicyLoadError(
                f"exactly one p6 (unresolved default) row is needed, found {len(rows['p6'])}",
                file=policy_file,
            )
        u = rows["p6"][0]
        if u[1] not in {e.value for e in Effect}:
            raise PolicyLoadError(
                f"unresolved default effect {u[1]!r} is not an effect",
                file=policy_file,
                line=lines.get(u[0]),
            )
        self.data = PolicyData(
            grants=tuple(Grant(*r) for r in rows["p2"]),
            rules=tuple(_rule(r) for r in rows["p"]),
            lockdowns=tuple(Lockdown(*r) for r in rows["p3"]),
            allow_entries=tuple(AllowEntry(*r) for r in rows["p5"]),
            permissions=tuple(Permission(*r) for r in rows["p4"]),
            unresolved=Hit(Effect(u[1]), u[0], u[3], tuple(u[2].split())),
        )
        validate(self.data, policy_file, lines.get)
        self._rules = {r.id: r for r in self.data.rules}
        self._allow: dict[str, list[AllowEntry]] = {}
        for entry in self.data.allow_entries:
            self._allow.setdefault(entry.lockdown, []).append(entry)

        logging.getLogger("casbin").setLevel(logging.ERROR)
        try:
            model = casbin.model.Model()
            model.load_model_from_text(model_text)
            self.enforcer = casbin.Enforcer(model)
            self.enforcer.logger.setLevel(logging.ERROR)
            for name, fn in self._functions().items():
                self.enforcer.add_function(name, fn)
            for ptype, values in rows.items():
                if values and ptype != "p6":
                    self.enforcer.add_named_policies(ptype, values)
            self._contexts = {s: self.enforcer.new_enforce_context(s) for s in ("2", "3", "4")}
            # A request through every matcher proves the model names what we pass.
            probe = Subject("probe")
            self._enforce(None, probe, Server("probe"), "action", "probe", "deny")
            self._enforce("2", probe, Server("probe"), "full")
            self._enforce("3", probe, Server("probe"), SimpleCommand.build(["true"]))
            self._enforce("4", probe, "probe")
        except PolicyLoadError:
            raise
        except Exception as exc:
            raise PolicyLoadError(f"casbin model rejected: {exc}", file=model_file) from None

    def _functions(self) -> dict[str, Any]:
        def allowlisted(lockdown_id: str, cmd: SimpleCommand) -> bool:
            return any(
                command_matches(cmd, e.program, e.args) for e in self._allow.get(lockdown_id, ())
            )

        return {
            "whoMatch": subject_matches,
            "whereMatch": server_matches,
            "targetMatch": target_matches,
            "stepUp": lambda sub, eff, within: needs_step_up(sub, eff, int(within)),
            "hasRole": lambda sub, role: sub.role == role,
            "actionMatch": glob,
            "allowlisted": allowlisted,
            "argsMatch": args_match,
        }

    def _enforce(self, ctx: str | None, *rvals: Any) -> list[str] | None:
        try:
            if ctx is None:
                ok, line = self.enforcer.enforce_ex(*rvals)
            else:
                ok, line = self.enforcer.enforce_ex(self._contexts[ctx], *rvals)
        except Exception as exc:
            raise EngineError(f"casbin enforce failed: {exc}") from None
        return list(line) if ok and line else None

    def policy_data(self) -> PolicyData:
        return self.data

    def grant(self, subject: Subject, server: Server) -> tuple[AccessLevel, str]:
        for level in _LEVEL_ORDER:
            line = self._enforce("2", subject, server, level.value)
            if line is not None:
                return level, line[0]
        return AccessLevel.NONE, NO_GRANT

    def _rule(
        self, subject: Subject, server: Server | None, kind: str, target: Any, eff: Effect
    ) -> Hit | None:
        line = self._enforce(None, subject, server, kind, target, eff.value)
        return self._rules[line[0]].hit() if line is not None else None

    def command_hit(self, subject: Subject, server: Server, cmd: SimpleCommand) -> Hit | None:
        hit = self._rule(subject, server, "command", cmd, Effect.DENY)
        if hit is not None:
            return hit
        line = self._enforce("3", subject, server, cmd)
        if line is not None:
            return Hit(Effect.DENY, line[0], f"{line[3]}: {cmd.program} is not listed")
        return self._rule(subject, server, "command", cmd, Effect.REQUIRE_APPROVAL) or self._rule(
            subject, server, "command", cmd, Effect.REQUIRE_MFA
        )

    def _first(self, subject: Subject, server: Server | None, kind: str, target: str) -> Hit | None:
        for eff in (Effect.DENY, Effect.REQUIRE_APPROVAL, Effect.REQUIRE_MFA):
            hit = self._rule(subject, server, kind, target, eff)
            if hit is not None:
                return hit
        return None

    def session_hit(self, subject: Subject, server: Server, level: AccessLevel) -> Hit | None:
        return self._first(subject, server, "session", level.value)

    def permission(self, subject: Subject, action: str) -> str | None:
        line = self._enforce("4", subject, action)
        return line[0] if line is not None else None

    def action_hit(self, subject: Subject, action: str) -> Hit | None:
        return self._first(subject, None, "action", action)

    def unresolved(self) -> Hit:
        return self.data.unresolved
