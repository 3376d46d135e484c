"""The policy through a real broker: who may read and reload it, reloads over the API,
exec-mode commands decided exactly before a real agent runs them, and a reload that
ends the live sessions it no longer allows."""

from __future__ import annotations

import asyncio
import json
import os
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from broker.audit import SYSTEM
from broker.bootstrap import initialise
from broker.runtime import open_runtime
from broker.settings import load_settings
from broker.store.models import AccessLevel, AuditEvent, Role, TokenScope
from policies.polar_backend import DEFAULT_POLICY
from tests.integration.conftest import AgentProcess, Broker, bind, register_agent
from tests.integration.test_sessions_gateway import Term

pytestmark = pytest.mark.slow

SERVER = "web-e2e"  # the default policy's grant.dev-web gives developers a terminal on web-*
TEST_RULES = """
rule("mfa.test-uptime", "command", "require_mfa", "*", "name:web-*", "uptime", "", "", 300,
    "uptime needs a fresh MFA in this test");
"""
MARKER = "# --- 7. Decision logic"
POLICY = DEFAULT_POLICY.read_text().replace(MARKER, TEST_RULES + MARKER)


class FreshMfa:
    async def mfa_age(self, workspace_id: str, user_id: str) -> float | None:
        return 10.0


@dataclass
class Env:
    broker: Broker
    policy_file: Path
    admin: str
    http: httpx.AsyncClient

    @property
    def services(self) -> Any:
        return self.broker.runtime.services

    @property
    def ws(self) -> str:
        return self.broker.workspace_id

    @property
    def app(self) -> Any:
        return self.broker.server.config.app  # type: ignore[union-attr]

    async def token(
        self, email: str, *groups: str, role: Role = Role.USER, scope: TokenScope = TokenScope.WRITE
    ) -> tuple[str, str]:
        user = await self.services.users.find_by_email(self.ws, email)
        if user is None:
            user = await self.services.users.create(self.ws, email, role=role)
            for name in groups:
                group = await self.services.groups.create(self.ws, name)
                await self.services.groups.add_member(self.ws, group.id, user.id, actor=SYSTEM)
        _, secret = await self.services.tokens.create(
            self.ws, user.id, name="t", scope=scope, expires_in_days=30
        )
        return user.id, secret

    async def get(self, path: str, token: str) -> httpx.Response:
        return await self.http.get(path, headers={"Authorization": f"Bearer {token}"})

    async def post(self, path: str, token: str, body: Any = None) -> httpx.Response:
        return await self.http.post(path, json=body, headers={"Authorization": f"Bearer {token}"})

    async def exec(self, token: str, command: str, unix_user: str = "corral-e2e") -> httpx.Response:
        body = {"command": command, "unix_user": unix_user, "timeout": 20}
        return await self.post(f"/api/v1/servers/{SERVER}/exec", token, body)

    async def audit(self, action: str) -> list[tuple[str, dict[str, Any]]]:
        from sqlmodel import col, select

        async with self.services.db.transaction() as s:
            rows = await s.exec(
                select(AuditEvent)
                .where(AuditEvent.workspace_id == self.ws, AuditEvent.action == action)
                .order_by(col(AuditEvent.seq))
            )
            return [(r.outcome, json.loads(r.details)) for r in rows.all()]


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:corral:problem:{code}"
    return body


def write(path: Path, text: str) -> None:
    path.write_text(text)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    policy_file = tmp_path / "policies.polar"
    policy_file.write_text(POLICY)
    probe = bind()
    port = probe.getsockname()[1]
    probe.close()
    settings = load_settings(
        {
            "CORRAL_DATA_DIR": str(tmp_path / "broker"),
            "CORRAL_PORT": str(port),
            "CORRAL_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "CORRAL_POLICY_FILE": str(policy_file),
            "CORRAL_POLICY_WATCH_SECONDS": "0",  # reloads in these tests are explicit
        },
        cwd=tmp_path,
    )
    async with open_runtime(settings) as runtime:
        init = await initialise(runtime.services)
        broker = Broker(f"http://127.0.0.1:{port}", port, runtime, None, init.workspace.id)  # type: ignore[arg-type]
        await broker.start()
        admin = await runtime.services.users.find_by_email(init.workspace.id, "admin@localhost")
        _, token = await runtime.services.tokens.create(
            init.workspace.id, admin.id, name="t", scope=TokenScope.ADMIN, expires_in_days=30
        )
        async with httpx.AsyncClient(base_url=broker.url, timeout=30) as http:
            yield Env(broker, policy_file, token, http)
        await broker.stop()


