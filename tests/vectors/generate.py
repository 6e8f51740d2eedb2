"""Golden vectors: one .bin per case plus expected.txt, the canonical rendering both languages must print.

Run `python tests/vectors/generate.py` to rewrite them after a deliberate protocol change (and update
docs/PROTOCOL.md in the same commit). The tests check the committed files, never regenerate them.
"""

from __future__ import annotations

import datetime
import math
import struct
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import List, NamedTuple, Optional

import numpy as np

from lesspy_kernel.coerce import datetime_to_ticks, encode_call, encode_value, timedelta_to_ticks
from lesspy_kernel.wire import (ArrayOf, DictOf, ErrorKind, ListOf, Nullable, Record, RectArray, ScalarOf, Tag,
                                decode_call, decode_value, encode_desc, encode_error, write_reply_in_request)

HERE = Path(__file__).resolve().parent
T = Tag

VALUE_CASES = [
    ("none", None, T.NONE),
    ("bool_true", True, T.BOOL),
    ("bool_false", False, T.BOOL),
    ("int32_zero", 0, T.INT32),
    ("int32_min", -(2**31), T.INT32),
    ("int32_max", 2**31 - 1, T.INT32),
    ("int64_min", -(2**63), T.INT64),
    ("int64_max", 2**63 - 1, T.INT64),
    ("float32_pi", 3.1415927410125732, T.FLOAT32),
    ("float32_neg_inf", -math.inf, T.FLOAT32),
    ("float64_nan", math.nan, T.FLOAT64),
    ("float64_inf", math.inf, T.FLOAT64),
    ("float64_neg_zero", -0.0, T.FLOAT64),
    ("float64_tiny", 5e-324, T.FLOAT64),
    ("string_empty", "", T.STRING),
    ("string_ascii", "hello", T.STRING),
    ("string_unicode", "héllo wörld ✓ 日本語 🐍", T.STRING),
    ("bytes_empty", b"", T.BYTES),
    ("bytes_all", bytes(range(256)), T.BYTES),
    ("int32_array_empty", [], T.INT32_ARRAY),
    ("int32_array", [1, -2, 2**31 - 1, -(2**31), 0], T.INT32_ARRAY),
    ("int32_array_one", [7], T.INT32_ARRAY),
    ("jagged_empty", [], T.INT32_JAGGED),
    ("jagged_rows", [[1, 2, 3], [], [4], []], T.INT32_JAGGED),
    ("tuple_int_double", (42, 2.5), (T.INT32, T.FLOAT64)),
    ("tuple_nested", ((1, (2**40, True)), "x"), ((T.INT32, (T.INT64, T.BOOL)), T.STRING)),
    ("tuple_seven", (1, 2, 3, 4, 5, 6, "seven"), (T.INT32,) * 6 + (T.STRING,)),
    ("tuple_ndarray_double", (np.arange(3, dtype=np.float32), 1.5), (T.NDARRAY, T.FLOAT64)),
    ("ndarray_float32_2x3", np.arange(6, dtype=np.float32).reshape(2, 3) / 4, T.NDARRAY),
    ("ndarray_float64_nan", np.array([math.nan, -math.inf, -0.0, 1e300]), T.NDARRAY),
    ("ndarray_int32", np.array([-(2**31), 2**31 - 1, 0], dtype=np.int32), T.NDARRAY),
    ("ndarray_int64", np.array([[-(2**63)], [2**63 - 1]], dtype=np.int64), T.NDARRAY),
    ("ndarray_uint8_3d", np.arange(24, dtype=np.uint8).reshape(2, 3, 4), T.NDARRAY),
    ("ndarray_bool", np.array([True, False, True]), T.NDARRAY),
    ("ndarray_0d", np.array(2.5, dtype=np.float64), T.NDARRAY),
    ("ndarray_empty_0x3", np.zeros((0, 3), dtype=np.float32), T.NDARRAY),
    ("ndarray_int16", np.array([-3, 300], dtype=np.int16), T.NDARRAY),
]


@dataclass
class Point:
    x: float
    y: float


class Pixel(NamedTuple):
    r: int
    g: int
    b: int


@dataclass
class Shape:
    name: str
    max_value: int
    origin: Point
    samples: np.ndarray
    tags: List[str]
    parent: Optional[Point] = None


POINT = Record((("x", T.FLOAT64), ("y", T.FLOAT64)), "Point")
PIXEL = Record((("r", ScalarOf("uint8")), ("g", ScalarOf("uint8")), ("b", ScalarOf("uint8"))), "Pixel", True)
SHAPE = Record((("name", T.STRING), ("max_value", T.INT32), ("origin", POINT), ("samples", ArrayOf("float64")),
                ("tags", ListOf(T.STRING)), ("parent", POINT)), "Shape")
UTC = datetime.timezone.utc
GUID = uuid.UUID("00112233-4455-6677-8899-aabbccddeeff")

