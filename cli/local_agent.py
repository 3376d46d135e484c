"""The agent ``corral up`` runs for the machine it is on, so a newcomer has a server to open
a terminal on before installing anything anywhere.

It is the real agent (``python -m agent``), registered once to the default workspace with a
one-time registration token like any other host; its config and log live in
``<data_dir>/agent/``. Turn it off with ``local_agent = false`` (production brokers should).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import subprocess
import sys
import tomllib

from broker.agents.hub import AgentHub
from broker.errors import CorralError
from broker.runtime import Runtime

__all__ = ["LocalAgent", "LocalAgentError", "loopback_url"]


class LocalAgentError(CorralError):
    """The local agent could not be registered or did not connect."""


class LocalAgent:
    def __init__(self, runtime: Runtime, workspace_id: str, url: str) -> None:
        settings = runtime.settings
        self.runtime = runtime
        self.workspace_id = workspace_id
        self.url = url
        self.folder = settings.data_dir / "agent"
        self.config = self.folder / "agent.toml"
        self.log = self.folder / "agent.log"
        ca = settings.tls_ca_file or settings.tls_cert_file
        self.ca_file = str(ca) if settings.tls and ca is not None else None
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self, hub: AgentHub, *, timeout: float = 20.0) -> str:
        """Register (first time only), start the agent, wait for it: the server's name."""
        if not self.config.exists():
            await self._register()
        try:
            config = tomllib.loads(self.config.read_text())
            server_id, name = str(config["agent_id"]), str(config.get("name", ""))
        except (OSError, tomllib.TOMLDecodeError, KeyError) as exc:
            raise LocalAgentError(f"unreadable agent config {self.config}: {exc}") from None
        self._spawn()
        try:
            await hub.wait_connected(server_id, timeout)
        except (TimeoutError, CorralError):
            raise LocalAgentError(f"the local agent did not connect; see {self.log}") from None
        if not name:
            name = (await self.runtime.services.servers.get(self.workspace_id, server_id)).name
        return name

    def _spawn(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "agent", "run", "--config", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def _register(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        _, token = await self.runtime.services.agents.create_registration_token(
            self.workspace_id, ttl_seconds=300
        )
        command = [
            sys.executable,
            "-m",
            "agent",
            "register",
            "--url",
            self.url,
            "--token",
            token,
            "--config",
            str(self.config),
            "--name",
            await self._free_name(),
        ]
        if self.ca_file:
            command += ["--ca-file", self.ca_file]
        done = await asyncio.to_thread(
            subprocess.run, command, capture_output=True, text=True, timeout=60, check=False
        )
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            raise LocalAgentError(
                f"registering the local agent failed: {lines[-1] if lines else done.returncode}"
            )

    async def _free_name(self) -> str:
        """This machine's host name, or ``<host>-local`` if a server already has it."""
        host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())[:60].strip("-.") or "local"
        servers = self.runtime.services.servers
        if await servers.find_by_name(self.workspace_id, host) is None:
            return host
        return f"{host}-local"

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(5)


def loopback_url(url: str) -> str:
    """The URL the local agent dials: the broker's own, with a wildcard host made local."""
    return re.sub(r"//(0\.0\.0\.0|\[::\])(:\d+)", r"//127.0.0.1\2", url)
