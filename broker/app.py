"""The ASGI application: the broker's routes over one :class:`Runtime`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException

from api.agents import agent_routes
from api.problems import ApiError, http_problem_handler, problem_handler
from api.routes import routes
from api.servers import server_routes
from api.sessions import session_routes
from api.shares import share_routes
from broker.agents.hub import AgentHub
from broker.errors import CorralError
from broker.gateway.retention import RecordingRetention
from broker.runtime import Runtime

__all__ = ["create_app"]


def create_app(runtime: Runtime, *, hub: AgentHub | None = None) -> Starlette:
    agent_hub = hub or AgentHub(runtime.services)

    retention = RecordingRetention(runtime.services, runtime.settings.data_dir / "recordings")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        purge = asyncio.create_task(retention.run(), name="recording-retention")
        try:
            yield
        finally:
            purge.cancel()
            await agent_hub.close_all()

    app = Starlette(
        routes=[
            *routes(),
            *agent_routes(),
            *session_routes(),
            *share_routes(),
            *server_routes(),
        ],
        exception_handlers={
            ApiError: problem_handler,
            CorralError: problem_handler,
            HTTPException: http_problem_handler,
            Exception: problem_handler,
        },
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.services = runtime.services
    app.state.hub = agent_hub
    return app
