"""Agents as the broker sees them: the hub of control connections and data channels.

The HTTP endpoints agents reach live in ``api/agents.py``; their WebSockets are served by
``broker.app.BrokerApp`` straight into the hub."""

from broker.agents.hub import AgentHub, AgentOffline, DataChannel, ExecResult

__all__ = ["AgentHub", "AgentOffline", "DataChannel", "ExecResult"]
