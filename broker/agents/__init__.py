"""Agents as the broker sees them: the hub of control connections and data channels.

The HTTP and WebSocket endpoints agents reach live in ``api/agents.py``."""

from broker.agents.hub import AgentHub, AgentOffline, DataChannel, ExecResult

__all__ = ["AgentHub", "AgentOffline", "DataChannel", "ExecResult"]
