"""Messages of the client terminal connection (browser or CLI <-> broker).

The user side starts with ``client_hello`` (terminal size, optionally a short-lived
``ticket`` because browsers cannot set headers on a WebSocket upgrade) and the broker
answers ``client_welcome``. Keystrokes travel as ``Input``, screen bytes as ``Output``.
Everything the enforcement gate decides is reported as a typed event so the CLI and the
web UI can render it without parsing prose: a blocked command, a step-up MFA demand,
approval progress, participants of a shared session, and how the session ended.
"""

from __future__ import annotations

from .base import TextMessage
from .fields import (
    MAX_SAFE_INT,
    boolean,
    ident,
    integer,
    label,
    label_list,
    optional,
    secret,
    spec,
    string,
    terminal_cols,
    terminal_rows,
    url_path,
)
from .record import frozen
from .version import PROTOCOL_VERSION

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import ClassVar

__all__ = [
    "ApprovalDenied",
    "ApprovalGranted",
    "ApprovalPending",
    "ClientHello",
    "ClientWelcome",
    "CommandBlocked",
    "MfaRequired",
    "ParticipantJoined",
    "ParticipantLeft",
    "Resume",
    "Terminated",
]

_PROTOCOL = label(32, nonempty=True)


@frozen
class ClientHello(TextMessage):
    """First message from a browser/CLI: initial terminal size and optional ticket."""

    type: ClassVar[str] = "client_hello"
    cols: int = spec(terminal_cols)
    rows: int = spec(terminal_rows)
    ticket: str | None = optional(secret)
    protocol: str = optional(_PROTOCOL, PROTOCOL_VERSION)

    def __repr__(self) -> str:
        return f"ClientHello(cols={self.cols}, rows={self.rows})"


@frozen
class ClientWelcome(TextMessage):
    """The broker attached the user to ``session_id``; ``read_only`` for observers."""

    type: ClassVar[str] = "client_welcome"
    session_id: str = spec(ident)
    read_only: bool = optional(boolean, False)
    protocol: str = optional(_PROTOCOL, PROTOCOL_VERSION)


@frozen
class Resume(TextMessage):
    """After a reconnect: the client already holds ``offset`` output bytes; send the rest."""

    type: ClassVar[str] = "resume"
    offset: int = spec(integer(0, MAX_SAFE_INT))


@frozen
class CommandBlocked(TextMessage):
    """Policy refused ``command``; it was not run. ``command`` may hold control bytes:
    render it escaped."""

    type: ClassVar[str] = "command_blocked"
    command: str = spec(string())
    reason: str = spec(label())
    rule_id: str | None = optional(ident)


@frozen
class MfaRequired(TextMessage):
    """The held command needs step-up MFA via one of ``methods`` (e.g. totp, webauthn),
    completed at ``url`` when given."""

    type: ClassVar[str] = "mfa_required"
    reason: str = spec(label())
    methods: tuple[str, ...] = spec(label_list)
    url: str | None = optional(url_path)


@frozen
class ApprovalPending(TextMessage):
    """The held command waits for one of ``approvers``."""

    type: ClassVar[str] = "approval_pending"
    approval_id: str = spec(ident)
    approvers: tuple[str, ...] = spec(label_list)
    reason: str = optional(label(), "")


@frozen
class ApprovalGranted(TextMessage):
    """``approvers`` (those who decided) allowed the held command; it runs now."""

    type: ClassVar[str] = "approval_granted"
    approval_id: str = spec(ident)
    approvers: tuple[str, ...] = spec(label_list)
    reason: str = optional(label(), "")


@frozen
class ApprovalDenied(TextMessage):
    """``approvers`` refused (or the request expired); the held command was discarded."""

    type: ClassVar[str] = "approval_denied"
    approval_id: str = spec(ident)
    approvers: tuple[str, ...] = spec(label_list)
    reason: str = optional(label(), "")


@frozen
class ParticipantJoined(TextMessage):
    """Someone joined this shared session as ``role`` (owner, moderator, observer, ...)."""

    type: ClassVar[str] = "participant_joined"
    user: str = spec(label(nonempty=True))
    role: str = spec(label(32, nonempty=True))


@frozen
class ParticipantLeft(TextMessage):
    """Someone left this shared session."""

    type: ClassVar[str] = "participant_left"
    user: str = spec(label(nonempty=True))


@frozen
class Terminated(TextMessage):
    """The broker ended the session (admin, policy, revocation, idle); ``by`` who, if a
    person did."""

    type: ClassVar[str] = "terminated"
    reason: str = spec(label())
    by: str | None = optional(label(nonempty=True))
