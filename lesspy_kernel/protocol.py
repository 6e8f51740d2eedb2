"""The lesspy wire format (docs/PROTOCOL.md): bytes in, values out, no I/O.

Decoding returns zero-copy, read-only NumPy views over the buffer it was given; every length is checked
against the buffer before anything is allocated, so a hostile frame raises `FrameError` and nothing else.
Encoding is two passes over the same code (measure, then write) so a result that does not fit is refused
before a byte of the mapping is touched.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime
import enum
import math
import struct
import threading
import types
import uuid
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np

PROTOCOL_VERSION = 2
HEADER_SIZE = 64
MAPPING_MAGIC = b"LPYM"
MAX_NAME_BYTES = 1024
MAX_NDIM = 32
MAX_TUPLE = 7

# magic, version, header size, capacity, sequence, payload length, status, waiting, session id, cancel, flags, reserved
HEADER = struct.Struct("<4sHHQQQIIQQ8x")
CAPACITY_OFFSET = 8
SEQUENCE_OFFSET = 16
WAITING_OFFSET = 36
SESSION_OFFSET = 40
CANCEL_OFFSET = 48
FLAGS_OFFSET = 56               # request file only: u32 flags the client sets with each call
FLAG_REPLY_IN_REQUEST = 1       # the client takes an NDARRAY_IN_REQUEST reply (PROTOCOL.md section 7)
LENGTH_OFFSET = 24
STATUS_OFFSET = 32
# The header read through typed views, one aligned load or store per field: indices of its u64 words and u32 ints
CAPACITY_WORD = CAPACITY_OFFSET // 8
SEQUENCE_WORD = SEQUENCE_OFFSET // 8
LENGTH_WORD = LENGTH_OFFSET // 8
SESSION_WORD = SESSION_OFFSET // 8
CANCEL_WORD = CANCEL_OFFSET // 8
STATUS_INT = STATUS_OFFSET // 4
WAITING_INT = WAITING_OFFSET // 4
FLAGS_INT = FLAGS_OFFSET // 4
# the first word of every valid header (magic, version, header size), checked with one comparison
FIRST_WORD = int.from_bytes(HEADER.pack(MAPPING_MAGIC, PROTOCOL_VERSION, HEADER_SIZE, 0, 0, 0, 0, 0, 0, 0)[:8],
                            "little")
# what an error reply keeps at most of each part (issue: a hostile exception must not outgrow the reply)
MAX_ERROR_TYPE = 256
MAX_ERROR_MESSAGE = 64 * 1024
MAX_ERROR_TRACEBACK = 256 * 1024
_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_I64 = struct.Struct("<q")
_U64 = struct.Struct("<Q")
_F32 = struct.Struct("<f")
_F64 = struct.Struct("<d")

STATUS_OK = 0
STATUS_ERROR = 1
STATUS_END = 2                  # response: the stream has no more items (or was closed)
# request statuses: what the lane's request file asks for
REQUEST_CALL = 0
REQUEST_NEXT = 1                # the next item of the lane's open stream
REQUEST_CLOSE = 2               # close the lane's open stream
REQUEST_STREAM = 3              # a call whose result is streamed item by item (C# IEnumerable<T>)


class Tag(IntEnum):
    """Value type tags: the first byte of every value, and the type descriptors of declared C# types."""

    NONE = 0x00
    BOOL = 0x01
    INT32 = 0x02
    INT64 = 0x03
    FLOAT32 = 0x04
    FLOAT64 = 0x05
    STRING = 0x06
    BYTES = 0x07
    INT32_ARRAY = 0x08
    INT32_JAGGED = 0x09
    TUPLE = 0x0A
    NDARRAY = 0x0B
    NDARRAY_AT = 0x0C      # requests only: an NDARRAY whose data lies further on in the payload
    ARRAY = 0x0D           # a 1-D array of one dtype (double[], bool[], ...)
    LIST = 0x0E            # count, then tagged values (string[], List<T>, ...)
    DICT = 0x0F            # count, then UTF-8 key + tagged value pairs (Dictionary<string, T>)
    DATETIME = 0x10
    TIMESPAN = 0x11
    GUID = 0x12
    SCALAR = 0x13          # an integer of a dtype with no tag of its own (byte, short, uint, ...)
    RECORD = 0x14          # field count, then name + tagged value pairs (a class/struct <-> a dataclass)
    OPTIONAL = 0x15        # descriptors only: a nullable value type (int?): NONE or the inner value
    RECT_ARRAY = 0x16      # descriptors only: a rectangular C# array (double[,]), carried as NDARRAY
    NDARRAY_IN_REQUEST = 0x17  # replies only: an NdArray result whose data is part of the request's payload


# hot-path aliases: an enum member is a class attribute lookup (~70 ns) each time
_NONE, _INT32, _INT64, _FLOAT64, _NDARRAY = Tag.NONE, Tag.INT32, Tag.INT64, Tag.FLOAT64, Tag.NDARRAY


class ErrorKind(IntEnum):
    """What went wrong, so the C# side can throw the matching exception type."""

    PYTHON_ERROR = 1
    FUNCTION_NOT_FOUND = 2
    BAD_ARGUMENTS = 3
    RESULT_MISMATCH = 4
    PAYLOAD_TOO_LARGE = 5
    MALFORMED_REQUEST = 6
    SERVER_ERROR = 7
    CANCELLED = 8
    INTERRUPTED = 9


