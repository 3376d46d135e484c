"""What the agent's WebSocket client reports: a message, a ping, a pong, the peer's close.

``agent.wsframe.ClientConnection.events()`` returns these; ``agent.transport`` keeps the
messages and acts on the close. They are plain ``__slots__`` classes rather than
dataclasses or NamedTuples, so the agent's run path never imports ``dataclasses`` or
``typing`` (about 1 MiB of resident memory with what they pull in).

This module must never hold logic beyond equality and a repr, and never import anything.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Union

__all__ = ["Close", "Event", "Message", "Ping", "Pong"]


class _Data:
    __slots__ = ("data",)

    def __init__(self, data: str | bytes) -> None:
        self.data = data

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.data == self.data

    def __hash__(self) -> int:
        return hash((type(self), self.data))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.data!r})"


class Message(_Data):
    """A complete data message: ``str`` for text, ``bytes`` for binary."""

    __slots__ = ()


class Ping(_Data):
    """A ping from the server (already answered: its pong is in ``data_to_send()``)."""

    __slots__ = ()
    data: bytes


class Pong(_Data):
    """A pong from the server."""

    __slots__ = ()
    data: bytes


class Close:
    """The server's close frame: ``code`` 1005 if it carried none."""

    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str = "") -> None:
        self.code = code
        self.reason = reason

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Close) and (other.code, other.reason) == (self.code, self.reason)

    def __hash__(self) -> int:
        return hash((self.code, self.reason))

    def __repr__(self) -> str:
        return f"Close({self.code}, {self.reason!r})"


if TYPE_CHECKING:
    Event = Union[Message, Ping, Pong, Close]
