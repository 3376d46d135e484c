"""Differential test: the compiled fast path decides exactly as the reference engines.

Thousands of seeded random requests, against the default policy and against random
policies (selectors with negation, globs, overlapping grants, every effect), rendered to
both Polar and Casbin. Effect, rule id, approvers, MFA window and reason must match.
"""

from __future__ import annotations

import random

import pytest

from policies import (
    AccessLevel,
    ActionRequest,
    CommandRequest,
    Decision,
    PolicyEngine,
    Request,
    Role,
    Server,
    SessionRequest,
    Subject,
    compile_engine,
)
from policies.casbin_backend import DEFAULT_MODEL, casbin_from_text
from policies.engine import RuleEngine
from policies.model import Effect
from policies.polar_backend import polar_from_text
from policies.render import render_casbin, render_polar
from policies.rules import AllowEntry, Grant, Hit, Lockdown, Permission, PolicyData, Rule

USERS = [f"u{i}" for i in range(6)]
GROUPS = ["ops", "developers", "dba", "contractors", "g1", "g2"]
SERVER_GROUPS = ["databases", "web", "sg3"]
WHO = ["*", *(f"user:{u}" for u in USERS), *(f"group:{g}" for g in GROUPS)]
WHO += [f"role:{r.value}" for r in Role]
WHERE = ["*", "name:production-*", "name:web-?", "name:*-1", "name:staging-*", "tag:env=prod"]
WHERE += ["tag:env=*", "tag:zone=pci", *(f"group:{g}" for g in SERVER_GROUPS)]
PROGRAMS = ["rm", "mkfs*", "sys*", "/tmp/*", "ls", "apt*", "*", "kubectl", "/usr/bin/*", "psql"]
PROGRAMS += ["systemctl", "s?", "[rl]s"]
ARGS = ["", "", "-r|-R /|/[*]", "-f", "install|remove", "of=/dev/*", "restart stop", "-*"]
ACTIONS = ["users.invite", "audit.read", "policy.update", "billing.update", "workspace.delete"]
ACTIONS += ["servers.delete", "groups.update", "workspace.settings.update"]
MFA_AGES = [None, 0.0, 100.0, 299.0, 300.0, 301.0, 599.0, 600.0, 601.0, 3600.0, 4000.0]
EFFECTS = [Effect.DENY, Effect.REQUIRE_APPROVAL, Effect.REQUIRE_MFA]


def maybe_not(rng: random.Random, selector: str) -> str:
    return "!" + selector if selector != "*" and rng.random() < 0.15 else selector


def random_policy(rng: random.Random, grants: int = 40, rules: int = 40) -> PolicyData:
    levels = [lv.value for lv in AccessLevel]
    g = tuple(
        Grant(
            f"g{i}",
            maybe_not(rng, rng.choice(WHO)),
            maybe_not(rng, rng.choice(WHERE)),
            rng.choice(levels),
        )
        for i in range(grants)
    )
    rs = []
    for i in range(rules):
        kind = rng.choices(["command", "session", "action"], [6, 2, 2])[0]
        effect = rng.choice(EFFECTS)
        what = {
            "command": rng.choice(PROGRAMS),
            "session": rng.choice(["*", "full", "terminal", "read-only"]),
            "action": rng.choice(["*", "policy.*", "billing.*", "users.*", *ACTIONS]),
        }[kind]
        rs.append(
            Rule(
                f"r{i}",
                kind,
                effect.value,
                maybe_not(rng, rng.choice(WHO)),
                "*" if kind == "action" else maybe_not(rng, rng.choice(WHERE)),
                what,
                rng.choice(ARGS) if kind == "command" else "",
                "group:ops user:u1" if effect is Effect.REQUIRE_APPROVAL else "",
                rng.choice([60, 300, 600]) if effect is Effect.REQUIRE_MFA else 0,
                f"reason {i}",
            )
        )
    locks = tuple(
        Lockdown(f"lock{i}", maybe_not(rng, rng.choice(WHO)), rng.choice(WHERE[1:]), f"locked {i}")
        for i in range(rng.randint(0, 2))
    )
    allow = tuple(
        AllowEntry(lk.id, rng.choice(PROGRAMS[:-1]), rng.choice(ARGS))
        for lk in locks
        for _ in range(3)
    )
    perms = tuple(
        Permission(
            f"p{i}", rng.choice([r.value for r in Role]), rng.choice(["*", "users.*", *ACTIONS])
        )
        for i in range(8)
    )
    default = rng.choice(list(Effect))
    unresolved = Hit(
        default,
        "default.unresolved",
        "cannot tell",
        ("group:security",) if default is Effect.REQUIRE_APPROVAL else (),
    )
    return PolicyData(g, tuple(rs), locks, allow, perms, unresolved)


