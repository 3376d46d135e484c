"""The policy as plain data, extracted from whichever engine loaded it, and validated.

Both backends can list their facts (grants, rules, lockdowns, permissions); turning them
into these records lets one validator give the same file:line errors for Polar and
Casbin, and lets the compiled fast path be built from exactly what the engine loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from policies.errors import PolicyLoadError
from policies.matching import selector_error
from policies.model import AccessLevel, Effect, Role

__all__ = [
    "AllowEntry",
    "Grant",
    "Hit",
    "Lockdown",
    "Permission",
    "PolicyData",
    "Rule",
    "validate",
]

RULE_KINDS = ("command", "session", "action")
RULE_EFFECTS = (Effect.DENY, Effect.REQUIRE_APPROVAL, Effect.REQUIRE_MFA)


@dataclass(frozen=True, slots=True)
class Hit:
    """What one rule says about one request, before precedence picks a winner."""

    effect: Effect
    rule_id: str
    reason: str
    approvers: tuple[str, ...] = ()
    mfa_within: int | None = None


@dataclass(frozen=True, slots=True)
class Grant:
    id: str
    who: str
    where: str
    level: str


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    kind: str
    effect: str
    who: str
    where: str
    what: str
    args: str
    approvers: str
    mfa_within: int
    reason: str

    def hit(self) -> Hit:
        effect = Effect(self.effect)
        return Hit(
            effect,
            self.id,
            self.reason,
            tuple(self.approvers.split()),
            self.mfa_within if effect is Effect.REQUIRE_MFA else None,
        )


@dataclass(frozen=True, slots=True)
class Lockdown:
    id: str
    who: str
    where: str
    reason: str


@dataclass(frozen=True, slots=True)
class AllowEntry:
    lockdown: str
    program: str
    args: str


@dataclass(frozen=True, slots=True)
class Permission:
    id: str
    role: str
    action: str


@dataclass(frozen=True, slots=True)
class PolicyData:
    grants: tuple[Grant, ...]
    rules: tuple[Rule, ...]
    lockdowns: tuple[Lockdown, ...]
    allow_entries: tuple[AllowEntry, ...]
    permissions: tuple[Permission, ...]
    unresolved: Hit


def validate(data: PolicyData, file: str, locate: Callable[[str], int | None]) -> None:
    """Raise :class:`PolicyLoadError` at the first invalid fact, located by its id."""

    def fail(key: str, message: str) -> None:
        raise PolicyLoadError(message, file=file, line=locate(key))

    seen: set[str] = set()

    def unique(key: str) -> None:
        if key in seen:
            fail(key, f"duplicate id {key!r}")
        seen.add(key)

    def selectors(key: str, who: str, where: str) -> None:
        for sel, is_who in ((who, True), (where, False)):
            if (err := selector_error(sel, who=is_who)) is not None:
                fail(key, f"{key}: {err}")

    levels = {lv.value for lv in AccessLevel}
    for g in data.grants:
        unique(g.id)
        selectors(g.id, g.who, g.where)
        if g.level not in levels:
            fail(g.id, f"{g.id}: unknown access level {g.level!r} ({', '.join(sorted(levels))})")
    for r in data.rules:
        unique(r.id)
        selectors(r.id, r.who, r.where)
        if r.kind not in RULE_KINDS:
            fail(r.id, f"{r.id}: unknown rule kind {r.kind!r} ({', '.join(RULE_KINDS)})")
        if r.effect not in RULE_EFFECTS:
            fail(r.id, f"{r.id}: a rule's effect must be one of {', '.join(RULE_EFFECTS)}")
        if r.kind == "action" and r.where != "*":
            fail(r.id, f"{r.id}: action rules apply workspace-wide; where must be '*'")
        if r.effect == Effect.REQUIRE_APPROVAL and not r.approvers.split():
            fail(r.id, f"{r.id}: require_approval needs at least one approver")
        if r.effect == Effect.REQUIRE_MFA and r.mfa_within <= 0:
            fail(r.id, f"{r.id}: require_mfa needs a positive window in seconds")
        for approver in r.approvers.split():
            if (err := selector_error(approver, who=True)) is not None:
                fail(r.id, f"{r.id}: approver {err}")
    lockdown_ids = set()
    for lk in data.lockdowns:
        unique(lk.id)
        selectors(lk.id, lk.who, lk.where)
        lockdown_ids.add(lk.id)
    for e in data.allow_entries:
        if e.lockdown not in lockdown_ids:
            fail(e.lockdown, f"allowlist entry for unknown lockdown {e.lockdown!r}")
    roles = {r.value for r in Role}
    for p in data.permissions:
        unique(p.id)
        if p.role not in roles:
            fail(p.id, f"{p.id}: unknown role {p.role!r} (roles: {', '.join(sorted(roles))})")
