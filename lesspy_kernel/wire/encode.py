"""The encoder: normalized values (what coerce.py makes of Python values) to bytes, and the reply frames.
Encoding is two passes over the same code (measure, then write) so a result that does not fit is refused
before a byte of the mapping is touched."""

from __future__ import annotations

import struct
from typing import Any, Optional, Tuple

import numpy as np

from .constants import (DTYPE_CODE_OF, DTYPE_CODES, MAX_ERROR_MESSAGE, MAX_ERROR_TRACEBACK, MAX_ERROR_TYPE, NDARRAY,
                        NONE, ErrorKind, Tag)
from .header import HEADER_SIZE, NDARRAY_ALIGN, ndarray_data_offset
from .structs import F32, F64, I32, I64, SHAPES, U8, U16, U32, U64, ZEROS
from .types import ArrayOf, DictOf, ListOf, Nullable, Record, RectArray, ScalarOf, TypeDesc

_SCALAR_STRUCTS = {"int8": struct.Struct("<b"), "uint8": struct.Struct("<B"), "int16": struct.Struct("<h"),
                   "uint16": struct.Struct("<H"), "uint32": struct.Struct("<I"), "uint64": struct.Struct("<Q")}
_DATETIME = struct.Struct("<qB")


def _emit_aligned_data(arr: np.ndarray, buf: Optional[memoryview], pos: int) -> int:
    """An array's raw bytes between zero padding to 8-byte boundaries (ARRAY, INT32_ARRAY)."""
    pad = -pos % 8
    if buf is not None:
        buf[pos:pos + pad] = bytes(pad)
        buf[pos + pad:pos + pad + arr.nbytes] = arr.view(np.uint8).reshape(-1).data
    pos += pad + arr.nbytes
    pad = -pos % 8
    if buf is not None:
        buf[pos:pos + pad] = bytes(pad)
    return pos + pad


def _emit_int32_array(arr: np.ndarray, buf: Optional[memoryview], pos: int) -> int:
    if buf is not None:
        U32.pack_into(buf, pos, arr.size)
    return _emit_aligned_data(arr, buf, pos + 4)


def _emit_ndarray(value: np.ndarray, buf: Optional[memoryview], pos: int) -> int:
    if buf is not None:
        struct.pack_into(f"<BB{value.ndim}Q", buf, pos, DTYPE_CODES[value.dtype.name], value.ndim, *value.shape)
    pos += 2 + 8 * value.ndim
    pad = -pos % NDARRAY_ALIGN
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
            U8.pack_into(buf, pos, Tag.NONE)
        return pos + 1
    if isinstance(desc, Nullable):
        return _emit(value, desc.inner, buf, pos)
    tag = _value_tag(desc)
    if buf is not None:
        U8.pack_into(buf, pos, tag)
    pos += 1
    if tag == Tag.BOOL:
        if buf is not None:
            U8.pack_into(buf, pos, 1 if value else 0)
        return pos + 1
    if tag in (Tag.INT32, Tag.INT64, Tag.FLOAT32, Tag.FLOAT64):
        s = {Tag.INT32: I32, Tag.INT64: I64, Tag.FLOAT32: F32, Tag.FLOAT64: F64}[tag]
        if buf is not None:
            s.pack_into(buf, pos, value)
        return pos + s.size
    if tag == Tag.STRING:
        return _emit_text(value.encode("utf-8"), U32, buf, pos)
    if tag == Tag.BYTES:
        if buf is not None:
            U32.pack_into(buf, pos, value.nbytes)
            buf[pos + 4:pos + 4 + value.nbytes] = value
        return pos + 4 + value.nbytes
    if tag == Tag.INT32_ARRAY:
        return _emit_int32_array(value, buf, pos)
    if tag == Tag.INT32_JAGGED:
        if buf is not None:
            U32.pack_into(buf, pos, len(value))
        pos += 4
        for row in value:
            pos = _emit_int32_array(row, buf, pos)
        return pos
    if tag == Tag.TUPLE:
        assert isinstance(desc, tuple)
        if buf is not None:
            U8.pack_into(buf, pos, len(desc))
        pos += 1
        for v, d in zip(value, desc):
            pos = _emit(v, d, buf, pos)
        return pos
    if tag == Tag.NDARRAY:
        return _emit_ndarray(value, buf, pos)
    if tag == Tag.ARRAY:
        if buf is not None:
            struct.pack_into("<BI", buf, pos, DTYPE_CODES[value.dtype.name], value.size)
        return _emit_aligned_data(value, buf, pos + 5)
    if tag == Tag.LIST:
        if buf is not None:
            U32.pack_into(buf, pos, len(value))
        pos += 4
        for v in value:
            pos = _emit(v, desc.item, buf, pos)
        return pos
    if tag == Tag.DICT:
        if buf is not None:
            U32.pack_into(buf, pos, len(value))
        pos += 4
        for k, v in value.items():
            pos = _emit_text(k.encode("utf-8"), U32, buf, pos)
            pos = _emit(v, desc.value, buf, pos)
        return pos
    if tag == Tag.DATETIME:
        if buf is not None:
            _DATETIME.pack_into(buf, pos, *value)
        return pos + _DATETIME.size
    if tag == Tag.TIMESPAN:
        if buf is not None:
            I64.pack_into(buf, pos, value)
        return pos + 8
    if tag == Tag.GUID:
        if buf is not None:
            buf[pos:pos + 16] = value
        return pos + 16
    if tag == Tag.SCALAR:
        s = _SCALAR_STRUCTS[desc.dtype]
        if buf is not None:
            U8.pack_into(buf, pos, DTYPE_CODES[desc.dtype])
            s.pack_into(buf, pos + 1, value)
        return pos + 1 + s.size
    if tag == Tag.RECORD:
        if buf is not None:
            U16.pack_into(buf, pos, len(desc.fields))
        pos += 2
        for (name, d), v in zip(desc.fields, value):
            pos = _emit_text(name.encode("utf-8"), U8, buf, pos)
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


