"""Messages of the control connection (agent <-> broker).

The agent holds one outbound control connection. It authenticates with ``hello``; the
broker answers ``welcome`` (or ``retry_later`` / ``error`` followed by a close). After that
the broker asks for data channels with ``open_channel`` and the agent reports ``sysinfo``
and ``metrics``. No terminal bytes ever travel here: each session gets its own data
channel so one busy terminal cannot stall heartbeats or other sessions.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from .base import TextMessage
from .errors import ValidationError
from .fields import (
    argv_or_command,
    enum_of,
    env_map,
    ident,
    ident_list,
    integer,
    label,
    load_triple,
    number,
    optional,
    optional_factory,
    spec,
    system_info,
    terminal_cols,
    terminal_rows,
    unix_user,
    url_path,
)
from .fields import (
    secret as _secret,
)
from .limits import Limits
from .record import frozen
from .version import PROTOCOL_VERSION

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import ClassVar

__all__ = [
    "ChannelKind",
    "CloseChannel",
    "Hello",
    "Metrics",
    "OpenChannel",
    "RetryLater",
    "SysInfo",
    "SystemInfo",
    "Welcome",
]

#: Flat system description: hostname, os, kernel, arch, ... -> str/int/float/bool/None.
SystemInfo = Mapping[str, object]

_PROTOCOL = label(32, nonempty=True)
_BYTES = integer(0)
_DAY = 86400.0


class ChannelKind(str, enum.Enum):
    """What a data channel carries."""

    TERMINAL = "terminal"
    EXEC = "exec"


@frozen
class Hello(TextMessage):
    """Agent authentication; must be the first message on a control connection.

    ``channels`` lists data channels whose process survived a control reconnect, so the
    broker can re-attach them (see ``Attach``).
    """

    type: ClassVar[str] = "hello"
    agent_id: str = spec(ident)
    secret: str = spec(_secret)
    agent_version: str = spec(label(64, nonempty=True))
    sysinfo: SystemInfo = spec(system_info)
    channels: tuple[str, ...] = optional(ident_list, ())
    protocol: str = optional(_PROTOCOL, PROTOCOL_VERSION)

    def __repr__(self) -> str:
        return f"Hello(agent_id={self.agent_id!r}, agent_version={self.agent_version!r})"


@frozen
class Welcome(TextMessage):
    """Broker accepted the agent; intervals are seconds (metrics 0 = do not send)."""

    type: ClassVar[str] = "welcome"
    heartbeat_interval: float = spec(number(0.01, 3600.0))
    metrics_interval: float = spec(number(0.0, _DAY))
    protocol: str = optional(_PROTOCOL, PROTOCOL_VERSION)


@frozen
class SysInfo(TextMessage):
    """System information changed since ``hello`` (full replacement, not a diff)."""

    type: ClassVar[str] = "sysinfo"
    info: SystemInfo = spec(system_info)


@frozen
class Metrics(TextMessage):
    """Resource usage sample; sizes in bytes, cpu in percent of all cores, disk = root fs."""

    type: ClassVar[str] = "metrics"
    ts: float = spec(number(0.0, 1e11))
    cpu: float = spec(number(0.0, 100.0))
    mem_used: int = spec(_BYTES)
    mem_total: int = spec(_BYTES)
    disk_used: int = spec(_BYTES)
    disk_total: int = spec(_BYTES)
    load: tuple[float, float, float] = spec(load_triple)


@frozen
class OpenChannel(TextMessage):
    """Ask the agent to dial back a data channel at ``path`` presenting ``token``.

    ``terminal`` requires ``cols``/``rows`` and forbids ``command``/``timeout``; ``exec``
    requires ``command`` (a shell string or an argv array) and forbids ``cols``/``rows``.
    An ``open_channel`` naming a channel whose process the agent still holds is a
    re-attach: the agent dials back for the existing process instead of spawning one.
    """

    type: ClassVar[str] = "open_channel"
    channel_id: str = spec(ident)
    kind: ChannelKind = spec(enum_of(ChannelKind))
    token: str = spec(_secret)
    path: str = spec(url_path)
    user: str = spec(unix_user)
    cols: int | None = optional(terminal_cols)
    rows: int | None = optional(terminal_rows)
    env: Mapping[str, str] = optional_factory(env_map, dict)
    command: str | tuple[str, ...] | None = optional(argv_or_command)
    timeout: float | None = optional(number(0.001, 7 * _DAY))

    def __repr__(self) -> str:
        return (
            f"OpenChannel(channel_id={self.channel_id!r}, kind={self.kind.value!r}, "
            f"path={self.path!r}, user={self.user!r})"
        )

    def check(self, limits: Limits) -> None:
        if self.kind is ChannelKind.TERMINAL:
            if self.cols is None or self.rows is None:
                raise ValidationError("open_channel: terminal requires 'cols' and 'rows'")
            if self.command is not None or self.timeout is not None:
                raise ValidationError("open_channel: terminal takes no 'command'/'timeout'")
        else:
            if self.command is None:
                raise ValidationError("open_channel: exec requires 'command'")
            if self.cols is not None or self.rows is not None:
                raise ValidationError("open_channel: exec takes no 'cols'/'rows'")


@frozen
class CloseChannel(TextMessage):
    """Broker: end this channel's process. Agent: the channel could not open or was lost."""

    type: ClassVar[str] = "close_channel"
    channel_id: str = spec(ident)
    reason: str = optional(label(), "")


@frozen
class RetryLater(TextMessage):
    """Broker is overloaded or draining: reconnect no sooner than ``after`` seconds."""

    type: ClassVar[str] = "retry_later"
    after: float = spec(number(0.0, _DAY))
    reason: str = optional(label(), "")
