"""What a Python value may become for a declared C# type (the policy), kept out of the codec: `coerce` turns a
function's result (or a Python sender's argument) into the normalized form wire.encode writes, or raises
CoercionError saying why not. encode_value and encode_call apply it before encoding, for Python senders (the
reference client, tests, golden vectors)."""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime
import enum
import math
import types
import uuid
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from .wire.constants import (DTYPE_CODE_OF, DTYPE_CODES, FLOAT64, INT32, INT32_RANGE, INT64, INT64_RANGE,
                             KIND_UNSPECIFIED, KIND_UTC, MAX_NDIM, NDARRAY, NONE, TICKS_PER_MICROSECOND, Tag)
from .wire.encode import call_bytes, value_bytes
from .wire.types import (ArrayOf, DictOf, ListOf, Nullable, Record, RectArray, ScalarOf, TypeDesc, accepts_none,
                         csharp_name, field_key)

_F32_MAX = float(np.finfo(np.float32).max)
_INT_RANGES = {name: (int(np.iinfo(name).min), int(np.iinfo(name).max))
               for name in ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64")}
_EPOCH = datetime.datetime(1, 1, 1)
_TIMESPAN_RANGE = INT64_RANGE


class CoercionError(TypeError):
    """A Python value that cannot become the declared C# type."""

    def __init__(self, value: Any, desc: TypeDesc, detail: str = "") -> None:
        self.python_type = python_type_name(value)
        self.csharp_type = csharp_name(desc)
        self.detail = detail
        text = f"cannot convert Python {self.python_type} to C# {self.csharp_type}"
        super().__init__(text + (f": {detail}" if detail else ""))


def python_type_name(value: Any) -> str:
    """A value's type as messages name it (numpy.ndarray[float32], mymodule.Point, int)."""
    t = type(value)
    if t.__module__ in ("builtins", None):
        return t.__name__
    if isinstance(value, np.ndarray):
        return f"numpy.ndarray[{value.dtype}]"
    return f"{t.__module__}.{t.__qualname__}"


def _as_int(value: Any, desc: TypeDesc, lo: int, hi: int) -> int:
    if isinstance(value, enum.Enum) and isinstance(value.value, int):
        value = value.value
    if isinstance(value, (bool, np.bool_)):
        value = int(value)
    elif isinstance(value, np.integer):
        value = int(value)
    elif not isinstance(value, int):
        raise CoercionError(value, desc)
    if not lo <= value <= hi:
        raise CoercionError(value, desc, f"{value} is outside {lo}..{hi}")
    return int(value)


def _as_int32_array(value: Any, desc: TypeDesc) -> np.ndarray:
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, (list, tuple, np.ndarray, range)):
        raise CoercionError(value, desc)
    try:
        arr = np.asarray(value)
    except ValueError as e:  # ragged nested lists
        raise CoercionError(value, desc, str(e)) from None
    if arr.size == 0 and arr.ndim == 1:
        return np.zeros(0, dtype="<i4")
    if arr.ndim != 1 or arr.dtype.kind not in "iub":
        raise CoercionError(value, desc, f"expected a 1-D sequence of integers, got shape {arr.shape} "
                                         f"of {arr.dtype}")
    if arr.dtype.kind in "iu" and arr.size and (arr.min() < INT32_RANGE[0] or arr.max() > INT32_RANGE[1]):
        raise CoercionError(value, desc, "an element is outside the int range")
    return np.ascontiguousarray(arr, dtype="<i4")


# which source dtype kinds each target kind takes without losing meaning (ranges are checked separately)
_KINDS_ACCEPTED = {"b": "b", "i": "biu", "u": "biu", "f": "iuf", "c": "iufc"}


