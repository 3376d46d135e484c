"""Typed access to what the app assembly (``broker/app.py``) put on ``app.state``."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from broker.agents.hub import AgentHub
from broker.runtime import Runtime
from broker.services import Services

__all__ = ["hub_of", "runtime_of", "services_of"]


def services_of(conn: HTTPConnection) -> Services:
    services: Services = conn.app.state.services
    return services


def runtime_of(conn: HTTPConnection) -> Runtime:
    runtime: Runtime = conn.app.state.runtime
    return runtime


def hub_of(conn: HTTPConnection) -> AgentHub:
    hub: AgentHub = conn.app.state.hub
    return hub
