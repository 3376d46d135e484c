"""``@frozen``: the part of ``@dataclass(frozen=True)`` that websh and the agent use.

``dataclasses`` imports ``inspect`` (and with it ``ast``, ``dis``, ``tokenize``, ...) and
``typing``: about 2.5 MiB of resident memory in the agent, whose budget is 20 MB. This
module gives the same behaviour without them:

* fields are the class's own annotations (``ClassVar[...]`` ones excluded) plus those of
  ``@frozen`` bases, in definition order; the class attribute is the default (a
  ``Field`` from ``field()``, or websh's ``spec()``/``optional()``, may also carry a
  default factory, a checker and ``repr=False``);
* a generated ``__init__`` (positional or keyword, exactly the dataclass signature; it
  calls ``__post_init__`` when the class defines one), ``__repr__`` (unless the class
  defines its own), ``__eq__`` (same class, field tuples equal), ``__hash__`` (of the
  field tuple) and ``__match_args__``;
* immutability: assigning or deleting an attribute raises ``FrozenInstanceError``, an
  ``AttributeError``.

``fields(obj_or_cls)`` lists the ``Field`` objects; ``replace(obj, **changes)`` is
``dataclasses.replace``. Standard library only (nothing beyond ``builtins`` is imported),
Python 3.9+.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, TypeVar, dataclass_transform

    T = TypeVar("T")
else:

    def dataclass_transform(**_kwargs: object) -> object:
        return lambda decorated: decorated


__all__ = ["MISSING", "Field", "FrozenInstanceError", "field", "fields", "frozen", "replace"]


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


#: No default.
MISSING: Any = _Sentinel("MISSING")
_FACTORY = _Sentinel("<factory>")  # __init__'s default for a field with a default factory


class FrozenInstanceError(AttributeError):
    """An attribute of a ``@frozen`` instance was assigned or deleted."""


class Field:
    """One field: name, default or default factory, checker (websh), shown by repr."""

    __slots__ = ("check", "default", "default_factory", "name", "repr")

    def __init__(
        self,
        *,
        default: object = MISSING,
        default_factory: Callable[[], object] | None = None,
        check: Callable[..., object] | None = None,
        repr: bool = True,
    ) -> None:
        self.name = ""
        self.default = default
        self.default_factory = default_factory
        self.check = check
        self.repr = repr

    @property
    def required(self) -> bool:
        """True when the constructor needs a value for this field."""
        return self.default is MISSING and self.default_factory is None

    def __repr__(self) -> str:
        return f"Field(name={self.name!r}, default={self.default!r})"


def field(
    *,
    default: object = MISSING,
    default_factory: Callable[[], object] | None = None,
    repr: bool = True,
) -> Any:
    """Declare a field with options (typed ``Any`` so it fits any annotation)."""
    return Field(default=default, default_factory=default_factory, repr=repr)


def fields(obj: object) -> tuple[Field, ...]:
    """The fields of a ``@frozen`` class or instance, in ``__init__`` order."""
    found: tuple[Field, ...] | None = getattr(obj, "__record_fields__", None)
    if found is None:
        raise TypeError("fields() takes a @frozen class or instance")
    return found


def replace(obj: T, **changes: object) -> T:
    """A copy of ``obj`` with ``changes`` applied (``dataclasses.replace``)."""
    for item in fields(obj):
        if item.name not in changes:
            changes[item.name] = getattr(obj, item.name)
    new: T = type(obj)(**changes)
    return new


def _is_classvar(annotation: object) -> bool:
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return text.startswith(("ClassVar", "typing.ClassVar"))


def _collect(cls: type) -> tuple[Field, ...]:
    collected: dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:]):
        for item in base.__dict__.get("__record_fields__", ()):
            collected[item.name] = item
    own = cls.__dict__.get("__annotations__", {})  # noqa: RUF063 - inspect is what we avoid
    for name, annotation in own.items():
        if _is_classvar(annotation):
            continue
        value = cls.__dict__.get(name, MISSING)
        item = value if isinstance(value, Field) else Field(default=value)
        item.name = name
        collected.pop(name, None)
        collected[name] = item
        if item.default is MISSING:
            if name in cls.__dict__:
                delattr(cls, name)
        else:
            setattr(cls, name, item.default)
    return tuple(collected.values())


def _init(cls: type, items: tuple[Field, ...]) -> Callable[..., None]:
    namespace: dict[str, object] = {"_set": object.__setattr__, "_FACTORY": _FACTORY}
    params, body = [], []
    for i, item in enumerate(items):
        name = item.name
        if item.default_factory is not None:
            namespace[f"_factory{i}"] = item.default_factory
            params.append(f"{name}=_FACTORY")
            body.append(f" _set(self, {name!r}, _factory{i}() if {name} is _FACTORY else {name})")
        else:
            if item.default is not MISSING:
                namespace[f"_default{i}"] = item.default
                params.append(f"{name}=_default{i}")
            else:
                params.append(name)
            body.append(f" _set(self, {name!r}, {name})")
    if hasattr(cls, "__post_init__"):
        body.append(" self.__post_init__()")
    source = f"def __init__(self, {', '.join(params)}):\n" + ("\n".join(body) or " pass") + "\n"
    exec(source, namespace)  # noqa: S102 - generated from field names only, like dataclasses
    init: Callable[..., None] = namespace["__init__"]  # type: ignore[assignment]
    return init


@dataclass_transform(frozen_default=True, field_specifiers=(field, Field))
def frozen(cls: type[T]) -> type[T]:
    """Make ``cls`` an immutable record class (see the module docstring)."""
    items = _collect(cls)
    names = tuple(item.name for item in items)
    shown = tuple(item.name for item in items if item.repr)

    def values(self: object) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in names)

    def __repr__(self: object) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in shown)
        return f"{type(self).__qualname__}({inner})"

    def __eq__(self: object, other: object) -> bool:
        if other.__class__ is self.__class__:
            return values(self) == values(other)
        return NotImplemented

    def __hash__(self: object) -> int:
        return hash(values(self))

    def __setattr__(self: object, name: str, value: object) -> None:
        if type(self) is cls or name in names:
            raise FrozenInstanceError(f"cannot assign to field {name!r}")
        object.__setattr__(self, name, value)

    def __delattr__(self: object, name: str) -> None:
        if type(self) is cls or name in names:
            raise FrozenInstanceError(f"cannot delete field {name!r}")
        object.__delattr__(self, name)

    methods: dict[str, Any] = {
        "__init__": _init(cls, items),
        "__repr__": __repr__,
        "__eq__": __eq__,
        "__hash__": __hash__,
        "__setattr__": __setattr__,
        "__delattr__": __delattr__,
    }
    for name, method in methods.items():
        if name not in cls.__dict__ or name == "__hash__":
            method.__qualname__ = f"{cls.__qualname__}.{name}"
            setattr(cls, name, method)
    cls.__record_fields__ = items  # type: ignore[attr-defined]
    cls.__match_args__ = names  # type: ignore[attr-defined,misc]
    return cls
