"""Messages of a data channel (agent dials back the broker, one per session).

The agent opens a data channel after ``open_channel`` on the control connection and
proves it was asked to with the one-time ``token`` in ``channel_hello``. The broker answers
``channel_welcome``; then stream bytes flow (``Input`` towards the process, ``Output`` or
``Stdout``/``Stderr`` back) until the agent reports ``exit``.

Re-attach: when the process survived a dropped channel, the broker's first message after
``channel_welcome`` is ``attach`` with the number of output bytes it already holds, and
the agent replays its buffered output from that offset (if the offset fell out of its
buffer it sends ``error`` code ``attach_gap`` and continues from the oldest byte it has).
"""

from __future__ import annotations

from .base import TextMessage
from .fields import MAX_SAFE_INT, ident, integer, label, optional, secret, spec
from .record import frozen
from .version import PROTOCOL_VERSION

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import ClassVar

__all__ = ["Attach", "ChannelHello", "ChannelWelcome", "Eof"]

_PROTOCOL = label(32, nonempty=True)


@frozen
class ChannelHello(TextMessage):
    """First message of a data channel: which channel, and the token that proves it."""

    type: ClassVar[str] = "channel_hello"
    channel_id: str = spec(ident)
    token: str = spec(secret)
    protocol: str = optional(_PROTOCOL, PROTOCOL_VERSION)

    def __repr__(self) -> str:
        return f"ChannelHello(channel_id={self.channel_id!r})"


@frozen
class ChannelWelcome(TextMessage):
    """The broker accepted the data channel; streams may flow."""

    type: ClassVar[str] = "channel_welcome"
    protocol: str = optional(_PROTOCOL, PROTOCOL_VERSION)


@frozen
class Attach(TextMessage):
    """Re-attach to a surviving process; replay output from byte ``offset``."""

    type: ClassVar[str] = "attach"
    channel_id: str = spec(ident)
    offset: int = spec(integer(0, MAX_SAFE_INT))


@frozen
class Eof(TextMessage):
    """No more ``Input`` will follow: close the exec process's stdin."""

    type: ClassVar[str] = "eof"
