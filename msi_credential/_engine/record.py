"""Records: the engine's value classes, with what ``@dataclass(frozen=True)`` gave them and not its import cost.

``dataclasses`` writes and compiles the methods of each class when the class is defined (about half a millisecond
a class, and a first token's path defines more than twenty). A ``Record`` subclass declares its fields the same way
(annotations, defaults, ``field(default_factory=..., repr=False)``) and shares one ``__init__``, ``__repr__``,
``__eq__`` and ``__hash__`` written once here; defining one costs a dictionary walk. Type checkers read records as
frozen dataclasses (``dataclass_transform``), so every constructor call is checked as before.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Optional, TypeVar

from typing_extensions import dataclass_transform

_MISSING: Any = object()
_RecordT = TypeVar("_RecordT", bound="Record")


class _Field:
    __slots__ = ("compared", "default", "factory", "shown")

    def __init__(
        self, default: Any, factory: Optional[Callable[[], Any]], shown: bool, compared: bool
    ) -> None:
        self.default = default
        self.factory = factory
        self.shown = shown
        self.compared = compared


def field(
    *,
    default: Any = _MISSING,
    default_factory: Optional[Callable[[], Any]] = None,
    repr: bool = True,
    compare: bool = True,
) -> Any:
    """A field's default (or a factory called per instance), whether ``repr`` shows it (secrets: not) and whether
    equality and the hash compare it."""
    if default is not _MISSING and default_factory is not None:
        raise ValueError("cannot specify both default and default_factory")
    return _Field(default, default_factory, repr, compare)


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
class Record:
    """A value class: fields from the annotations, in order; frozen unless defined with ``frozen=False``."""

    _fields: ClassVar[tuple[str, ...]] = ()
    _shown: ClassVar[tuple[str, ...]] = ()
    _compared: ClassVar[tuple[str, ...]] = ()
    _defaults: ClassVar[dict[str, Any]] = {}
    _factories: ClassVar[dict[str, Callable[[], Any]]] = {}
    _frozen: ClassVar[bool] = True

    def __init_subclass__(cls, frozen: bool = True, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fields, shown, compared = list(cls._fields), list(cls._shown), list(cls._compared)
        defaults, factories = dict(cls._defaults), dict(cls._factories)
        # on 3.9 to 3.13 a class's own annotations are in its __dict__ (strings, under the future import)
        for name, annotation in cls.__dict__.get("__annotations__", {}).items():  # noqa: RUF063
            if str(annotation).startswith(("ClassVar", "typing.ClassVar")):
                continue
            value = cls.__dict__.get(name, _MISSING)
            if value is not _MISSING:
                delattr(
                    cls, name
                )  # the instance holds every field: a function default must not become a method
            spec = value if isinstance(value, _Field) else _Field(value, None, True, True)
            if spec.factory is not None:
                factories[name] = spec.factory
            elif spec.default is not _MISSING:
                defaults[name] = spec.default
            elif defaults or factories:
                raise TypeError(
                    f"{cls.__name__}: field {name!r} without a default follows one with a default"
                )
            if name not in fields:
                fields.append(name)
            if spec.shown and name not in shown:
                shown.append(name)
            if spec.compared and name not in compared:
                compared.append(name)
        cls._fields, cls._shown, cls._compared = tuple(fields), tuple(shown), tuple(compared)
        cls._defaults, cls._factories, cls._frozen = defaults, factories, frozen
        if not frozen:
            cls.__hash__ = None  # type: ignore[assignment]  # mutable and compared by value, like a dataclass

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        cls = type(self)
        fields = cls._fields
        if len(args) > len(fields):
            raise TypeError(
                f"{cls.__name__}() takes {len(fields)} positional arguments but {len(args)} were given"
            )
        values = dict(zip(fields, args))
        for name, value in kwargs.items():
            if name in values:
                raise TypeError(f"{cls.__name__}() got multiple values for argument {name!r}")
            if name not in fields:
                raise TypeError(f"{cls.__name__}() got an unexpected keyword argument {name!r}")
            values[name] = value
        own = self.__dict__
        for name in fields:
            if name in values:
                own[name] = values[name]
            elif name in cls._defaults:
                own[name] = cls._defaults[name]
            elif name in cls._factories:
                own[name] = cls._factories[name]()
            else:
                raise TypeError(f"{cls.__name__}() missing required argument: {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if self._frozen:
            raise AttributeError(f"cannot assign to field {name!r} of a frozen {type(self).__name__}")
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        if self._frozen:
            raise AttributeError(f"cannot delete field {name!r} of a frozen {type(self).__name__}")
        object.__delattr__(self, name)

    def _values(self) -> tuple[Any, ...]:
        own = self.__dict__
        return tuple(own[name] for name in self._compared)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Record)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        own = self.__dict__
        shown = ", ".join(f"{name}={own[name]!r}" for name in self._shown)
        return f"{type(self).__name__}({shown})"


def replace(record: _RecordT, **changes: Any) -> _RecordT:
    """A copy of ``record`` with ``changes`` (``dataclasses.replace`` for records)."""
    values = dict(record.__dict__)
    values.update(changes)
    return type(record)(**values)
