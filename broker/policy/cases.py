"""Decision tables for ``corral policy test`` and ``POST /api/v1/policy/test``: a YAML
file of requests and expected effects.

Like ``opa test``: a security team writes what must be allowed, denied, held for an
approval or a fresh MFA, and every edit of the policy is checked against it before it
ships. The format (see ``policies.test.yaml`` at the repository root)::

    subjects:                     # optional: named people, reused by the cases
      olga: {user: olga@example.com, role: user, groups: [ops], mfa_age: 60}
    servers:                      # optional: named servers
      prod: {name: production-web1, groups: [web], tags: {env: prod}}
    cases:
      - name: ops may not wipe production
        user: olga                # a name above, a mapping like above, or a bare user id
        server: prod              # a name above, a mapping, or a bare server name
        command: sudo rm -rf /    # or  action: policy.update   or  session: full
        unix_user: root           # optional (default "user"); sudo: true also optional
        expect: deny              # allow | deny | require_mfa | require_approval
        rule: block.rm-root       # optional: the deciding rule's id
        approvers: [group:sre-leads]   # optional
        mfa_within: 300           # optional

This module only parses; it never decides. Every error names ``file:line``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from broker.errors import InvalidInput
from policies import (
    AccessLevel,
    ActionRequest,
    CommandRequest,
    Decision,
    Effect,
    PolicyEngine,
    Request,
    Role,
    Server,
    SessionRequest,
    Subject,
)

__all__ = ["Case", "CaseError", "Verdict", "check_case", "judge", "load_cases", "parse_cases"]

_CASE_KEYS = {
    "name",
    "user",
    "server",
    "command",
    "action",
    "session",
    "unix_user",
    "sudo",
    "expect",
    "rule",
    "approvers",
    "mfa_within",
}


class CaseError(InvalidInput):
    """A decision table that does not parse; ``line`` is where (1-based)."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


@dataclass(frozen=True)
class Case:
    name: str
    line: int
    request: Request
    effect: Effect
    rule: str | None = None
    approvers: tuple[str, ...] | None = None
    mfa_within: int | None = None


def check_case(case: Case, decision: Decision) -> str | None:
    """Why ``decision`` does not meet the case's expectations, or ``None`` if it does."""
    wanted = case.effect.value + (f" ({case.rule})" if case.rule else "")
    got = f"{decision.effect.value} ({decision.rule_id}: {decision.reason})"
    if decision.effect is not case.effect or (case.rule and decision.rule_id != case.rule):
        return f"expected {wanted}, got {got}"
    if case.approvers is not None and decision.approvers != case.approvers:
        return f"expected approvers {list(case.approvers)}, got {list(decision.approvers)}"
    if case.mfa_within is not None and decision.mfa_within != case.mfa_within:
        return f"expected mfa_within {case.mfa_within}, got {decision.mfa_within}"
    return None


@dataclass(frozen=True)
class Verdict:
    """One case's outcome: the decision, and why it misses the case (``None``: passed)."""

    case: Case
    decision: Decision
    problem: str | None


def judge(
    cases: list[Case], engine: PolicyEngine, fast: PolicyEngine | None = None
) -> list[Verdict]:
    """Decide every case with ``engine``; with ``fast`` (the compiled path built from the
    same policy), a case also fails where the two decide differently."""
    verdicts = []
    for case in cases:
        decision = engine.decide(case.request)
        problem = check_case(case, decision)
        if problem is None and fast is not None and fast.decide(case.request) != decision:
            problem = "the compiled fast path decides differently (please report this)"
        verdicts.append(Verdict(case, decision, problem))
    return verdicts