# the types of issue 9: each is decoded by VectorCheck.cs with the C# type its table names for the vector
TYPED_CASES = [
    ("nullable_int_null", None, Nullable(T.INT32)),
    ("nullable_int", -7, Nullable(T.INT32)),
    ("nullable_double", 2.5, Nullable(T.FLOAT64)),
    ("nullable_bool", True, Nullable(T.BOOL)),
    ("nullable_long_null", None, Nullable(T.INT64)),
    ("nullable_float", 0.5, Nullable(T.FLOAT32)),
    ("array_float64", [1.5, -0.0, math.nan, math.inf, 5e-324], ArrayOf("float64")),
    ("array_float64_empty", [], ArrayOf("float64")),
    ("array_float32", [1.25, -3.0, math.inf], ArrayOf("float32")),
    ("array_int64", [-(2**63), 2**63 - 1, 0], ArrayOf("int64")),
    ("array_int16", [-(2**15), 2**15 - 1, 1], ArrayOf("int16")),
    ("array_uint16", [0, 65535], ArrayOf("uint16")),
    ("array_uint32", [2**32 - 1], ArrayOf("uint32")),
    ("array_uint64", [2**64 - 1, 0, 1], ArrayOf("uint64")),
    ("array_int8", [-128, 127, 0, 1, -1], ArrayOf("int8")),
    ("array_bool", [True, False, True], ArrayOf("bool")),
    ("string_array", ["a", "", "héllo ✓", None], ListOf(T.STRING)),
    ("string_list_empty", [], ListOf(T.STRING)),
    ("double_jagged", [[1.5, 2.5], [], [-1.0]], ListOf(ArrayOf("float64"))),
    ("dict_double", {"a": 1.5, "é": -2.0, "": 0.0}, DictOf(T.FLOAT64)),
    ("dict_empty", {}, DictOf(T.INT32)),
    ("dict_of_lists", {"xs": ["1", None], "ys": None}, DictOf(ListOf(T.STRING))),
    ("datetime_utc", datetime.datetime(2024, 2, 29, 12, 34, 56, 789012, tzinfo=UTC), T.DATETIME),
    ("datetime_naive_min", datetime.datetime.min, T.DATETIME),
    ("datetime_naive_max", datetime.datetime.max, T.DATETIME),
    ("timespan_negative", datetime.timedelta(days=-3, microseconds=5), T.TIMESPAN),
    ("timespan_zero", datetime.timedelta(0), T.TIMESPAN),
    ("guid", GUID, T.GUID),
    ("scalar_uint8", 255, ScalarOf("uint8")),
    ("scalar_int8", -128, ScalarOf("int8")),
    ("scalar_int16", -32768, ScalarOf("int16")),
    ("scalar_uint16", 65535, ScalarOf("uint16")),
    ("scalar_uint32", 2**32 - 1, ScalarOf("uint32")),
    ("scalar_uint64", 2**64 - 1, ScalarOf("uint64")),
    ("enum_int", 2, T.INT32),
    ("enum_byte", 3, ScalarOf("uint8")),
    ("rect_float64_2x3", np.arange(6, dtype=np.float64).reshape(2, 3) / 8, RectArray("float64", 2)),
    ("rect_int32_fortran", np.asfortranarray(np.arange(8, dtype=np.int32).reshape(2, 2, 2)), RectArray("int32", 3)),
    ("rect_bool_0x2", np.zeros((0, 2), dtype=bool), RectArray("bool", 2)),
    ("record_point", Point(1.5, -2.0), POINT),
    ("record_struct", Pixel(255, 128, 0), PIXEL),
    ("record_nested", Shape("tri", 2**31 - 1, Point(0.0, 1.0), np.array([0.5, 1.5]), ["a", "b"]), SHAPE),
    ("record_null", None, POINT),
    ("nullable_struct_null", None, Nullable(PIXEL)),
    ("record_list", [Point(1, 2), None], ListOf(POINT)),
    ("tuple_datetime_nullable", (datetime.datetime(2000, 1, 1), None), (T.DATETIME, Nullable(T.INT32))),
]

# a call with the new types as arguments and a record as the declared result
TYPES_CALL = ("types", SHAPE,
              [[0.5, -1.0], None, {"k": 7}, GUID, Point(3.0, 4.0), np.eye(2)],
              [ArrayOf("float64"), Nullable(T.DATETIME), DictOf(T.INT32), T.GUID, POINT, RectArray("float64", 2)])


