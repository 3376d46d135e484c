"""Text messages shared by more than one connection kind.

``ping``/``pong`` are application heartbeats (browsers cannot send WebSocket pings, and
an application-level round trip proves the peer's event loop is alive, not only its TCP
stack). ``error`` reports a non-fatal or pre-close problem with a machine ``code``.
``resize`` and ``exit`` mean the same thing on the data channel and the user connection.
"""

from __future__ import annotations

from .base import TextMessage
from .errors import ValidationError
from .fields import boolean, ident, integer, label, number, optional, spec
from .fields import terminal_cols as _cols
from .fields import terminal_rows as _rows
from .limits import Limits
from .record import frozen

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import ClassVar

__all__ = ["ErrorMessage", "Exit", "Ping", "Pong", "Resize"]

_NONCE = integer(0)
_TIMESTAMP = number(0.0, 1e11)


@frozen
class Ping(TextMessage):
    """Heartbeat; the receiver answers ``Pong`` with the same nonce and ts."""

    type: ClassVar[str] = "ping"
    nonce: int = spec(_NONCE)
    ts: float = spec(_TIMESTAMP)


@frozen
class Pong(TextMessage):
    """Heartbeat answer; echoing ``ts`` lets the pinger measure RTT statelessly."""

    type: ClassVar[str] = "pong"
    nonce: int = spec(_NONCE)
    ts: float = spec(_TIMESTAMP)


@frozen
class ErrorMessage(TextMessage):
    """A problem report: ``code`` is machine-readable, ``message`` safe for users."""

    type: ClassVar[str] = "error"
    code: str = spec(ident)
    message: str = spec(label(512))
    channel_id: str | None = optional(ident)


@frozen
class Resize(TextMessage):
    """New terminal size in character cells."""

    type: ClassVar[str] = "resize"
    cols: int = spec(_cols)
    rows: int = spec(_rows)


@frozen
class Exit(TextMessage):
    """The process ended: exactly one of ``status`` (exit code) or ``signal`` is set."""

    type: ClassVar[str] = "exit"
    status: int | None = optional(integer(0, 255))
    signal: int | None = optional(integer(1, 127))
    timed_out: bool = optional(boolean, False)

    def check(self, limits: Limits) -> None:
        if (self.status is None) == (self.signal is None):
            raise ValidationError("exit: exactly one of 'status' and 'signal' is required")
