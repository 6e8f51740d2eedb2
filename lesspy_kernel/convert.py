"""Decoded arguments as the types a function's hints name: records as dataclasses or NamedTuples, ints as enums.

The decoder knows nothing of the function it decodes for, so a C# record arrives as a `types.SimpleNamespace`
(fields in snake_case) and a C# enum as an `int`. When the function's hint names a dataclass, a NamedTuple or an
`enum.Enum`, the dispatcher hands it that type instead, recursively (a list of records, a record inside a record,
an Optional record). Without such a hint the argument stays as decoded. Pure: no I/O.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import enum
import functools
import inspect
import sys
import types
import typing
from typing import Any, Dict, Optional, Tuple

from .wire import field_key

_UNION_TYPES: Tuple[Any, ...] = (typing.Union,)
if sys.version_info >= (3, 10):
    _UNION_TYPES += (types.UnionType,)

class ConversionError(ValueError):
    """An argument that cannot become the type its hint names; the message says which and why."""


def _is_record_class(hint: Any) -> bool:
    return isinstance(hint, type) and (dataclasses.is_dataclass(hint)
                                       or (issubclass(hint, tuple) and hasattr(hint, "_fields")))


def needs_conversion(hint: Any, depth: int = 0) -> bool:
    """True when `hint` names a record or enum type somewhere (so decoded values must be converted)."""
    if depth > 8 or hint is None:
        return False
    if _is_record_class(hint) or (isinstance(hint, type) and issubclass(hint, enum.Enum)):
        return True
    return any(needs_conversion(a, depth + 1) for a in typing.get_args(hint) if a is not Ellipsis)


def _field_hints(cls: type) -> Dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # a hint that does not resolve: convert that field as it came
        return {}


def _record_fields(cls: type) -> Dict[str, bool]:
    """Field name -> required (no default), in order."""
    if dataclasses.is_dataclass(cls):
        return {f.name: f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
                for f in dataclasses.fields(cls) if f.init}
    defaults = getattr(cls, "_field_defaults", {})
    return {name: name not in defaults for name in cls._fields}  # type: ignore[attr-defined]


def _to_record(value: Any, cls: type, where: str) -> Any:
    if isinstance(value, cls):
        return value
    if isinstance(value, types.SimpleNamespace):
        items = dict(vars(value))
    elif isinstance(value, collections.abc.Mapping):
        items = dict(value)
    else:
        raise ConversionError(f"{where} is annotated {cls.__name__} but C# sends {type(value).__name__}: "
                              f"declare a C# class or struct with the fields of {cls.__name__}")
    fields = _record_fields(cls)
    by_key = {field_key(name): name for name in fields}
    hints = _field_hints(cls)
    kwargs = {}
    for name, v in items.items():
        target = by_key.get(field_key(name))
        if target is None:
            raise ConversionError(f"{where}: C# sends the field {name!r}, which {cls.__name__} does not have "
                                  f"(its fields: {', '.join(fields)}); add it to {cls.__name__} or remove it from "
                                  "the C# type")
        kwargs[target] = convert(v, hints.get(target), f"{where}.{target}")
    missing = [name for name, required in fields.items() if required and name not in kwargs]
    if missing:
        raise ConversionError(f"{where}: C# sends no field for {', '.join(missing)} of {cls.__name__}; add a public "
                              f"property for each to the C# type (snake_case here is PascalCase there)")
    try:
        return cls(**kwargs)
    except Exception as e:  # __post_init__ validation and the like: the user's own check
        raise ConversionError(f"{where}: {cls.__name__}(...) refused the fields C# sent: {type(e).__name__}: {e}") from None


def convert(value: Any, hint: Any, where: str = "argument") -> Any:
    """`value` as the type `hint` names where that is a record or an enum (recursively); otherwise `value`."""
    if value is None or hint is None or not needs_conversion(hint):
        return value
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        return convert(value, typing.get_args(hint)[0], where)
    if origin in _UNION_TYPES:
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return convert(value, options[0], where) if len(options) == 1 else value
    if _is_record_class(hint):
        return _to_record(value, hint, where)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        if isinstance(value, hint):
            return value
        try:
            return hint(value)
        except ValueError:
            members = ", ".join(f"{m.name}={m.value!r}" for m in hint)
            raise ConversionError(f"{where}: C# sends {value!r}, which is not a member of {hint.__name__} "
                                  f"({members})") from None
    args = typing.get_args(hint)
    if origin in (list, collections.abc.Sequence, collections.abc.MutableSequence, collections.abc.Iterable,
                  collections.abc.Collection) and len(args) == 1 and isinstance(value, list):
        return [convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple and isinstance(value, tuple):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) == len(value):
            return tuple(convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin in (dict, collections.abc.Mapping, collections.abc.MutableMapping) and len(args) == 2 \
            and isinstance(value, dict):
        return {k: convert(v, args[1], f"{where}[{k!r}]") for k, v in value.items()}
    return value


def resolved_hints(fn: Any) -> Dict[str, Any]:
    """The function's evaluated hints by parameter name (string annotations resolved where they can be)."""
    target = fn
    if not (inspect.isroutine(fn) or isinstance(fn, functools.partial)) and hasattr(fn, "__call__"):
        target = fn.__call__          # a callable object: its __call__ carries the hints
    if isinstance(fn, functools.partial):
        target = fn.func
    try:
        return typing.get_type_hints(target, include_extras=True)
    except Exception:
        try:
            return {k: v for k, v in getattr(target, "__annotations__", {}).items() if not isinstance(v, str)}
        except Exception:
            return {}


def plan(fn: Any, names: Tuple[str, ...]) -> Optional[Dict[int, Tuple[str, Any]]]:
    """Which positional arguments (by index) need converting, with their parameter name and hint; None: none do."""
    hints = resolved_hints(fn)
    out = {i: (name, hints[name]) for i, name in enumerate(names) if name in hints and needs_conversion(hints[name])}
    return out or None


__all__ = ["ConversionError", "convert", "needs_conversion", "plan", "resolved_hints"]