async def test_who_may_read_and_reload_the_policy(env: Env) -> None:
    policy = env.broker.runtime.policy
    info = (await env.get("/api/v1/policy", env.admin)).json()
    assert info["version"] == policy.version and info["backend"] == "polar"
    assert info["file"] == str(env.policy_file) and info["loaded_at"]

    _, user = await env.token("user@acme.test")
    body = problem(await env.get("/api/v1/policy", user), 403, "policy-denied")
    assert body["rule_id"] == "role.not-permitted"
    _, staff = await env.token("sam@acme.test", role=Role.STAFF, scope=TokenScope.ADMIN)
    assert (await env.get("/api/v1/policy", staff)).status_code == 200
    body = problem(await env.post("/api/v1/policy/reload", staff), 403, "policy-denied")
    assert body["rule_id"] == "role.not-permitted"

    # Superusers may change policy only with a recent MFA (mfa.policy-update).
    body = problem(await env.post("/api/v1/policy/reload", env.admin), 403, "mfa-required")
    assert (body["rule_id"], body["mfa_within"]) == ("mfa.policy-update", 300)
    env.app.state.mfa = FreshMfa()  # what the identity layer's step-up service answers
    same = (await env.post("/api/v1/policy/reload", env.admin)).json()
    assert same["reloaded"] and not same["changed"] and same["version"] == policy.version

    v1 = policy.version
    write(env.policy_file, POLICY.replace('grant("grant.dev-web", ', 'grant("grant.dev-web" '))
    body = problem(await env.post("/api/v1/policy/reload", env.admin), 422, "policy-refused")
    assert body["detail"].startswith(f"{env.policy_file}:") and body["version"] == v1
    assert (await env.get("/api/v1/policy", env.admin)).json()["version"] == v1

    write(
        env.policy_file,
        POLICY.replace('permission("perm.staff.policy-read", "staff", "policy.read");\n', ""),
    )
    changed = (await env.post("/api/v1/policy/reload", env.admin)).json()
    assert changed["changed"] and changed["old_version"] == v1 != changed["version"]
    problem(await env.get("/api/v1/policy", staff), 403, "policy-denied")  # in force at once

    denied = await env.audit("action.denied")
    assert [d["rule_id"] for _, d in denied] == [
        "role.not-permitted",
        "role.not-permitted",
        "mfa.policy-update",
        "role.not-permitted",
    ]
    reloads = await env.audit("policy.reloaded")
    assert [(d["trigger"], d["changed"]) for _, d in reloads] == [("api", False), ("api", True)]
    (refused,) = await env.audit("policy.reload_refused")
    assert refused[0] == "failure" and refused[1]["version"] == v1


@pytest.fixture
async def agent(env: Env, agent_files: tuple[Path, Path], shell_user: str) -> AsyncIterator[str]:
    config, log = agent_files
    token = await env.broker.registration_token()
    done = await asyncio.to_thread(register_agent, env.broker.url, token, config, SERVER)
    assert done.returncode == 0, done.stderr
    server_id = tomllib.loads(config.read_text())["agent_id"]
    process = AgentProcess(config, log)
    process.start()
    try:
        await env.broker.hub.wait_connected(server_id, 20)
        yield server_id
    finally:
        process.kill()


async def test_exec_is_decided_exactly_before_it_runs(env: Env, agent: str, tmp_path: Path) -> None:
    _, dev = await env.token("dev@acme.test", "developers")
    ran = await env.exec(dev, "echo out; echo err >&2; exit 3")
    assert ran.status_code == 200, ran.text
    assert ran.json() | {"policy_version": None} == {
        "exit_status": 3,
        "signal": None,
        "timed_out": False,
        "stdout": "out\n",
        "stderr": "err\n",
        "rule_id": "grant.dev-web",
        "policy_version": None,
    }

    canary = Path("/tmp") / f"corral-canary-{os.getpid()}-{id(env)}"
    body = problem(await env.exec(dev, f"history -c; touch {canary}"), 403, "policy-denied")
    assert (body["rule_id"], body["effect"]) == ("block.history-clear", "deny")
    assert body["reason"] == "clearing the shell history hides activity"
    assert not canary.exists()  # the line never reached the host

    body = problem(await env.exec(dev, "crontab -r"), 409, "approval-required")
    assert body["approvers"] == ["group:sre-leads"]
    body = problem(await env.exec(dev, "uptime"), 403, "mfa-required")
    assert (body["rule_id"], body["mfa_within"]) == ("mfa.test-uptime", 300)
    body = problem(await env.exec(dev, "id", unix_user="root"), 403, "policy-denied")
    assert body["rule_id"] == "grant.dev-web"  # root needs full access
    env.app.state.mfa = FreshMfa()
    assert (await env.exec(dev, "uptime")).status_code == 200
    failed = problem(await env.exec(dev, "true", unix_user="no-such-user-x"), 502, "exec-failed")
    assert "could not run" in failed["detail"]

    # A stored (API-managed) grant is enough without a grant in the file ...
    plain_id, plain = await env.token("plain@acme.test")
    problem(await env.exec(plain, "true"), 403, "policy-denied")
    grant = await env.services.grants.grant(
        env.ws, level=AccessLevel.TERMINAL, user_id=plain_id, server_pattern="web-*"
    )
    stored = await env.exec(plain, "echo stored")
    assert stored.json()["stdout"] == "stored\n"
    assert stored.json()["rule_id"] == f"grant.stored:{grant.id}"
    # ... but the file's none carve-out hides the server whatever is stored.
    _, carl = await env.token("carl@acme.test", "contractors")
    carl_id = (await env.services.users.find_by_email(env.ws, "carl@acme.test")).id
    await env.services.grants.grant(
        env.ws, level=AccessLevel.FULL, user_id=carl_id, server_pattern="web-*"
    )
    assert (await env.exec(carl, "true")).status_code == 200
    write(
        env.policy_file,
        POLICY.replace(
            MARKER,
            'grant("grant.no-contractors-web", "group:contractors", '
            '"name:web-*", "none");\n' + MARKER,
        ),
    )
    assert (await env.broker.runtime.policy.reload(trigger="test")).swapped
    body = problem(await env.exec(carl, "true"), 403, "policy-denied")
    assert body["rule_id"] == "grant.no-contractors-web"
    assert body["policy_version"] == env.broker.runtime.policy.version

    audited = await env.audit("exec.command")
    assert [(o, d["effect"]) for o, d in audited] == [
        ("success", "allow"),
        ("denied", "deny"),
        ("denied", "require_approval"),
        ("denied", "require_mfa"),
        ("denied", "deny"),
        ("success", "allow"),
        ("failure", "allow"),
        ("denied", "deny"),
        ("success", "allow"),
        ("success", "allow"),
        ("denied", "deny"),
    ]
    first = audited[0][1]
    assert {"command", "effect", "rule_id", "reason", "policy_version"} <= set(first)
    assert first["command"] == "echo out; echo err >&2; exit 3" and first["exit_status"] == 3


