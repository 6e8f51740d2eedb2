"""The reference decoder: bytes in, values out, every length checked against the buffer before anything is
allocated, so a hostile frame raises FrameError (with its byte offset) and nothing else. Arrays come back as
zero-copy, read-only NumPy views over the buffer. fastdecode.py decodes the common calls faster and must agree
with this module on every frame."""

from __future__ import annotations

import datetime
import struct
import types
import uuid
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np

from .constants import (DTYPE_CODES, DTYPE_NAMES, DTYPES, INT64_RANGE, KIND_UNSPECIFIED, KIND_UTC, MAX_DATETIME_TICKS,
                        MAX_DEPTH, MAX_FIELDS, MAX_NAME_BYTES, MAX_NDIM, MAX_RECT_NDIM, MAX_TUPLE, SCALAR_DTYPES,
                        TICKS_PER_MICROSECOND, ErrorKind, Tag)
from .errors import FrameError, TextError
from .header import NDARRAY_ALIGN
from .structs import F32, F64, I32, I64, U8, U16, U32, U64
from .types import (SIMPLE_DESCS, ArrayOf, Call, DictOf, ErrorReply, ListOf, Nullable, Record, RectArray, ScalarOf,
                    TypeDesc, accepts_none, csharp_name, field_key)

_EPOCH = datetime.datetime(1, 1, 1)


class Reader:
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


def _decode_int32_array(r: Reader) -> np.ndarray:
    count = r.unpack(U32, "int[] count")
    r.align(8)
    start = r.need(4 * count, f"int[] of {count} elements")
    r.align(8)
    if count == 0:  # one shared view: an empty INT32_JAGGED row costs 8 bytes of frame, not a new array
        return _EMPTY_INT32
    arr = np.frombuffer(r.buf, dtype="<i4", count=count, offset=start)
    arr.flags.writeable = False
    return arr


def _dtype_at(r: Reader, what: str, allowed: Optional[Tuple[str, ...]] = None) -> np.dtype:
    at = r.pos
    code = r.unpack(U8, what + " dtype code")
    name = DTYPE_NAMES.get(code)
    if name is None or (allowed is not None and name not in allowed):
        raise FrameError(at, f"{what} dtype code {code} is not one of "
                             f"{', '.join(str(DTYPE_CODES[n]) for n in (allowed or DTYPE_CODES))}")
    return DTYPES[code]


def _decode_shape(r: Reader, what: str) -> Tuple[np.dtype, Tuple[int, ...], int]:
    at = r.pos
    dtype = _dtype_at(r, what)
    ndim = r.unpack(U8, "ndim")
    if ndim > MAX_NDIM:
        raise FrameError(at + 1, f"ndim {ndim} exceeds {MAX_NDIM}")
    start = r.need(8 * ndim, f"shape of {ndim} dimensions")
    shape = struct.unpack_from(f"<{ndim}Q", r.buf, start)
    if any(dim > INT64_RANGE[1] for dim in shape):
        raise FrameError(start, f"shape {shape} has a dimension beyond int64")
    count = 1
    for dim in shape:
        count *= dim
    return dtype, shape, count


def array_view(r: Reader, at: int, dtype: np.dtype, shape: Tuple[int, ...], count: int, offset: int) -> np.ndarray:
    try:
        arr = np.frombuffer(r.buf, dtype=dtype, count=count, offset=offset).reshape(shape)
    except ValueError as e:  # e.g. an empty array whose other dimensions overflow NumPy's size
        raise FrameError(at, f"shape {shape}: {e}") from None
    arr.flags.writeable = False
    return arr


def _decode_ndarray(r: Reader) -> np.ndarray:
    at = r.pos
    dtype, shape, count = _decode_shape(r, "NDARRAY")
    r.align(NDARRAY_ALIGN)
    nbytes = count * dtype.itemsize
    if nbytes > r.left():
        raise FrameError(r.pos, f"array of shape {shape} needs {nbytes} bytes, {r.left()} left")
    return array_view(r, at, dtype, shape, count, r.need(nbytes, "array data"))


def _decode_shape_and_offset(r: Reader, what: str) -> Tuple[np.dtype, Tuple[int, ...], int, int, int]:
    """The body of NDARRAY_AT and NDARRAY_IN_REQUEST: dtype, shape, element count, then (after padding to 8)
    the data offset and where it was read."""
    dtype, shape, count = _decode_shape(r, what)
    r.align(8)
    where = r.pos
    return dtype, shape, count, where, r.unpack(U64, what + " data offset")


