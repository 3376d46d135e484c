"""The agent hub's exceptions; messages are safe to show.

AgentOffline        root (a CorralError): the server's agent is not connected to this
                    broker, went away, or did not open a channel it was asked for
"""

from __future__ import annotations

from broker.errors import CorralError

__all__ = ["AgentOffline"]


class AgentOffline(CorralError):
    """The server's agent is not connected to this broker."""
