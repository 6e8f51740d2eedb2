"""The Python codec against the golden vectors (the C# codec is checked against the same files)."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from lesspy_kernel.protocol import (CoercionError, ErrorKind, FrameError, Tag, coerce, decode_call, decode_error,
                                    decode_value, encode_call, encode_value, value_size)
from vectors.generate import ERROR_CASE, HERE, SCALE3_CALL, VALUE_CASES, render

EXPECTED = dict(line.split(" ", 1) for line in (HERE / "expected.txt").read_text("utf-8").splitlines())


@pytest.mark.parametrize("name,value,desc", VALUE_CASES, ids=[c[0] for c in VALUE_CASES])
def test_golden_value(name, value, desc):
    raw = (HERE / f"value_{name}.bin").read_bytes()
    assert encode_value(value, desc) == raw, "the encoder drifted from the committed vector"
    decoded = decode_value(raw)
    assert render(decoded, desc) == EXPECTED[f"value_{name}"]


def test_every_vector_is_listed():
    files = {p.stem for p in HERE.glob("value_*.bin")}
    assert files == {f"value_{c[0]}" for c in VALUE_CASES} == set(EXPECTED)


def test_golden_error_and_call():
    err = decode_error((HERE / "error_python.bin").read_bytes())
    assert (err.kind, err.python_type, err.message, err.traceback) == ERROR_CASE
    call = decode_call((HERE / "call_add_ints.bin").read_bytes())
    assert (call.name, call.returns, call.args) == ("add_ints", Tag.INT32, [2, 40])
    raw = (HERE / "call_scale3.bin").read_bytes()
    assert encode_call(*SCALE3_CALL) == raw
    call = decode_call(raw)
    assert (call.name, call.returns) == ("scale3", (Tag.NDARRAY, Tag.FLOAT64))
    np.testing.assert_array_equal(call.args[0], SCALE3_CALL[2][0])
    assert call.args[1:2] == [2.5] and call.args[2].tolist() == [1, 2, 3] and call.args[3] == "é"
    assert raw.index(SCALE3_CALL[2][0].tobytes()) % 64 == 0


def test_arrays_decode_as_readonly_zero_copy_views():
    buf = bytearray(encode_value(np.arange(12, dtype=np.float32).reshape(3, 4), Tag.NDARRAY))
    arr = decode_value(memoryview(buf))
    assert not arr.flags.writeable and arr.shape == (3, 4)
    assert arr.ctypes.data % 64 == np.frombuffer(buf, np.uint8).ctypes.data % 64  # data offset is 64-aligned
    struct.pack_into("<f", buf, len(buf) - 4, 99.0)    # write into the buffer: the view sees it
    assert arr[2, 3] == 99.0
    ints = decode_value(memoryview(bytearray(encode_value([5, 6], Tag.INT32_ARRAY))))
    assert ints.dtype == np.int32 and not ints.flags.writeable and ints.tolist() == [5, 6]


def test_data_offset_alignment_follows_payload_position():
    call = encode_call("f", Tag.NONE, [np.ones(3, np.float64)], [Tag.NDARRAY])
    data_at = call.index(np.ones(3).tobytes())
    assert data_at % 64 == 0


@pytest.mark.parametrize("value,desc,expected", [
    (np.int64(7), Tag.INT32, 7), (True, Tag.INT64, 1), (3, Tag.FLOAT64, 3.0), (np.float32(1.5), Tag.FLOAT64, 1.5),
    ([1, 2], (Tag.INT32, Tag.INT64), (1, 2)), (np.bool_(True), Tag.BOOL, True), (None, Tag.STRING, None),
])
def test_coercion_accepts_natural_forms(value, desc, expected):
    assert coerce(value, desc) == expected


def test_coercion_of_sequences_and_arrays():
    assert coerce((1, 2, 3), Tag.INT32_ARRAY).tolist() == [1, 2, 3]
    assert coerce(np.arange(3, dtype=np.int64), Tag.INT32_ARRAY).dtype == np.int32
    assert [r.tolist() for r in coerce([[1], [], (2, 3)], Tag.INT32_JAGGED)] == [[1], [], [2, 3]]
    assert coerce(2.5, Tag.NDARRAY).shape == ()
    big_endian = np.arange(3, dtype=">f4")
    assert coerce(big_endian, Tag.NDARRAY).dtype.byteorder in "<="
    assert coerce(np.arange(6).reshape(2, 3).T, Tag.NDARRAY).flags.c_contiguous


@pytest.mark.parametrize("value,desc,words", [
    (2**40, Tag.INT32, "outside"), ("x", Tag.INT32, "str"), (5, Tag.NONE, "void"), (1.5, Tag.INT64, "float"),
    ([2**31], Tag.INT32_ARRAY, "int range"), ((1, 2), (Tag.INT32,) * 3, "2 elements"),
    (np.array(["a"]), Tag.NDARRAY, "not supported"), (None, Tag.INT32, "NoneType"), ([1.5], Tag.INT32_ARRAY, "integers"),
])
def test_coercion_errors_name_both_types(value, desc, words):
    with pytest.raises(CoercionError) as e:
        coerce(value, desc)
    assert words in str(e.value) and "C#" in str(e.value)


@pytest.mark.parametrize("raw,where", [
    (b"", "name length"), (b"\x05\x00ab", "function name"), (b"\x01\x00f\x02\x01\x63", "type tag"),
    (b"\x01\x00f\x02\x01\x06\xff\xff\xff\xff", "string"), (b"\x01\x00f\x02\x01\x01\x07", "bool"),
    (b"\x01\x00f\x0c", "descriptor"), (b"\x01\x00f\x02\x01\x0b\x0b\x01" + b"\xff" * 8 + bytes(64), "shape"),
    (b"\x01\x00f\x02\x01\x09\xff\xff\xff\x7f", "rows"), (b"\x01\x00f\x02\x00junk", "left"),
    (b"\x01\x00f\x02\x01\x0a\x09", "tuple"), (b"\x01\x00f\x02\x01\x0b\x63\x00", "dtype"),
])
def test_malformed_frames_raise_frame_error(raw, where):
    with pytest.raises(FrameError) as e:
        decode_call(raw)
    assert where in str(e.value)


def test_random_garbage_never_raises_anything_but_frame_error():
    rng = np.random.default_rng(1)
    base = encode_call("f", (Tag.INT32, Tag.NDARRAY), [np.ones((2, 2), np.float32), "é", [[1], []]],
                       [Tag.NDARRAY, Tag.STRING, Tag.INT32_JAGGED])
    for _ in range(3000):
        raw = bytearray(base)
        for _ in range(rng.integers(1, 4)):
            raw[rng.integers(0, len(raw))] = rng.integers(0, 256)
        raw = raw[: rng.integers(0, len(raw) + 1)]
        try:
            decode_call(bytes(raw))
        except FrameError:
            pass


def test_size_is_measured_before_writing():
    arr = np.zeros((10, 10), np.float64)
    assert value_size(arr, Tag.NDARRAY) == len(encode_value(arr, Tag.NDARRAY))
    assert value_size(coerce("héllo", Tag.STRING), Tag.STRING) == 1 + 4 + 6


def test_nan_and_signed_zero_survive():
    assert math.isnan(decode_value(encode_value(math.nan, Tag.FLOAT32)))
    assert math.copysign(1, decode_value(encode_value(-0.0, Tag.FLOAT64))) == -1
    assert ErrorKind.PYTHON_ERROR == 1