def value_bytes(value: Any, desc: TypeDesc) -> bytes:
    """A normalized value encoded into new bytes."""
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
        out += bytes([Tag.RECORD, 1 if desc.value_type else 0, len(name)]) + name + U16.pack(len(desc.fields))
        for fname, d in desc.fields:
            raw = fname.encode("utf-8")
            out += bytes([len(raw)]) + raw
            _emit_desc(d, out)
    else:
        out.append(desc)


def call_bytes(name: str, returns: TypeDesc, args: list, arg_descs: list) -> bytes:
    """A call frame (what a client sends) of normalized arguments."""
    raw = name.encode("utf-8")
    out = bytearray(U16.pack(len(raw)) + raw)
    _emit_desc(returns, out)
    out.append(len(args))
    for a, d in zip(args, arg_descs):
        start = len(out)
        out += bytes(value_size(a, d, start))
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
    U8.pack_into(buf, pos, kind)
    pos += 1
    for text in (python_type, message, traceback):
        raw = text.encode("utf-8", errors="replace")
        U32.pack_into(buf, pos, len(raw))
        buf[pos + 4:pos + 4 + len(raw)] = raw
        pos += 4 + len(raw)
    return pos


def encode_error(kind: ErrorKind, python_type: str, message: str, traceback: str) -> bytes:
    out = bytearray(error_size(python_type, message, traceback))
    write_error(memoryview(out), kind, python_type, message, traceback)
    return bytes(out)


def write_reply_in_request(buf: memoryview, arr: np.ndarray, offset: int) -> int:
    """Write an NDARRAY_IN_REQUEST reply: `arr` (C-contiguous, little-endian) lies `offset` bytes into the
    request payload, so only its shape and that offset are sent. Returns the reply's length."""
    ndim = arr.ndim
    head = 3 + 8 * ndim
    at = (head + 7) // 8 * 8
    buf[0] = Tag.NDARRAY_IN_REQUEST
    buf[1] = DTYPE_CODE_OF[arr.dtype]
    buf[2] = ndim
    SHAPES[ndim].pack_into(buf, 3, *arr.shape)
    if at > head:
        buf[head:at] = ZEROS[:at - head]
    U64.pack_into(buf, at, offset)
    return at + 8


def write_placed_ndarray(buf: memoryview, arr: np.ndarray) -> int:
    """Write the header of a top-level NDARRAY reply whose data already lies at ndarray_data_offset(arr.ndim) in
    `buf` (a payload); returns the reply's length."""
    ndim = arr.ndim
    head = 3 + 8 * ndim
    at = ndarray_data_offset(ndim)
    buf[0] = NDARRAY
    buf[1] = DTYPE_CODE_OF[arr.dtype]
    buf[2] = ndim
    SHAPES[ndim].pack_into(buf, 3, *arr.shape)
    buf[head:at] = ZEROS[:at - head]
    return at + arr.nbytes


# replies written with one pack (tag + value), the bytes write_value would write
_SCALAR_REPLIES = {Tag.INT32: struct.Struct("<Bi"), Tag.INT64: struct.Struct("<Bq"), Tag.FLOAT64: struct.Struct("<Bd"),
                   Tag.FLOAT32: struct.Struct("<Bf"), Tag.BOOL: struct.Struct("<B?")}
_SCALAR_TYPES = frozenset((int, float, bool))


def write_scalar_reply(frame: memoryview, returns: Tag, value: Any) -> int:
    """Write a None, bool, int or float reply into the payload of `frame` (a whole mapping, header first) with one
    pack and no slicing; returns the payload length, or 0 when the value is none of those (use write_value)."""
    if value is None and returns is NONE:
        frame[HEADER_SIZE] = NONE
        return 1
    small = _SCALAR_REPLIES.get(returns)
    if small is not None and type(value) in _SCALAR_TYPES:
        small.pack_into(frame, HEADER_SIZE, returns, value)
        return small.size
    return 0