def _as_typed_array(value: Any, desc: TypeDesc, dtype_name: str, ndim: int) -> np.ndarray:
    """Any sequence or array as a C-contiguous little-endian array of `dtype_name` with `ndim` dimensions."""
    if value is None or isinstance(value, (str, bytes, bytearray, dict)) or (
            not isinstance(value, (np.ndarray, collections.abc.Sequence, memoryview, range))
            and not hasattr(value, "__array__")):
        raise CoercionError(value, desc, f"expected a sequence or ndarray of {dtype_name}")
    try:
        arr = np.asarray(value)
    except Exception as e:  # ragged nested lists and the like
        raise CoercionError(value, desc, str(e)) from None
    target = np.dtype(dtype_name).newbyteorder("<")
    if arr.ndim != ndim and not (arr.size == 0 and ndim == 1 and arr.ndim == 1):
        raise CoercionError(value, desc, f"expected {ndim} dimension(s), got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(arr.shape, dtype=target)
    if target.kind in "iu" and arr.dtype.kind in "fO" and ndim == 1 and not isinstance(value, np.ndarray):
        # Python ints beyond int64 (a ulong[] near its top) make NumPy guess float or object: check them as ints
        if all(isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_)) for x in value):
            lo, hi = _INT_RANGES[target.name]
            if min(value) < lo or max(value) > hi:
                raise CoercionError(value, desc, f"an element is outside the {dtype_name} range {lo}..{hi}")
            return np.array([int(x) for x in value], dtype=target)
    if arr.dtype.kind not in _KINDS_ACCEPTED[target.kind]:
        raise CoercionError(value, desc, f"its elements are {arr.dtype}, which cannot become {dtype_name} "
                                         "without losing information")
    if target.kind in "iu" and arr.dtype.kind in "iu":
        lo, hi = _INT_RANGES[target.name]
        if int(arr.min()) < lo or int(arr.max()) > hi:
            raise CoercionError(value, desc, f"an element is outside the {dtype_name} range {lo}..{hi}")
    if target.name in ("float32", "float16") and arr.dtype.kind == "f" and arr.dtype.itemsize > target.itemsize:
        finite = arr[np.isfinite(arr)]
        limit = float(np.finfo(target).max)
        if finite.size and float(np.abs(finite).max()) > limit:
            raise CoercionError(value, desc, f"an element is outside the {dtype_name} range (±{limit:.7g})")
    if any(d > INT32_RANGE[1] for d in arr.shape):
        raise CoercionError(value, desc, f"shape {arr.shape} does not fit a C# array")
    # one copy at most: a non-contiguous, Fortran-ordered, big-endian or other-dtype array is converted here
    return np.ascontiguousarray(arr, dtype=target)


