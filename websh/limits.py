"""Resource limits applied to every message a websh Connection receives or sends.

Limits are a constructor parameter (``Connection(..., limits=Limits(...))``) rather than
module constants so that the broker can tighten them for untrusted browser connections and
tests can shrink them. Both ends should use the same values: a sender refuses to emit what
its own limits would refuse to receive, and large byte streams are split to fit
``max_binary_size`` automatically. Exceeding a limit on receive raises
``MessageTooBigError`` (close code 4008).
"""

from __future__ import annotations

from .errors import UsageError
from .record import frozen

__all__ = ["DEFAULT_LIMITS", "Limits"]


@frozen
class Limits:
    """Bounds on decoded input.

    Defaults:

    * ``max_text_size`` 65536 - UTF-8 bytes of one JSON (text) message.
    * ``max_binary_size`` 1048576 - bytes of one binary message, kind byte included.
    * ``max_depth`` 5 - JSON nesting (the top-level object is depth 1).
    * ``max_keys`` 512 - object members in one message, all levels counted.
    * ``max_items`` 1024 - array elements in one message, all levels counted.
    * ``max_string_length`` 16384 - characters of any one JSON string (key or value).
    * ``max_cols`` / ``max_rows`` 1000 - terminal size.
    """

    max_text_size: int = 65536
    max_binary_size: int = 1048576
    max_depth: int = 5
    max_keys: int = 512
    max_items: int = 1024
    max_string_length: int = 16384
    max_cols: int = 1000
    max_rows: int = 1000

    def __post_init__(self) -> None:
        for name in (
            "max_text_size",
            "max_depth",
            "max_keys",
            "max_items",
            "max_string_length",
            "max_cols",
            "max_rows",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UsageError(f"Limits.{name} must be a positive integer")
        if not isinstance(self.max_binary_size, int) or self.max_binary_size < 2:
            raise UsageError("Limits.max_binary_size must be an integer >= 2")


DEFAULT_LIMITS = Limits()
