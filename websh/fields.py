"""Field checkers: one function per kind of value a websh message may carry.

A checker takes the decoded JSON value, the field name and the active ``Limits``; it returns
the value in its Python shape (lists become tuples, enums become members) or raises
``ValidationError`` / ``MessageTooBigError``. Messages declare their checker next to each
field (``spec(check)``), so the schema lives in one place and senders and receivers apply
exactly the same rules. Error reasons name the field and the rule, never the value.

Strings shown to humans (reasons, user names, approvers) refuse control and bidi-override
characters: the CLI prints them into a terminal, and an escape sequence in a reason must
not be able to repaint it.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable

from .errors import MessageTooBigError, ValidationError
from .limits import Limits
from .record import Field

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeVar

    E = TypeVar("E", bound=enum.Enum)

__all__ = [
    "Check",
    "argv_or_command",
    "boolean",
    "enum_of",
    "env_map",
    "ident",
    "ident_list",
    "integer",
    "label",
    "label_list",
    "load_triple",
    "number",
    "optional",
    "optional_factory",
    "secret",
    "spec",
    "string",
    "system_info",
    "terminal_cols",
    "terminal_rows",
    "unix_user",
    "url_path",
]

if TYPE_CHECKING:
    Check = Callable[[object, str, Limits], object]
else:
    Check = Callable  # typing-free at run time: a checker is any such callable

MAX_SAFE_INT = 2**53 - 1  # largest integer every JSON implementation (browsers) keeps exact

_SURROGATE = re.compile("[\ud800-\udfff]")
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_IDENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
_SECRET = re.compile(r"[\x21-\x7e]{1,1024}")
_UNIX_USER = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_INFO_KEY = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_URL_PATH = re.compile(r"/(?!/)[A-Za-z0-9._~!$&'()*+,;=:@%/?-]{0,2047}")


def spec(check: Check) -> Any:
    """Declare a required message field validated by ``check``."""
    return Field(check=check)


def optional(check: Check, default: object = None) -> Any:
    """Declare an optional field: absent or JSON null means ``default``."""
    return Field(default=default, check=check)


def optional_factory(check: Check, factory: Callable[[], object]) -> Any:
    """Declare an optional field whose default is built by ``factory`` (mutable values)."""
    return Field(default_factory=factory, check=check)


def _fail(name: str, rule: str) -> ValidationError:
    return ValidationError(f"field {name!r}: {rule}")


def string(
    *, max_len: int = 0, nonempty: bool = False, printable: bool = False, nul: bool = True
) -> Check:
    """A string up to ``max_len`` characters (0 means ``limits.max_string_length``)."""

    def check(value: object, name: str, limits: Limits) -> object:
        if not isinstance(value, str):
            raise _fail(name, "must be a string")
        if len(value) > limits.max_string_length:
            raise MessageTooBigError(f"field {name!r}: string longer than the limit")
        if max_len and len(value) > max_len:
            raise _fail(name, f"longer than {max_len} characters")
        if nonempty and not value:
            raise _fail(name, "must not be empty")
        if _SURROGATE.search(value):
            raise _fail(name, "contains a lone surrogate")
        if printable and _UNPRINTABLE.search(value):
            raise _fail(name, "contains control characters")
        if not nul and "\x00" in value:
            raise _fail(name, "contains NUL")
        return value

    return check


def label(max_len: int = 256, *, nonempty: bool = False) -> Check:
    """Short human-readable text, safe to print in a terminal."""
    return string(max_len=max_len, nonempty=nonempty, printable=True)


def _pattern(regex: re.Pattern[str], rule: str) -> Check:
    def check(value: object, name: str, limits: Limits) -> object:
        if not isinstance(value, str) or regex.fullmatch(value) is None:
            raise _fail(name, rule)
        return value

    return check


ident = _pattern(_IDENT, "must be an id of 1-128 characters [A-Za-z0-9._:@-]")
secret = _pattern(_SECRET, "must be 1-1024 printable ASCII characters without spaces")
unix_user = _pattern(_UNIX_USER, "must be a valid unix user name")
url_path = _pattern(_URL_PATH, "must be an absolute URL path without scheme or host")


def integer(low: int, high: int = MAX_SAFE_INT) -> Check:
    """An integer (not a bool) in ``low..high``."""

    def check(value: object, name: str, limits: Limits) -> object:
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise _fail(name, f"must be an integer in {low}..{high}")
        return value

    return check


def number(low: float, high: float) -> Check:
    """A finite number (int or float, not a bool) in ``low..high``, returned as float."""

    def check(value: object, name: str, limits: Limits) -> object:
        if (
            not isinstance(value, (int, float))
            or isinstance(value, bool)
            or not math.isfinite(value)
            or not low <= value <= high
        ):
            raise _fail(name, f"must be a number in {low:g}..{high:g}")
        return float(value)

    return check


def boolean(value: object, name: str, limits: Limits) -> object:
    """JSON true/false only (no 0/1)."""
    if not isinstance(value, bool):
        raise _fail(name, "must be true or false")
    return value


def terminal_cols(value: object, name: str, limits: Limits) -> object:
    """Terminal width, bounded by ``limits.max_cols``."""
    return integer(1, limits.max_cols)(value, name, limits)


def terminal_rows(value: object, name: str, limits: Limits) -> object:
    """Terminal height, bounded by ``limits.max_rows``."""
    return integer(1, limits.max_rows)(value, name, limits)


def enum_of(kind: type[E]) -> Check:
    """A string naming one member value of ``kind``."""
    allowed = ", ".join(str(member.value) for member in kind)

    def check(value: object, name: str, limits: Limits) -> object:
        for member in kind:
            if member.value == value and isinstance(value, str):
                return member
        raise _fail(name, f"must be one of: {allowed}")

    return check


def _list(value: object, name: str, item: Check, limits: Limits) -> tuple[object, ...]:
    if not isinstance(value, list):
        raise _fail(name, "must be an array")
    return tuple(item(element, name, limits) for element in value)


def ident_list(value: object, name: str, limits: Limits) -> object:
    """An array of ids."""
    return _list(value, name, ident, limits)


def label_list(value: object, name: str, limits: Limits) -> object:
    """An array of short printable labels (approvers, MFA methods)."""
    return _list(value, name, label(nonempty=True), limits)


_ARG = string(nul=False)
_COMMAND = string(nonempty=True, nul=False)


def argv_or_command(value: object, name: str, limits: Limits) -> object:
    """A shell command string, or an argv array whose first element is not empty."""
    if isinstance(value, str):
        return _COMMAND(value, name, limits)
    argv = _list(value, name, _ARG, limits)
    if not argv or not argv[0]:
        raise _fail(name, "argv must have a non-empty first element")
    return argv


def _object(value: object, name: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise _fail(name, "must be an object")
    return value


_ENV_VALUE = string(nul=False)


def env_map(value: object, name: str, limits: Limits) -> object:
    """Environment variables: POSIX-ish names, values without NUL."""
    result: dict[str, str] = {}
    for key, item in _object(value, name).items():
        if _ENV_NAME.fullmatch(key) is None:
            raise _fail(name, "has an invalid variable name")
        result[key] = str(_ENV_VALUE(item, name, limits))
    return result


_INFO_TEXT = string(max_len=1024, printable=True)


def system_info(value: object, name: str, limits: Limits) -> object:
    """Short keys to JSON values: scalars, or lists and maps of them (disks, addresses).

    Nesting, key counts and string lengths are bounded by the codec's limits.
    """
    return _info_value(_object(value, name), name, limits)


def _info_value(item: object, name: str, limits: Limits) -> object:
    if isinstance(item, dict):
        result: dict[str, object] = {}
        for key, inner in item.items():
            if not isinstance(key, str) or _INFO_KEY.fullmatch(key) is None:
                raise _fail(name, "keys must be 1-64 characters [A-Za-z0-9_.-]")
            result[key] = _info_value(inner, name, limits)
        return result
    if isinstance(item, list):
        return [_info_value(inner, name, limits) for inner in item]
    if isinstance(item, str):
        return _INFO_TEXT(item, name, limits)
    if item is None or isinstance(item, (bool, int)):
        return item
    if isinstance(item, float):
        return number(-math.inf, math.inf)(item, name, limits)
    raise _fail(name, "values must be JSON objects, arrays, strings, numbers, booleans or null")


_LOAD = number(0.0, 1e6)


def load_triple(value: object, name: str, limits: Limits) -> object:
    """The 1, 5 and 15 minute load averages."""
    loads = _list(value, name, _LOAD, limits)
    if len(loads) != 3:
        raise _fail(name, "must hold exactly three load averages")
    return loads
