"""Agents as the broker sees them: the hub of control connections and data channels,
and the HTTP endpoints agents use (registration, install script, the agent itself)."""

from broker.agents.hub import AgentHub, AgentOffline, DataChannel, ExecResult

__all__ = ["AgentHub", "AgentOffline", "DataChannel", "ExecResult"]
