"""The ASGI application: the broker's routes over one :class:`Runtime`."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException

from api.problems import ApiError, http_problem_handler, problem_handler
from api.routes import routes
from broker.errors import CorralError
from broker.runtime import Runtime

__all__ = ["create_app"]


def create_app(runtime: Runtime) -> Starlette:
    app = Starlette(
        routes=routes(),
        exception_handlers={
            ApiError: problem_handler,
            CorralError: problem_handler,
            HTTPException: http_problem_handler,
            Exception: problem_handler,
        },
    )
    app.state.runtime = runtime
    app.state.services = runtime.services
    return app
