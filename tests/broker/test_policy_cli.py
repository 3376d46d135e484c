"""``corral policy check/test/explain/replay`` and policy start-up/SIGHUP, through the real
console script with real files; replay reads a real audit log on both databases."""

from __future__ import annotations

import asyncio
import re
import signal
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from broker.audit import SYSTEM, Actor, AuditLog, Category, Outcome
from broker.services import Services
from broker.store.db import Database
from broker.store.models import utcnow
from policies.casbin_backend import DEFAULT_POLICY as DEFAULT_CSV
from policies.polar_backend import DEFAULT_POLICY
from tests.broker.test_cli import TOKEN, Broker, assert_one_error, corral
from tests.conftest import TEST_KEY

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
GOOD = DEFAULT_POLICY.read_text()
MARKER = "# --- 7. Decision logic"
UNKNOWN_ROLE = GOOD.replace('"role:staff", "name:staging-*"', '"role:admin", "name:staging-*"')


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def test_check(tmp_path: Path) -> None:
    ok = corral(tmp_path, "policy", "check", str(ROOT / "policies.polar"), str(DEFAULT_CSV))
    assert ok.code == 0 and len(ok.out.splitlines()) == 2 and "ok (" in ok.out, ok
    bad_polar = tmp_path / "bad.polar"
    bad_polar.write_text(UNKNOWN_ROLE)
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text(
        DEFAULT_CSV.read_text().replace(
            "p4, perm.staff.groups, staff,", "p4, perm.staff.groups, root,"
        )
    )
    syntax = tmp_path / "syntax.polar"
    syntax.write_text(GOOD.replace("grant(", "grant((", 1))
    result = corral(tmp_path, "policy", "check", str(bad_polar), str(bad_csv), str(syntax))
    assert result.code == 1 and "Traceback" not in result.err
    lines = result.err.splitlines()
    assert len(lines) == 3, result.err
    assert lines[0].startswith(f"{bad_polar}:{line_of(UNKNOWN_ROLE, 'role:admin')}: ")
    assert "unknown role 'admin'" in lines[0]
    assert lines[1].startswith(f"{bad_csv}:{line_of(bad_csv.read_text(), 'perm.staff.groups')}: ")
    assert re.match(rf"{re.escape(str(syntax))}:\d+: ", lines[2])


def test_test_passes_the_shipped_table_and_reports_failures(tmp_path: Path) -> None:
    for policy in (ROOT / "policies.polar", DEFAULT_CSV):
        ok = corral(ROOT, "policy", "test", str(policy), "policies.test.yaml")
        assert ok.code == 0, ok.out + ok.err
        assert re.search(r"^(\d+) passed, 0 failed", ok.out, re.M)
        assert int(ok.out.splitlines()[-1].split()[0]) >= 25
    cases = tmp_path / "cases.yaml"
    cases.write_text(
        "servers:\n  web: {name: web-1}\n"
        "cases:\n"
        "  - {name: right, user: {user: d, groups: [developers]}, server: web,\n"
        "     command: ls, expect: allow}\n"
        "  - name: wrong\n    user: {user: d, groups: [developers]}\n    server: web\n"
        "    command: rm -rf /\n    expect: allow\n"
    )
    result = corral(tmp_path, "policy", "test", str(ROOT / "policies.polar"), str(cases))
    assert result.code == 1, result
    assert f"PASS  {cases}:4  right" in result.out
    assert f"FAIL  {cases}:6  wrong: expected allow, got deny (block.rm-root" in result.out
    assert "1 passed, 1 failed" in result.out
    cases.write_text("cases:\n  - {user: x, expect: allow}\n")
    assert_one_error(
        corral(tmp_path, "policy", "test", str(ROOT / "policies.polar"), str(cases)),
        f"{cases}:2:",
        "exactly one of command, action or session",
    )
    cases.write_text("cases: [\n")
    assert_one_error(
        corral(tmp_path, "policy", "test", str(ROOT / "policies.polar"), str(cases)), "invalid YAML"
    )


