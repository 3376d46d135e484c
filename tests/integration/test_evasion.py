"""The evasion corpus (evasion_corpus.toml) through a real terminal session.

One broker, one agent and one gateway for the module (with the test policy of
enforce_support); each case gets a fresh terminal session and a fresh canary file, types
its keystrokes, then proves what happened by the canary still being there. A case that is
not blocked is an xfail with its reason (strict: if it starts being blocked, the corpus
must say so), and is listed in docs/policy.md.

    .venv/bin/pytest tests/integration/test_evasion.py -q -rx
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import pwd
import subprocess
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from broker.bootstrap import initialise
from broker.gateway import GatewaySessions
from broker.runtime import open_runtime
from broker.settings import load_settings
from broker.store.models import TokenScope
from tests.integration import enforce_support as support
from tests.integration.conftest import AgentProcess, Broker, bind, register_agent
from tests.integration.test_sessions_gateway import Term

CORPUS = Path(__file__).with_name("evasion_corpus.toml")
CASES: list[dict[str, Any]] = tomllib.loads(CORPUS.read_text(encoding="utf-8"))["case"]
SERVER = "evasion-host"
PROMPT_END = b"\x1b]133;B\x07"

pytestmark = pytest.mark.slow


@dataclass
class Stack:
    broker: Broker
    gateway: GatewaySessions
    http: httpx.AsyncClient
    token: str


def _shell_user() -> None:
    if os.geteuid() != 0:
        pytest.skip("real terminal sessions for another user need root")
    try:
        pwd.getpwnam(support.SHELL_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--create-home", "--shell", "/bin/bash", support.SHELL_USER],
            check=True,
            capture_output=True,
        )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    _shell_user()
    tmp = tmp_path_factory.mktemp("evasion")
    probe = bind()
    port = probe.getsockname()[1]
    probe.close()
    settings = load_settings(
        {
            "CORRAL_DATA_DIR": str(tmp / "broker"),
            "CORRAL_PORT": str(port),
            "CORRAL_PUBLIC_URL": f"http://127.0.0.1:{port}",
        },
        cwd=tmp,
    )
    support.fake_programs()
    async with open_runtime(settings) as runtime:
        init = await initialise(runtime.services)
        broker = Broker(f"http://127.0.0.1:{port}", port, runtime, None, init.workspace.id)  # type: ignore[arg-type]
        await broker.start()
        config = tmp / "agent" / "agent.toml"
        done = await asyncio.to_thread(
            register_agent, broker.url, await broker.registration_token(), config, SERVER
        )
        assert done.returncode == 0, done.stderr
        agent = AgentProcess(config, tmp / "agent.log")
        agent.start()
        try:
            server_id = tomllib.loads(config.read_text())["agent_id"]
            await broker.hub.wait_connected(server_id, 20)
            gateway, _, _ = support.enforcing_gateway(
                runtime.services, broker.hub, settings.data_dir / "recordings"
            )
            broker.server.config.app.state.gateway = gateway  # type: ignore[union-attr]
            admin = await runtime.services.users.find_by_email(init.workspace.id, "admin@localhost")
            _, token = await runtime.services.tokens.create(
                init.workspace.id, admin.id, name="t", scope=TokenScope.ADMIN, expires_in_days=30
            )
            async with httpx.AsyncClient(base_url=broker.url, timeout=20) as http:
                yield Stack(broker, gateway, http, token)
        finally:
            agent.kill()
            await broker.stop()


def _fill(text: str, case_id: str, canary: Path) -> str:
    return (
        text.replace("{c}", str(canary))
        .replace("{cn}", canary.name)
        .replace("{fake}", str(support.FAKE_BIN))
        .replace("{id}", case_id)
    )


def _keys(text: str) -> str:
    return codecs.decode(text, "unicode_escape")


async def _prompts(term: Term, count: int, timeout: float = 10) -> None:
    async def loop() -> None:
        while term.out.count(PROMPT_END) < count:
            await term.next()

    await asyncio.wait_for(loop(), timeout)


async def run_case(stack: Stack, case: dict[str, Any]) -> tuple[bool, str]:
    """Type the case; (blocked, what the terminal showed)."""
    case_id = case["id"]
    canary = support.canary(case_id)
    trace = support.ran_trace(case.get("runs", "none"), case_id)
    support.cleanup_matching("corral-ran-*")
    response = await stack.http.post(
        "/api/v1/sessions",
        json={"server": SERVER, "unix_user": support.SHELL_USER, "cols": 80, "rows": 24},
        headers={"Authorization": f"Bearer {stack.token}"},
    )
    assert response.status_code == 201, response.text
    opened = response.json()
    term = await Term.connect(opened["websocket_url"])
    try:
        await _prompts(term, 1)
        for line in case.get("setup", []):
            seen = term.out.count(PROMPT_END)
            await term.type(_fill(line, case_id, canary) + "\r")
            await _prompts(term, seen + 1)
        await term.type(_keys(_fill(case["keys"], case_id, canary)))
        if "later" in case:
            await asyncio.sleep(0.8)
            await term.type(_keys(_fill(case["later"], case_id, canary)))
        await asyncio.sleep(1.5)
        await term.type("\x03")
        await asyncio.sleep(0.3)
        await term.type(f'echo DONE-"{case_id}"\r')
        # e.g. `exec` may end the shell; the canary tells what happened
        with contextlib.suppress(TimeoutError):
            await term.until(f"DONE-{case_id}\r\n".encode(), timeout=10)
    finally:
        if opened["session_id"] in stack.gateway.live:
            await stack.gateway.terminate(
                stack.broker.workspace_id, opened["session_id"], "case done"
            )
    await asyncio.sleep(0.2)
    blocked = support.exists(canary) and not support.exists(trace)
    support.cleanup([canary, trace])
    return blocked, term.out.decode("utf-8", "replace")


def _params() -> list[Any]:
    params = []
    for case in CASES:
        marks = []
        if "xfail" in case:
            marks.append(pytest.mark.xfail(reason=case["xfail"], strict=True))
        params.append(pytest.param(case, id=case["id"], marks=marks))
    return params


def test_corpus_is_big_enough() -> None:
    assert len(CASES) >= 40
    assert len({c["id"] for c in CASES}) == len(CASES)


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("case", _params())
async def test_blocked(stack: Stack, case: dict[str, Any]) -> None:
    blocked, screen = await run_case(stack, case)
    assert blocked, f"{case['id']} was not blocked; terminal:\n{screen[-1500:]}"
