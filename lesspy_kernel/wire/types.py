"""Type descriptors (docs/PROTOCOL.md section 5): what a declared C# type travels as, its C# spelling, and the
decoded frames (Call, ErrorReply)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple, Union

from .constants import ErrorKind, Tag


@dataclass(frozen=True)
class ArrayOf:
    """ARRAY descriptor: a 1-D C# array of a primitive (double[], bool[], ...)."""

    dtype: str


@dataclass(frozen=True)
class ListOf:
    """LIST descriptor: T[] of a non-primitive T, List<T>, IReadOnlyList<T>, IList<T>."""

    item: "TypeDesc"


@dataclass(frozen=True)
class DictOf:
    """DICT descriptor: Dictionary<string, T> / IReadOnlyDictionary<string, T>."""

    value: "TypeDesc"


@dataclass(frozen=True)
class ScalarOf:
    """SCALAR descriptor: sbyte, byte, short, ushort, uint, ulong (and enums over them)."""

    dtype: str


@dataclass(frozen=True)
class Nullable:
    """OPTIONAL descriptor: a nullable value type (int?, DateTime?, a struct?)."""

    inner: "TypeDesc"


@dataclass(frozen=True)
class RectArray:
    """RECT_ARRAY descriptor: a rectangular C# array (double[,] is RectArray("float64", 2))."""

    dtype: str
    ndim: int


@dataclass(frozen=True)
class Record:
    """RECORD descriptor: a C# class or struct, field by field (names as they travel: snake_case)."""

    fields: Tuple[Tuple[str, "TypeDesc"], ...]
    name: str = ""          # the C# type's name, for messages
    value_type: bool = False  # a C# struct: never null (a nullable one is Nullable(Record))


# A type descriptor is a Tag for a simple type, a Python tuple of descriptors for a C# ValueTuple, or one of the
# classes above for the parametric types.
TypeDesc = Union[Tag, Tuple["TypeDesc", ...], ArrayOf, ListOf, DictOf, ScalarOf, Nullable, RectArray, Record]

_CSHARP_NAMES = {
    Tag.NONE: "void", Tag.BOOL: "bool", Tag.INT32: "int", Tag.INT64: "long", Tag.FLOAT32: "float",
    Tag.FLOAT64: "double", Tag.STRING: "string", Tag.BYTES: "byte[]", Tag.INT32_ARRAY: "int[]",
    Tag.INT32_JAGGED: "int[][]", Tag.NDARRAY: "NdArray", Tag.DATETIME: "DateTime", Tag.TIMESPAN: "TimeSpan",
    Tag.GUID: "Guid",
}
SIMPLE_DESCS = frozenset(_CSHARP_NAMES)
_DTYPE_CSHARP = {
    "bool": "bool", "int8": "sbyte", "uint8": "byte", "int16": "short", "uint16": "ushort", "int32": "int",
    "uint32": "uint", "int64": "long", "uint64": "ulong", "float16": "Half", "float32": "float", "float64": "double",
    "complex64": "Complex64", "complex128": "Complex",
}
_NULLABLE = (Tag.STRING, Tag.BYTES, Tag.INT32_ARRAY, Tag.INT32_JAGGED, Tag.NDARRAY)


def accepts_none(desc: "TypeDesc") -> bool:
    """True when NONE stands for a value of this type (a null reference, a nullable, or void)."""
    return (desc == Tag.NONE or desc in _NULLABLE or isinstance(desc, (ArrayOf, ListOf, DictOf, Nullable, RectArray))
            or (isinstance(desc, Record) and not desc.value_type))


def csharp_name(desc: TypeDesc) -> str:
    """The C# spelling of a declared type, for error messages."""
    if isinstance(desc, tuple):
        return "(" + ", ".join(csharp_name(d) for d in desc) + ")"
    if isinstance(desc, ArrayOf):
        return _DTYPE_CSHARP[desc.dtype] + "[]"
    if isinstance(desc, ListOf):
        return f"List<{csharp_name(desc.item)}>"
    if isinstance(desc, DictOf):
        return f"Dictionary<string, {csharp_name(desc.value)}>"
    if isinstance(desc, ScalarOf):
        return _DTYPE_CSHARP[desc.dtype]
    if isinstance(desc, Nullable):
        return csharp_name(desc.inner) + "?"
    if isinstance(desc, RectArray):
        return _DTYPE_CSHARP[desc.dtype] + "[" + "," * (desc.ndim - 1) + "]"
    if isinstance(desc, Record):
        return desc.name or "record {" + ", ".join(n for n, _ in desc.fields) + "}"
    return _CSHARP_NAMES[desc]


def field_key(name: str) -> str:
    """How record field names are matched: underscores and the case of ASCII letters do not count (max_value ==
    MaxValue); any other character is compared as it is, as C# WireType.Key does (docs/PROTOCOL.md, Records)."""
    name = name.replace("_", "")
    return name.lower() if name.isascii() else "".join(c.lower() if c.isascii() else c for c in name)


@dataclass
class Call:
    """A decoded call frame."""

    name: str
    returns: TypeDesc
    args: list = field(default_factory=list)
    # with NDARRAY_AT arguments: (end of the frame's values, start and end of the in-place data) in the payload;
    # None: the values fill the payload (what a kept argument's pages are, MappedLane.keep_arguments)
    spans: Optional[Tuple[int, int, int]] = None


@dataclass
class ErrorReply:
    """A decoded error reply frame."""

    kind: ErrorKind
    python_type: str
    message: str
    traceback: str
