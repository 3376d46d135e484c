"""The real ``corral`` client commands, run as subprocesses (interactive ones inside a pty
with pexpect) against a real broker (uvicorn on 127.0.0.1, port 0), a real agent process
and real bash.

One broker and agent serve the whole module: they run on their own event loop in a
thread, so the tests are plain blocking code, like a person at a shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pexpect
import pytest
import uvicorn

from broker.agents.hub import AgentHub
from broker.app import create_app
from broker.audit import SYSTEM
from broker.bootstrap import initialise
from broker.runtime import Runtime, open_runtime
from broker.settings import load_settings
from broker.store.models import Role, TokenScope
from idp.device import DeviceGrants
from tests.integration.conftest import AgentProcess, bind, register_agent

pytestmark = pytest.mark.slow

T = TypeVar("T")
SERVER = "cli-host"
SHELL_USER = "corral-e2e"
_SCRIPT = Path(sys.executable).with_name("corral")
CORRAL = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "cli.main"]
TOKEN = re.compile(r"crlpat_[0-9a-f]{32}_[0-9a-f]{48}")
PROMPT = re.compile(rb"[$#] ")


class Stack:
    """A broker + agent on a private event loop; ``run`` executes a coroutine on it."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.exits = contextlib.AsyncExitStack()
        self.url = ""
        self.workspace_id = ""
        self.server_id = ""
        self.agent: AgentProcess | None = None

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def start(self) -> None:
        sock = bind()
        port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        settings = load_settings(
            {
                "CORRAL_DATA_DIR": str(self.tmp / "broker"),
                "CORRAL_PORT": str(port),
                "CORRAL_PUBLIC_URL": self.url,
            },
            cwd=self.tmp,
        )
        self.runtime: Runtime = await self.exits.enter_async_context(open_runtime(settings))
        init = await initialise(self.runtime.services)
        self.workspace_id = init.workspace.id
        self.hub = AgentHub(self.runtime.services, heartbeat_interval=1.0, metrics_interval=1.0)
        app = create_app(self.runtime, hub=self.hub, device=DeviceGrants(interval=1))
        self.server = uvicorn.Server(
            uvicorn.Config(app, lifespan="on", log_level="warning", timeout_graceful_shutdown=2)
        )
        self.task = asyncio.create_task(self.server.serve(sockets=[sock]))
        while not self.server.started:
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        await self.hub.close_all()
        self.server.should_exit = True
        await self.task
        await self.exits.aclose()

    async def token(
        self, email: str, role: Role = Role.USER, scope: TokenScope = TokenScope.WRITE
    ) -> str:
        services = self.runtime.services
        user = await services.users.find_by_email(self.workspace_id, email)
        if user is None:
            user = await services.users.create(self.workspace_id, email, role=role)
        _, secret = await services.tokens.create(
            self.workspace_id, user.id, name="test", scope=scope, expires_in_days=30
        )
        return secret

    async def registration(self) -> str:
        _, secret = await self.runtime.services.agents.create_registration_token(self.workspace_id)
        return secret


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, shell_user: str) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("cli")
    stack = Stack(tmp)
    stack.run(stack.start())
    config = tmp / "agent" / "agent.toml"
    done = register_agent(stack.url, stack.run(stack.registration()), config, SERVER)
    assert done.returncode == 0, done.stderr
    stack.server_id = tomllib.loads(config.read_text())["agent_id"]
    stack.agent = AgentProcess(config, tmp / "agent.log")
    stack.agent.start()
    try:
        stack.run(stack.hub.wait_connected(stack.server_id, 20))
        yield stack
    finally:
        stack.agent.kill()
        stack.run(stack.stop())
        stack.loop.call_soon_threadsafe(stack.loop.stop)
        stack.thread.join(10)
        stack.loop.close()


@pytest.fixture(scope="module")
def admin(stack: Stack) -> str:
    return stack.run(stack.token("admin@localhost", Role.SUPERUSER, TokenScope.ADMIN))


@dataclass
class Result:
    code: int
    out: str
    err: str