class _Parser:
    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, line: int, message: str) -> CaseError:
        return CaseError(f"{self.path}:{line}: {message}", line)

    def str_list(self, value: Any, line: int, what: str) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(line, f"{what} must be a list of strings")
        return tuple(value)

    def subject(self, value: Any, line: int) -> Subject:
        if isinstance(value, str):
            return Subject(value)
        if not isinstance(value, dict):
            raise self.fail(line, "a user is a user id or a mapping {user, role, groups, mfa_age}")
        unknown = set(value) - {"user", "role", "groups", "mfa_age"}
        if unknown:
            raise self.fail(line, f"unknown user key(s): {', '.join(sorted(unknown))}")
        try:
            role = Role(value.get("role", "user"))
        except ValueError:
            roles = ", ".join(r.value for r in Role)
            raise self.fail(line, f"unknown role {value.get('role')!r} ({roles})") from None
        age = value.get("mfa_age")
        if age is not None and (isinstance(age, bool) or not isinstance(age, int | float)):
            raise self.fail(line, "mfa_age is a number of seconds (or absent: no MFA)")
        user = value.get("user")
        if not isinstance(user, str) or not user:
            raise self.fail(line, "a user mapping needs a 'user' id")
        return Subject(user, role, self.str_list(value.get("groups"), line, "groups"), age)

    def server(self, value: Any, line: int) -> Server:
        if isinstance(value, str):
            return Server(value)
        if not isinstance(value, dict) or not isinstance(value.get("name"), str):
            raise self.fail(line, "a server is a name or a mapping {name, groups, tags}")
        unknown = set(value) - {"name", "groups", "tags"}
        if unknown:
            raise self.fail(line, f"unknown server key(s): {', '.join(sorted(unknown))}")
        tags = value.get("tags") or {}
        if not isinstance(tags, dict):
            raise self.fail(line, "tags is a mapping key: value")
        groups = self.str_list(value.get("groups"), line, "groups")
        return Server.of(value["name"], groups, {str(k): str(v) for k, v in tags.items()})

    def case(
        self,
        raw: Any,
        line: int,
        index: int,
        subjects: dict[str, Subject],
        servers: dict[str, Server],
    ) -> Case:
        if not isinstance(raw, dict):
            raise self.fail(line, "each case is a mapping")
        unknown = set(raw) - _CASE_KEYS
        if unknown:
            raise self.fail(line, f"unknown case key(s): {', '.join(sorted(unknown))}")
        kinds = [k for k in ("command", "action", "session") if k in raw]
        if len(kinds) != 1:
            raise self.fail(line, "a case has exactly one of command, action or session")
        user = raw.get("user")
        if user is None:
            raise self.fail(line, "a case needs a user")
        subject = subjects.get(user) if isinstance(user, str) else None
        subject = subject or self.subject(user, line)
        try:
            effect = Effect(str(raw.get("expect")))
        except ValueError:
            effects = ", ".join(e.value for e in Effect)
            raise self.fail(line, f"expect must be one of {effects}") from None
        request = self.request(raw, kinds[0], subject, servers, line)
        name = raw.get("name") or f"case {index + 1}"
        approvers = raw.get("approvers")
        mfa_within = raw.get("mfa_within")
        if mfa_within is not None and (
            isinstance(mfa_within, bool) or not isinstance(mfa_within, int)
        ):
            raise self.fail(line, "mfa_within is an integer number of seconds")
        rule = raw.get("rule")
        if rule is not None and not isinstance(rule, str):
            raise self.fail(line, "rule is a rule id")
        return Case(
            str(name),
            line,
            request,
            effect,
            rule,
            None if approvers is None else self.str_list(approvers, line, "approvers"),
            mfa_within,
        )

    def request(
        self,
        raw: dict[str, Any],
        kind: str,
        subject: Subject,
        servers: dict[str, Server],
        line: int,
    ) -> Request:
        value = raw[kind]
        if not isinstance(value, str) or not value:
            raise self.fail(line, f"{kind} must be a non-empty string")
        if kind == "action":
            return ActionRequest(subject, value)
        where = raw.get("server")
        if where is None:
            raise self.fail(line, f"a {kind} case needs a server")
        target = servers.get(where) if isinstance(where, str) else None
        target = target or self.server(where, line)
        if kind == "session":
            try:
                return SessionRequest(subject, target, AccessLevel(value))
            except ValueError:
                levels = ", ".join(lv.value for lv in AccessLevel)
                raise self.fail(line, f"session must be a level ({levels})") from None
        unix_user = raw.get("unix_user", "user")
        sudo = raw.get("sudo", False)
        if not isinstance(unix_user, str) or not isinstance(sudo, bool):
            raise self.fail(line, "unix_user is a string and sudo a boolean")
        return CommandRequest(subject, target, value, unix_user, sudo)


def _lines(root: yaml.Node | None, key: str) -> dict[str, int] | list[int]:
    """Line numbers of the entries under ``key`` (mapping keys or sequence items)."""
    if not isinstance(root, yaml.MappingNode):
        return []
    for k, v in root.value:
        if getattr(k, "value", None) == key:
            if isinstance(v, yaml.SequenceNode):
                return [item.start_mark.line + 1 for item in v.value]
            if isinstance(v, yaml.MappingNode):
                return {str(kk.value): kk.start_mark.line + 1 for kk, _ in v.value}
    return []


def load_cases(path: Path) -> list[Case]:
    """Parse a decision table file; raise :class:`InvalidInput` naming ``file:line``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path}: cannot read cases: {exc}") from None
    return parse_cases(text, str(path))


def parse_cases(text: str, label: str = "<cases>") -> list[Case]:
    """Parse a decision table's text (``label`` names it in errors: ``label:line: ...``)."""
    parser = _Parser(label)
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise parser.fail(line, f"invalid YAML: {problem}") from None
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list):
        raise parser.fail(1, "expected a mapping with a 'cases' list")
    unknown = set(data) - {"subjects", "servers", "cases"}
    if unknown:
        raise parser.fail(1, f"unknown top-level key(s): {', '.join(sorted(unknown))}")
    for section in ("subjects", "servers"):
        if not isinstance(data.get(section) or {}, dict):
            raise parser.fail(1, f"{section} must be a mapping of names")
    subject_lines = _lines(root, "subjects")
    server_lines = _lines(root, "servers")
    subjects = {
        str(name): parser.subject(
            {"user": name, **v} if isinstance(v, dict) and "user" not in v else v,
            subject_lines.get(str(name), 1) if isinstance(subject_lines, dict) else 1,
        )
        for name, v in (data.get("subjects") or {}).items()
    }
    servers = {
        str(name): parser.server(
            {"name": name, **v} if isinstance(v, dict) and "name" not in v else v,
            server_lines.get(str(name), 1) if isinstance(server_lines, dict) else 1,
        )
        for name, v in (data.get("servers") or {}).items()
    }
    case_lines = _lines(root, "cases")
    assert isinstance(case_lines, list)
    return [
        parser.case(raw, case_lines[i] if i < len(case_lines) else 1, i, subjects, servers)
        for i, raw in enumerate(data["cases"])
    ]