def test_explain(tmp_path: Path) -> None:
    result = corral(
        tmp_path,
        "policy",
        "explain",
        "--user",
        "olga",
        "--groups",
        "ops",
        "--server",
        "production-web1",
        "--tag",
        "env=prod",
        "--command",
        "sudo systemctl restart nginx",
    )
    assert result.code == 0, result
    assert "decision: require_approval" in result.out
    assert "rule:     approve.systemctl-prod" in result.out
    assert "approvers: group:sre-leads user:alice" in result.out
    assert "access:   full by grant.ops-prod (policy file only)" in result.out
    assert "commands: systemctl restart nginx" in result.out
    action = corral(
        tmp_path,
        "policy",
        "explain",
        "--user",
        "root",
        "--role",
        "superuser",
        "--action",
        "policy.update",
    )
    assert "decision: require_mfa" in action.out and "an MFA within 300 s" in action.out
    assert_one_error(corral(tmp_path, "policy", "explain", "--user", "x"), "exactly one of")


@pytest.fixture
async def seeded(db_url: str, tmp_path: Path) -> tuple[str, Path]:
    """A database whose audit log holds terminal and exec commands, emitted for real."""
    db = Database(db_url)
    await db.migrate()
    now = [utcnow()]
    audit = AuditLog(db, TEST_KEY, clock=lambda: now[0])
    services = Services.build(db, audit)
    ws = (await services.workspaces.create("acme")).id
    users = {}
    for email, group in (("dev@acme.test", "developers"), ("carl@acme.test", "contractors")):
        user = await services.users.create(ws, email)
        g = await services.groups.create(ws, group)
        await services.groups.add_member(ws, g.id, user.id, actor=SYSTEM)
        users[email] = user
    web = await services.servers.create(ws, "web-1")
    dev, carl = users["dev@acme.test"], users["carl@acme.test"]
    session = await services.sessions.open(
        ws, user_id=dev.id, server_id=web.id, unix_user="deploy", actor=SYSTEM
    )

    async def command(action: str, user_id: str, line: str, effect: str, rule: str) -> None:
        await audit.emit(
            ws,
            Category.RESOURCE_ACCESS,
            action,
            outcome=Outcome.SUCCESS if effect == "allow" else Outcome.DENIED,
            actor=Actor("user", user_id),
            server_id=web.id,
            session_id=session.id if action == "session.command" else "",
            details={
                "command": line,
                "effect": effect,
                "rule_id": rule,
                "reason": "r",
                "policy_version": "v1",
                **({"unix_user": "deploy"} if action == "exec.command" else {}),
            },
        )

    now[0] = utcnow() - timedelta(days=60)
    await command("session.command", dev.id, "rm -rf /tmp/too-old", "allow", "grant.dev-web")
    now[0] = utcnow() - timedelta(days=2)
    await command("session.command", dev.id, "ls -la", "allow", "grant.dev-web")
    await command("session.command", dev.id, "rm -rf /tmp/build", "allow", "grant.dev-web")
    await command(
        "exec.command", dev.id, "crontab -r", "require_approval", "approve.crontab-remove"
    )
    await command("exec.command", carl.id, "uptime", "deny", "access.no-grant")
    await db.dispose()
    candidate = tmp_path / "candidate.polar"
    candidate.write_text(
        GOOD.replace(
            MARKER,
            (
                'rule("block.rm-dev", "command", "deny", "group:developers", "*", "rm",\n'
                '    "", "", 0, "developers may not delete files");\n'
                'grant("grant.contractors-web", "group:contractors", "name:web-*", "terminal");\n'
            )
            + MARKER,
        )
    )
    return db_url, candidate


async def test_replay_lists_every_decision_that_would_change(
    seeded: tuple[str, Path], tmp_path: Path
) -> None:
    db_url, candidate = seeded
    settings = {"CORRAL_DATABASE_URL": db_url, "CORRAL_DATA_DIR": str(tmp_path / "data")}
    result = await asyncio.to_thread(
        corral, tmp_path, "policy", "replay", str(candidate), "--since", "30d", **settings
    )
    assert result.code == 0, result
    lines = result.out.splitlines()
    changes = [line for line in lines if "->" in line and "@" in line]
    assert len(changes) == 2, result.out
    assert "dev@acme.test  web-1  terminal  'rm -rf /tmp/build'  " in changes[0]
    assert changes[0].endswith("allow (grant.dev-web) -> deny (block.rm-dev)")
    assert "carl@acme.test  web-1  exec  'uptime'  " in changes[1]
    assert changes[1].endswith("deny (access.no-grant) -> allow (grant.contractors-web)")
    summary = next(line for line in lines if line.startswith("replayed"))
    assert "replayed 4 commands" in summary and "(2 terminal, 2 exec)" in summary
    assert "2 would change effect" in summary and "0 skipped" in summary
    assert "  allow -> deny: 1" in lines and "  deny -> allow: 1" in lines

    everything = await asyncio.to_thread(
        corral, tmp_path, "policy", "replay", str(candidate), "--since", "90d", **settings
    )
    assert "replayed 5 commands" in everything.out
    assert "rm -rf /tmp/too-old" in everything.out
    bad = await asyncio.to_thread(corral, tmp_path, "policy", "replay", "x.polar", **settings)
    assert_one_error(bad, "x.polar", "cannot read policy")