def env_for(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env.update(PYTHONUNBUFFERED="1", XDG_CONFIG_HOME=str(home / "config"), HOME=str(home))
    env.update(extra)
    return env


def corral(home: Path, *args: str, stdin: str = "", **extra: str) -> Result:
    proc = subprocess.run(
        [*CORRAL, *args],
        env=env_for(home, **extra),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def one_error(result: Result, code: int, *needles: str) -> str:
    """Exit ``code``, exactly one ``corral: error: problem; fix`` line, no traceback."""
    assert result.code == code, result
    assert "Traceback" not in result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert re.match(r"corral: error: .+; .+", lines[0]), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def spawn(home: Path, command: str, **extra: str) -> pexpect.spawn:
    """``command`` under sh in a fresh 24x80 pty, with the corral console script on PATH."""
    env = env_for(home, **extra)
    env["PATH"] = f"{_SCRIPT.parent}:{env.get('PATH', '')}"
    child = pexpect.spawn("/bin/sh", ["-c", command], env=env, dimensions=(24, 80), timeout=20)
    child.logfile_read = io.BytesIO()  # the whole transcript, for what must never appear
    return child


def transcript(child: pexpect.spawn) -> str:
    return child.logfile_read.getvalue().decode("utf-8", "replace")


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    found.append(int(entry.name))
    return found


# --------------------------------------------------------------------------- login


def test_login_with_a_token_whoami_profiles_and_logout(
    stack: Stack, admin: str, tmp_path: Path
) -> None:
    home = tmp_path
    none = corral(home, "whoami")
    one_error(none, 3, "not logged in", "corral login")
    no_tty = corral(home, "login", stack.url)  # stdin is not a terminal here
    one_error(no_tty, 2, "no terminal", "--token -")
    wrong = corral(home, "login", stack.url, "--token", "-", stdin="crlpat_nope\n")
    one_error(wrong, 3, "invalid token")
    assert not (home / "config" / "corral").exists()

    done = corral(home, "login", stack.url, "--token", "-", stdin=admin + "\n")
    assert done.code == 0, done
    assert "admin@localhost" in done.out and not TOKEN.search(done.out + done.err)
    path = home / "config" / "corral" / "credentials.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    saved = tomllib.loads(path.read_text())
    assert saved["current"] == "default"
    assert saved["profiles"]["default"]["token"] == admin

    who = corral(home, "whoami")
    assert who.code == 0 and "admin@localhost (superuser) in workspace default" in who.out
    data = json.loads(corral(home, "whoami", "--json").out)
    assert data["user"]["email"] == "admin@localhost" and data["source"] == "profile"
    assert admin not in json.dumps(data)

    user_token = stack.run(stack.token("carol@example.com"))
    second = corral(
        home, "login", stack.url, "--token", "-", "--profile", "carol", stdin=user_token
    )
    assert second.code == 0, second
    listed = json.loads(corral(home, "profiles", "--json").out)
    assert [p["name"] for p in listed["profiles"]] == ["carol", "default"]
    assert listed["current"] == "carol" and TOKEN.search(json.dumps(listed)) is None
    assert "carol@example.com" in corral(home, "whoami").out
    assert "admin@localhost" in corral(home, "whoami", CORRAL_PROFILE="default").out
    assert "admin@localhost" in corral(home, "whoami", "--profile", "default").out
    # Scripts: CORRAL_URL + CORRAL_TOKEN override the profile.
    env_who = corral(home, "whoami", CORRAL_URL=stack.url, CORRAL_TOKEN=admin)
    assert "admin@localhost" in env_who.out and "CORRAL_TOKEN" in env_who.out

    # A pasted token is forgotten, never revoked (it may be in use elsewhere).
    out = corral(home, "logout", "--profile", "carol")
    assert out.code == 0 and "forgot" in out.out and "revoked" not in out.out
    ok = httpx.get(f"{stack.url}/api/v1/whoami", headers={"Authorization": f"Bearer {user_token}"})
    assert ok.status_code == 200
    one_error(corral(home, "whoami", "--profile", "carol"), 3, "not logged in")

    path.chmod(0o644)
    one_error(corral(home, "whoami"), 1, "can be read by other users", "chmod 600")
    path.chmod(0o600)
    # The current profile was logged out: nothing to fall back on, on purpose.
    assert tomllib.loads(path.read_text())["current"] == "carol"
    home_default = {"CORRAL_PROFILE": "default"}
    bad_url = corral(home, "whoami", "--url", "ftp://x", **home_default)
    one_error(bad_url, 2, "must start with https://")
    unreachable = corral(home, "whoami", "--url", "http://127.0.0.1:1", **home_default)
    one_error(unreachable, 1, "cannot reach the broker", "check the URL")


def test_device_login_in_a_pty_then_logout_revokes(
    stack: Stack, admin: str, tmp_path: Path
) -> None:
    child = spawn(tmp_path, f"corral login {stack.url}")
    child.expect(r"enter the code ([A-Z]{4}-[A-Z]{4})")
    code = child.match.group(1).decode()
    child.expect("Waiting for approval")
    approver = stack.run(stack.token("dana@example.com"))
    approved = httpx.post(
        f"{stack.url}/api/v1/auth/device/approve",
        json={"user_code": code},
        headers={"Authorization": f"Bearer {approver}"},
    )
    assert approved.status_code == 200, approved.text
    child.expect("Logged in to .* as dana@example.com")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert TOKEN.search(transcript(child)) is None

    saved = tomllib.loads((tmp_path / "config/corral/credentials.toml").read_text())
    profile = saved["profiles"]["default"]
    assert profile["token_id"] and profile["user"] == "dana@example.com"
    assert "dana@example.com" in corral(tmp_path, "whoami").out

    out = corral(tmp_path, "logout")
    assert out.code == 0 and "revoked" in out.out
    gone = httpx.get(
        f"{stack.url}/api/v1/whoami", headers={"Authorization": f"Bearer {profile['token']}"}
    )
    assert gone.status_code == 401

    # Denied in the browser: one line, exit 3.
    child = spawn(tmp_path, f"corral login {stack.url} --device --profile x")
    child.expect(r"enter the code ([A-Z]{4}-[A-Z]{4})")
    denied = httpx.post(
        f"{stack.url}/api/v1/auth/device/deny",
        json={"user_code": child.match.group(1).decode()},
        headers={"Authorization": f"Bearer {approver}"},
    )
    assert denied.status_code == 200
    child.expect("corral: error: the login was denied in the browser; run `corral login URL`")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 3


# --------------------------------------------------------------------------- listings, exec


def test_servers_exec_and_policy_denial(stack: Stack, admin: str, tmp_path: Path) -> None:
    env = {"CORRAL_URL": stack.url, "CORRAL_TOKEN": admin}
    table = corral(tmp_path, "servers", **env)
    assert table.code == 0, table
    header, row = table.out.splitlines()[:2]
    assert header.split() == ["NAME", "STATUS", "PLATFORM", "TAGS", "ACCESS"]
    assert row.split()[:2] == [SERVER, "online"] and "env=test" in row and "full" in row
    listed = json.loads(corral(tmp_path, "servers", "--json", **env).out)
    assert listed["servers"][0]["name"] == SERVER

    ran = corral(
        tmp_path,
        "exec",
        SERVER,
        "-u",
        SHELL_USER,
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
        **env,
    )
    assert (ran.code, ran.out, ran.err) == (7, "out\n", "err\n")
    line = corral(tmp_path, "exec", SERVER, "-u", SHELL_USER, "--", "echo $((6*7))", **env)
    assert (line.code, line.out) == (0, "42\n")

    nobody_there = corral(tmp_path, "exec", SERVER, "-u", "no-such-user-x", "--", "true", **env)
    one_error(nobody_there, 1, "the command did not finish", "agent")

    denied = corral(tmp_path, "exec", SERVER, "-u", SHELL_USER, "--", "mkfs.corraltest", **env)
    one_error(denied, 5, "block.mkfs", "security team")
    missing = corral(tmp_path, "exec", "no-such-host", "--", "true", **env)
    one_error(missing, 4, "not found")
    one_error(corral(tmp_path, "websh", "no-such-host", **env), 4, "not found")
    usage = corral(tmp_path, "exec", SERVER, **env)
    one_error(usage, 2, "no command given")

    nobody = stack.run(stack.token("eve@example.com"))
    hidden = corral(tmp_path, "servers", CORRAL_URL=stack.url, CORRAL_TOKEN=nobody)
    assert hidden.code == 0 and hidden.out == "" and "no servers" in hidden.err
    assert corral(tmp_path, "approvals", **env).err.startswith("no approvals")
    one_error(corral(tmp_path, "approvals", "approve", "nope", **env), 4, "not found")


def test_exec_waits_for_an_approval(stack: Stack, admin: str, tmp_path: Path) -> None:
    """``corral exec`` of a command that needs an approval says for whom it waits, then
    runs it once an approver approves (through the CLI); ``--no-wait`` is exit 6 at once."""
    env = {"CORRAL_URL": stack.url, "CORRAL_TOKEN": admin}
    no_wait = corral(
        tmp_path, "exec", "--no-wait", SERVER, "-u", SHELL_USER, "--", "crontab -r", **env
    )
    one_error(no_wait, 6, "approval", "corral approvals")

    async def sre_lead() -> str:
        services = stack.runtime.services
        token = await stack.token("lead@example.com")
        lead = await services.users.find_by_email(stack.workspace_id, "lead@example.com")
        group = await services.groups.create(stack.workspace_id, "sre-leads")
        await services.groups.add_member(stack.workspace_id, group.id, lead.id, actor=SYSTEM)
        return token

    lead = {"CORRAL_URL": stack.url, "CORRAL_TOKEN": stack.run(sre_lead())}
    child = spawn(
        tmp_path,
        f"corral exec {SERVER} -u {SHELL_USER} -- 'crontab -r; echo removed'; echo rc=$?",
        **env,
    )
    child.expect("waiting for approval by group:sre-leads")
    listed = json.loads(corral(tmp_path, "approvals", "--json", **lead).out)
    (pending,) = [a for a in listed["approvals"] if a["status"] == "pending"]
    approved = corral(tmp_path, "approvals", "approve", pending["id"], **lead)
    assert approved.code == 0, approved
    child.expect("removed")
    child.expect("rc=0")


def test_exec_streams_output_while_the_command_runs(
    stack: Stack, admin: str, tmp_path: Path
) -> None:
    """The second line is only written after the test sees the first: without streaming
    the first line could never arrive before the command ends."""
    fifo = Path(f"/tmp/corral-cli-fifo-{os.getpid()}")  # the shell user must reach it
    fifo.unlink(missing_ok=True)
    os.mkfifo(fifo)
    fifo.chmod(0o666)
    try:
        child = spawn(
            tmp_path,
            f"corral exec {SERVER} -u {SHELL_USER} -- 'echo first; cat {fifo}'; echo rc=$?",
            CORRAL_URL=stack.url,
            CORRAL_TOKEN=admin,
        )
        child.expect("first")
        deadline = time.monotonic() + 15
        while True:  # cat opens the fifo just after `echo first`
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError:
                assert time.monotonic() < deadline, "cat never opened the fifo"
                time.sleep(0.05)
        os.write(fd, b"second\n")
        os.close(fd)
        child.expect("second")
        child.expect("rc=0")
    finally:
        fifo.unlink(missing_ok=True)

    # A client that goes away cancels the command, and that is audited.
    child = spawn(
        tmp_path,
        f"corral exec {SERVER} -u {SHELL_USER} -- 'echo started; sleep 60'",
        CORRAL_URL=stack.url,
        CORRAL_TOKEN=admin,
    )
    child.expect("started")
    (cli_pid,) = children(child.pid)
    os.kill(cli_pid, signal.SIGKILL)

    async def cancelled() -> list[dict[str, Any]]:
        from sqlmodel import select

        from broker.audit.log import details_of
        from broker.store.models import AuditEvent

        async with stack.runtime.services.db.transaction() as s:
            rows = (
                await s.exec(select(AuditEvent).where(AuditEvent.action == "exec.command"))
            ).all()
            return [details_of(r) for r in rows if r.outcome == "failure"]

    deadline = time.monotonic() + 15
    while not any("sleep 60" in d.get("command", "") for d in stack.run(cancelled())):
        assert time.monotonic() < deadline, "the cancelled exec was not audited"
        time.sleep(0.2)


# --------------------------------------------------------------------------- terminals


def _prompt(child: pexpect.spawn) -> None:
    child.expect(PROMPT)


def test_websh_in_a_pty_resizes_exits_and_restores_the_terminal(
    stack: Stack, admin: str, tmp_path: Path
) -> None:
    env = {"CORRAL_URL": stack.url, "CORRAL_TOKEN": admin}
    child = spawn(
        tmp_path,
        f'corral websh {SERVER} -u {SHELL_USER}; echo "rc=$?"; stty -a',
        **env,
    )
    _prompt(child)
    child.sendline("stty size")
    child.expect(r"24 80")
    child.setwinsize(30, 100)  # SIGWINCH to the foreground process
    for _ in range(50):  # the resize travels CLI -> broker -> agent -> pty: ask until it landed
        child.sendline("stty size")
        if child.expect([r"30 100\r\n", r"24 80\r\n"]) == 0:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the window size never reached the remote terminal")
    child.sendline("echo marker-$((40+2))")
    child.expect("marker-42")
    child.sendline("exit 3")
    child.expect(r"rc=3")
    child.expect(pexpect.EOF)
    settings = child.before.decode()
    assert re.search(r"(?<!-)icanon", settings) and re.search(r"(?<![-\w])echo\b", settings)

    # The session was recorded: list it and play it back here.
    recordings = json.loads(corral(tmp_path, "recordings", "list", "--json", **env).out)
    assert recordings["recordings"], recordings
    rec_id = recordings["recordings"][-1]["id"]
    played = corral(tmp_path, "recordings", "play", rec_id, "--speed", "50", **env)
    assert played.code == 0 and "marker-42" in played.out
    raw = corral(tmp_path, "recordings", "play", rec_id, "--raw", **env)
    assert json.loads(raw.out.splitlines()[0])["version"] == 2
    one_error(corral(tmp_path, "recordings", "play", "nope", **env), 4, "not found")


def test_websh_restores_the_terminal_on_sigterm(stack: Stack, admin: str, tmp_path: Path) -> None:
    env = {"CORRAL_URL": stack.url, "CORRAL_TOKEN": admin}
    child = spawn(tmp_path, f'corral websh {SERVER} -u {SHELL_USER}; echo "rc=$?"; stty -a', **env)
    _prompt(child)
    (cli_pid,) = children(child.pid)
    os.kill(cli_pid, signal.SIGTERM)
    child.expect(r"SIGTERM: detached")
    child.expect(r"rc=143")
    child.expect(pexpect.EOF)
    settings = child.before.decode()
    assert re.search(r"(?<!-)icanon", settings) and re.search(r"(?<![-\w])echo\b", settings)


def test_websh_restores_the_terminal_when_staff_end_the_session(
    stack: Stack, admin: str, tmp_path: Path
) -> None:
    owner_token = stack.run(stack.token("hank@example.com", Role.SUPERUSER))
    owner_env = {"CORRAL_URL": stack.url, "CORRAL_TOKEN": owner_token}
    child = spawn(
        tmp_path, f'corral websh {SERVER} -u {SHELL_USER}; echo "rc=$?"; stty -a', **owner_env
    )
    _prompt(child)
    me = json.loads(corral(tmp_path, "whoami", "--json", **owner_env).out)["user"]["id"]
    live = json.loads(corral(tmp_path, "sessions", "--json", **owner_env).out)["sessions"]
    (session_id,) = [s["id"] for s in live if s["user_id"] == me]
    ended = httpx.delete(
        f"{stack.url}/api/v1/sessions/{session_id}", headers={"Authorization": f"Bearer {admin}"}
    )
    assert ended.status_code == 204
    child.expect(r"corral: session terminated by admin@localhost: terminated by staff")
    child.expect(r"rc=1\b")
    child.expect(pexpect.EOF)
    settings = child.before.decode()
    assert re.search(r"(?<!-)icanon", settings) and re.search(r"(?<![-\w])echo\b", settings)


def test_websh_shows_blocks_and_approvals_decided_with_the_cli(
    stack: Stack, admin: str, tmp_path: Path
) -> None:
    async def security_approver() -> str:
        services = stack.runtime.services
        group = await services.groups.create(stack.workspace_id, "security")
        user = await services.users.create(stack.workspace_id, "sec@example.com")
        await services.groups.add_member(stack.workspace_id, group.id, user.id, actor=SYSTEM)
        return await stack.token("sec@example.com")

    approver = {"CORRAL_URL": stack.url, "CORRAL_TOKEN": stack.run(security_approver())}
    owner = spawn(
        tmp_path,
        f"corral websh {SERVER} -u {SHELL_USER}",
        CORRAL_URL=stack.url,
        CORRAL_TOKEN=admin,
    )
    _prompt(owner)
    owner.sendline("mkfs.corraltest /dev/null")
    # The broker's terminal gate writes its verdicts into the screen as `corral:` lines
    # (websh events such as command_blocked are rendered too; see test_client_parts.py).
    owner.expect(r"corral: denied by block.mkfs: formatting a file system is never allowed")
    owner.sendline("eval echo approved-$((1+1))")
    owner.expect(r"corral: waiting for approval by group:security")

    deadline = time.monotonic() + 15
    while True:  # the gate shows its line, then files the request
        listed = json.loads(corral(tmp_path, "approvals", "--json", **approver).out)["approvals"]
        pending = [a["id"] for a in listed if a["status"] == "pending"]
        if pending or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    (approval_id,) = pending
    table = corral(tmp_path, "approvals", "list", "--status", "pending", **approver)
    assert approval_id in table.out and "eval" in table.out
    decided = corral(tmp_path, "approvals", "approve", approval_id, "--reason", "ok", **approver)
    assert decided.code == 0 and f"approval {approval_id}: approved" in decided.out
    owner.expect("approved-2")  # released: the held command ran
    again = corral(tmp_path, "approvals", "deny", approval_id, **approver)
    one_error(again, 1, "already approved")
    owner.sendline("exit 0")
    owner.expect(pexpect.EOF)


def test_sessions_join_by_share_link_and_staff_watch(
    stack: Stack, admin: str, tmp_path: Path
) -> None:
    owner_token = stack.run(stack.token("frank@example.com", Role.SUPERUSER))
    owner_env = {"CORRAL_URL": stack.url, "CORRAL_TOKEN": owner_token}
    owner = spawn(tmp_path, f"corral websh {SERVER} -u {SHELL_USER}", **owner_env)
    _prompt(owner)
    me = json.loads(corral(tmp_path, "whoami", "--json", **owner_env).out)["user"]["id"]
    sessions = json.loads(corral(tmp_path, "sessions", "--json", **owner_env).out)["sessions"]
    (session,) = [s for s in sessions if s["user_id"] == me]  # staff see everyone's
    table = corral(tmp_path, "sessions", **owner_env)
    assert session["id"] in table.out and SERVER in table.out

    share = httpx.post(
        f"{stack.url}/api/v1/sessions/{session['id']}/shares",
        json={"mode": "read-only"},  # read-write would need gina's own terminal grant
        headers={"Authorization": f"Bearer {owner_token}"},
    ).json()
    guest_token = stack.run(stack.token("gina@example.com"))
    guest = spawn(tmp_path, "corral join -", CORRAL_URL=stack.url, CORRAL_TOKEN=guest_token)
    guest.sendline(share["join_url"])  # from stdin: a link is a secret, keep it out of ps
    owner.expect("gina@example.com joined as participant")
    watcher = spawn(
        tmp_path, f"corral watch {session['id']}", CORRAL_URL=stack.url, CORRAL_TOKEN=admin
    )
    watcher.expect("read-only")
    owner.expect("admin@localhost joined as observer")
    owner.sendline("echo shared-$((2*3))")
    guest.expect("shared-6")
    watcher.expect("shared-6")
    watcher.sendline("echo typed-by-watcher")  # not a raw terminal: nothing is sent
    owner.sendline("exit 0")
    for child, status in ((owner, 0), (guest, 0), (watcher, 0)):
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == status, (child.before, child.exitstatus)
    assert b"typed-by-watcher\r\n" not in (owner.before or b"")

    reattach = corral(tmp_path, "join", session["id"], **owner_env)
    one_error(reattach, 4, "no live session")


# --------------------------------------------------------------------------- audit


def test_audit_lists_and_filters_events(stack: Stack, admin: str, tmp_path: Path) -> None:
    env = {"CORRAL_URL": stack.url, "CORRAL_TOKEN": admin}
    listed = corral(tmp_path, "audit", "--limit", "5", "--json", **env)
    assert listed.code == 0, listed
    events = json.loads(listed.out)["events"]
    assert 1 <= len(events) <= 5
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs)
    auth = corral(
        tmp_path, "audit", "--category", "authentication", "--since", "1h", "--json", **env
    )
    picked = json.loads(auth.out)["events"]
    assert picked and {e["category"] for e in picked} == {"authentication"}
    assert "token.created" in {e["action"] for e in picked}  # every test token made one
    text = corral(tmp_path, "audit", "--action", "token.created", "--limit", "2", **env)
    lines = text.out.splitlines()
    assert len(lines) == 2, text
    assert all(re.match(r"\S+  #\d+  success\s+token\.created  actor=", line) for line in lines)
    bad = corral(tmp_path, "audit", "--since", "yesterday", **env)
    assert bad.code == 2 and "30m, 12h, 7d" in bad.err