def _decode_ndarray_at(r: Reader) -> np.ndarray:
    at = r.pos
    dtype, shape, count, where, offset = _decode_shape_and_offset(r, "NDARRAY_AT")
    nbytes = count * dtype.itemsize
    if offset % NDARRAY_ALIGN:
        raise FrameError(where, f"NDARRAY_AT data offset {offset} is not a multiple of {NDARRAY_ALIGN}")
    if offset < r.pos:
        raise FrameError(where, f"NDARRAY_AT data offset {offset} overlaps the frame before it (which ends at {r.pos})")
    if offset > len(r.buf) or nbytes > len(r.buf) - offset:
        raise FrameError(where, f"NDARRAY_AT data of {nbytes} bytes at offset {offset} lies beyond the "
                                f"{len(r.buf)}-byte payload")
    r.at_start = offset if r.at_start < 0 else min(r.at_start, offset)
    r.at_end = max(r.at_end, offset + nbytes)
    return array_view(r, at, dtype, shape, count, offset)


def _decode_array(r: Reader) -> np.ndarray:
    at = r.pos
    dtype = _dtype_at(r, "ARRAY")
    count = r.unpack(U32, "ARRAY count")
    r.align(8)
    nbytes = count * dtype.itemsize
    start = r.need(nbytes, f"ARRAY of {count} {dtype.name}")
    r.align(8)
    if dtype.kind == "b" and count and np.frombuffer(r.buf, np.uint8, nbytes, start).max() > 1:
        raise FrameError(start, "a bool[] element is neither 0 nor 1")
    return array_view(r, at, dtype, (count,), count, start)


def _decode_utf8(r: Reader, n: int, what: str) -> str:
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


def decode_any(r: Reader, depth: int = 0) -> Any:
    at = r.pos
    tag = r.unpack(U8, "type tag")
    if depth > MAX_DEPTH:
        raise FrameError(at, f"values nested deeper than {MAX_DEPTH}")
    if tag == Tag.NONE:
        return None
    if tag == Tag.BOOL:
        b = r.unpack(U8, "bool")
        if b > 1:
            raise FrameError(at + 1, f"bool byte {b}, expected 0 or 1")
        return bool(b)
    if tag == Tag.INT32:
        return r.unpack(I32, "int")
    if tag == Tag.INT64:
        return r.unpack(I64, "long")
    if tag == Tag.FLOAT32:
        return r.unpack(F32, "float")
    if tag == Tag.FLOAT64:
        return r.unpack(F64, "double")
    if tag == Tag.STRING:
        return _decode_utf8(r, r.unpack(U32, "length"), "string")
    if tag == Tag.BYTES:
        n = r.unpack(U32, "length")
        start = r.need(n, "bytes")
        return bytes(r.buf[start:start + n])
    if tag == Tag.INT32_ARRAY:
        return _decode_int32_array(r)
    if tag == Tag.INT32_JAGGED:
        rows = r.unpack(U32, "int[][] row count")
        if rows * 8 > r.left():
            raise FrameError(at, f"int[][] of {rows} rows cannot fit in {r.left()} bytes")
        return [_decode_int32_array(r) for _ in range(rows)]
    if tag == Tag.TUPLE:
        n = r.unpack(U8, "tuple count")
        if not 1 <= n <= MAX_TUPLE:
            raise FrameError(at, f"tuple of {n} elements at depth {depth}")
        return tuple(decode_any(r, depth + 1) for _ in range(n))
    if tag == Tag.NDARRAY:
        return _decode_ndarray(r)
    if tag == Tag.NDARRAY_AT:
        return _decode_ndarray_at(r)
    if tag == Tag.ARRAY:
        return _decode_array(r)
    if tag == Tag.LIST:
        n = r.unpack(U32, "LIST count")
        if n > r.left():    # every value takes at least one byte: checked before allocating
            raise FrameError(at, f"LIST of {n} values cannot fit in {r.left()} bytes")
        return [decode_any(r, depth + 1) for _ in range(n)]
    if tag == Tag.DICT:
        n = r.unpack(U32, "DICT count")
        if n * 5 > r.left():
            raise FrameError(at, f"DICT of {n} entries cannot fit in {r.left()} bytes")
        out = {}
        for _ in range(n):
            key_at = r.pos
            key = _decode_utf8(r, r.unpack(U32, "DICT key length"), "DICT key")
            if key in out:
                raise FrameError(key_at, f"DICT key {key!r} appears twice")
            out[key] = decode_any(r, depth + 1)
        return out
    if tag == Tag.DATETIME:
        ticks = r.unpack(I64, "DATETIME ticks")
        kind = r.unpack(U8, "DATETIME kind")
        if not 0 <= ticks <= MAX_DATETIME_TICKS:
            raise FrameError(at + 1, f"DATETIME ticks {ticks} outside 0..{MAX_DATETIME_TICKS}")
        if kind not in (KIND_UNSPECIFIED, KIND_UTC):
            raise FrameError(at + 9, f"DATETIME kind {kind}, expected 0 (unspecified) or 1 (UTC)")
        return ticks_to_datetime(ticks, kind)
    if tag == Tag.TIMESPAN:
        return ticks_to_timedelta(r.unpack(I64, "TIMESPAN ticks"))
    if tag == Tag.GUID:
        start = r.need(16, "GUID")
        return uuid.UUID(bytes=bytes(r.buf[start:start + 16]))
    if tag == Tag.SCALAR:
        dtype = _dtype_at(r, "SCALAR", SCALAR_DTYPES)
        start = r.need(dtype.itemsize, "SCALAR " + dtype.name)
        return int(np.frombuffer(r.buf, dtype, 1, start)[0])
    if tag == Tag.RECORD:
        n = r.unpack(U16, "RECORD field count")
        if n > MAX_FIELDS or n * 3 > r.left():
            raise FrameError(at, f"RECORD of {n} fields cannot fit in {r.left()} bytes (at most {MAX_FIELDS})")
        fields: Dict[str, Any] = {}
        for _ in range(n):
            name_at = r.pos
            name = _decode_utf8(r, r.unpack(U8, "RECORD field name length"), "RECORD field name")
            if not name.isidentifier():
                raise FrameError(name_at, f"RECORD field name {name!r} is not an identifier")
            if name in fields:
                raise FrameError(name_at, f"RECORD field {name!r} appears twice")
            fields[name] = decode_any(r, depth + 1)
        return types.SimpleNamespace(**fields)
    raise FrameError(at, f"unknown type tag 0x{tag:02x} (this server knows 0x00..0x{max(Tag) - 2:02x}: is the "
                         "client newer than the server? Update lesspy-kernel)")


