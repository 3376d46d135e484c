"""The gateway's exceptions (tree in the package docstring); messages are safe to show."""

from __future__ import annotations

from broker.errors import CorralError

__all__ = ["AccessDenied", "GatewayError", "SessionUnavailable"]


class GatewayError(CorralError):
    """Root of the gateway's own errors."""


class AccessDenied(GatewayError):
    """The caller's access level for the server does not allow what was asked."""


class SessionUnavailable(GatewayError):
    """No live session with that id in the caller's workspace (never says more)."""