async def _pending_approval(env: Env, token: str, command: str) -> str:
    for _ in range(100):
        listing = (await env.get("/api/v1/approvals", token)).json()["approvals"]
        waiting = [a for a in listing if a["command"] == command and a["status"] == "pending"]
        if waiting:
            return str(waiting[0]["id"])
        await asyncio.sleep(0.05)
    raise AssertionError(f"no pending approval for {command!r}")


async def test_streaming_exec_waits_for_an_approval(env: Env, agent: str) -> None:
    """With wait_for_approval the command is held like a terminal line: the stream says
    for whom it waits, then runs once approved, or ends with approval-denied."""
    _, dev = await env.token("dev@acme.test", "developers")
    _, lead = await env.token("lead@acme.test", "sre-leads")
    command = "crontab -r"
    body = {"command": command, "unix_user": "corral-e2e", "timeout": 20}
    url = f"/api/v1/servers/{SERVER}/exec/stream"
    headers = {"Authorization": f"Bearer {dev}"}

    problem(await env.post(url, dev, body), 409, "approval-required")  # not asked to wait

    for verdict in ("approve", "deny"):
        async with env.http.stream(
            "POST", url, json=body | {"wait_for_approval": True}, headers=headers
        ) as response:
            assert response.status_code == 200
            lines = response.aiter_lines()
            held = json.loads(await anext(lines))["approval"]
            assert held == {
                "status": "pending",
                "rule_id": "approve.crontab-remove",
                "reason": "removing a crontab needs an approval",
                "approvers": ["group:sre-leads"],
            }
            approval = await _pending_approval(env, lead, command)
            decided = await env.post(f"/api/v1/approvals/{approval}/{verdict}", lead, {})
            assert decided.status_code == 200, decided.text
            rest = [json.loads(line) async for line in lines]
        if verdict == "approve":
            assert "crontab" in "".join(r.get("stderr", "") for r in rest)  # it ran
            assert rest[-1]["rule_id"] == "approve.crontab-remove"
            assert isinstance(rest[-1]["exit_status"], int)
        else:
            assert rest == [
                {
                    "error": {
                        "code": "approval-denied",
                        "detail": "the approval was denied or timed out",
                    }
                }
            ]
    held_runs = [d for _, d in await env.audit("exec.command") if "approval" in d]
    assert [(d["command"], d["approval"]) for d in held_runs] == [
        (command, "approved"),
        (command, "denied or timed out"),
    ]
    outcomes = [o for o, d in await env.audit("exec.command") if "approval" in d]
    assert outcomes == ["success", "denied"]


async def test_a_reload_ends_the_sessions_it_no_longer_allows(env: Env, agent: str) -> None:
    _, dev = await env.token("dev@acme.test", "developers")
    opened = await env.post("/api/v1/sessions", dev, {"server": SERVER, "unix_user": "corral-e2e"})
    assert opened.status_code == 201, opened.text
    term = await Term.connect(opened.json()["websocket_url"])
    await term.type("echo re''ady\n")
    await term.until(b"ready\r\n")
    write(env.policy_file, POLICY.replace('"name:web-*", "terminal"', '"name:web-*", "none"'))
    assert (await env.broker.runtime.policy.reload(trigger="test")).swapped
    final = await term.final()
    assert getattr(final, "reason", "") == "access revoked"
