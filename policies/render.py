"""Write :class:`PolicyData` back out as Polar facts or Casbin CSV rows.

Used to keep the two default policies in step (the CSV was generated from
``policies.polar``), to build large synthetic policies for benchmarks and differential
tests, and later by ``corral policy`` to convert between the formats. The decision logic
of a ``.polar`` file is copied from the shipped default, never generated.
"""

from __future__ import annotations

import json
from pathlib import Path

from policies.rules import PolicyData

__all__ = ["LOGIC_MARKER", "polar_logic", "render_casbin", "render_polar"]

LOGIC_MARKER = "# --- 7. Decision logic"
_DEFAULT = Path(__file__).resolve().parent / "default.polar"
_TYPES = """\
type unresolved_default(id: String, effect: String, approvers: String, reason: String);
type permission(id: String, role: String, action: String);
type grant(id: String, who: String, where: String, level: String);
type rule(id: String, kind: String, effect: String, who: String, where: String,
          what: String, args: String, approvers: String, mfa_within: Integer, reason: String);
type lockdown(id: String, who: String, where: String, reason: String);
type allow_command(lockdown: String, program: String, args: String);
"""


def polar_logic(default: Path = _DEFAULT) -> str:
    """The decision-logic section of the shipped policy (section 7 to the end)."""
    text = default.read_text(encoding="utf-8")
    return text[text.index(LOGIC_MARKER) :]


def _q(value: str) -> str:
    return json.dumps(value)  # Polar string literals use the same escapes


def render_polar(data: PolicyData) -> str:
    u = data.unresolved
    out = [_TYPES]
    out.append(
        f"unresolved_default({_q(u.rule_id)}, {_q(u.effect.value)}, "
        f"{_q(' '.join(u.approvers))}, {_q(u.reason)});"
    )
    out += [f"permission({_q(p.id)}, {_q(p.role)}, {_q(p.action)});" for p in data.permissions]
    out += [f"grant({_q(g.id)}, {_q(g.who)}, {_q(g.where)}, {_q(g.level)});" for g in data.grants]
    for r in data.rules:
        fields = (r.id, r.kind, r.effect, r.who, r.where, r.what, r.args, r.approvers)
        out.append(f"rule({', '.join(_q(f) for f in fields)}, {r.mfa_within}, {_q(r.reason)});")
    out += [
        f"lockdown({_q(lk.id)}, {_q(lk.who)}, {_q(lk.where)}, {_q(lk.reason)});"
        for lk in data.lockdowns
    ]
    out += [
        f"allow_command({_q(a.lockdown)}, {_q(a.program)}, {_q(a.args)});"
        for a in data.allow_entries
    ]
    out.append(polar_logic())
    return "\n".join(out)


def _row(*fields: str) -> str:
    cells = []
    for f in fields:
        cells.append('"' + f.replace('"', '""') + '"' if ("," in f or '"' in f) else f)
    return ", ".join(cells)


def render_casbin(data: PolicyData) -> str:
    u = data.unresolved
    out = [_row("p6", u.rule_id, u.effect.value, " ".join(u.approvers), u.reason)]
    out += [_row("p4", p.id, p.role, p.action) for p in data.permissions]
    out += [_row("p2", g.id, g.who, g.where, g.level) for g in data.grants]
    out += [
        _row(
            "p",
            r.id,
            r.kind,
            r.effect,
            r.who,
            r.where,
            r.what,
            r.args,
            r.approvers,
            str(r.mfa_within),
            r.reason,
        )
        for r in data.rules
    ]
    out += [_row("p3", lk.id, lk.who, lk.where, lk.reason) for lk in data.lockdowns]
    out += [_row("p5", a.lockdown, a.program, a.args) for a in data.allow_entries]
    return "\n".join(out) + "\n"