def _record_items(value: Any) -> Optional[Dict[str, Any]]:
    """The fields of a record-like Python value by name, or None when it is not one."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return dict(zip(value._fields, value))
    if isinstance(value, types.SimpleNamespace):
        return dict(vars(value))
    if isinstance(value, collections.abc.Mapping) and all(isinstance(k, str) for k in value):
        return dict(value)
    return None


def _as_record(value: Any, desc: Record) -> tuple:
    items = _record_items(value)
    if items is None:
        raise CoercionError(value, desc, "expected a dataclass, NamedTuple, SimpleNamespace or dict with fields "
                                         + ", ".join(n for n, _ in desc.fields))
    by_key: Dict[str, str] = {}
    for name in items:
        other = by_key.setdefault(field_key(name), name)
        if other != name:
            raise CoercionError(value, desc, f"fields {other!r} and {name!r} both match the same C# member")
    wanted = {field_key(n) for n, _ in desc.fields}
    extra = [n for n in items if field_key(n) not in wanted]
    if extra:
        raise CoercionError(value, desc, f"field(s) {', '.join(extra)} have no C# counterpart in "
                                         f"{csharp_name(desc)}: add them to the C# type or drop them")
    out = []
    for name, d in desc.fields:
        key = by_key.get(field_key(name))
        if key is None:
            raise CoercionError(value, desc, f"it has no field {name!r}, which {csharp_name(desc)} declares")
        try:
            out.append(coerce(items[key], d))
        except CoercionError as e:
            raise CoercionError(value, desc, f"field {key!r}: {e}") from None
    return tuple(out)


def datetime_to_ticks(value: Any, desc: TypeDesc = Tag.DATETIME) -> Tuple[int, int]:
    """(ticks, kind) of a datetime: naive -> unspecified, aware -> converted to UTC."""
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            raise CoercionError(value, desc, "NaT has no C# DateTime")
        value = value.astype("datetime64[us]").item()
        if not isinstance(value, datetime.datetime):
            raise CoercionError(value, desc, "outside the DateTime range")
    elif isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
        value = datetime.datetime(value.year, value.month, value.day)
    if not isinstance(value, datetime.datetime):
        raise CoercionError(value, desc)
    kind = KIND_UNSPECIFIED
    if value.tzinfo is not None and value.utcoffset() is not None:
        try:
            value = value.astimezone(datetime.timezone.utc)
        except OverflowError:
            raise CoercionError(value, desc, "outside the DateTime range once converted to UTC") from None
        kind = KIND_UTC
    td = value.replace(tzinfo=None) - _EPOCH
    return ((td.days * 86400 + td.seconds) * 1_000_000 + td.microseconds) * TICKS_PER_MICROSECOND, kind


def timedelta_to_ticks(value: Any, desc: TypeDesc = Tag.TIMESPAN) -> int:
    if isinstance(value, np.timedelta64):
        if np.isnat(value):
            raise CoercionError(value, desc, "NaT has no C# TimeSpan")
        us = int(value.astype("timedelta64[us]").astype(np.int64))
    elif isinstance(value, datetime.timedelta):
        us = (value.days * 86400 + value.seconds) * 1_000_000 + value.microseconds
    else:
        raise CoercionError(value, desc)
    ticks = us * TICKS_PER_MICROSECOND
    if not _TIMESPAN_RANGE[0] <= ticks <= _TIMESPAN_RANGE[1]:
        raise CoercionError(value, desc, "outside the TimeSpan range (about ±29227 years)")
    return ticks


def _is_sequence(value: Any) -> bool:
    return (isinstance(value, (collections.abc.Sequence, collections.abc.Set, np.ndarray))
            and not isinstance(value, (str, bytes, bytearray, memoryview)))


def _check_utf8(text: str, desc: TypeDesc, what: str = "") -> None:
    """CoercionError for a str UTF-8 cannot carry: a lone surrogate (half of a UTF-16 pair)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise CoercionError(text, desc, f"the {what}str has a lone surrogate at index {e.start} "
                                        f"(U+{ord(text[e.start]):04X}, half of a UTF-16 pair), which UTF-8 and so C# "
                                        "cannot carry; it often comes from bytes decoded with errors='surrogateescape' "
                                        "or from a str cut between the two halves of a pair: repair or replace it, "
                                        "e.g. text.encode('utf-8', 'replace').decode('utf-8')") from None


def coerce(value: Any, desc: TypeDesc) -> Any:
    """Turn a Python value into the normalized form the encoder writes for the declared C# type."""
    kind = type(value)                               # the common results first, already as the encoder wants them
    if kind is int:
        if desc is INT32 and INT32_RANGE[0] <= value <= INT32_RANGE[1] \
                or desc is INT64 and INT64_RANGE[0] <= value <= INT64_RANGE[1]:
            return value
    elif kind is float:
        if desc is FLOAT64:
            return value
    elif value is None:
        if desc is NONE:                             # a void method
            return None
    elif kind is np.ndarray:
        if desc is NDARRAY and value.dtype in DTYPE_CODE_OF and value.flags.c_contiguous and value.ndim <= MAX_NDIM \
                and all(d <= INT32_RANGE[1] for d in value.shape):
            return value
    if isinstance(desc, tuple):
        return _as_tuple(value, desc)
    if value is None:
        if accepts_none(desc):
            return None
        raise CoercionError(value, desc, "None needs a nullable C# type (e.g. int?, a class, a string)"
                            if desc != Tag.NONE else "")
    convert = _BY_DESCRIPTOR.get(type(desc)) or (_BY_TAG.get(desc) if isinstance(desc, int) else None)
    if convert is None:
        raise CoercionError(value, desc, "unsupported declared type")
    return convert(value, desc)