def test_a_bad_policy_refuses_up_and_check_with_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.polar"
    bad.write_text(UNKNOWN_ROLE)
    where = f"{bad}:{line_of(UNKNOWN_ROLE, 'role:admin')}:"
    for command in ("up", "check"):
        assert_one_error(corral(tmp_path, command, CORRAL_POLICY_FILE=str(bad)), where)
    assert not (tmp_path / ".corral").exists()


def test_a_policy_that_crashes_the_parser_is_one_line_not_an_abort(tmp_path: Path) -> None:
    """This text aborts any process whose Polar parser reads it; start-up, ``corral check``
    and ``corral policy check`` read it in a child first and answer one line."""
    from policies.sandbox import CRASHED

    crash = tmp_path / "crash.polar"
    crash.write_text("\u00c3\u00a9")
    result = corral(tmp_path, "policy", "check", str(crash))
    assert result.code == 1 and result.err.strip() == f"{crash}: {CRASHED}", result
    for command in ("up", "check"):
        assert_one_error(corral(tmp_path, command, CORRAL_POLICY_FILE=str(crash)), CRASHED)
    assert not (tmp_path / ".corral").exists()


def test_sighup_reloads_the_policy(tmp_path: Path) -> None:
    policy = tmp_path / "policies.polar"
    policy.write_text(GOOD)
    broker = Broker(tmp_path, CORRAL_POLICY_FILE=str(policy), CORRAL_POLICY_WATCH_SECONDS="0")
    try:
        banner = broker.banner()
        url = re.search(r"listening on (https?://\S+)", banner).group(1)  # type: ignore[union-attr]
        (secret,) = set(TOKEN.findall(banner))
        assert f"Policy {policy} (polar" in banner
        broker.serving(url)
        auth = {"Authorization": f"Bearer {secret}"}

        def version() -> str:
            return str(
                httpx.get(f"{url}/api/v1/policy", headers=auth, timeout=10).json()["version"]
            )

        v1 = version()
        policy.write_text(
            GOOD.replace(MARKER, 'grant("grant.x", "user:x", "*", "full");\n' + MARKER)
        )
        broker.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 15
        while version() == v1:
            assert time.monotonic() < deadline, "SIGHUP did not reload the policy"
            time.sleep(0.1)
        v2 = version()
        policy.write_text("grant(")
        broker.proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        assert version() == v2  # refused: the last good policy stays in force
        assert broker.stop() == 0
        assert "Traceback" not in "".join(broker.err)
    finally:
        broker.close()


async def test_explain_reads_people_and_servers_from_the_store(tmp_path: Path) -> None:
    data = tmp_path / "data"
    init = await asyncio.to_thread(corral, tmp_path, "init", CORRAL_DATA_DIR=str(data))
    assert init.code == 0, init
    db = Database(f"sqlite+aiosqlite:///{data / 'corral.db'}")
    services = Services.build(db, AuditLog(db, TEST_KEY))
    (ws,) = await services.workspaces.list_all()
    user = await services.users.create(ws.id, "olga@acme.test")
    group = await services.groups.create(ws.id, "ops")
    await services.groups.add_member(ws.id, group.id, user.id, actor=SYSTEM)
    server = await services.servers.create(ws.id, "misc-1", tags={"env": "prod"})
    grant = await services.grants.grant(
        ws.id,
        level="full",
        user_id=user.id,
        server_pattern="misc-*",  # type: ignore[arg-type]
    )
    await db.dispose()
    result = await asyncio.to_thread(
        corral,
        tmp_path,
        "policy",
        "explain",
        "--user",
        "olga@acme.test",
        "--server",
        "misc-1",
        "--command",
        "sudo apt install nginx",
        CORRAL_DATA_DIR=str(data),
    )
    assert result.code == 0, result
    assert "decision: require_mfa" in result.out and "rule:     mfa.packages-prod" in result.out
    assert "groups ops; from the store (default)" in result.out
    assert "tags env=prod" in result.out
    assert (
        f"access:   full by grant.stored:{grant.id} (policy file and stored grants)" in result.out
    )
    assert server.name in result.out