def check_end(r: Reader, what: str) -> None:
    """Nothing may follow the last value, except the data of NDARRAY_AT values (which must lie after it)."""
    if r.at_start < 0:
        if r.pos != len(r.buf):
            raise FrameError(r.pos, f"{len(r.buf) - r.pos} bytes left after {what}")
    elif r.at_start < r.pos:
        raise FrameError(r.pos, f"NDARRAY_AT data at offset {r.at_start} overlaps {what}, which end at {r.pos}")


def decode_value(buf: Union[bytes, memoryview]) -> Any:
    """Decode one value that fills `buf` exactly."""
    r = Reader(memoryview(buf))
    value = decode_any(r)
    check_end(r, "the value")
    return value


def decode_reply(payload: Union[bytes, memoryview], request: Union[bytes, memoryview, None] = None) -> Any:
    """Decode a reply value (header status 0). With the request payload it was answering, an
    NDARRAY_IN_REQUEST reply becomes a read-only view of that payload; without it, such a reply is malformed."""
    buf = memoryview(payload)
    if len(buf) == 0 or buf[0] != Tag.NDARRAY_IN_REQUEST:
        return decode_value(buf)
    if request is None:
        raise FrameError(0, "an NDARRAY_IN_REQUEST reply came to a call that did not ask for one")
    r = Reader(buf)
    r.pos = 1
    dtype, shape, count, where, offset = _decode_shape_and_offset(r, "NDARRAY_IN_REQUEST")
    check_end(r, "the value")
    nbytes = count * dtype.itemsize
    req = memoryview(request)
    if offset > len(req) or nbytes > len(req) - offset:
        raise FrameError(where, f"NDARRAY_IN_REQUEST data of {nbytes} bytes at offset {offset} lies beyond the "
                                f"{len(req)}-byte request payload")
    return array_view(Reader(req), where, dtype, shape, count, offset)