def ndarray_at_call() -> bytes:
    """A call whose NDARRAY_AT argument's data lies after the frame, at the next multiple of 64."""
    frame = bytearray(encode_call("scale", T.NDARRAY, [], []))
    frame[-1] = 2                                       # two arguments
    frame += bytes([T.NDARRAY_AT, 11, 2]) + struct.pack("<2Q", 2, 3)
    frame += bytes(-len(frame) % 8)
    offset_at = len(frame)
    frame += bytes(8)
    frame += bytes([T.FLOAT64]) + struct.pack("<d", 2.5)
    data_at = len(frame) + (-len(frame) % 64)
    struct.pack_into("<Q", frame, offset_at, data_at)
    frame += bytes(data_at - len(frame))
    frame += (np.arange(6, dtype=np.float32).reshape(2, 3) / 4).tobytes()
    return bytes(frame)


def render(value, desc) -> str:
    """The canonical text of a decoded value: the C# VectorCheck prints the same."""
    if value is None:
        return "none"
    if isinstance(desc, tuple):
        return "tuple(" + ",".join(render(v, d) for v, d in zip(value, desc)) + ")"
    if desc == T.BOOL:
        return "bool:" + ("true" if value else "false")
    if desc == T.INT32:
        return f"int32:{value}"
    if desc == T.INT64:
        return f"int64:{value}"
    if desc == T.FLOAT32:
        return "float32:" + struct.pack("<f", value).hex()
    if desc == T.FLOAT64:
        return "float64:" + struct.pack("<d", value).hex()
    if desc == T.STRING:
        return "string:" + value.encode("utf-8").hex()
    if desc == T.BYTES:
        return "bytes:" + bytes(value).hex()
    if desc == T.INT32_ARRAY:
        return "int32[]:" + _ints(value)
    if desc == T.INT32_JAGGED:
        return "int32[][]:" + "".join(_ints(r) for r in value)
    if desc == T.NDARRAY or isinstance(desc, RectArray):
        a = np.asarray(value)
        return f"ndarray:{a.dtype.name}:[{','.join(str(d) for d in a.shape)}]:{np.ascontiguousarray(a).tobytes().hex()}"
    if isinstance(desc, Nullable):
        return render(value, desc.inner)
    if isinstance(desc, ArrayOf):
        return f"array:{desc.dtype}:" + np.ascontiguousarray(value, dtype=desc.dtype).tobytes().hex()
    if isinstance(desc, ListOf):
        return "list(" + ",".join(render(v, desc.item) for v in value) + ")"
    if isinstance(desc, DictOf):
        return "dict(" + ",".join(k.encode().hex() + "=" + render(v, desc.value) for k, v in value.items()) + ")"
    if isinstance(desc, ScalarOf):
        return f"{desc.dtype}:{int(value)}"
    if isinstance(desc, Record):
        return "record(" + ",".join(f"{n}={render(getattr(value, n), d)}" for n, d in desc.fields) + ")"
    if desc == T.DATETIME:
        return "datetime:%d:%d" % datetime_to_ticks(value)
    if desc == T.TIMESPAN:
        return f"timespan:{timedelta_to_ticks(value)}"
    if desc == T.GUID:
        return f"guid:{value}"
    raise TypeError(desc)


def _ints(row) -> str:
    return "[" + ",".join(str(int(x)) for x in row) + "]"


ERROR_CASE = (ErrorKind.PYTHON_ERROR, "ValueError", "bad value: ü",
              'Traceback (most recent call last):\n  File "m.py", line 2, in f\nValueError: bad value: ü\n')


# an odd-length name and mixed arguments, so every padding rule lands somewhere other than offset 0
SCALE3_CALL = ("scale3", (T.NDARRAY, T.FLOAT64),
               [np.arange(6, dtype=np.float32).reshape(2, 3) / 4, 2.5, [1, 2, 3], "é"],
               [T.NDARRAY, T.FLOAT64, T.INT32_ARRAY, T.STRING])


def reply_in_request() -> bytes:
    """The reply to call_scale3 whose result is its first argument: NDARRAY_IN_REQUEST pointing at that data."""
    call = encode_call(*SCALE3_CALL)
    arr = SCALE3_CALL[2][0]
    buf = bytearray(64)
    n = write_reply_in_request(memoryview(buf), arr, call.index(arr.tobytes()))
    return bytes(buf[:n])


def main() -> None:
    lines = []
    for name, value, desc in VALUE_CASES + TYPED_CASES:
        raw = encode_value(value, desc)
        (HERE / f"value_{name}.bin").write_bytes(raw)
        lines.append(f"value_{name} {render(decode_value(raw), desc)}")
    (HERE / "error_python.bin").write_bytes(encode_error(*ERROR_CASE))
    (HERE / "call_add_ints.bin").write_bytes(encode_call("add_ints", T.INT32, [2, 40], [T.INT32, T.INT32]))
    (HERE / "call_scale3.bin").write_bytes(encode_call(*SCALE3_CALL))
    (HERE / "call_types.bin").write_bytes(encode_call(*TYPES_CALL))
    (HERE / "call_ndarray_at.bin").write_bytes(ndarray_at_call())
    (HERE / "reply_ndarray_in_request.bin").write_bytes(reply_in_request())
    (HERE / "expected.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