DTYPE_CODES = {
    "bool": 1, "int8": 2, "uint8": 3, "int16": 4, "uint16": 5, "int32": 6, "uint32": 7,
    "int64": 8, "uint64": 9, "float16": 10, "float32": 11, "float64": 12, "complex64": 13, "complex128": 14,
}
DTYPE_NAMES = {code: name for name, code in DTYPE_CODES.items()}
_DTYPES = {code: np.dtype(name).newbyteorder("<") for code, name in DTYPE_NAMES.items()}   # made once: ~0.7 µs each
# the code of a little-endian (or byte-order-free) dtype, looked up by the dtype itself: a big-endian one is absent
DTYPE_CODE_OF = {dtype: code for code, dtype in _DTYPES.items()}
# the integer dtypes a SCALAR carries (int32 and int64 have tags of their own)
SCALAR_DTYPES = ("int8", "uint8", "int16", "uint16", "uint32", "uint64")
MAX_DEPTH = 32          # nesting of values and descriptors (lists of lists of records ...)
MAX_FIELDS = 1024       # fields of one record
MAX_RECT_NDIM = 32


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
_SIMPLE_DESCS = frozenset(_CSHARP_NAMES)
_DTYPE_CSHARP = {
    "bool": "bool", "int8": "sbyte", "uint8": "byte", "int16": "short", "uint16": "ushort", "int32": "int",
    "uint32": "uint", "int64": "long", "uint64": "ulong", "float16": "Half", "float32": "float", "float64": "double",
    "complex64": "Complex64", "complex128": "Complex",
}
_NULLABLE = (Tag.STRING, Tag.BYTES, Tag.INT32_ARRAY, Tag.INT32_JAGGED, Tag.NDARRAY)
_I32_RANGE = (-(2**31), 2**31 - 1)
_I64_RANGE = (-(2**63), 2**63 - 1)
_F32_MAX = float(np.finfo(np.float32).max)
_INT_RANGES = {name: (int(np.iinfo(name).min), int(np.iinfo(name).max))
               for name in ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64")}

# DateTime / TimeSpan: 100 ns ticks; DateTime counts from 0001-01-01T00:00:00
TICKS_PER_MICROSECOND = 10
MAX_DATETIME_TICKS = 3155378975999999999           # DateTime.MaxValue.Ticks
_EPOCH = datetime.datetime(1, 1, 1)
_TIMESPAN_RANGE = (-(2**63), 2**63 - 1)
KIND_UNSPECIFIED = 0
KIND_UTC = 1


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


class FrameError(ValueError):
    """A frame that does not follow docs/PROTOCOL.md: says where and what was expected."""

    def __init__(self, offset: int, what: str) -> None:
        super().__init__(f"malformed frame at byte {offset}: {what}")
        self.offset = offset
        self.what = what


class TextError(FrameError):
    """A string in a request that is not UTF-8 because it carries a lone UTF-16 surrogate: the client's string
    was broken, not the client's idea of the protocol."""


class CoercionError(TypeError):
    """A Python value that cannot become the declared C# type."""

    def __init__(self, value: Any, desc: TypeDesc, detail: str = "") -> None:
        self.python_type = python_type_name(value)
        self.csharp_type = csharp_name(desc)
        self.detail = detail
        text = f"cannot convert Python {self.python_type} to C# {self.csharp_type}"
        super().__init__(text + (f": {detail}" if detail else ""))


def python_type_name(value: Any) -> str:
    t = type(value)
    if t.__module__ in ("builtins", None):
        return t.__name__
    if isinstance(value, np.ndarray):
        return f"numpy.ndarray[{value.dtype}]"
    return f"{t.__module__}.{t.__qualname__}"


@dataclass
class Call:
    """A decoded call frame."""

    name: str
    returns: TypeDesc
    args: list = field(default_factory=list)
    # with NDARRAY_AT arguments: (end of the frame's values, start and end of the in-place data) in the payload;
    # None: the values fill the payload (what a kept argument's pages are, Lane._keep_args)
    spans: Optional[Tuple[int, int, int]] = None


@dataclass
class ErrorReply:
    """A decoded error reply frame."""

    kind: ErrorKind
    python_type: str
    message: str
    traceback: str


# ---------------------------------------------------------------- header

def write_header(buf: memoryview, capacity: int, session: int = 0) -> None:
    """Initialise a fresh mapping's header (magic, version, header size, capacity, session id)."""
    HEADER.pack_into(buf, 0, MAPPING_MAGIC, PROTOCOL_VERSION, HEADER_SIZE, capacity, 0, 0, 0, 0, session, 0)


def restore_header(buf: memoryview, capacity: int, session: int) -> None:
    """Write a fresh header over `buf`, all but its `waiting` field: the other side's, which it may have set
    already (a 0 written there would cancel the wake-up byte it waits for)."""
    fresh = bytearray(HEADER_SIZE)
    write_header(memoryview(fresh), capacity, session)
    buf[:WAITING_OFFSET] = fresh[:WAITING_OFFSET]
    buf[WAITING_OFFSET + 4:HEADER_SIZE] = fresh[WAITING_OFFSET + 4:]


def read_header(buf: memoryview) -> Tuple[int, int, int]:
    """Check a mapping's header and return (sequence, payload length, status)."""
    if len(buf) < HEADER_SIZE:
        raise FrameError(0, f"a mapping needs at least {HEADER_SIZE} bytes, this one has {len(buf)}")
    magic, version, hsize, capacity, seq, length, status = HEADER.unpack_from(buf, 0)[:7]
    if magic != MAPPING_MAGIC:
        raise FrameError(0, f"mapping magic {magic!r}, expected {MAPPING_MAGIC!r}")
    if version != PROTOCOL_VERSION or hsize != HEADER_SIZE:
        raise FrameError(4, f"mapping version {version} header {hsize}, expected {PROTOCOL_VERSION}/{HEADER_SIZE}")
    if length > len(buf) - HEADER_SIZE:
        raise FrameError(24, f"payload length {length} exceeds the mapping's {len(buf) - HEADER_SIZE} payload bytes")
    return seq, length, status


def ndarray_data_offset(ndim: int) -> int:
    """Where a top-level NDARRAY value's data starts in a payload: after its tag, dtype code, ndim and shape,
    padded to a multiple of 64 so the data is aligned for any dtype and for SIMD loads."""
    return (3 + 8 * ndim + 63) // 64 * 64


# ---------------------------------------------------------------- decoding

class _Reader:
    __slots__ = ("buf", "pos", "at_start", "at_end")

    def __init__(self, buf: memoryview) -> None:
        self.buf = buf
        self.pos = 0
        self.at_start = -1      # NDARRAY_AT data: lowest offset and highest end seen (-1: none)
        self.at_end = -1

    def need(self, n: int, what: str) -> int:
        if n < 0 or self.pos + n > len(self.buf):
            raise FrameError(self.pos, f"{what} needs {n} bytes, {len(self.buf) - self.pos} left")
        start = self.pos
        self.pos += n
        return start

    def unpack(self, s: struct.Struct, what: str) -> Any:
        return s.unpack_from(self.buf, self.need(s.size, what))[0]

    def align(self, n: int) -> None:
        pad = -self.pos % n
        self.need(pad, "padding")

    def left(self) -> int:
        return len(self.buf) - self.pos


_EMPTY_INT32 = np.zeros(0, dtype="<i4")
_EMPTY_INT32.flags.writeable = False


def _decode_int32_array(r: _Reader) -> np.ndarray:
    count = r.unpack(_U32, "int[] count")
    r.align(8)
    start = r.need(4 * count, f"int[] of {count} elements")
    r.align(8)
    if count == 0:  # one shared view: 8 bytes of frame must not cost a 300-byte array (INT32_JAGGED rows)
        return _EMPTY_INT32
    arr = np.frombuffer(r.buf, dtype="<i4", count=count, offset=start)
    arr.flags.writeable = False
    return arr


def _dtype_at(r: _Reader, what: str, allowed: Optional[Tuple[str, ...]] = None) -> np.dtype:
    at = r.pos
    code = r.unpack(_U8, what + " dtype code")
    name = DTYPE_NAMES.get(code)
    if name is None or (allowed is not None and name not in allowed):
        raise FrameError(at, f"{what} dtype code {code} is not one of "
                             f"{', '.join(str(DTYPE_CODES[n]) for n in (allowed or DTYPE_CODES))}")
    return _DTYPES[code]


def _decode_shape(r: _Reader, what: str) -> Tuple[np.dtype, Tuple[int, ...], int]:
    at = r.pos
    dtype = _dtype_at(r, what)
    ndim = r.unpack(_U8, "ndim")
    if ndim > MAX_NDIM:
        raise FrameError(at + 1, f"ndim {ndim} exceeds {MAX_NDIM}")
    start = r.need(8 * ndim, f"shape of {ndim} dimensions")
    shape = struct.unpack_from(f"<{ndim}Q", r.buf, start)
    if any(dim > _I64_RANGE[1] for dim in shape):
        raise FrameError(start, f"shape {shape} has a dimension beyond int64")
    count = 1
    for dim in shape:
        count *= dim
    return dtype, shape, count


def _view(r: _Reader, at: int, dtype: np.dtype, shape: Tuple[int, ...], count: int, offset: int) -> np.ndarray:
    try:
        arr = np.frombuffer(r.buf, dtype=dtype, count=count, offset=offset).reshape(shape)
    except ValueError as e:  # e.g. an empty array whose other dimensions overflow NumPy's size
        raise FrameError(at, f"shape {shape}: {e}") from None
    arr.flags.writeable = False
    return arr


def _decode_ndarray(r: _Reader) -> np.ndarray:
    at = r.pos
    dtype, shape, count = _decode_shape(r, "NDARRAY")
    r.align(64)
    nbytes = count * dtype.itemsize
    if nbytes > r.left():
        raise FrameError(r.pos, f"array of shape {shape} needs {nbytes} bytes, {r.left()} left")
    return _view(r, at, dtype, shape, count, r.need(nbytes, "array data"))


def _decode_shape_and_offset(r: _Reader, what: str) -> Tuple[np.dtype, Tuple[int, ...], int, int, int]:
    """The body of NDARRAY_AT and NDARRAY_IN_REQUEST: dtype, shape, element count, then (after padding to 8)
    the data offset and where it was read."""
    dtype, shape, count = _decode_shape(r, what)
    r.align(8)
    where = r.pos
    return dtype, shape, count, where, r.unpack(_U64, what + " data offset")


def _decode_ndarray_at(r: _Reader) -> np.ndarray:
    at = r.pos
    dtype, shape, count, where, offset = _decode_shape_and_offset(r, "NDARRAY_AT")
    nbytes = count * dtype.itemsize
    if offset % 64:
        raise FrameError(where, f"NDARRAY_AT data offset {offset} is not a multiple of 64")
    if offset < r.pos:
        raise FrameError(where, f"NDARRAY_AT data offset {offset} overlaps the frame before it (which ends at {r.pos})")
    if offset > len(r.buf) or nbytes > len(r.buf) - offset:
        raise FrameError(where, f"NDARRAY_AT data of {nbytes} bytes at offset {offset} lies beyond the "
                                f"{len(r.buf)}-byte payload")
    r.at_start = offset if r.at_start < 0 else min(r.at_start, offset)
    r.at_end = max(r.at_end, offset + nbytes)
    return _view(r, at, dtype, shape, count, offset)


def _decode_array(r: _Reader) -> np.ndarray:
    at = r.pos
    dtype = _dtype_at(r, "ARRAY")
    count = r.unpack(_U32, "ARRAY count")
    r.align(8)
    nbytes = count * dtype.itemsize
    start = r.need(nbytes, f"ARRAY of {count} {dtype.name}")
    r.align(8)
    if dtype.kind == "b" and count and np.frombuffer(r.buf, np.uint8, nbytes, start).max() > 1:
        raise FrameError(start, "a bool[] element is neither 0 nor 1")
    return _view(r, at, dtype, (count,), count, start)


def _decode_utf8(r: _Reader, n: int, what: str) -> str:
    start = r.need(n, what)
    try:
        return bytes(r.buf[start:start + n]).decode("utf-8")
    except UnicodeDecodeError as e:
        bad = bytes(r.buf[start + e.start:start + e.start + 3])
        if len(bad) == 3 and bad[0] == 0xED and 0xA0 <= bad[1] <= 0xBF:     # U+D800..U+DFFF, encoded alone
            unit = 0xD000 | (bad[1] & 0x3F) << 6 | bad[2] & 0x3F
            raise TextError(start + e.start, f"{what} carries a lone UTF-16 surrogate (U+{unit:04X}, encoded as "
                                             f"bytes {bad.hex(' ').upper()}), which is not UTF-8: the C# string "
                                             "holds half of a surrogate pair (a string cut between the two halves?). "
                                             "Repair it before the call; a lesspy client should refuse to send it"
                            ) from None
        raise FrameError(start + e.start, f"{what} is not valid UTF-8") from None


def ticks_to_datetime(ticks: int, kind: int) -> datetime.datetime:
    """A .NET DateTime (100 ns ticks since 0001-01-01) as a datetime; sub-microsecond ticks are dropped."""
    dt = _EPOCH + datetime.timedelta(microseconds=ticks // TICKS_PER_MICROSECOND)
    return dt.replace(tzinfo=datetime.timezone.utc) if kind == KIND_UTC else dt


def ticks_to_timedelta(ticks: int) -> datetime.timedelta:
    """A .NET TimeSpan as a timedelta, truncated toward zero to whole microseconds."""
    us = ticks // TICKS_PER_MICROSECOND if ticks >= 0 else -(-ticks // TICKS_PER_MICROSECOND)
    return datetime.timedelta(microseconds=us)


def _decode_value(r: _Reader, depth: int = 0) -> Any:
    at = r.pos
    tag = r.unpack(_U8, "type tag")
    if depth > MAX_DEPTH:
        raise FrameError(at, f"values nested deeper than {MAX_DEPTH}")
    if tag == Tag.NONE:
        return None
    if tag == Tag.BOOL:
        b = r.unpack(_U8, "bool")
        if b > 1:
            raise FrameError(at + 1, f"bool byte {b}, expected 0 or 1")
        return bool(b)
    if tag == Tag.INT32:
        return r.unpack(_I32, "int")
    if tag == Tag.INT64:
        return r.unpack(_I64, "long")
    if tag == Tag.FLOAT32:
        return r.unpack(_F32, "float")
    if tag == Tag.FLOAT64:
        return r.unpack(_F64, "double")
    if tag == Tag.STRING:
        return _decode_utf8(r, r.unpack(_U32, "length"), "string")
    if tag == Tag.BYTES:
        n = r.unpack(_U32, "length")
        start = r.need(n, "bytes")
        return bytes(r.buf[start:start + n])
    if tag == Tag.INT32_ARRAY:
        return _decode_int32_array(r)
    if tag == Tag.INT32_JAGGED:
        rows = r.unpack(_U32, "int[][] row count")
        if rows * 8 > r.left():
            raise FrameError(at, f"int[][] of {rows} rows cannot fit in {r.left()} bytes")
        return [_decode_int32_array(r) for _ in range(rows)]
    if tag == Tag.TUPLE:
        n = r.unpack(_U8, "tuple count")
        if not 1 <= n <= MAX_TUPLE:
            raise FrameError(at, f"tuple of {n} elements at depth {depth}")
        return tuple(_decode_value(r, depth + 1) for _ in range(n))
    if tag == Tag.NDARRAY:
        return _decode_ndarray(r)
    if tag == Tag.NDARRAY_AT:
        return _decode_ndarray_at(r)
    if tag == Tag.ARRAY:
        return _decode_array(r)
    if tag == Tag.LIST:
        n = r.unpack(_U32, "LIST count")
        if n > r.left():    # every value takes at least one byte: checked before allocating
            raise FrameError(at, f"LIST of {n} values cannot fit in {r.left()} bytes")
        return [_decode_value(r, depth + 1) for _ in range(n)]
    if tag == Tag.DICT:
        n = r.unpack(_U32, "DICT count")
        if n * 5 > r.left():
            raise FrameError(at, f"DICT of {n} entries cannot fit in {r.left()} bytes")
        out = {}
        for _ in range(n):
            key_at = r.pos
            key = _decode_utf8(r, r.unpack(_U32, "DICT key length"), "DICT key")
            if key in out:
                raise FrameError(key_at, f"DICT key {key!r} appears twice")
            out[key] = _decode_value(r, depth + 1)
        return out
    if tag == Tag.DATETIME:
        ticks = r.unpack(_I64, "DATETIME ticks")
        kind = r.unpack(_U8, "DATETIME kind")
        if not 0 <= ticks <= MAX_DATETIME_TICKS:
            raise FrameError(at + 1, f"DATETIME ticks {ticks} outside 0..{MAX_DATETIME_TICKS}")
        if kind not in (KIND_UNSPECIFIED, KIND_UTC):
            raise FrameError(at + 9, f"DATETIME kind {kind}, expected 0 (unspecified) or 1 (UTC)")
        return ticks_to_datetime(ticks, kind)
    if tag == Tag.TIMESPAN:
        return ticks_to_timedelta(r.unpack(_I64, "TIMESPAN ticks"))
    if tag == Tag.GUID:
        start = r.need(16, "GUID")
        return uuid.UUID(bytes=bytes(r.buf[start:start + 16]))
    if tag == Tag.SCALAR:
        dtype = _dtype_at(r, "SCALAR", SCALAR_DTYPES)
        start = r.need(dtype.itemsize, "SCALAR " + dtype.name)
        return int(np.frombuffer(r.buf, dtype, 1, start)[0])
    if tag == Tag.RECORD:
        n = r.unpack(_U16, "RECORD field count")
        if n > MAX_FIELDS or n * 3 > r.left():
            raise FrameError(at, f"RECORD of {n} fields cannot fit in {r.left()} bytes (at most {MAX_FIELDS})")
        fields: Dict[str, Any] = {}
        for _ in range(n):
            name_at = r.pos
            name = _decode_utf8(r, r.unpack(_U8, "RECORD field name length"), "RECORD field name")
            if not name.isidentifier():
                raise FrameError(name_at, f"RECORD field name {name!r} is not an identifier")
            if name in fields:
                raise FrameError(name_at, f"RECORD field {name!r} appears twice")
            fields[name] = _decode_value(r, depth + 1)
        return types.SimpleNamespace(**fields)
    raise FrameError(at, f"unknown type tag 0x{tag:02x} (this server knows 0x00..0x{max(Tag) - 2:02x}: is the "
                         "client newer than the server? Update lesspy-kernel)")


def _check_end(r: _Reader, what: str) -> None:
    """Nothing may follow the last value, except the data of NDARRAY_AT values (which must lie after it)."""
    if r.at_start < 0:
        if r.pos != len(r.buf):
            raise FrameError(r.pos, f"{len(r.buf) - r.pos} bytes left after {what}")
    elif r.at_start < r.pos:
        raise FrameError(r.pos, f"NDARRAY_AT data at offset {r.at_start} overlaps {what}, which end at {r.pos}")


def decode_value(buf: Union[bytes, memoryview]) -> Any:
    """Decode one value that fills `buf` exactly."""
    r = _Reader(memoryview(buf))
    value = _decode_value(r)
    _check_end(r, "the value")
    return value


def write_reply_in_request(buf: memoryview, arr: np.ndarray, offset: int) -> int:
    """Write an NDARRAY_IN_REQUEST reply: `arr` (C-contiguous, little-endian) lies `offset` bytes into the
    request payload, so only its shape and that offset are sent. Returns the reply's length."""
    ndim = arr.ndim
    head = 3 + 8 * ndim
    at = (head + 7) // 8 * 8
    buf[0] = Tag.NDARRAY_IN_REQUEST
    buf[1] = DTYPE_CODE_OF[arr.dtype]
    buf[2] = ndim
    _SHAPES[ndim].pack_into(buf, 3, *arr.shape)
    if at > head:
        buf[head:at] = _ZEROS[:at - head]
    _U64.pack_into(buf, at, offset)
    return at + 8


def write_placed_ndarray(buf: memoryview, arr: np.ndarray) -> int:
    """Write the header of a top-level NDARRAY reply whose data already lies at ndarray_data_offset(arr.ndim) in
    `buf` (a payload); returns the reply's length."""
    ndim = arr.ndim
    head = 3 + 8 * ndim
    at = ndarray_data_offset(ndim)
    buf[0] = _NDARRAY
    buf[1] = DTYPE_CODE_OF[arr.dtype]
    buf[2] = ndim
    _SHAPES[ndim].pack_into(buf, 3, *arr.shape)
    buf[head:at] = _ZEROS[:at - head]
    return at + arr.nbytes


# replies written with one pack (tag + value), the bytes write_value would write
_SCALAR_REPLIES = {Tag.INT32: struct.Struct("<Bi"), Tag.INT64: struct.Struct("<Bq"), Tag.FLOAT64: struct.Struct("<Bd"),
                   Tag.FLOAT32: struct.Struct("<Bf"), Tag.BOOL: struct.Struct("<B?")}
_SCALAR_TYPES = frozenset((int, float, bool))


def write_scalar_reply(frame: memoryview, returns: Tag, value: Any) -> int:
    """Write a None, bool, int or float reply into the payload of `frame` (a whole mapping, header first) with one
    pack and no slicing; returns the payload length, or 0 when the value is none of those (use write_value)."""
    if value is None and returns is _NONE:
        frame[HEADER_SIZE] = _NONE
        return 1
    small = _SCALAR_REPLIES.get(returns)
    if small is not None and type(value) in _SCALAR_TYPES:
        small.pack_into(frame, HEADER_SIZE, returns, value)
        return small.size
    return 0


def decode_reply(payload: Union[bytes, memoryview], request: Union[bytes, memoryview, None] = None) -> Any:
    """Decode a reply value (header status 0). With the request payload it was answering, an
    NDARRAY_IN_REQUEST reply becomes a read-only view of that payload; without it, such a reply is malformed."""
    buf = memoryview(payload)
    if len(buf) == 0 or buf[0] != Tag.NDARRAY_IN_REQUEST:
        return decode_value(buf)
    if request is None:
        raise FrameError(0, "an NDARRAY_IN_REQUEST reply came to a call that did not ask for one")
    r = _Reader(buf)
    r.pos = 1
    dtype, shape, count, where, offset = _decode_shape_and_offset(r, "NDARRAY_IN_REQUEST")
    _check_end(r, "the value")
    nbytes = count * dtype.itemsize
    req = memoryview(request)
    if offset > len(req) or nbytes > len(req) - offset:
        raise FrameError(where, f"NDARRAY_IN_REQUEST data of {nbytes} bytes at offset {offset} lies beyond the "
                                f"{len(req)}-byte request payload")
    return _view(_Reader(req), where, dtype, shape, count, offset)


def _decode_desc(r: _Reader, depth: int = 0) -> TypeDesc:
    at = r.pos
    tag = r.unpack(_U8, "type descriptor")
    if depth > MAX_DEPTH:
        raise FrameError(at, f"type descriptor nested deeper than {MAX_DEPTH}")
    if tag == Tag.TUPLE:
        n = r.unpack(_U8, "tuple count")
        if not 1 <= n <= MAX_TUPLE:
            raise FrameError(at, f"tuple descriptor of {n} elements at depth {depth}")
        return tuple(_decode_desc(r, depth + 1) for _ in range(n))
    if tag == Tag.ARRAY:
        return ArrayOf(_dtype_at(r, "ARRAY descriptor").name)
    if tag == Tag.SCALAR:
        return ScalarOf(_dtype_at(r, "SCALAR descriptor", SCALAR_DTYPES).name)
    if tag == Tag.RECT_ARRAY:
        dtype = _dtype_at(r, "RECT_ARRAY descriptor").name
        ndim = r.unpack(_U8, "RECT_ARRAY rank")
        if not 2 <= ndim <= MAX_RECT_NDIM:
            raise FrameError(at + 2, f"RECT_ARRAY rank {ndim}, expected 2..{MAX_RECT_NDIM}")
        return RectArray(dtype, ndim)
    if tag == Tag.LIST:
        return ListOf(_decode_desc(r, depth + 1))
    if tag == Tag.DICT:
        return DictOf(_decode_desc(r, depth + 1))
    if tag == Tag.OPTIONAL:
        inner = _decode_desc(r, depth + 1)
        if isinstance(inner, Nullable) or accepts_none(inner):
            raise FrameError(at, f"OPTIONAL of {csharp_name(inner)}, which is already nullable")
        return Nullable(inner)
    if tag == Tag.RECORD:
        flags = r.unpack(_U8, "RECORD descriptor flags")
        if flags > 1:
            raise FrameError(at + 1, f"RECORD descriptor flags {flags}, expected 0 (class) or 1 (struct)")
        name = _decode_utf8(r, r.unpack(_U8, "RECORD type name length"), "RECORD type name")
        n = r.unpack(_U16, "RECORD field count")
        if n > MAX_FIELDS or n * 3 > r.left():
            raise FrameError(at, f"RECORD descriptor of {n} fields cannot fit in {r.left()} bytes")
        fields = []
        keys = set()
        for _ in range(n):
            name_at = r.pos
            fname = _decode_utf8(r, r.unpack(_U8, "RECORD field name length"), "RECORD field name")
            if not fname.isidentifier() or field_key(fname) in keys:
                raise FrameError(name_at, f"RECORD field name {fname!r} is not an identifier or appears twice")
            keys.add(field_key(fname))
            fields.append((fname, _decode_desc(r, depth + 1)))
        return Record(tuple(fields), name, flags == 1)
    if tag not in _SIMPLE_DESCS:
        raise FrameError(at, f"unknown type descriptor 0x{tag:02x} (this server knows 0x00..0x{max(Tag):02x}: is "
                             "the client newer than the server? Update lesspy-kernel)")
    return Tag(tag)


# The start of a call frame (name and return descriptor) repeats call after call: remember what it decodes to.
# name bytes -> [(descriptor bytes, name, decoded descriptor)], oldest name first. Bounded in bytes (a client may
# send any number of distinct names and descriptors): what an entry costs is estimated from its bytes (a decoded
# descriptor takes about 8 times its encoded size), the oldest names go when the budget is exceeded, a prefix
# larger than PREFIX_ENTRY_MAX is never kept, and a name the namespace lacks is dropped (forget_prefix).
_PREFIXES: dict = {}
PREFIX_BUDGET = 4 << 20         # estimated bytes the cache may hold
PREFIX_ENTRY_MAX = 64 << 10     # estimated bytes of the largest prefix kept
_PER_NAME = 8                   # return descriptors kept per name
_prefix_bytes = 0               # estimated bytes held now (prefix_cache_bytes)
_prefix_lock = threading.Lock()  # lane threads add and drop entries at the same time (reads need no lock)
# Scalar arguments decoded inline on the fast path: tag -> (struct, size)
_INLINE: Dict[int, struct.Struct] = {Tag.INT32: _I32, Tag.INT64: _I64, Tag.FLOAT64: _F64, Tag.FLOAT32: _F32}
_SHAPES = [struct.Struct(f"<{n}Q") for n in range(MAX_NDIM + 1)]
_ZEROS = bytes(64)


def decode_call(payload: Union[bytes, memoryview]) -> Call:
    """Decode a call frame; arrays in the arguments are read-only views over `payload`, made from a read-only
    buffer (so NumPy refuses to make them writable: Python cannot write into the client's request file). A
    read-only memoryview is used as it is (the lane passes one, and tells by how many views share its buffer
    whether any argument view outlives the call)."""
    buf = payload if type(payload) is memoryview else memoryview(payload)
    if not buf.readonly:
        buf = buf.toreadonly()
    quick = _known_scalar_call(buf)
    return quick if quick is not None else _decode_call_fully(buf)


def _decode_call_fully(buf: memoryview) -> Call:
    r = _Reader(buf)
    buf = r.buf
    head = _prefix(r)
    name, returns = head
    argc = r.unpack(_U8, "argument count")
    args = []
    pos, size = r.pos, len(buf)
    for _ in range(argc):
        if pos < size:                       # scalars inline; everything else (and every error) the full way
            s = _INLINE.get(buf[pos])
            if s is not None and pos + 1 + s.size <= size:
                args.append(s.unpack_from(buf, pos + 1)[0])
                pos += 1 + s.size
                continue
        r.pos = pos
        args.append(_decode_value(r))
        pos = r.pos
    r.pos = pos
    _check_end(r, "the arguments")
    if r.at_start >= 0:
        return Call(name, returns, args, (pos, r.at_start, r.at_end))
    return Call(name, returns, args)


def _known_scalar_call(buf: memoryview) -> Optional[Call]:
    """The common call, decoded in a few steps: a name and return type seen before (so already checked) and
    only scalar and NDARRAY arguments. Anything else, including every malformed frame, returns None: the full
    decoder then decodes it or says what is wrong."""
    size = len(buf)
    if size < 4:
        return None
    n = buf[0] | buf[1] << 8
    known = _PREFIXES.get(bytes(buf[2:2 + n]))
    if known is None:
        return None
    pos = 2 + n
    for desc_bytes, name, returns in known:
        end = pos + len(desc_bytes)
        if end < size and buf[pos:end] == desc_bytes:
            break
    else:
        return None
    argc = buf[end]
    pos = end + 1
    args = []
    while argc:
        if pos >= size:
            return None
        tag = buf[pos]
        s = _INLINE.get(tag)
        if s is not None:
            if pos + 1 + s.size > size:
                return None
            args.append(s.unpack_from(buf, pos + 1)[0])
            pos += 1 + s.size
        elif tag == Tag.NDARRAY:
            pos = _quick_ndarray(buf, pos + 1, size, args)
            if pos < 0:
                return None
        else:
            return None
        argc -= 1
    if pos != size:
        return None
    return Call(name, returns, args)


def _quick_ndarray(buf: memoryview, pos: int, size: int, args: list) -> int:
    """An NDARRAY argument's view appended to `args` (its body starts at `pos`); returns where the next value
    starts, or -1 for anything the full decoder should look at."""
    if pos + 2 > size:
        return -1
    dtype = _DTYPES.get(buf[pos])
    ndim = buf[pos + 1]
    end = pos + 2 + 8 * ndim
    if dtype is None or ndim > MAX_NDIM or end > size:
        return -1
    shape = _SHAPES[ndim].unpack_from(buf, pos + 2)
    count = 1
    for dim in shape:
        if dim > _I64_RANGE[1]:
            return -1
        count *= dim
    start = (end + 63) // 64 * 64
    stop = start + count * dtype.itemsize
    if stop > size:
        return -1
    try:
        arr = np.frombuffer(buf, dtype=dtype, count=count, offset=start).reshape(shape)
    except ValueError:
        return -1
    arr.flags.writeable = False
    args.append(arr)
    return stop


def _prefix(r: _Reader) -> Tuple[str, TypeDesc]:
    """Decode (or recall) the name and the return descriptor; leaves `r` at the argument count."""
    n = r.unpack(_U16, "name length")
    if not 1 <= n <= MAX_NAME_BYTES:
        raise FrameError(0, f"function name of {n} bytes, expected 1..{MAX_NAME_BYTES}")
    start = r.need(n, "function name")
    raw = bytes(r.buf[start:start + n])
    known = _PREFIXES.get(raw)
    if known is not None:
        for desc_bytes, name, returns in known:
            end = r.pos + len(desc_bytes)
            if r.buf[r.pos:end] == desc_bytes:
                r.pos = end
                return name, returns
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError(start, "function name is not valid UTF-8") from None
    at = r.pos
    returns = _decode_desc(r)
    _remember_prefix(raw, bytes(r.buf[at:r.pos]), name, returns)
    return name, returns


def _prefix_cost(raw: bytes, desc_bytes: bytes) -> int:
    return 256 + 8 * (len(raw) + len(desc_bytes))


def _remember_prefix(raw: bytes, desc_bytes: bytes, name: str, returns: TypeDesc) -> None:
    global _prefix_bytes
    cost = _prefix_cost(raw, desc_bytes)
    if cost > PREFIX_ENTRY_MAX:
        return
    with _prefix_lock:
        entries = _PREFIXES.get(raw)
        if entries is None:
            entries = _PREFIXES[raw] = []
        elif len(entries) >= _PER_NAME or any(d == desc_bytes for d, _, _ in entries):
            return
        entries.append((desc_bytes, name, returns))
        _prefix_bytes += cost
        while _prefix_bytes > PREFIX_BUDGET and _PREFIXES:
            _drop_prefixes(next(iter(_PREFIXES)))


def _drop_prefixes(raw: bytes) -> None:
    """Under _prefix_lock."""
    global _prefix_bytes
    entries = _PREFIXES.pop(raw, None)
    if entries:
        _prefix_bytes -= sum(_prefix_cost(raw, desc_bytes) for desc_bytes, _, _ in entries)


def forget_prefix(name: str) -> None:
    """Drop what the cache holds for `name` (a function the server does not have: a client may send any)."""
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError:
        return
    with _prefix_lock:
        _drop_prefixes(raw)


def prefix_cache_bytes() -> int:
    """The call-prefix cache's estimated size in bytes (at most PREFIX_BUDGET)."""
    return _prefix_bytes


def _decode_text(r: _Reader, what: str) -> str:
    n = r.unpack(_U32, what + " length")
    start = r.need(n, what)
    return bytes(r.buf[start:start + n]).decode("utf-8", errors="replace")


def decode_error(payload: Union[bytes, memoryview]) -> ErrorReply:
    """Decode an error reply frame (header status 1)."""
    r = _Reader(memoryview(payload))
    kind = r.unpack(_U8, "error kind")
    try:
        kind = ErrorKind(kind)
    except ValueError:
        raise FrameError(0, f"unknown error kind {kind}") from None
    return ErrorReply(kind, _decode_text(r, "exception type"), _decode_text(r, "message"),
                      _decode_text(r, "traceback"))



# ---------------------------------------------------------------- coercion

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
    if arr.dtype.kind in "iu" and arr.size and (arr.min() < _I32_RANGE[0] or arr.max() > _I32_RANGE[1]):
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
    if any(d > _I32_RANGE[1] for d in arr.shape):
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
    """Turn a Python result into the normalized form the encoder writes for the declared C# type."""
    kind = type(value)                               # the common results first, already as the encoder wants them
    if kind is int:
        if desc is _INT32 and _I32_RANGE[0] <= value <= _I32_RANGE[1] \
                or desc is _INT64 and _I64_RANGE[0] <= value <= _I64_RANGE[1]:
            return value
    elif kind is float:
        if desc is _FLOAT64:
            return value
    elif value is None:
        if desc is _NONE:                            # a void method
            return None
    elif kind is np.ndarray:
        if desc is _NDARRAY and value.dtype in DTYPE_CODE_OF and value.flags.c_contiguous and value.ndim <= MAX_NDIM \
                and all(d <= _I32_RANGE[1] for d in value.shape):
            return value
    if isinstance(desc, tuple):
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
    if value is None:
        if accepts_none(desc):
            return None
        raise CoercionError(value, desc, "None needs a nullable C# type (e.g. int?, a class, a string)"
                            if desc != Tag.NONE else "")
    if isinstance(desc, Nullable):
        return coerce(value, desc.inner)
    if isinstance(desc, ArrayOf):
        return _as_typed_array(value, desc, desc.dtype, 1)
    if isinstance(desc, RectArray):
        return _as_typed_array(value, desc, desc.dtype, desc.ndim)
    if isinstance(desc, ScalarOf):
        return _as_int(value, desc, *_INT_RANGES[desc.dtype])
    if isinstance(desc, ListOf):
        if not _is_sequence(value):
            raise CoercionError(value, desc, "expected a list, tuple, set or array")
        items = []
        for i, v in enumerate(value):
            try:
                items.append(coerce(v, desc.item))
            except CoercionError as e:
                raise CoercionError(value, desc, f"element {i}: {e}") from None
        return items
    if isinstance(desc, DictOf):
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
    if isinstance(desc, Record):
        return _as_record(value, desc)
    if desc == Tag.NONE:
        raise CoercionError(value, desc, "the C# method is declared void, so the function must return None")
    if desc == Tag.BOOL:
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        raise CoercionError(value, desc)
    if desc == Tag.INT32:
        return _as_int(value, desc, *_I32_RANGE)
    if desc == Tag.INT64:
        return _as_int(value, desc, *_I64_RANGE)
    if desc in (Tag.FLOAT32, Tag.FLOAT64):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise CoercionError(value, desc)
        try:
            f = float(value)
        except OverflowError:
            raise CoercionError(value, desc, "too large for a double") from None
        if desc == Tag.FLOAT32 and math.isfinite(f) and abs(f) > _F32_MAX:
            raise CoercionError(value, desc, f"{f} is outside the float range (±{_F32_MAX:.7g})")
        return f
    if desc == Tag.STRING:
        if isinstance(value, (str, np.str_)):
            value = str(value)
            if not value.isascii():
                _check_utf8(value, desc)
            return value
        raise CoercionError(value, desc)
    if desc == Tag.BYTES:
        if isinstance(value, (bytes, bytearray)):
            return memoryview(value)
        if isinstance(value, memoryview):
            return memoryview(value.tobytes()) if not value.contiguous or value.format != "B" else value
        if isinstance(value, np.ndarray) and value.dtype == np.uint8:
            return np.ascontiguousarray(value).reshape(-1).data
        raise CoercionError(value, desc)
    if desc == Tag.INT32_ARRAY:
        return _as_int32_array(value, desc)
    if desc == Tag.INT32_JAGGED:
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
    if desc == Tag.NDARRAY:
        try:
            arr = np.asarray(value)
        except Exception as e:  # numpy raises many types for odd inputs
            raise CoercionError(value, desc, str(e)) from None
        name = arr.dtype.name
        if name not in DTYPE_CODES:
            raise CoercionError(value, desc, f"dtype {arr.dtype} is not supported "
                                             f"(supported: {', '.join(DTYPE_CODES)})")
        if arr.ndim > MAX_NDIM or any(d > _I32_RANGE[1] for d in arr.shape):
            raise CoercionError(value, desc, f"shape {arr.shape} does not fit NdArray.Shape (int[])")
        # astype/copy rather than ascontiguousarray, which would turn a 0-d array into 1-d;
        # a non-contiguous or Fortran-ordered array is copied once into C order here
        arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        return arr if arr.flags.c_contiguous else arr.copy(order="C")
    if desc == Tag.DATETIME:
        return datetime_to_ticks(value, desc)
    if desc == Tag.TIMESPAN:
        return timedelta_to_ticks(value, desc)
    if desc == Tag.GUID:
        if isinstance(value, str):
            try:
                value = uuid.UUID(value)
            except ValueError:
                raise CoercionError(value, desc, f"{value!r} is not a UUID") from None
        if isinstance(value, uuid.UUID):
            return value.bytes
        raise CoercionError(value, desc)
    raise CoercionError(value, desc, "unsupported declared type")


def describe(value: Any) -> TypeDesc:
    """The natural descriptor for a Python value (used when Python is the sender: tests, golden vectors)."""
    if value is None:
        return Tag.NONE
    if isinstance(value, bool):
        return Tag.BOOL
    if isinstance(value, int):
        return Tag.INT32 if _I32_RANGE[0] <= value <= _I32_RANGE[1] else Tag.INT64
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


# ---------------------------------------------------------------- encoding

_SCALAR_STRUCTS = {"int8": struct.Struct("<b"), "uint8": struct.Struct("<B"), "int16": struct.Struct("<h"),
                   "uint16": struct.Struct("<H"), "uint32": struct.Struct("<I"), "uint64": struct.Struct("<Q")}
_DATETIME = struct.Struct("<qB")


def _emit_int32_array(arr: np.ndarray, buf: Optional[memoryview], pos: int) -> int:
    if buf is not None:
        _U32.pack_into(buf, pos, arr.size)
    pos += 4
    pad = -pos % 8
    if buf is not None:
        buf[pos:pos + pad] = bytes(pad)
        buf[pos + pad:pos + pad + arr.nbytes] = arr.view(np.uint8).reshape(-1).data
    pos += pad + arr.nbytes
    pad = -pos % 8
    if buf is not None:
        buf[pos:pos + pad] = bytes(pad)
    return pos + pad


def _emit_ndarray(value: np.ndarray, buf: Optional[memoryview], pos: int) -> int:
    if buf is not None:
        struct.pack_into(f"<BB{value.ndim}Q", buf, pos, DTYPE_CODES[value.dtype.name], value.ndim, *value.shape)
    pos += 2 + 8 * value.ndim
    pad = -pos % 64
    if buf is not None:
        buf[pos:pos + pad] = bytes(pad)
        if value.nbytes:
            np.copyto(np.frombuffer(buf, dtype=value.dtype, count=value.size, offset=pos + pad)
                      .reshape(value.shape), value, casting="no")
    return pos + pad + value.nbytes


def _emit_text(raw: bytes, length: struct.Struct, buf: Optional[memoryview], pos: int) -> int:
    if buf is not None:
        length.pack_into(buf, pos, len(raw))
        buf[pos + length.size:pos + length.size + len(raw)] = raw
    return pos + length.size + len(raw)


def _emit(value: Any, desc: Any, buf: Optional[memoryview], pos: int) -> int:
    """Write a normalized value at `pos` (or only measure it when `buf` is None); return the end."""
    if value is None:
        if buf is not None:
            _U8.pack_into(buf, pos, Tag.NONE)
        return pos + 1
    if isinstance(desc, Nullable):
        return _emit(value, desc.inner, buf, pos)
    tag = _value_tag(desc)
    if buf is not None:
        _U8.pack_into(buf, pos, tag)
    pos += 1
    if tag == Tag.BOOL:
        if buf is not None:
            _U8.pack_into(buf, pos, 1 if value else 0)
        return pos + 1
    if tag in (Tag.INT32, Tag.INT64, Tag.FLOAT32, Tag.FLOAT64):
        s = {Tag.INT32: _I32, Tag.INT64: _I64, Tag.FLOAT32: _F32, Tag.FLOAT64: _F64}[tag]
        if buf is not None:
            s.pack_into(buf, pos, value)
        return pos + s.size
    if tag == Tag.STRING:
        return _emit_text(value.encode("utf-8"), _U32, buf, pos)
    if tag == Tag.BYTES:
        if buf is not None:
            _U32.pack_into(buf, pos, value.nbytes)
            buf[pos + 4:pos + 4 + value.nbytes] = value
        return pos + 4 + value.nbytes
    if tag == Tag.INT32_ARRAY:
        return _emit_int32_array(value, buf, pos)
    if tag == Tag.INT32_JAGGED:
        if buf is not None:
            _U32.pack_into(buf, pos, len(value))
        pos += 4
        for row in value:
            pos = _emit_int32_array(row, buf, pos)
        return pos
    if tag == Tag.TUPLE:
        assert isinstance(desc, tuple)
        if buf is not None:
            _U8.pack_into(buf, pos, len(desc))
        pos += 1
        for v, d in zip(value, desc):
            pos = _emit(v, d, buf, pos)
        return pos
    if tag == Tag.NDARRAY:
        return _emit_ndarray(value, buf, pos)
    if tag == Tag.ARRAY:
        if buf is not None:
            struct.pack_into("<BI", buf, pos, DTYPE_CODES[value.dtype.name], value.size)
        pos += 5
        pad = -pos % 8
        if buf is not None:
            buf[pos:pos + pad] = bytes(pad)
            buf[pos + pad:pos + pad + value.nbytes] = value.view(np.uint8).reshape(-1).data
        pos += pad + value.nbytes
        pad = -pos % 8
        if buf is not None:
            buf[pos:pos + pad] = bytes(pad)
        return pos + pad
    if tag == Tag.LIST:
        if buf is not None:
            _U32.pack_into(buf, pos, len(value))
        pos += 4
        for v in value:
            pos = _emit(v, desc.item, buf, pos)
        return pos
    if tag == Tag.DICT:
        if buf is not None:
            _U32.pack_into(buf, pos, len(value))
        pos += 4
        for k, v in value.items():
            pos = _emit_text(k.encode("utf-8"), _U32, buf, pos)
            pos = _emit(v, desc.value, buf, pos)
        return pos
    if tag == Tag.DATETIME:
        if buf is not None:
            _DATETIME.pack_into(buf, pos, *value)
        return pos + _DATETIME.size
    if tag == Tag.TIMESPAN:
        if buf is not None:
            _I64.pack_into(buf, pos, value)
        return pos + 8
    if tag == Tag.GUID:
        if buf is not None:
            buf[pos:pos + 16] = value
        return pos + 16
    if tag == Tag.SCALAR:
        s = _SCALAR_STRUCTS[desc.dtype]
        if buf is not None:
            _U8.pack_into(buf, pos, DTYPE_CODES[desc.dtype])
            s.pack_into(buf, pos + 1, value)
        return pos + 1 + s.size
    if tag == Tag.RECORD:
        if buf is not None:
            _U16.pack_into(buf, pos, len(desc.fields))
        pos += 2
        for (name, d), v in zip(desc.fields, value):
            pos = _emit_text(name.encode("utf-8"), _U8, buf, pos)
            pos = _emit(v, d, buf, pos)
        return pos
    raise TypeError(f"cannot encode tag {tag!r}")


def _value_tag(desc: TypeDesc) -> Tag:
    """The tag a (non-null) value of a declared type travels with."""
    if isinstance(desc, tuple):
        return Tag.TUPLE
    if isinstance(desc, ArrayOf):
        return Tag.ARRAY
    if isinstance(desc, ListOf):
        return Tag.LIST
    if isinstance(desc, DictOf):
        return Tag.DICT
    if isinstance(desc, ScalarOf):
        return Tag.SCALAR
    if isinstance(desc, RectArray):
        return Tag.NDARRAY
    if isinstance(desc, Record):
        return Tag.RECORD
    if isinstance(desc, Nullable):
        return _value_tag(desc.inner)
    return desc


def value_size(value: Any, desc: TypeDesc, start: int = 0) -> int:
    """Bytes a normalized value takes when written at payload offset `start`."""
    return _emit(value, desc, None, start) - start


def write_value(buf: memoryview, value: Any, desc: TypeDesc, start: int = 0) -> int:
    """Write a normalized value into `buf` at `start`; return the end offset. The caller checked the size."""
    return _emit(value, desc, buf, start)


def encode_value(value: Any, desc: Optional[TypeDesc] = None) -> bytes:
    """Coerce and encode one value into new bytes (tests, golden vectors)."""
    if desc is None:
        desc = describe(value)
    value = coerce(value, desc)
    out = bytearray(value_size(value, desc))
    write_value(memoryview(out), value, desc)
    return bytes(out)


def encode_desc(desc: TypeDesc) -> bytes:
    """The bytes of a type descriptor (PROTOCOL.md section 5)."""
    out = bytearray()
    _emit_desc(desc, out)
    return bytes(out)


def _emit_desc(desc: TypeDesc, out: bytearray) -> None:
    if isinstance(desc, tuple):
        out += bytes([Tag.TUPLE, len(desc)])
        for d in desc:
            _emit_desc(d, out)
    elif isinstance(desc, (ArrayOf, ScalarOf)):
        out += bytes([_value_tag(desc), DTYPE_CODES[desc.dtype]])
    elif isinstance(desc, RectArray):
        out += bytes([Tag.RECT_ARRAY, DTYPE_CODES[desc.dtype], desc.ndim])
    elif isinstance(desc, ListOf):
        out.append(Tag.LIST)
        _emit_desc(desc.item, out)
    elif isinstance(desc, DictOf):
        out.append(Tag.DICT)
        _emit_desc(desc.value, out)
    elif isinstance(desc, Nullable):
        out.append(Tag.OPTIONAL)
        _emit_desc(desc.inner, out)
    elif isinstance(desc, Record):
        name = desc.name.encode("utf-8")
        out += bytes([Tag.RECORD, 1 if desc.value_type else 0, len(name)]) + name + _U16.pack(len(desc.fields))
        for fname, d in desc.fields:
            raw = fname.encode("utf-8")
            out += bytes([len(raw)]) + raw
            _emit_desc(d, out)
    else:
        out.append(desc)


def encode_call(name: str, returns: TypeDesc, args: list, arg_descs: Optional[list] = None) -> bytes:
    """Encode a call frame (what the C# client sends); used by tests and golden vectors."""
    raw = name.encode("utf-8")
    out = bytearray(_U16.pack(len(raw)) + raw)
    _emit_desc(returns, out)
    out.append(len(args))
    descs = arg_descs or [describe(a) for a in args]
    for a, d in zip(args, descs):
        a = coerce(a, d)
        end = len(out) + value_size(a, d, len(out))
        start = len(out)
        out += bytes(end - start)
        write_value(memoryview(out), a, d, start)
    return bytes(out)


def _cut(text: str, limit: int) -> str:
    raw = text.encode("utf-8", errors="replace")
    if len(raw) <= limit:
        return text
    return raw[:max(0, limit - 3)].decode("utf-8", errors="ignore") + "..."


def fit_error(python_type: str, message: str, traceback: str) -> Tuple[str, str, str]:
    """Each part of an error reply cut to its limit, so no exception can make a reply too large to send."""
    return (_cut(str(python_type), MAX_ERROR_TYPE), _cut(str(message), MAX_ERROR_MESSAGE),
            _cut(str(traceback), MAX_ERROR_TRACEBACK))


def error_size(python_type: str, message: str, traceback: str) -> int:
    return 1 + 12 + sum(len(s.encode("utf-8", errors="replace")) for s in (python_type, message, traceback))


def write_error(buf: memoryview, kind: ErrorKind, python_type: str, message: str, traceback: str) -> int:
    """Write an error frame, every part cut to fit `buf` (traceback first, then message, then type)."""
    python_type, message, traceback = fit_error(python_type, message, traceback)
    room = len(buf)
    if error_size(python_type, message, traceback) > room:
        traceback = ""
    if error_size(python_type, message, traceback) > room:
        message = _cut(message, max(0, room - error_size(python_type, "", "")))
    if error_size(python_type, message, traceback) > room:
        python_type, message = "", ""
    if room < error_size("", "", ""):
        raise ValueError(f"an error reply needs at least {error_size('', '', '')} bytes, the buffer has {room}")
    pos = 0
    _U8.pack_into(buf, pos, kind)
    pos += 1
    for text in (python_type, message, traceback):
        raw = text.encode("utf-8", errors="replace")
        _U32.pack_into(buf, pos, len(raw))
        buf[pos + 4:pos + 4 + len(raw)] = raw
        pos += 4 + len(raw)
    return pos


def encode_error(kind: ErrorKind, python_type: str, message: str, traceback: str) -> bytes:
    out = bytearray(error_size(python_type, message, traceback))
    write_error(memoryview(out), kind, python_type, message, traceback)
    return bytes(out)
