"""A real broker on loopback (uvicorn on a port-0 socket) and real agent processes."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
import uvicorn

from broker.agents.hub import AgentHub
from broker.app import create_app
from broker.bootstrap import initialise
from broker.runtime import Runtime, open_runtime
from broker.serving import server_config, set_keepalive
from broker.settings import load_settings
from broker.store.models import AuditEvent

ROOT = Path(__file__).resolve().parents[2]


def bind(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    set_keepalive(sock)
    sock.listen(128)
    return sock


@dataclass
class Broker:
    url: str
    port: int
    runtime: Runtime
    hub: AgentHub
    workspace_id: str
    server: uvicorn.Server | None = None
    task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.hub = AgentHub(
            self.runtime.services,
            heartbeat_interval=1.0,
            metrics_interval=1.0,
            hello_timeout=10.0,
            channel_timeout=10.0,
        )
        config = server_config(  # as `corral up` serves it
            create_app(self.runtime, hub=self.hub), log_level="warning", timeout_graceful_shutdown=5
        )
        self.server = uvicorn.Server(config)
        self.task = asyncio.create_task(self.server.serve(sockets=[bind(self.port)]))
        while not self.server.started:
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        assert self.server is not None and self.task is not None
        await self.hub.close_all()
        self.server.should_exit = True
        await self.task

    async def registration_token(self) -> str:
        _, secret = await self.runtime.services.agents.create_registration_token(self.workspace_id)
        return secret


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Broker]:
    probe = bind()
    port = probe.getsockname()[1]
    probe.close()
    settings = load_settings(
        {
            "CORRAL_DATA_DIR": str(tmp_path / "broker"),
            "CORRAL_PORT": str(port),
            "CORRAL_PUBLIC_URL": f"http://127.0.0.1:{port}",
        },
        cwd=tmp_path,
    )
    async with open_runtime(settings) as runtime:
        init = await initialise(runtime.services)
        instance = Broker(
            f"http://127.0.0.1:{port}",
            port,
            runtime,
            None,  # type: ignore[arg-type]
            init.workspace.id,
        )
        await instance.start()
        yield instance
        if instance.task is not None and not instance.task.done():
            await instance.stop()


@dataclass
class AgentProcess:
    config: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self._spawn(log)

    def _spawn(self, log: IO[bytes]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", str(self.config)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> int:
        assert self.process is not None
        self.process.terminate()
        return self.process.wait(10)


async def audited(
    broker: Broker, count: int, timeout: float = 10, **filters: Any
) -> list[AuditEvent]:
    """The workspace's audit events matching ``filters`` (``action``, ``server_id``, ...),
    once there are at least ``count``: the hub audits after the connection has ended, so a
    test that has just seen the close waits for the record."""

    async def enough() -> list[AuditEvent]:
        while True:
            events = await broker.runtime.services.audit.events(
                broker.workspace_id, limit=1000, **filters
            )
            if len(events) >= count:
                return events
            await asyncio.sleep(0.05)

    return await asyncio.wait_for(enough(), timeout)


def register_agent(
    url: str, token: str, config: Path, name: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "agent",
            "register",
            "--url",
            url,
            "--token",
            token,
            "--config",
            str(config),
            "--name",
            name,
            "--tag",
            "env=test",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


@pytest.fixture
def agent_files(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "agent" / "agent.toml", tmp_path / "agent.log"
