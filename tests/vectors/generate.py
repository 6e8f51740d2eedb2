"""Golden vectors: one .bin per case plus expected.txt, the canonical rendering both languages must print.

Run `python tests/vectors/generate.py` to rewrite them after a deliberate protocol change (and update
docs/PROTOCOL.md in the same commit). The tests check the committed files, never regenerate them.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np

from lesspy_kernel.protocol import ErrorKind, Tag, decode_value, encode_call, encode_error, encode_value

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
    if desc == T.NDARRAY:
        a = np.asarray(value)
        return f"ndarray:{a.dtype.name}:[{','.join(str(d) for d in a.shape)}]:{np.ascontiguousarray(a).tobytes().hex()}"
    raise TypeError(desc)


def _ints(row) -> str:
    return "[" + ",".join(str(int(x)) for x in row) + "]"


ERROR_CASE = (ErrorKind.PYTHON_ERROR, "ValueError", "bad value: ü",
              'Traceback (most recent call last):\n  File "m.py", line 2, in f\nValueError: bad value: ü\n')


# an odd-length name and mixed arguments, so every padding rule lands somewhere other than offset 0
SCALE3_CALL = ("scale3", (T.NDARRAY, T.FLOAT64),
               [np.arange(6, dtype=np.float32).reshape(2, 3) / 4, 2.5, [1, 2, 3], "é"],
               [T.NDARRAY, T.FLOAT64, T.INT32_ARRAY, T.STRING])


def main() -> None:
    lines = []
    for name, value, desc in VALUE_CASES:
        raw = encode_value(value, desc)
        (HERE / f"value_{name}.bin").write_bytes(raw)
        lines.append(f"value_{name} {render(decode_value(raw), desc)}")
    (HERE / "error_python.bin").write_bytes(encode_error(*ERROR_CASE))
    (HERE / "call_add_ints.bin").write_bytes(encode_call("add_ints", T.INT32, [2, 40], [T.INT32, T.INT32]))
    (HERE / "call_scale3.bin").write_bytes(encode_call(*SCALE3_CALL))
    (HERE / "expected.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
