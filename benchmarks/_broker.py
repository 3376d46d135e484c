"""A real Corral broker in this process (uvicorn on loopback), shared by the benchmarks.

Mirrors ``tests/integration/conftest.py``: SQLite in a temporary directory, the bootstrap
workspace, uvicorn serving a socket bound to 127.0.0.1 so the broker can be stopped and
started again on the same port. With ``tls=(certfile, keyfile)`` uvicorn serves HTTPS/WSS,
TLS 1.3 only (as ``corral up`` does), and the public URL is ``https://``.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import uvicorn  # noqa: E402

from broker.agents.hub import AgentHub  # noqa: E402
from broker.app import create_app  # noqa: E402
from broker.bootstrap import initialise  # noqa: E402
from broker.runtime import Runtime, open_runtime  # noqa: E402
from broker.serving import server_config, set_keepalive  # noqa: E402
from broker.settings import load_settings  # noqa: E402

__all__ = ["ROOT", "Broker", "bind", "run_broker_loop", "running_broker"]


def run_broker_loop(
    main: Coroutine[Any, Any, None],
    make_loop: Callable[[], asyncio.AbstractEventLoop] | None,
) -> None:
    """``asyncio.run`` on the loop ``corral up`` would pick (``broker.serving.loop_factory``)."""
    with asyncio.Runner(loop_factory=make_loop) as runner:
        runner.run(main)


def bind(port: int = 0, backlog: int = 2048) -> socket.socket:
    """A listening loopback socket; 2048 is uvicorn's own default backlog."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    set_keepalive(sock)  # as `corral up` does
    sock.listen(backlog)
    return sock


@dataclass
class Broker:
    url: str
    port: int
    runtime: Runtime
    workspace_id: str
    make_hub: Callable[[Runtime], AgentHub]
    hub: AgentHub | None = None
    tls: tuple[str, str] | None = None  # (certfile, keyfile)
    server: uvicorn.Server | None = None
    task: asyncio.Task[None] | None = None
    starts: int = field(default=0)

    async def start(self) -> None:
        self.hub = self.make_hub(self.runtime)
        config = server_config(  # as `corral up` serves it (TLS 1.3 only)
            create_app(self.runtime, hub=self.hub),
            log_level="error",
            certfile=self.tls[0] if self.tls else None,
            keyfile=self.tls[1] if self.tls else None,
        )
        self.server = uvicorn.Server(config)
        self.task = asyncio.create_task(self.server.serve(sockets=[bind(self.port)]))
        while not self.server.started:
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.01)
        self.starts += 1

    async def stop(self) -> None:
        assert self.server is not None and self.task is not None
        self.server.should_exit = True
        await self.task

    async def registration_token(self) -> str:
        _, secret = await self.runtime.services.agents.create_registration_token(self.workspace_id)
        return secret


@asynccontextmanager
async def running_broker(
    data_dir: Path,
    make_hub: Callable[[Runtime], AgentHub] | None = None,
    tls: tuple[str, str] | None = None,
) -> AsyncIterator[Broker]:
    probe = bind()
    port = probe.getsockname()[1]
    probe.close()
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    settings = load_settings(
        {
            "CORRAL_DATA_DIR": str(data_dir / "broker"),
            "CORRAL_PORT": str(port),
            "CORRAL_PUBLIC_URL": url,
        },
        cwd=data_dir,
    )
    async with open_runtime(settings) as runtime:
        init = await initialise(runtime.services)
        broker = Broker(
            url,
            port,
            runtime,
            init.workspace.id,
            make_hub or (lambda rt: AgentHub(rt.services)),
            tls=tls,
        )
        await broker.start()
        try:
            yield broker
        finally:
            if broker.task is not None and not broker.task.done():
                await broker.stop()