def _as_tuple(value: Any, desc: tuple) -> tuple:
    if isinstance(value, np.ndarray) and value.ndim == 1:
        value = tuple(value.tolist())
    if not isinstance(value, (tuple, list)):
        raise CoercionError(value, desc)
    if len(value) != len(desc):
        raise CoercionError(value, desc, f"{len(value)} elements, expected {len(desc)}")
    items = []
    for i, (v, d) in enumerate(zip(value, desc)):
        try:
            items.append(coerce(v, d))
        except CoercionError as e:
            raise CoercionError(value, desc, f"element {i}: {e}") from None
    return tuple(items)


def _as_list(value: Any, desc: ListOf) -> list:
    if not _is_sequence(value):
        raise CoercionError(value, desc, "expected a list, tuple, set or array")
    items = []
    for i, v in enumerate(value):
        try:
            items.append(coerce(v, desc.item))
        except CoercionError as e:
            raise CoercionError(value, desc, f"element {i}: {e}") from None
    return items


def _as_dict(value: Any, desc: DictOf) -> dict:
    if not isinstance(value, collections.abc.Mapping):
        raise CoercionError(value, desc, "expected a dict")
    out = {}
    for k, v in value.items():
        if not isinstance(k, str):
            raise CoercionError(value, desc, f"key {k!r} is not a str (C# keys are strings)")
        if not k.isascii():
            _check_utf8(k, desc, "key ")
        try:
            out[str(k)] = coerce(v, desc.value)
        except CoercionError as e:
            raise CoercionError(value, desc, f"key {k!r}: {e}") from None
    return out


def _as_void(value: Any, desc: TypeDesc) -> None:
    raise CoercionError(value, desc, "the C# method is declared void, so the function must return None")


def _as_bool(value: Any, desc: TypeDesc) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise CoercionError(value, desc)


def _as_float(value: Any, desc: TypeDesc) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise CoercionError(value, desc)
    try:
        f = float(value)
    except OverflowError:
        raise CoercionError(value, desc, "too large for a double") from None
    if desc == Tag.FLOAT32 and math.isfinite(f) and abs(f) > _F32_MAX:
        raise CoercionError(value, desc, f"{f} is outside the float range (±{_F32_MAX:.7g})")
    return f


def _as_string(value: Any, desc: TypeDesc) -> str:
    if isinstance(value, (str, np.str_)):
        value = str(value)
        if not value.isascii():
            _check_utf8(value, desc)
        return value
    raise CoercionError(value, desc)


def _as_bytes(value: Any, desc: TypeDesc) -> memoryview:
    if isinstance(value, (bytes, bytearray)):
        return memoryview(value)
    if isinstance(value, memoryview):
        return memoryview(value.tobytes()) if not value.contiguous or value.format != "B" else value
    if isinstance(value, np.ndarray) and value.dtype == np.uint8:
        return np.ascontiguousarray(value).reshape(-1).data
    raise CoercionError(value, desc)


def _as_int32_jagged(value: Any, desc: TypeDesc) -> list:
    if not isinstance(value, (list, tuple)):
        raise CoercionError(value, desc)
    rows = []
    for i, row in enumerate(value):
        if row is None:
            raise CoercionError(value, desc, f"row {i} is None, and an int[][] result carries no null rows: "
                                             "return an empty row there, or declare the C# result "
                                             "List<int[]> (whose rows may be null)")
        try:
            rows.append(_as_int32_array(row, Tag.INT32_ARRAY))
        except CoercionError as e:
            raise CoercionError(value, desc, f"row {i}: {e}") from None
    return rows


def _as_ndarray(value: Any, desc: TypeDesc) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except Exception as e:  # numpy raises many types for odd inputs
        raise CoercionError(value, desc, str(e)) from None
    name = arr.dtype.name
    if name not in DTYPE_CODES:
        raise CoercionError(value, desc, f"dtype {arr.dtype} is not supported "
                                         f"(supported: {', '.join(DTYPE_CODES)})")
    if arr.ndim > MAX_NDIM or any(d > INT32_RANGE[1] for d in arr.shape):
        raise CoercionError(value, desc, f"shape {arr.shape} does not fit NdArray.Shape (int[])")
    # astype/copy rather than ascontiguousarray, which would turn a 0-d array into 1-d;
    # a non-contiguous or Fortran-ordered array is copied once into C order here
    arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
    return arr if arr.flags.c_contiguous else arr.copy(order="C")


