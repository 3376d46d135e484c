"""Inline enforcement end to end: a real broker, agent and bash; keystrokes through a real
WebSocket; the gate deciding at each Enter with a test policy (the shipped one plus
canary rules, see enforce_support)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from broker.audit import Actor
from broker.enforce import ApprovalDesk
from broker.gateway import GatewaySessions
from broker.store.models import AuditEvent, Role
from tests.integration import enforce_support as support
from tests.integration.test_sessions_gateway import Env, Term, recorded_output, wait_ended
from tests.integration.test_sessions_gateway import env as env
from websh import Exit

pytestmark = pytest.mark.slow


@pytest.fixture
async def gated(env: Env) -> AsyncIterator[tuple[Env, Any, ApprovalDesk]]:
    app = env.broker.server.config.app  # type: ignore[union-attr]
    gateway, step_up, desk = support.enforcing_gateway(
        env.services, env.broker.hub, env.broker.runtime.settings.data_dir / "recordings"
    )
    app.state.gateway = gateway
    yield env, step_up, desk
    support.cleanup_matching("corral-*-enf-*")


async def terminal(env: Env) -> tuple[str, Term]:
    opened = await env.opened()
    term = await Term.connect(opened["websocket_url"])
    await term.until(b"\x1b]133;B\x07")
    return opened["session_id"], term


async def commands(env: Env, session_id: str) -> list[tuple[str, dict[str, Any]]]:
    async with env.services.db.transaction() as s:
        rows = await s.exec(
            select(AuditEvent).where(
                AuditEvent.session_id == session_id, AuditEvent.action == "session.command"
            )
        )
        return [(r.outcome, json.loads(r.details)) for r in rows.all()]


async def until_count(term: Term, needle: bytes, count: int, timeout: float = 10) -> None:
    async def loop() -> None:
        while term.out.count(needle) < count:
            await term.next()

    await asyncio.wait_for(loop(), timeout)


async def finish(env: Env, session_id: str, term: Term) -> None:
    await term.type("exit 0\n")
    assert isinstance(await term.final(), Exit)
    await wait_ended(env, session_id)


async def test_allowed_runs_denied_shows_the_rule_and_is_audited(gated: Any) -> None:
    env, _, _ = gated
    target = support.canary("enf-deny")
    sid, term = await terminal(env)
    await term.type("echo al''lowed\r")
    await term.until(b"allowed\r\n")
    await term.type(f"rm -f {target}\r")
    await term.until(b"corral: denied by test.canary-rm: the canary must not be deleted")
    await term.type("echo af''ter\r")
    await term.until(b"after\r\n")
    assert support.exists(target)
    await finish(env, sid, term)

    audited = await commands(env, sid)
    assert [(o, d["command"], d["effect"], d["rule_id"]) for o, d in audited] == [
        ("success", "echo al''lowed", "allow", "grant.superusers"),
        ("denied", f"rm -f {target}", "deny", "test.canary-rm"),
        ("success", "echo af''ter", "allow", "grant.superusers"),
        ("success", "exit 0", "allow", "grant.superusers"),
    ]
    assert set(audited[1][1]) == {"command", "effect", "rule_id", "reason", "policy_version"}
    assert len(audited[1][1]["policy_version"]) == 64
    _, events = await recorded_output(env, sid)
    assert [e[2] for e in events if e[1] == "m"][:2] == ["echo al''lowed", f"rm -f {target}"]
    output = "".join(e[2] for e in events if e[1] == "o")
    assert "corral: denied by test.canary-rm" in output


async def test_mfa_hold_released_by_a_right_code_discarded_by_a_wrong_one(gated: Any) -> None:
    env, step_up, _ = gated
    admin = await env.services.users.find_by_email(env.ws, "admin@localhost")
    totp = step_up.provision(admin.id)
    sid, term = await terminal(env)
    first, second = Path("/tmp/corral-mfa-enf-1"), Path("/tmp/corral-mfa-enf-2")

    await term.type(f"touch {first}\r")
    await term.until(b"MFA code (not shown): ")
    await term.type("000000\r" if totp.now() != "000000" else "111111\r")
    await term.until(b"step-up failed; the command was discarded")
    await asyncio.sleep(0.3)
    assert not support.exists(first)

    await term.type(f"touch {second}\r")
    await until_count(term, b"MFA code (not shown): ", 2)
    code = totp.now()
    await term.type(code + "\r")
    assert await support.eventually(second.exists)
    assert code.encode() not in term.out  # never echoed
    # the step-up counts for the rule's window: the next one runs straight away
    await term.type(f"touch {first}\r")
    assert await support.eventually(first.exists)
    await finish(env, sid, term)
    audited = await commands(env, sid)
    assert [(o, d["effect"]) for o, d in audited[:3]] == [
        ("denied", "require_mfa"),
        ("success", "require_mfa"),
        ("success", "allow"),
    ]


async def test_approval_released_on_approve_discarded_on_deny(gated: Any) -> None:
    env, _, desk = gated
    approver_id, _ = await env.token("approver@example.com", role=Role.STAFF)
    sid, term = await terminal(env)
    yes, no = Path("/tmp/corral-approve-enf-yes"), Path("/tmp/corral-approve-enf-no")

    for target, approve in ((yes, True), (no, False)):
        await term.type(f"touch {target}\r")
        await until_count(
            term, b"waiting for approval by user:approver@example.com", 1 + (not approve)
        )
        assert await support.eventually(lambda: bool(desk.pending))
        (approval_id,) = desk.pending
        approval = await env.services.approvals.get(env.ws, approval_id)
        assert approval.approvers == [approver_id] and approval.command == f"touch {target}"
        await desk.decide(env.ws, approval_id, approver=Actor("user", approver_id), approve=approve)
        if approve:
            assert await support.eventually(target.exists)
        else:
            await term.until(b"not approved; the command was discarded")
    await asyncio.sleep(0.3)
    assert not support.exists(no)
    await finish(env, sid, term)
    audited = await commands(env, sid)
    assert [(o, d["effect"]) for o, d in audited[:2]] == [
        ("success", "require_approval"),
        ("denied", "require_approval"),
    ]


async def test_approval_timeout_discards(env: Env) -> None:
    app = env.broker.server.config.app  # type: ignore[union-attr]
    desk = ApprovalDesk(env.services, timeout=0.5)
    gateway, _, _ = support.enforcing_gateway(
        env.services,
        env.broker.hub,
        env.broker.runtime.settings.data_dir / "recordings",
        approvals=desk,
    )
    app.state.gateway = gateway
    await env.token("approver@example.com", role=Role.STAFF)
    target = Path("/tmp/corral-approve-enf-late")
    sid, term = await terminal(env)
    await term.type(f"touch {target}\r")
    await term.until(b"not approved; the command was discarded", timeout=5)
    await term.type("echo st''ill\r")
    await term.until(b"still\r\n")
    assert not support.exists(target)
    await finish(env, sid, term)


async def test_programs_get_keystrokes_untouched(gated: Any) -> None:
    env, _, _ = gated
    target = support.canary("enf-cat")
    sid, term = await terminal(env)
    # cat reads lines that look like blocked commands: they are data, not commands
    await term.type("cat\r")
    await asyncio.sleep(0.8)
    await term.type(f"rm -f {target}\r")
    await term.until(f"rm -f {target}\r\nrm -f {target}\r\n".encode())
    prompts = term.out.count(b"\x1b]133;B\x07")
    await term.type("\x04")
    await until_count(term, b"\x1b]133;B\x07", prompts + 1)
    await term.type("vi -Nu NONE -n /tmp/corral-vim-enf.txt\r")
    await asyncio.sleep(1.0)
    await term.type(f"irm -f {target}\x1b:wq\r")
    await asyncio.sleep(1.0)
    await term.type("cat /tmp/corral-vim-enf.txt\r")
    await term.until(f"\r\nrm -f {target}\r\n".encode())
    assert support.exists(target)
    await finish(env, sid, term)
    audited = [d["command"] for _, d in await commands(env, sid)]
    assert audited == [
        "cat",
        "vi -Nu NONE -n /tmp/corral-vim-enf.txt",
        "cat /tmp/corral-vim-enf.txt",
        "exit 0",
    ]


async def test_enforcement_off_leaves_the_shell_plain(env: Env) -> None:
    app = env.broker.server.config.app  # type: ignore[union-attr]
    app.state.gateway = GatewaySessions(
        env.services,
        env.broker.hub,
        recordings_dir=env.broker.runtime.settings.data_dir / "recordings",
        enforce=False,
    )
    target = support.canary("enf-off")
    opened = await env.opened()
    term = await Term.connect(opened["websocket_url"])
    await term.type(f"rm -f {target}; echo go''ne\n")  # no gate: nothing stops it
    await term.until(b"gone\r\n")
    assert b"\x1b]133;" not in term.out  # the agent was not asked for marks
    assert not support.exists(target)
    await finish(env, opened["session_id"], term)
    assert await commands(env, opened["session_id"]) == []
