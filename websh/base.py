"""Message base classes and the generic field (de)serialisation they share.

A websh message is a ``@frozen`` record class (``record.py``: frozen-dataclass behaviour
without importing ``dataclasses``, ``inspect`` or ``typing``, which cost the agent ~2.5
MiB). Text messages (``TextMessage``) travel as one JSON object per WebSocket text
message, ``{"type": <wire name>, <field>: <value>, ...}``; binary messages
(``BinaryMessage``) travel as one byte of kind followed by raw stream bytes. Each field
carries its checker (see ``fields.py``), so decoding is one loop here instead of thirty
hand-written parsers that could drift from the encoder.

Wire rules decided here:

* ``None`` fields are omitted when encoding; absent and ``null`` both mean "use the
  default" when decoding; a missing required field is a ``ValidationError``.
* Unknown fields are ignored (minor versions add optional fields), but they still count
  against the depth/key/item/size limits.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from .errors import ValidationError
from .limits import Limits
from .record import fields

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import ClassVar, TypeVar

    T = TypeVar("T", bound="TextMessage")

__all__ = ["BinaryMessage", "Message", "TextMessage", "from_json_object", "to_json_object"]


class Message:
    """Anything a websh connection carries."""

    __slots__ = ()
    type: ClassVar[str]

    def check(self, limits: Limits) -> None:
        """Cross-field rules; overridden where fields depend on each other."""


class TextMessage(Message):
    """A message encoded as a JSON object with a ``type`` member."""

    __slots__ = ()


class BinaryMessage(Message):
    """A byte-stream chunk: kind byte + payload. Splitting or joining chunks is harmless."""

    __slots__ = ()
    kind: ClassVar[int]
    data: bytes


def _jsonable(value: object) -> object:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [_jsonable(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    return value


def to_json_object(message: TextMessage) -> dict[str, object]:
    """The JSON object for ``message`` (``type`` first, ``None`` fields omitted)."""
    result: dict[str, object] = {"type": message.type}
    for field in fields(message):
        value = getattr(message, field.name)
        if value is not None:
            result[field.name] = _jsonable(value)
    return result


def from_json_object(cls: type[T], obj: Mapping[str, object], limits: Limits) -> T:
    """Build and validate a ``cls`` from a decoded JSON object."""
    kwargs: dict[str, object] = {}
    for field in fields(cls):
        check = field.check
        assert check is not None, f"{cls.__name__}.{field.name} has no checker"
        value = obj.get(field.name)
        if value is not None:
            kwargs[field.name] = check(value, field.name, limits)
        elif field.required:
            raise ValidationError(f"{cls.type}: missing field {field.name!r}")
    message = cls(**kwargs)
    message.check(limits)
    return message
