"""The lesspy wire format (docs/PROTOCOL.md): bytes in, values out, no I/O.

Decoding returns zero-copy, read-only NumPy views over the buffer it was given; every length is checked
against the buffer before anything is allocated, so a hostile frame raises `FrameError` and nothing else.
Encoding is two passes over the same code (measure, then write) so a result that does not fit is refused
before a byte of the mapping is touched.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Optional, Tuple, Union

import numpy as np

PROTOCOL_VERSION = 2
HEADER_SIZE = 64
MAPPING_MAGIC = b"LPYM"
MAX_NAME_BYTES = 1024
MAX_NDIM = 32
MAX_TUPLE = 7

# magic, version, header size, capacity, sequence, payload length, status, waiting, session id, cancel, reserved
HEADER = struct.Struct("<4sHHQQQIIQQ8x")
CAPACITY_OFFSET = 8
SEQUENCE_OFFSET = 16
WAITING_OFFSET = 36
SESSION_OFFSET = 40
CANCEL_OFFSET = 48
_SEQ = struct.Struct("<Q")
_LEN_STATUS = struct.Struct("<QI")
# what an error reply keeps at most of each part (issue: a hostile exception must not outgrow the reply)
MAX_ERROR_TYPE = 256
MAX_ERROR_MESSAGE = 64 * 1024
MAX_ERROR_TRACEBACK = 256 * 1024
_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_I64 = struct.Struct("<q")
_F32 = struct.Struct("<f")
_F64 = struct.Struct("<d")

STATUS_OK = 0
STATUS_ERROR = 1


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

# A type descriptor is a Tag for a simple type, or a Python tuple of descriptors for a C# ValueTuple.
TypeDesc = Union[Tag, Tuple["TypeDesc", ...]]

_CSHARP_NAMES = {
    Tag.NONE: "void", Tag.BOOL: "bool", Tag.INT32: "int", Tag.INT64: "long", Tag.FLOAT32: "float",
    Tag.FLOAT64: "double", Tag.STRING: "string", Tag.BYTES: "byte[]", Tag.INT32_ARRAY: "int[]",
    Tag.INT32_JAGGED: "int[][]", Tag.NDARRAY: "NdArray",
}
_NULLABLE = (Tag.STRING, Tag.BYTES, Tag.INT32_ARRAY, Tag.INT32_JAGGED, Tag.NDARRAY)
_I32_RANGE = (-(2**31), 2**31 - 1)
_I64_RANGE = (-(2**63), 2**63 - 1)
_F32_MAX = float(np.finfo(np.float32).max)


def csharp_name(desc: TypeDesc) -> str:
    """The C# spelling of a declared type, for error messages."""
    if isinstance(desc, tuple):
        return "(" + ", ".join(csharp_name(d) for d in desc) + ")"
    return _CSHARP_NAMES[desc]


class FrameError(ValueError):
    """A frame that does not follow docs/PROTOCOL.md: says where and what was expected."""

    def __init__(self, offset: int, what: str) -> None:
        super().__init__(f"malformed frame at byte {offset}: {what}")
        self.offset = offset
        self.what = what


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


def publish(buf: memoryview, seq: int, length: int, status: int) -> None:
    """Write length and status, then the sequence word last (the reader may spin on it)."""
    _LEN_STATUS.pack_into(buf, 24, length, status)
    _SEQ.pack_into(buf, SEQUENCE_OFFSET, seq)


# ---------------------------------------------------------------- decoding

class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: memoryview) -> None:
        self.buf = buf
        self.pos = 0

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


