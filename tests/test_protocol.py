"""The Python codec against the golden vectors (the C# codec is checked against the same files)."""

from __future__ import annotations

import datetime
import enum
import math
import struct
import types
import uuid
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pytest

from lesspy_kernel.coerce import CoercionError, coerce, encode_call, encode_value
from lesspy_kernel.wire import (FIRST_WORD, HEADER_SIZE, SEQUENCE_WORD, WAITING_OFFSET, ArrayOf, DictOf, ErrorKind,
                                FrameError, ListOf, Nullable, Record, RectArray, ScalarOf, Tag, decode, decode_error,
                                decode_reply, decode_value, encode_desc, fastdecode, ndarray_data_offset,
                                read_header, restore_header, ticks_to_datetime, ticks_to_timedelta, value_size,
                                write_header, write_placed_ndarray, write_scalar_reply, write_value)
from vectors.generate import (ERROR_CASE, HERE, PIXEL, POINT, SCALE3_CALL, SHAPE, TYPED_CASES, TYPES_CALL, VALUE_CASES,
                              Point, render)

ALL_CASES = VALUE_CASES + TYPED_CASES


@pytest.fixture(params=[fastdecode.decode_call, decode.decode_call], ids=["fast", "reference"])
def decode_call(request):
    """The server's decoder (fastdecode) and the reference decoder: two implementations of the same decoding."""
    return request.param

EXPECTED = dict(line.split(" ", 1) for line in (HERE / "expected.txt").read_text("utf-8").splitlines())


@pytest.mark.parametrize("name,value,desc", ALL_CASES, ids=[c[0] for c in ALL_CASES])
def test_golden_value(name, value, desc):
    raw = (HERE / f"value_{name}.bin").read_bytes()
    assert encode_value(value, desc) == raw, "the encoder drifted from the committed vector"
    decoded = decode_value(raw)
    assert render(decoded, desc) == EXPECTED[f"value_{name}"]


def test_every_vector_is_listed():
    files = {p.stem for p in HERE.glob("value_*.bin")}
    assert files == {f"value_{c[0]}" for c in ALL_CASES} == set(EXPECTED)


def test_golden_error_and_call(decode_call):
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
def test_malformed_frames_raise_frame_error(raw, where, decode_call):
    with pytest.raises(FrameError) as e:
        decode_call(raw)
    assert where in str(e.value)


