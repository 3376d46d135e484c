"""Binary stream messages: the bytes of terminals and exec processes.

Terminal traffic is the hot path, so it never touches JSON: a binary WebSocket message is
one kind byte followed by raw bytes. Message boundaries carry no meaning (a sender may
split a stream anywhere, and ``Connection.send`` splits chunks larger than
``max_binary_size``), so receivers must treat each kind as a continuous byte stream.

====  ========  =========================================================================
kind  class     meaning
====  ========  =========================================================================
0x01  Input     keystrokes / stdin: user -> broker, broker -> agent (terminal and exec)
0x02  Output    terminal (pty) output: agent -> broker, broker -> user
0x03  Stdout    exec stdout: agent -> broker
0x04  Stderr    exec stderr: agent -> broker
====  ========  =========================================================================
"""

from __future__ import annotations

from .base import BinaryMessage
from .record import frozen

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import ClassVar

__all__ = ["STREAM_KINDS", "Input", "Output", "Stderr", "Stdout"]


@frozen
class Input(BinaryMessage):
    """Bytes for the process: keystrokes on a terminal, stdin on exec."""

    type: ClassVar[str] = "input"
    kind: ClassVar[int] = 0x01
    data: bytes


@frozen
class Output(BinaryMessage):
    """Bytes the pty wrote (stdout and stderr are merged by the terminal)."""

    type: ClassVar[str] = "output"
    kind: ClassVar[int] = 0x02
    data: bytes


@frozen
class Stdout(BinaryMessage):
    """Bytes an exec process wrote to stdout."""

    type: ClassVar[str] = "stdout"
    kind: ClassVar[int] = 0x03
    data: bytes


@frozen
class Stderr(BinaryMessage):
    """Bytes an exec process wrote to stderr."""

    type: ClassVar[str] = "stderr"
    kind: ClassVar[int] = 0x04
    data: bytes


STREAM_KINDS: dict[int, type[BinaryMessage]] = {
    cls.kind: cls for cls in (Input, Output, Stdout, Stderr)
}