def decode_desc(r: Reader, depth: int = 0) -> TypeDesc:
    at = r.pos
    tag = r.unpack(U8, "type descriptor")
    if depth > MAX_DEPTH:
        raise FrameError(at, f"type descriptor nested deeper than {MAX_DEPTH}")
    if tag == Tag.TUPLE:
        n = r.unpack(U8, "tuple count")
        if not 1 <= n <= MAX_TUPLE:
            raise FrameError(at, f"tuple descriptor of {n} elements at depth {depth}")
        return tuple(decode_desc(r, depth + 1) for _ in range(n))
    if tag == Tag.ARRAY:
        return ArrayOf(_dtype_at(r, "ARRAY descriptor").name)
    if tag == Tag.SCALAR:
        return ScalarOf(_dtype_at(r, "SCALAR descriptor", SCALAR_DTYPES).name)
    if tag == Tag.RECT_ARRAY:
        dtype = _dtype_at(r, "RECT_ARRAY descriptor").name
        ndim = r.unpack(U8, "RECT_ARRAY rank")
        if not 2 <= ndim <= MAX_RECT_NDIM:
            raise FrameError(at + 2, f"RECT_ARRAY rank {ndim}, expected 2..{MAX_RECT_NDIM}")
        return RectArray(dtype, ndim)
    if tag == Tag.LIST:
        return ListOf(decode_desc(r, depth + 1))
    if tag == Tag.DICT:
        return DictOf(decode_desc(r, depth + 1))
    if tag == Tag.OPTIONAL:
        inner = decode_desc(r, depth + 1)
        if isinstance(inner, Nullable) or accepts_none(inner):
            raise FrameError(at, f"OPTIONAL of {csharp_name(inner)}, which is already nullable")
        return Nullable(inner)
    if tag == Tag.RECORD:
        flags = r.unpack(U8, "RECORD descriptor flags")
        if flags > 1:
            raise FrameError(at + 1, f"RECORD descriptor flags {flags}, expected 0 (class) or 1 (struct)")
        name = _decode_utf8(r, r.unpack(U8, "RECORD type name length"), "RECORD type name")
        n = r.unpack(U16, "RECORD field count")
        if n > MAX_FIELDS or n * 3 > r.left():
            raise FrameError(at, f"RECORD descriptor of {n} fields cannot fit in {r.left()} bytes")
        fields = []
        keys = set()
        for _ in range(n):
            name_at = r.pos
            fname = _decode_utf8(r, r.unpack(U8, "RECORD field name length"), "RECORD field name")
            if not fname.isidentifier() or field_key(fname) in keys:
                raise FrameError(name_at, f"RECORD field name {fname!r} is not an identifier or appears twice")
            keys.add(field_key(fname))
            fields.append((fname, decode_desc(r, depth + 1)))
        return Record(tuple(fields), name, flags == 1)
    if tag not in SIMPLE_DESCS:
        raise FrameError(at, f"unknown type descriptor 0x{tag:02x} (this server knows 0x00..0x{max(Tag):02x}: is "
                             "the client newer than the server? Update lesspy-kernel)")
    return Tag(tag)


def read_prefix(r: Reader) -> Tuple[str, TypeDesc]:
    """Decode a call frame's name and return descriptor; leaves `r` at the argument count."""
    n = r.unpack(U16, "name length")
    if not 1 <= n <= MAX_NAME_BYTES:
        raise FrameError(0, f"function name of {n} bytes, expected 1..{MAX_NAME_BYTES}")
    start = r.need(n, "function name")
    try:
        name = bytes(r.buf[start:start + n]).decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError(start, "function name is not valid UTF-8") from None
    return name, decode_desc(r)


def decode_call(payload: Union[bytes, memoryview]) -> Call:
    """Decode a call frame, every part the plain way (fastdecode.decode_call is what the server uses)."""
    buf = payload if type(payload) is memoryview else memoryview(payload)
    r = Reader(buf if buf.readonly else buf.toreadonly())
    name, returns = read_prefix(r)
    argc = r.unpack(U8, "argument count")
    args = [decode_any(r) for _ in range(argc)]
    check_end(r, "the arguments")
    if r.at_start >= 0:
        return Call(name, returns, args, (r.pos, r.at_start, r.at_end))
    return Call(name, returns, args)


def _decode_text(r: Reader, what: str) -> str:
    n = r.unpack(U32, what + " length")
    start = r.need(n, what)
    return bytes(r.buf[start:start + n]).decode("utf-8", errors="replace")


def decode_error(payload: Union[bytes, memoryview]) -> ErrorReply:
    """Decode an error reply frame (header status 1)."""
    r = Reader(memoryview(payload))
    kind = r.unpack(U8, "error kind")
    try:
        kind = ErrorKind(kind)
    except ValueError:
        raise FrameError(0, f"unknown error kind {kind}") from None
    return ErrorReply(kind, _decode_text(r, "exception type"), _decode_text(r, "message"),
                      _decode_text(r, "traceback"))
