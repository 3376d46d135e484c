"""The ASGI application: the broker's routes over one :class:`Runtime`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException

from api.agents import agent_routes
from api.identity import identity_routes
from api.identity_admin import identity_admin_routes
from api.mfa import mfa_routes
from api.problems import ApiError, http_problem_handler, problem_handler
from api.routes import routes
from api.sessions import session_routes
from broker.agents.hub import AgentHub
from broker.errors import CorralError
from broker.runtime import Runtime
from idp import Identity

__all__ = ["create_app"]


def create_app(
    runtime: Runtime, *, hub: AgentHub | None = None, identity: Identity | None = None
) -> Starlette:
    agent_hub = hub or AgentHub(runtime.services)
    # The audit log holds the broker key; identity derives its own subkeys from it.
    identity = identity or Identity.build(
        runtime.services, runtime.services.audit.key, runtime.settings
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await agent_hub.close_all()

    app = Starlette(
        routes=[
            *routes(),
            *identity_routes(),
            *identity_admin_routes(),
            *mfa_routes(),
            *agent_routes(),
            *session_routes(),
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
    app.state.identity = identity
    return app
