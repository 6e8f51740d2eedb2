"""The fast path of call decoding: the name and return descriptor of a call seen before are recalled instead
of decoded (a bounded cache), and a call of only scalar and NDARRAY arguments is decoded in a few steps. Any
other frame, and every malformed one, is decoded by the reference decoder (decode.py), whose result this module
must equal on every frame (tests/test_protocol.py)."""

from __future__ import annotations

import struct
import threading
from typing import Dict, Optional, Tuple, Union

import numpy as np

from .constants import DTYPES, INT64_RANGE, MAX_NAME_BYTES, MAX_NDIM, Tag
from .decode import Reader, check_end, decode_any, decode_desc
from .errors import FrameError
from .header import NDARRAY_ALIGN
from .structs import F32, F64, I32, I64, SHAPES, U8, U16
from .types import Call, TypeDesc

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
_INLINE: Dict[int, struct.Struct] = {Tag.INT32: I32, Tag.INT64: I64, Tag.FLOAT64: F64, Tag.FLOAT32: F32}


def decode_call(payload: Union[bytes, memoryview]) -> Call:
    """Decode a call frame; arrays in the arguments are read-only views over `payload`, made from a read-only
    buffer (so NumPy refuses to make them writable: Python cannot write into the client's request file). A
    read-only memoryview is used as it is (the lane passes one, and tells by how many views share its buffer
    whether any argument view outlives the call)."""
    buf = payload if type(payload) is memoryview else memoryview(payload)
    if not buf.readonly:
        buf = buf.toreadonly()
    quick = _known_scalar_call(buf)
    return quick if quick is not None else _decode_call_cached(buf)


def _decode_call_cached(buf: memoryview) -> Call:
    """Any call frame: its prefix recalled (or decoded and remembered), scalar arguments read inline, every other
    value by the reference decoder."""
    r = Reader(buf)
    buf = r.buf
    head = _prefix(r)
    name, returns = head
    argc = r.unpack(U8, "argument count")
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
        args.append(decode_any(r))
        pos = r.pos
    r.pos = pos
    check_end(r, "the arguments")
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
    dtype = DTYPES.get(buf[pos])
    ndim = buf[pos + 1]
    end = pos + 2 + 8 * ndim
    if dtype is None or ndim > MAX_NDIM or end > size:
        return -1
    shape = SHAPES[ndim].unpack_from(buf, pos + 2)
    count = 1
    for dim in shape:
        if dim > INT64_RANGE[1]:
            return -1
        count *= dim
    start = (end + NDARRAY_ALIGN - 1) // NDARRAY_ALIGN * NDARRAY_ALIGN
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


def _prefix(r: Reader) -> Tuple[str, TypeDesc]:
    """Decode (or recall) the name and the return descriptor; leaves `r` at the argument count."""
    n = r.unpack(U16, "name length")
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
    returns = decode_desc(r)
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