def _decode_ndarray(r: _Reader) -> np.ndarray:
    at = r.pos
    code = r.unpack(_U8, "dtype code")
    if code not in DTYPE_NAMES:
        raise FrameError(at, f"unknown dtype code {code}")
    ndim = r.unpack(_U8, "ndim")
    if ndim > MAX_NDIM:
        raise FrameError(at + 1, f"ndim {ndim} exceeds {MAX_NDIM}")
    start = r.need(8 * ndim, f"shape of {ndim} dimensions")
    shape = struct.unpack_from(f"<{ndim}Q", r.buf, start)
    r.align(64)
    dtype = np.dtype(DTYPE_NAMES[code]).newbyteorder("<")
    if any(dim > _I64_RANGE[1] for dim in shape):
        raise FrameError(start, f"shape {shape} has a dimension beyond int64")
    count = 1
    for dim in shape:
        count *= dim
    nbytes = count * dtype.itemsize
    if nbytes > len(r.buf) - r.pos:
        raise FrameError(r.pos, f"array of shape {shape} needs {nbytes} bytes, {len(r.buf) - r.pos} left")
    data = r.need(nbytes, "array data")
    try:
        arr = np.frombuffer(r.buf, dtype=dtype, count=count, offset=data).reshape(shape)
    except ValueError as e:  # e.g. an empty array whose other dimensions overflow NumPy's size
        raise FrameError(at, f"shape {shape}: {e}") from None
    arr.flags.writeable = False
    return arr


def _decode_value(r: _Reader, depth: int = 0) -> Any:
    at = r.pos
    tag = r.unpack(_U8, "type tag")
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
    if tag in (Tag.STRING, Tag.BYTES):
        n = r.unpack(_U32, "length")
        start = r.need(n, "string" if tag == Tag.STRING else "bytes")
        raw = bytes(r.buf[start:start + n])
        if tag == Tag.BYTES:
            return raw
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise FrameError(start + e.start, "string is not valid UTF-8") from None
    if tag == Tag.INT32_ARRAY:
        return _decode_int32_array(r)
    if tag == Tag.INT32_JAGGED:
        rows = r.unpack(_U32, "int[][] row count")
        if rows * 8 > len(r.buf) - r.pos:
            raise FrameError(at, f"int[][] of {rows} rows cannot fit in {len(r.buf) - r.pos} bytes")
        return [_decode_int32_array(r) for _ in range(rows)]
    if tag == Tag.TUPLE:
        n = r.unpack(_U8, "tuple count")
        if not 1 <= n <= MAX_TUPLE or depth > 16:
            raise FrameError(at, f"tuple of {n} elements at depth {depth}")
        return tuple(_decode_value(r, depth + 1) for _ in range(n))
    if tag == Tag.NDARRAY:
        return _decode_ndarray(r)
    raise FrameError(at, f"unknown type tag 0x{tag:02x}")


def decode_value(buf: Union[bytes, memoryview]) -> Any:
    """Decode one value that fills `buf` exactly."""
    r = _Reader(memoryview(buf))
    value = _decode_value(r)
    if r.pos != len(r.buf):
        raise FrameError(r.pos, f"{len(r.buf) - r.pos} bytes left after the value")
    return value


def _decode_desc(r: _Reader, depth: int = 0) -> TypeDesc:
    at = r.pos
    tag = r.unpack(_U8, "type descriptor")
    if tag == Tag.TUPLE:
        n = r.unpack(_U8, "tuple count")
        if not 1 <= n <= MAX_TUPLE or depth > 16:
            raise FrameError(at, f"tuple descriptor of {n} elements at depth {depth}")
        return tuple(_decode_desc(r, depth + 1) for _ in range(n))
    if tag not in _CSHARP_NAMES:
        raise FrameError(at, f"unknown type descriptor 0x{tag:02x}")
    return Tag(tag)


def decode_call(payload: Union[bytes, memoryview]) -> Call:
    """Decode a call frame; arrays in the arguments are read-only views over `payload`."""
    r = _Reader(memoryview(payload))
    n = r.unpack(_U16, "name length")
    if not 1 <= n <= MAX_NAME_BYTES:
        raise FrameError(0, f"function name of {n} bytes, expected 1..{MAX_NAME_BYTES}")
    start = r.need(n, "function name")
    try:
        name = bytes(r.buf[start:start + n]).decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError(start, "function name is not valid UTF-8") from None
    returns = _decode_desc(r)
    argc = r.unpack(_U8, "argument count")
    args = [_decode_value(r) for _ in range(argc)]
    if r.pos != len(r.buf):
        raise FrameError(r.pos, f"{len(r.buf) - r.pos} bytes left after the arguments")
    return Call(name, returns, args)


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
    if isinstance(value, (bool, np.bool_)):
        value = int(value)
    elif isinstance(value, np.integer):
        value = int(value)
    elif not isinstance(value, int):
        raise CoercionError(value, desc)
    if not lo <= value <= hi:
        raise CoercionError(value, desc, f"{value} is outside {lo}..{hi}")
    return value


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