SIMPLE = [
    "ls -la",
    "rm -rf /",
    "rm -f x",
    "mkfs.ext4 /dev/sda",
    "systemctl restart nginx",
    "sysctl -a",
]
SIMPLE += ["/tmp/run", "apt install x", "apt-get remove y", "kubectl get", "/usr/bin/psql", "psql"]
SIMPLE += ["dd of=/dev/sda", "sl", "eval x", "$X", "curl x | bash", "bash -c 'rm -R /*'", "rs"]
OPS = [" ; ", " && ", " | ", " || "]


def random_request(rng: random.Random) -> Request:
    groups = tuple(rng.sample(GROUPS, rng.randint(0, 3)))
    subject = Subject(rng.choice(USERS), rng.choice(list(Role)), groups, rng.choice(MFA_AGES))
    tags = {}
    if rng.random() < 0.6:
        tags["env"] = rng.choice(["prod", "staging", "dev"])
    if rng.random() < 0.2:
        tags["zone"] = "pci"
    name = rng.choice(["production-", "staging-", "web-", "db-", "pci-"]) + str(rng.randint(1, 12))
    server = Server.of(name, tuple(rng.sample(SERVER_GROUPS, rng.randint(0, 2))), tags)
    kind = rng.random()
    if kind < 0.7:
        parts = [rng.choice(SIMPLE) for _ in range(rng.randint(1, 3))]
        if rng.random() < 0.2:
            parts[0] = "sudo " + parts[0]
        line = parts[0] + "".join(rng.choice(OPS) + p for p in parts[1:])
        grant = None
        if rng.random() < 0.2:  # a level the broker resolved (policy file + stored grants)
            grant = (rng.choice(list(AccessLevel)), "grant.stored:g")
        return CommandRequest(
            subject, server, line, rng.choice(["user", "user", "root"]), rng.random() < 0.1, grant
        )
    if kind < 0.85:
        return SessionRequest(subject, server, rng.choice(list(AccessLevel)))
    return ActionRequest(subject, rng.choice(ACTIONS))


def key(d: Decision) -> tuple[object, ...]:
    return (d.effect, d.rule_id, d.approvers, d.mfa_within, d.reason)


def compare(reference: PolicyEngine, fast: PolicyEngine, rng: random.Random, n: int) -> None:
    effects: set[Effect] = set()
    for _ in range(n):
        req = random_request(rng)
        expected = reference.decide(req)
        assert key(fast.decide(req)) == key(expected), req
        effects.add(expected.effect)
    assert effects == set(Effect)  # the sample exercised every outcome


def test_default_policy_compiled_matches_polar(polar_engine: RuleEngine) -> None:
    compare(polar_engine, compile_engine(polar_engine), random.Random(1), 3000)


def test_default_policy_compiled_matches_casbin(casbin_engine: RuleEngine) -> None:
    compare(casbin_engine, compile_engine(casbin_engine), random.Random(2), 3000)


@pytest.mark.parametrize("seed", range(8))
def test_random_policies(seed: int) -> None:
    rng = random.Random(1000 + seed)
    data = random_policy(rng)
    polar = polar_from_text(render_polar(data), "<random>")
    casbin = casbin_from_text(DEFAULT_MODEL.read_text(), render_casbin(data))
    assert polar.policy_data() == casbin.policy_data() == data
    fast = compile_engine(polar)
    for _ in range(400):
        req = random_request(rng)
        expected = polar.decide(req)
        assert key(fast.decide(req)) == key(expected), req
        assert key(casbin.decide(req)) == key(expected), req


def test_compiled_fails_closed(polar_engine: RuleEngine, caplog: pytest.LogCaptureFixture) -> None:
    fast = compile_engine(polar_engine)
    broken = Subject("x", Role.USER, None, None)  # type: ignore[arg-type]
    d = fast.decide(CommandRequest(broken, Server("web-1"), "ls"))
    assert (d.effect, d.rule_id) == (Effect.DENY, "internal.error")
    assert fast.access_level(broken, Server("web-1")) is AccessLevel.NONE
    assert "denying" in caplog.text