def _decode_garbled(decode_call, base: bytes, seed: int, count: int = 3000) -> None:
    """Decode `count` copies of `base` with one to three bytes changed and a random cut: nothing but
    FrameError may escape."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        raw = bytearray(base)
        for _ in range(rng.integers(1, 4)):
            raw[rng.integers(0, len(raw))] = rng.integers(0, 256)
        raw = raw[: rng.integers(0, len(raw) + 1)]
        try:
            decode_call(bytes(raw))
        except FrameError:
            pass


def test_random_garbage_never_raises_anything_but_frame_error(decode_call):
    frame = encode_call("f", (Tag.INT32, Tag.NDARRAY), [np.ones((2, 2), np.float32), "é", [[1], []]],
                        [Tag.NDARRAY, Tag.STRING, Tag.INT32_JAGGED])
    _decode_garbled(decode_call, frame, seed=1)


def test_the_scalar_call_shortcut_agrees_with_the_full_decoder():
    """decode_call takes a shortcut for a known name and return type with scalar and NDARRAY arguments; on any
    frame (valid, cut, changed) it must give what the full decoder gives, or leave the frame to it."""
    from lesspy_kernel.wire.fastdecode import _known_scalar_call
    rng = np.random.default_rng(2)
    bases = [encode_call("add", Tag.INT32, [2, 40], [Tag.INT32, Tag.INT32]),
             encode_call("mix", (Tag.FLOAT64, Tag.INT64), [1.5, 2**40, np.float32(0.25)],
                         [Tag.FLOAT64, Tag.INT64, Tag.FLOAT32]),
             encode_call("noop", Tag.NONE, [], []),
             encode_call("arrays", Tag.NDARRAY, [np.arange(6.0).reshape(2, 3), 7, np.zeros((0, 4), np.int16),
                                                 np.array(2.5, np.float32), np.arange(3, dtype=np.uint8)],
                         [Tag.NDARRAY, Tag.INT32, Tag.NDARRAY, Tag.NDARRAY, Tag.NDARRAY])]

    def same(a, b):
        if isinstance(a, np.ndarray):
            return (type(b) is np.ndarray and a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
                    and not a.flags.writeable and not b.flags.writeable)
        return type(a) is type(b) and (a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)))
    for base in bases:
        fastdecode.decode_call(base)             # now the name and return type are known
        assert _known_scalar_call(memoryview(base)) is not None
    taken = 0
    for _ in range(20000):
        raw = bytearray(bases[rng.integers(0, len(bases))])
        for _ in range(rng.integers(0, 3)):
            raw[rng.integers(0, len(raw))] = rng.integers(0, 256)
        if rng.integers(0, 4) == 0:
            raw = raw[: rng.integers(0, len(raw) + 1)]
        quick = _known_scalar_call(memoryview(bytes(raw)))
        try:
            full = decode.decode_call(memoryview(bytes(raw)))
        except FrameError:
            assert quick is None, (bytes(raw), quick)
            continue
        if quick is not None:
            taken += 1
            assert (quick.name, quick.returns) == (full.name, full.returns)
            assert len(quick.args) == len(full.args) and all(map(same, quick.args, full.args)), (bytes(raw), quick)
    assert taken > 1000                          # the shortcut was exercised


def _canonical(value):
    """A comparable form of a decoded value (arrays by dtype, shape and bytes; floats by repr, so NaN == NaN)."""
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.shape, value.tobytes(), value.flags.writeable)
    if isinstance(value, float):
        return ("float", repr(value))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [_canonical(v) for v in value])
    if isinstance(value, dict):
        return ("dict", [(k, _canonical(v)) for k, v in value.items()])
    if isinstance(value, types.SimpleNamespace):
        return ("record", [(k, _canonical(v)) for k, v in vars(value).items()])
    return (type(value).__name__, value)


def _outcome(decoder, raw: bytes):
    try:
        call = decoder(raw)
    except FrameError as e:
        return ("error", str(e))
    return (call.name, call.returns, _canonical(call.args), call.spans)


def test_the_fast_decoder_agrees_with_the_reference_on_every_frame():
    """fastdecode.decode_call (prefix cache, scalars inline, the shortcut) and decode.decode_call give the same
    call, or the same FrameError, for valid, changed and cut frames of every kind of value."""
    rng = np.random.default_rng(3)
    bases = [encode_call(*TYPES_CALL), encode_call(*SCALE3_CALL), (HERE / "call_ndarray_at.bin").read_bytes(),
             encode_call("mix", (Tag.FLOAT64, Tag.INT64), [1.5, 2**40, np.float32(0.25), "s", [[1], [2, 3]]],
                         [Tag.FLOAT64, Tag.INT64, Tag.FLOAT32, Tag.STRING, Tag.INT32_JAGGED])]
    for base in bases:
        assert _outcome(fastdecode.decode_call, base) == _outcome(decode.decode_call, base)
        assert _outcome(decode.decode_call, base)[0] != "error"
    for _ in range(6000):
        raw = bytearray(bases[rng.integers(0, len(bases))])
        for _ in range(rng.integers(0, 3)):
            raw[rng.integers(0, len(raw))] = rng.integers(0, 256)
        if rng.integers(0, 4) == 0:
            raw = raw[: rng.integers(0, len(raw) + 1)]
        assert _outcome(fastdecode.decode_call, bytes(raw)) == _outcome(decode.decode_call, bytes(raw)), bytes(raw)


@pytest.mark.parametrize("value,desc", [(None, Tag.NONE), (True, Tag.BOOL), (-7, Tag.INT32), (2**40, Tag.INT64),
                                        (1.5, Tag.FLOAT32), (-0.0, Tag.FLOAT64), (3, Tag.FLOAT64), (True, Tag.INT32)])
def test_a_scalar_reply_in_one_pack_is_what_write_value_writes(value, desc):
    frame = bytearray(HEADER_SIZE + 16)
    n = write_scalar_reply(memoryview(frame), desc, value)
    expected = bytearray(16)
    assert n == write_value(memoryview(expected), value, desc)
    assert frame[:HEADER_SIZE] == bytes(HEADER_SIZE) and frame[HEADER_SIZE:HEADER_SIZE + n] == expected[:n]


def test_a_scalar_reply_leaves_other_values_to_write_value():
    frame = memoryview(bytearray(HEADER_SIZE + 16))
    assert write_scalar_reply(frame, Tag.STRING, "x") == 0
    assert write_scalar_reply(frame, Tag.INT32, np.int32(1)) == 0       # not a Python scalar: coerced first
    assert write_scalar_reply(frame, Tag.INT32, None) == 0
    assert bytes(frame) == bytes(HEADER_SIZE + 16)


@pytest.mark.parametrize("shape", [(), (3,), (2, 3), (1,) * 7, (1,) * 8, (2,) * 9])
def test_a_placed_ndarray_reply_is_what_write_value_writes(shape):
    """The reply whose array already lies in the response mapping: only its header is written, the same bytes
    as a copied NDARRAY reply, its data at ndarray_data_offset."""
    arr = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    expected = encode_value(arr, Tag.NDARRAY)
    at = ndarray_data_offset(arr.ndim)
    assert expected[at:] == arr.tobytes() and at % 64 == 0
    payload = bytearray(b"\xee" * len(expected))
    payload[at:] = arr.tobytes()
    assert write_placed_ndarray(memoryview(payload), arr) == len(expected)
    assert bytes(payload) == expected


def test_header_words_and_restore():
    buf = bytearray(HEADER_SIZE)
    write_header(memoryview(buf), 4096, session=77)
    assert struct.unpack_from("<Q", buf, 0)[0] == FIRST_WORD
    words = memoryview(buf).cast("Q")
    assert words[SEQUENCE_WORD] == 0 and read_header(memoryview(buf + bytes(4096 - HEADER_SIZE))) == (0, 0, 0)
    struct.pack_into("<QQIIQ", buf, 16, 5, 9, 1, 1, 0)     # sequence, length, status, waiting, session
    restore_header(memoryview(buf), 8192, 78)               # everything fresh but `waiting`
    fresh = bytearray(HEADER_SIZE)
    write_header(memoryview(fresh), 8192, 78)
    assert buf[:WAITING_OFFSET] == fresh[:WAITING_OFFSET] and buf[WAITING_OFFSET + 4:] == fresh[WAITING_OFFSET + 4:]
    assert struct.unpack_from("<I", buf, WAITING_OFFSET)[0] == 1


def test_size_is_measured_before_writing():
    arr = np.zeros((10, 10), np.float64)
    assert value_size(arr, Tag.NDARRAY) == len(encode_value(arr, Tag.NDARRAY))
    assert value_size(coerce("héllo", Tag.STRING), Tag.STRING) == 1 + 4 + 6


def test_nan_and_signed_zero_survive():
    assert math.isnan(decode_value(encode_value(math.nan, Tag.FLOAT32)))
    assert math.copysign(1, decode_value(encode_value(-0.0, Tag.FLOAT64))) == -1
    assert ErrorKind.PYTHON_ERROR == 1


# ------------------------------------------------------------------------------------------------ the typed values


def test_golden_types_call_and_descriptors_round_trip(decode_call):
    raw = (HERE / "call_types.bin").read_bytes()
    assert encode_call(*TYPES_CALL) == raw
    call = decode_call(raw)
    assert call.returns == SHAPE
    arr, when, counts, guid, point, eye = call.args
    assert arr.dtype == np.float64 and arr.tolist() == [0.5, -1.0] and not arr.flags.writeable
    assert when is None and counts == {"k": 7} and guid == uuid.UUID("00112233-4455-6677-8899-aabbccddeeff")
    assert isinstance(point, types.SimpleNamespace) and (point.x, point.y) == (3.0, 4.0)
    assert eye.shape == (2, 2) and eye.tolist() == [[1, 0], [0, 1]]
    for desc in [SHAPE, Nullable(PIXEL), ListOf(DictOf(ArrayOf("uint16"))), RectArray("int8", 5), ScalarOf("uint64"),
                 (Tag.GUID, Nullable(Tag.TIMESPAN))]:
        assert decode_call(b"\x01\x00f" + encode_desc(desc) + b"\x00").returns == desc


def test_golden_ndarray_at_is_a_readonly_view_after_the_frame(decode_call):
    raw = bytearray((HERE / "call_ndarray_at.bin").read_bytes())
    call = decode_call(memoryview(raw))
    arr, k = call.args
    assert (call.name, k, arr.shape, arr.dtype) == ("scale", 2.5, (2, 3), np.float32)
    np.testing.assert_array_equal(arr, np.arange(6, dtype=np.float32).reshape(2, 3) / 4)
    assert not arr.flags.writeable
    offset = struct.unpack_from("<Q", raw, 3 + 5 + 1 + 1 + 3 + 16 + 3)[0]
    assert offset % 64 == 0 and offset + 24 == len(raw)
    struct.pack_into("<f", raw, offset, 42.0)           # zero-copy: the view sees the payload change
    assert arr[0, 0] == 42.0


def test_golden_reply_in_request_points_at_the_argument():
    """NDARRAY_IN_REQUEST: the reply to call_scale3 whose result is its first argument, a view of the request."""
    reply = (HERE / "reply_ndarray_in_request.bin").read_bytes()
    call = bytearray((HERE / "call_scale3.bin").read_bytes())
    arr = decode_reply(reply, memoryview(call))
    np.testing.assert_array_equal(arr, SCALE3_CALL[2][0])
    assert not arr.flags.writeable
    struct.pack_into("<f", call, 64, 42.0)              # zero-copy: the view sees the request change
    assert arr[0, 0] == 42.0
    with pytest.raises(FrameError, match="did not ask"):
        decode_reply(reply)
    with pytest.raises(FrameError, match="beyond"):
        decode_reply(reply, bytes(call[:64 + 23]))
    with pytest.raises(FrameError, match="bytes left"):
        decode_reply(reply + b"\0", call)
    with pytest.raises(FrameError):                      # anywhere else it is no value at all
        decode_value(reply)


def _at_call(offset: int, shape=(2,), total: int = 256) -> bytes:
    frame = bytearray(b"\x01\x00f\x00\x01" + bytes([Tag.NDARRAY_AT, 12, len(shape)]) + struct.pack(f"<{len(shape)}Q", *shape))
    frame += bytes(-len(frame) % 8) + struct.pack("<Q", offset)
    return bytes(frame + bytes(max(0, total - len(frame))))


@pytest.mark.parametrize("offset,words", [(0, "overlaps"), (65, "multiple of 64"), (256, "beyond"), (2**63, "beyond"),
                                          (192, None)])
def test_ndarray_at_offsets_are_checked(offset, words, decode_call):
    raw = _at_call(offset, shape=(8,))
    if words is None:
        assert decode_call(raw).args[0].shape == (8,)
        return
    with pytest.raises(FrameError) as e:
        decode_call(raw)
    assert words in str(e.value)


def test_ndarray_at_data_may_not_overlap_later_arguments(decode_call):
    frame = bytearray(b"\x01\x00f\x00\x02" + bytes([Tag.NDARRAY_AT, 3, 1]) + struct.pack("<Q", 1))
    frame += bytes(-len(frame) % 8) + struct.pack("<Q", 64)
    frame += bytes([Tag.BYTES]) + struct.pack("<I", 100) + bytes(100)       # the BYTES value runs over offset 64
    with pytest.raises(FrameError, match="overlaps"):
        decode_call(bytes(frame))


@dataclass
class Inner:
    x: float
    y: float


class Pair(NamedTuple):
    first_name: str
    score: int


class Color(enum.IntEnum):
    RED = 1
    GREEN = 2


@pytest.mark.parametrize("value,desc,expected", [
    (None, Nullable(Tag.INT32), None), (3, Nullable(Tag.INT32), 3), (np.int16(4), Nullable(Tag.INT64), 4),
    (Color.GREEN, Tag.INT32, 2), (Color.RED, ScalarOf("uint8"), 1), (2**64 - 1, ScalarOf("uint64"), 2**64 - 1),
    (range(3), ListOf(Tag.INT32), [0, 1, 2]), ({"a", }, ListOf(Tag.STRING), ["a"]),
    ({"k": np.float32(1.5)}, DictOf(Tag.FLOAT64), {"k": 1.5}), ("00112233-4455-6677-8899-aabbccddeeff", Tag.GUID,
                                                                uuid.UUID("00112233-4455-6677-8899-aabbccddeeff").bytes),
])
def test_coercion_of_the_new_types(value, desc, expected):
    assert coerce(value, desc) == expected


def test_typed_arrays_accept_any_sequence_and_convert_once():
    assert coerce((1, 2, 3), ArrayOf("float64")).dtype == np.dtype("<f8")
    assert coerce(np.arange(4, dtype=np.int8), ArrayOf("int64")).tolist() == [0, 1, 2, 3]
    strided = np.arange(10, dtype=np.float64)[::2]
    out = coerce(strided, ArrayOf("float64"))
    assert out.flags.c_contiguous and out.tolist() == [0, 2, 4, 6, 8]
    fortran = np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    out = coerce(fortran, RectArray("float32", 2))
    assert out.flags.c_contiguous and out.tobytes() == np.arange(6, dtype=np.float32).tobytes()
    big_endian = np.arange(3, dtype=">i4")
    assert coerce(big_endian, ArrayOf("int32")).dtype.byteorder in "<="


@pytest.mark.parametrize("value,desc,words", [
    ([1.5], ArrayOf("int32"), "losing information"), ([300], ArrayOf("uint8"), "outside"), ([True], ArrayOf("float64"),
                                                                                              "losing information"),
    ([1e300], ArrayOf("float32"), "outside"), ([[1.0]], ArrayOf("float64"), "dimension"), ("abc", ArrayOf("int32"), "sequence"),
    (np.zeros(3), RectArray("float64", 2), "dimension"), (None, Tag.DATETIME, "nullable"), (5, Tag.TIMESPAN, "int"),
    (-1, ScalarOf("uint32"), "outside"), ({1: 2}, DictOf(Tag.INT32), "not a str"), ("x", ListOf(Tag.INT32), "list"),
    ([1, "a"], ListOf(Tag.INT32), "element 1"), ("not-a-uuid", Tag.GUID, "not a UUID"),
    (datetime.timedelta(days=10**8), Tag.TIMESPAN, "range"), (np.datetime64("NaT"), Tag.DATETIME, "NaT"),
])
def test_coercion_errors_of_the_new_types(value, desc, words):
    with pytest.raises(CoercionError) as e:
        coerce(value, desc)
    assert words in str(e.value) and "C#" in str(e.value)


def test_datetime_time_zone_rule():
    naive = datetime.datetime(2024, 5, 6, 7, 8, 9, 123456)
    assert decode_value(encode_value(naive, Tag.DATETIME)) == naive
    plus2 = datetime.timezone(datetime.timedelta(hours=2))
    aware = datetime.datetime(2024, 5, 6, 9, 8, 9, tzinfo=plus2)       # converted to UTC on the way out
    back = decode_value(encode_value(aware, Tag.DATETIME))
    assert back.tzinfo == datetime.timezone.utc and back == aware and back.hour == 7
    assert decode_value(encode_value(datetime.date(2020, 2, 29), Tag.DATETIME)) == datetime.datetime(2020, 2, 29)
    assert decode_value(encode_value(np.datetime64("2020-01-02T03:04:05.678901"), Tag.DATETIME)) == \
        datetime.datetime(2020, 1, 2, 3, 4, 5, 678901)
    # .NET ticks are 100 ns: the digit below a microsecond is dropped (toward zero for TimeSpan)
    assert ticks_to_datetime(19, 0) == datetime.datetime(1, 1, 1, 0, 0, 0, 1)
    assert ticks_to_timedelta(-19) == datetime.timedelta(microseconds=-1)
    assert ticks_to_timedelta(19) == datetime.timedelta(microseconds=1)


def test_records_match_fields_by_name_without_case_or_underscores():
    desc = Record((("FirstName", Tag.STRING), ("Score", Tag.INT32)), "Pair")
    for value in [Pair("ada", 3), {"first_name": "ada", "score": 3}, types.SimpleNamespace(firstName="ada", SCORE=3)]:
        assert coerce(value, desc) == ("ada", 3)
    with pytest.raises(CoercionError, match="no field 'Score'"):
        coerce({"first_name": "ada"}, desc)
    with pytest.raises(CoercionError, match="extra_field"):
        coerce({"first_name": "ada", "score": 1, "extra_field": 0}, desc)
    with pytest.raises(CoercionError, match="field 'score'.*int"):
        coerce(Pair("ada", "three"), desc)
    with pytest.raises(CoercionError, match="dataclass, NamedTuple"):
        coerce(42, desc)
    struct_desc = Record((("x", Tag.FLOAT64),), "S", True)
    with pytest.raises(CoercionError):
        coerce(None, struct_desc)
    assert coerce(None, Nullable(struct_desc)) is None


def test_nested_record_with_arrays_round_trips():
    value = types.SimpleNamespace(name="n", max_value=1, origin=Inner(1, 2), samples=[1, 2], tags=("t",), parent=None)
    back = decode_value(encode_value(value, SHAPE))
    assert back.origin.x == 1.0 and back.samples.tolist() == [1.0, 2.0] and back.tags == ["t"] and back.parent is None
    assert back.samples.dtype == np.float64 and not back.samples.flags.writeable


@pytest.mark.parametrize("raw,where", [
    (bytes([Tag.ARRAY, 99, 1, 0, 0, 0]), "dtype code"), (bytes([Tag.ARRAY, 12]) + struct.pack("<I", 2**31) + bytes(2), "ARRAY"),
    (bytes([Tag.ARRAY, 1, 1, 0, 0, 0, 0, 0, 2]) + bytes(7), "bool"),
    (bytes([Tag.LIST]) + struct.pack("<I", 2**32 - 1), "LIST"), (bytes([Tag.DICT]) + struct.pack("<I", 10**9), "DICT"),
    (bytes([Tag.DICT, 2, 0, 0, 0]) + (struct.pack("<I", 1) + b"k" + bytes([Tag.NONE])) * 2, "twice"),
    (bytes([Tag.DATETIME]) + struct.pack("<qB", -1, 0), "DATETIME"), (bytes([Tag.DATETIME]) + struct.pack("<qB", 0, 2), "kind"),
    (bytes([Tag.GUID]) + bytes(15), "GUID"), (bytes([Tag.SCALAR, 6, 0, 0, 0, 0]), "SCALAR dtype"),
    (bytes([Tag.RECORD, 0xFF, 0xFF]), "RECORD"), (bytes([Tag.RECORD, 1, 0, 2]) + b"a b" + bytes([Tag.NONE]), "identifier"),
    (bytes([Tag.RECORD, 2, 0]) + (b"\x01a" + bytes([Tag.NONE])) * 2, "twice"),
    (bytes([Tag.LIST, 1, 0, 0, 0]) * 40 + bytes([0]), "deeper"), (bytes([Tag.OPTIONAL, Tag.INT32]), "unknown type tag"),
])
def test_malformed_new_values_raise_frame_error(raw, where):
    with pytest.raises(FrameError) as e:
        decode_value(raw)
    assert where in str(e.value)


@pytest.mark.parametrize("desc,where", [
    (bytes([Tag.OPTIONAL, Tag.STRING]), "already nullable"), (bytes([Tag.RECT_ARRAY, 12, 1]), "rank"),
    (bytes([Tag.RECORD, 2, 0, 0, 0]), "flags"), (bytes([Tag.NDARRAY_AT]), "descriptor"),
    (bytes([Tag.LIST]) * 40 + bytes([Tag.INT32]), "deeper"),
])
def test_malformed_new_descriptors_raise_frame_error(desc, where, decode_call):
    with pytest.raises(FrameError) as e:
        decode_call(b"\x01\x00f" + desc + b"\x00")
    assert where in str(e.value)


def test_random_garbage_in_the_new_types_never_raises_anything_but_frame_error(decode_call):
    _decode_garbled(decode_call, encode_call(*TYPES_CALL), seed=2)