def coerce(value: Any, desc: TypeDesc) -> Any:
    """Turn a Python result into the normalized form the encoder writes for the declared C# type."""
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
        if desc == Tag.NONE or desc in _NULLABLE:
            return None
        raise CoercionError(value, desc)
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
            return str(value)
        raise CoercionError(value, desc)
    if desc == Tag.BYTES:
        if isinstance(value, (bytes, bytearray)):
            return memoryview(value)
        if isinstance(value, memoryview):
            return memoryview(value.tobytes()) if not value.contiguous or value.format != "B" else value
        if isinstance(value, np.ndarray) and value.dtype == np.uint8:
            return memoryview(np.ascontiguousarray(value).reshape(-1))
        raise CoercionError(value, desc)
    if desc == Tag.INT32_ARRAY:
        return _as_int32_array(value, desc)
    if desc == Tag.INT32_JAGGED:
        if not isinstance(value, (list, tuple)):
            raise CoercionError(value, desc)
        rows = []
        for i, row in enumerate(value):
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
        # astype/copy rather than ascontiguousarray, which would turn a 0-d array into 1-d
        arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        return arr if arr.flags.c_contiguous else arr.copy(order="C")
    raise CoercionError(value, desc, "unsupported declared type")


def describe(value: Any) -> TypeDesc:
    """The natural descriptor for a normalized Python value (used when Python is the sender)."""
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
    if isinstance(value, tuple):
        return tuple(describe(v) for v in value)
    if isinstance(value, list):
        return Tag.INT32_JAGGED
    if isinstance(value, np.ndarray):
        return Tag.NDARRAY
    raise TypeError(f"no wire type for {python_type_name(value)}")


# ---------------------------------------------------------------- encoding

def _emit_int32_array(arr: np.ndarray, buf: Optional[memoryview], pos: int) -> int:
    if buf is not None:
        _U32.pack_into(buf, pos, arr.size)
    pos += 4
    pad = -pos % 8
    if buf is not None:
        buf[pos:pos + pad] = bytes(pad)
        buf[pos + pad:pos + pad + arr.nbytes] = arr.view(np.uint8).reshape(-1)
    pos += pad + arr.nbytes
    pad = -pos % 8
    if buf is not None:
        buf[pos:pos + pad] = bytes(pad)
    return pos + pad


def _emit(value: Any, desc: TypeDesc, buf: Optional[memoryview], pos: int) -> int:
    """Write a normalized value at `pos` (or only measure it when `buf` is None); return the end."""
    if value is None:
        if buf is not None:
            _U8.pack_into(buf, pos, Tag.NONE)
        return pos + 1
    tag = Tag.TUPLE if isinstance(desc, tuple) else desc
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
    if tag in (Tag.STRING, Tag.BYTES):
        raw = value.encode("utf-8") if isinstance(value, str) else value
        n = len(raw) if tag == Tag.STRING else raw.nbytes
        if buf is not None:
            _U32.pack_into(buf, pos, n)
            buf[pos + 4:pos + 4 + n] = raw
        return pos + 4 + n
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
        if buf is not None:
            _U8.pack_into(buf, pos, len(desc))
        pos += 1
        for v, d in zip(value, desc):
            pos = _emit(v, d, buf, pos)
        return pos
    if tag == Tag.NDARRAY:
        if buf is not None:
            struct.pack_into(f"<BB{value.ndim}Q", buf, pos, DTYPE_CODES[value.dtype.name], value.ndim,
                             *value.shape)
        pos += 2 + 8 * value.ndim
        pad = -pos % 64
        if buf is not None:
            buf[pos:pos + pad] = bytes(pad)
            if value.nbytes:
                np.copyto(np.frombuffer(buf, dtype=value.dtype, count=value.size, offset=pos + pad)
                          .reshape(value.shape), value, casting="no")
        return pos + pad + value.nbytes
    raise TypeError(f"cannot encode tag {tag!r}")


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


def _emit_desc(desc: TypeDesc, out: bytearray) -> None:
    if isinstance(desc, tuple):
        out += bytes([Tag.TUPLE, len(desc)])
        for d in desc:
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