def _as_guid(value: Any, desc: TypeDesc) -> bytes:
    if isinstance(value, str):
        try:
            value = uuid.UUID(value)
        except ValueError:
            raise CoercionError(value, desc, f"{value!r} is not a UUID") from None
    if isinstance(value, uuid.UUID):
        return value.bytes
    raise CoercionError(value, desc)


# how a non-null value becomes each kind of declared type (tuples and None are handled first, in coerce)
_BY_DESCRIPTOR: Dict[type, Callable[[Any, Any], Any]] = {
    Nullable: lambda value, desc: coerce(value, desc.inner),
    ArrayOf: lambda value, desc: _as_typed_array(value, desc, desc.dtype, 1),
    RectArray: lambda value, desc: _as_typed_array(value, desc, desc.dtype, desc.ndim),
    ScalarOf: lambda value, desc: _as_int(value, desc, *_INT_RANGES[desc.dtype]),
    ListOf: _as_list,
    DictOf: _as_dict,
    Record: _as_record,
}
_BY_TAG: Dict[int, Callable[[Any, Any], Any]] = {
    Tag.NONE: _as_void,
    Tag.BOOL: _as_bool,
    Tag.INT32: lambda value, desc: _as_int(value, desc, *INT32_RANGE),
    Tag.INT64: lambda value, desc: _as_int(value, desc, *INT64_RANGE),
    Tag.FLOAT32: _as_float,
    Tag.FLOAT64: _as_float,
    Tag.STRING: _as_string,
    Tag.BYTES: _as_bytes,
    Tag.INT32_ARRAY: _as_int32_array,
    Tag.INT32_JAGGED: _as_int32_jagged,
    Tag.NDARRAY: _as_ndarray,
    Tag.DATETIME: datetime_to_ticks,
    Tag.TIMESPAN: timedelta_to_ticks,
    Tag.GUID: _as_guid,
}


def describe(value: Any) -> TypeDesc:
    """The natural descriptor for a Python value (used when Python is the sender: tests, golden vectors)."""
    if value is None:
        return Tag.NONE
    if isinstance(value, bool):
        return Tag.BOOL
    if isinstance(value, int):
        return Tag.INT32 if INT32_RANGE[0] <= value <= INT32_RANGE[1] else Tag.INT64
    if isinstance(value, float):
        return Tag.FLOAT64
    if isinstance(value, str):
        return Tag.STRING
    if isinstance(value, (bytes, bytearray, memoryview)):
        return Tag.BYTES
    if isinstance(value, datetime.datetime):
        return Tag.DATETIME
    if isinstance(value, datetime.timedelta):
        return Tag.TIMESPAN
    if isinstance(value, uuid.UUID):
        return Tag.GUID
    items = _record_items(value) if not isinstance(value, (dict, list)) else None
    if items is not None:
        return Record(tuple((n, describe(v)) for n, v in items.items()), type(value).__name__)
    if isinstance(value, tuple):
        return tuple(describe(v) for v in value)
    if isinstance(value, list):
        return Tag.INT32_JAGGED
    if isinstance(value, dict):
        return DictOf(describe(next(iter(value.values()))) if value else Tag.STRING)
    if isinstance(value, np.ndarray):
        return Tag.NDARRAY
    raise TypeError(f"no wire type for {python_type_name(value)}")


def encode_value(value: Any, desc: Optional[TypeDesc] = None) -> bytes:
    """Coerce and encode one value into new bytes (tests, golden vectors)."""
    if desc is None:
        desc = describe(value)
    return value_bytes(coerce(value, desc), desc)


def encode_call(name: str, returns: TypeDesc, args: list, arg_descs: Optional[list] = None) -> bytes:
    """Coerce and encode a call frame (what the C# client sends): the Python client, tests and golden vectors."""
    descs = arg_descs or [describe(a) for a in args]
    return call_bytes(name, returns, [coerce(a, d) for a, d in zip(args, descs)], descs)
