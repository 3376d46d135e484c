"""Per-decision latency of the policy engines at 1,000 grants and 100 command rules.

A synthetic policy (1,000 access grants over 300 users, 60 groups and name/group/tag
selectors; 100 command rules of every effect, exact programs and globs; 10 session and
10 action rules; one lockdown) is rendered to Polar and to Casbin CSV and loaded by each
backend; the compiled path is built from the Polar engine. Each engine then decides the
same stream of command requests, every one a fresh (subject, server, command line)
triple, so no cache of any kind holds its answer ("cold cache"; the compiled path keeps
no decision cache at all). The time is the full ``engine.decide(CommandRequest)`` call:
shell parsing, grant resolution, rule matching and precedence.

Prints figures; asserts nothing. Usage::

    .venv/bin/python benchmarks/policy_decide.py [--compiled 20000] [--reference 300]
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from policies import CommandRequest, PolicyEngine, Role, Server, Subject, compile_engine
from policies.casbin_backend import DEFAULT_MODEL, casbin_from_text
from policies.model import Effect
from policies.polar_backend import polar_from_text
from policies.render import render_casbin, render_polar
from policies.rules import AllowEntry, Grant, Hit, Lockdown, Permission, PolicyData, Rule

USERS = [f"user{i}" for i in range(300)]
GROUPS = [f"team{i}" for i in range(60)]
PREFIXES = ["production", "staging", "web", "db", "cache", "batch", "edge", "ci"]
LINES = [
    "ls -la /var/log",
    "tail -n 100 /var/log/syslog | grep error",
    "systemctl status nginx",
    "sudo systemctl restart nginx",
    "cd /srv/app && git pull && make deploy",
    "rm -rf /tmp/build",
    "ps aux | sort -k3 -nr | head",
    "docker ps --format '{{.Names}}'",
    "kubectl get pods -n prod",
    "psql -c 'select count(*) from users'",
    "cat /etc/os-release",
    "FOO=1 env nice -n 5 tar czf /tmp/x.tgz /srv/app",
]


def synthetic_policy(rng: random.Random, grants: int = 1000, commands: int = 100) -> PolicyData:
    levels = ["none", "read-only", "terminal", "full"]

    def who() -> str:
        r = rng.random()
        if r < 0.5:
            return f"user:{rng.choice(USERS)}"
        if r < 0.95:
            return f"group:{rng.choice(GROUPS)}"
        return f"role:{rng.choice(['user', 'staff', 'superuser'])}"

    def where() -> str:
        r = rng.random()
        if r < 0.6:
            return f"name:{rng.choice(PREFIXES)}-*"
        if r < 0.8:
            return f"group:sg{rng.randint(0, 19)}"
        return f"tag:env={rng.choice(['prod', 'staging', 'dev'])}"

    g = tuple(Grant(f"grant{i}", who(), where(), rng.choice(levels[1:])) for i in range(grants))
    rules = []
    for i in range(commands):
        effect = [Effect.DENY, Effect.REQUIRE_APPROVAL, Effect.REQUIRE_MFA][i % 3]
        program = f"tool{i}" if i % 4 else f"tool{i}*"
        if i < 5:
            program = ["rm", "mkfs*", "shutdown", "dd", "systemctl"][i]
        rules.append(
            Rule(
                f"rule{i}",
                "command",
                effect.value,
                "*" if i % 2 else who(),
                "*" if i % 3 else where(),
                program,
                "-r|-R /" if program == "rm" else "",
                "group:team1" if effect is Effect.REQUIRE_APPROVAL else "",
                300 if effect is Effect.REQUIRE_MFA else 0,
                f"rule {i}",
            )
        )
    for i in range(10):
        rules.append(
            Rule(f"session{i}", "session", "require_mfa", "*", where(), "*", "", "", 3600, "s")
        )
        rules.append(
            Rule(f"action{i}", "action", "require_mfa", "*", "*", f"a{i}.*", "", "", 300, "a")
        )
    lock = Lockdown("lock.pci", "*", "tag:zone=pci", "locked")
    allow = tuple(AllowEntry("lock.pci", p, "") for p in ("ls", "cat", "tail", "grep"))
    perms = (
        Permission("perm.su", "superuser", "*"),
        Permission("perm.staff", "staff", "servers.*"),
    )
    unresolved = Hit(Effect.REQUIRE_APPROVAL, "default.unresolved", "unknown", ("group:sec",))
    return PolicyData(g, tuple(rules), (lock,), allow, perms, unresolved)


def requests(rng: random.Random, n: int) -> list[CommandRequest]:
    out = []
    for i in range(n):
        subject = Subject(
            rng.choice(USERS), Role.USER, tuple(rng.sample(GROUPS, 3)), rng.choice([None, 30.0])
        )
        server = Server.of(
            f"{rng.choice(PREFIXES)}-{i}",
            (f"sg{rng.randint(0, 19)}",),
            {"env": rng.choice(["prod", "staging", "dev"])},
        )
        # A unique suffix makes every line distinct: nothing can be answered from a cache.
        out.append(CommandRequest(subject, server, f"{rng.choice(LINES)} # {i}"))
    return out


def session_requests(rng: random.Random, n: int, sessions: int = 50) -> list[CommandRequest]:
    """``n`` fresh lines spread over ``sessions`` (subject, server) pairs: the hot path,
    where the grant was resolved when the session opened."""
    pairs = [(r.subject, r.server) for r in requests(rng, sessions)]
    return [CommandRequest(*pairs[i % sessions], f"{rng.choice(LINES)} # s{i}") for i in range(n)]


def measure(engine: PolicyEngine, reqs: list[CommandRequest]) -> tuple[list[float], dict[str, int]]:
    times = []
    effects: dict[str, int] = {}
    clock = time.perf_counter_ns
    for req in reqs:
        t0 = clock()
        d = engine.decide(req)
        times.append((clock() - t0) / 1000)
        effects[d.effect.value] = effects.get(d.effect.value, 0) + 1
    return times, effects


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--compiled", type=int, default=20000, help="decisions for the compiled path")
    ap.add_argument("--reference", type=int, default=300, help="decisions for oso and pycasbin")
    args = ap.parse_args()

    rng = random.Random(7)
    data = synthetic_policy(rng)
    t0 = time.perf_counter()
    polar = polar_from_text(render_polar(data), "<synthetic>")
    t1 = time.perf_counter()
    casbin = casbin_from_text(DEFAULT_MODEL.read_text(), render_casbin(data))
    t2 = time.perf_counter()
    compiled = compile_engine(polar)
    t3 = time.perf_counter()
    command_rules = sum(r.kind == "command" for r in data.rules)
    print(
        f"policy: {len(data.grants)} grants, {command_rules} command rules, "
        f"{len(data.rules) - command_rules} session/action rules, 1 lockdown"
    )
    print(f"python {platform.python_version()} on {platform.machine()}, {platform.system()}")
    print(f"load: oso {t1 - t0:.2f} s, pycasbin {t2 - t1:.2f} s, compiled {1e3 * (t3 - t2):.1f} ms")
    print("per command decision (us), every request a fresh subject/server/line (cold cache):")
    print(f"{'engine':<10} {'n':>6} {'median':>10} {'p90':>10} {'p99':>10} {'max':>10}  effects")
    reqs = requests(rng, max(args.compiled, args.reference))
    warm = requests(random.Random(99), 200)  # interpreter warm-up only, different requests
    in_session = session_requests(rng, args.compiled)
    for name, engine, n, stream in (
        ("compiled", compiled, args.compiled, reqs),
        ("compiled*", compile_engine(polar), args.compiled, in_session),
        ("pycasbin", casbin, args.reference, reqs),
        ("oso", polar, args.reference, reqs),
    ):
        measure(engine, warm[: min(n, 50)])
        times, effects = measure(engine, stream[:n])
        print(
            f"{name:<10} {n:>6} {statistics.median(times):>10.1f} {p(times, 90):>10.1f} "
            f"{p(times, 99):>10.1f} {max(times):>10.1f}  {effects}"
        )
    print("compiled*: 50 open sessions (grant resolved at the first command), fresh lines")
    agree = sum(compiled.decide(r) == polar.decide(r) for r in reqs[: args.reference])
    print(f"compiled == oso on {agree}/{args.reference} of these requests")


if __name__ == "__main__":
    main()
