"""The agent's one root exception and its tree.

Every failure the agent raises on purpose is an ``AgentError``; OS-level errors are
translated at the boundary of the module that met them. Messages are for the host's log
and the operator; the connection layer must never forward internal details to the broker
beyond the class name and a short reason it chooses.

Tree::

    AgentError
    ├── ConfigError            the config/credential file is missing, unreadable or invalid
    ├── UserError              a Unix user cannot be used
    │   ├── UnknownUser        no such user in the password database
    │   └── UserForbidden      the agent config forbids this user (deny_users / allow_users)
    ├── SpawnError             a shell or command could not be started (fork/exec/setuid)
    │   └── PrivilegeError     switching to the user needs root and the agent is not root
    ├── TerminalError          a terminal operation failed
    │   ├── ReplayError        a replay offset lies beyond what the terminal produced
    │   ├── InputOverflow      too much unsent keyboard input is queued
    │   └── TooManyTerminals   the terminal table is full
    ├── ExecError              an exec request is invalid (bad environment, bad timeout)
    ├── BuildError             the single-file agent (zipapp) could not be built
    ├── TransportError         a WebSocket to the broker failed (DNS, TCP, TLS, framing)
    │   ├── HandshakeError     the broker refused or botched the WebSocket upgrade
    │   └── FrameError         the broker broke RFC 6455 framing (carries the close code)
    │       └── MessageTooLarge    a message over the agent's size cap (1009)
    └── RegistrationError      ``corral-agent register`` failed (the broker's detail)
"""

from __future__ import annotations

__all__ = [
    "AgentError",
    "BuildError",
    "ConfigError",
    "ExecError",
    "FrameError",
    "HandshakeError",
    "InputOverflow",
    "MessageTooLarge",
    "PrivilegeError",
    "RegistrationError",
    "ReplayError",
    "SpawnError",
    "TerminalError",
    "TooManyTerminals",
    "TransportError",
    "UnknownUser",
    "UserError",
    "UserForbidden",
]


class AgentError(Exception):
    """Root of every error the agent raises on purpose."""


class ConfigError(AgentError):
    """The config file is missing, unreadable or invalid; the message names file and line."""


class UserError(AgentError):
    """A Unix user cannot be used for a terminal or command."""


class UnknownUser(UserError):
    """The user does not exist in the password database."""


class UserForbidden(UserError):
    """The agent config forbids this user."""


class SpawnError(AgentError):
    """A shell or command could not be started."""


class PrivilegeError(SpawnError):
    """Running as another user needs root; a non-root agent may only run as itself."""


class TerminalError(AgentError):
    """A terminal operation failed."""


class ReplayError(TerminalError):
    """The requested replay offset is beyond the bytes the terminal has produced."""


class InputOverflow(TerminalError):
    """More keyboard input is queued than the terminal accepts before the shell reads it."""


class TooManyTerminals(TerminalError):
    """The terminal table already holds its maximum number of terminals."""


class ExecError(AgentError):
    """An exec request is invalid."""


class BuildError(AgentError):
    """The single-file agent could not be built."""


class TransportError(AgentError):
    """A WebSocket connection to the broker could not be made or broke."""


class HandshakeError(TransportError):
    """The broker answered the upgrade request with something other than a valid 101.

    ``status`` is the HTTP status (``None`` if the response was not even HTTP).
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class FrameError(TransportError):
    """The broker sent frames RFC 6455 forbids; ``code`` is the close code sent for it."""

    def __init__(self, message: str, code: int = 1002) -> None:
        super().__init__(message)
        self.code = code


class MessageTooLarge(FrameError):
    """The broker sent a WebSocket message larger than the agent accepts."""

    def __init__(self, message: str, code: int = 1009) -> None:
        super().__init__(message, code)


class RegistrationError(AgentError):
    """Registering this host with the broker failed; the message is the broker's detail."""
