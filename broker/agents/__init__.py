"""Agents as the broker sees them: the hub of control connections and data channels.

    hub.py        AgentHub: control connections, who is connected, the heartbeat sweeper
    channels.py   data channels: dial-back requests, pairing, exec (a base of AgentHub)
    presence.py   the hub's store side: presence, reports, arrivals and departures
    wire.py       Wire: a Starlette WebSocket carrying one websh connection
    errors.py     AgentOffline

The HTTP endpoints agents reach live in ``api/agents.py``; their WebSockets are served by
``broker.app.BrokerApp`` straight into the hub."""

from broker.agents.channels import DataChannel, ExecResult
from broker.agents.errors import AgentOffline
from broker.agents.hub import AgentHub

__all__ = ["AgentHub", "AgentOffline", "DataChannel", "ExecResult"]
