"""Functions the tests export: echoes for every type, coercions, and every kind of failure."""

import time
from time import sleep  # noqa: F401  (imported, so NOT exported: see test_server)

import numpy as np


def add_ints(a, b):
    return int(a) + int(b)


def inc_ndarray(nd):
    return nd + 1


def inc_ndarray_timed(nd):
    t0 = time.perf_counter()
    out = nd + 1
    return out, (time.perf_counter() - t0) * 1000.0


def echo(x):
    return x


echo_int = echo_long = echo_float = echo_double = echo_bool = echo_string = echo_bytes = echo
echo_int_array = echo_jagged = echo_ndarray = echo_tuple3 = echo_nested = echo


def make_tuple_from_list():
    return [7, 2.5, "seven"]


def returns_none():
    return None


def int_to_long(x):
    return x * 2**33


def np_scalar():
    return np.float32(1.25)


def list_to_int_array(n):
    return list(range(n))


def overflow():
    return 2**40


def raises(message):
    raise ValueError(message)


def bad_void():
    return 5


def wrong_type():
    return "x"


def big_result(n):
    return bytes(n)


def sleep_then(seconds, value):
    time.sleep(seconds)
    return value


def typed_add(a: int, b: int) -> int:
    return a + b


def sum_array(a):
    return float(np.asarray(a, dtype=np.float64).sum())


counter = 0


def count():
    global counter
    counter += 1
    return counter


def _private():
    return 1


not_a_function = 42


# results and behaviours that once escaped the error handling: each must come back as a clear error
def ragged():
    return [[1, 2], [3]]


def huge_int():
    return 10**400


def strided_view():
    return memoryview(bytes(range(10)))[::2]


def calls_exit():
    import sys

    sys.exit(3)


class _Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no str")


def raises_unprintable():
    raise _Unprintable()


def big_float():
    return 1e300


# ------------------------------------------------------------------------------------------------ issue 9 types
import datetime  # noqa: E402
import enum  # noqa: E402
import uuid  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Dict, List, NamedTuple, Optional  # noqa: E402

echo_nullable_int = echo_nullable_double = echo_nullable_bool = echo_nullable_long = echo_nullable_float = echo
echo_nullable_datetime = echo_nullable_color = echo
echo_doubles = echo_floats = echo_longs = echo_shorts = echo_ushorts = echo_uints = echo_ulongs = echo
echo_sbytes = echo_bools = echo
echo_strings = echo_string_list = echo_ro_list = echo_ilist = echo_dict = echo_ro_dict = echo
echo_datetime = echo_timespan = echo_guid = echo
echo_byte = echo_sbyte = echo_short = echo_ushort = echo_uint = echo_ulong = echo
echo_matrix = echo_cube = echo_bool_matrix = echo
echo_pixel = echo_nullable_pixel = echo_level = echo_color = echo


def describe_array(a):
    """What a C# array becomes in Python: type, dtype, shape, writeable."""
    return f"{type(a).__name__}:{a.dtype}:{list(a.shape)}:{a.flags.writeable}"


def describe_value(x):
    return f"{type(x).__module__}.{type(x).__qualname__}:{x!r}"


def doubles_from_list(n):
    return [i / 2 for i in range(n)]


def floats_from_tuple():
    return (1.5, -2.0, 3.25)


def shorts_from_ndarray():
    return np.array([1, -2, 300], dtype=np.int64)        # converted (range-checked) to short[]


def bools_from_list():
    return [True, False, False]


def strings_from_tuple():
    return ("x", "", None, "ü")


def dict_keys(d):
    return sorted(d)


def make_dict():
    return {"a": [1.0, 2.0], "b": np.array([3.0]), "c": None}


def dict_with_int_key():
    return {1: 2.0}


def datetime_info(d):
    kind = "naive" if d.tzinfo is None else f"aware {d.tzinfo}"
    return f"{kind} {d.isoformat()}"


def aware_plus_two():
    return datetime.datetime(2024, 6, 1, 14, 0, 0, 250000, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))


def naive_datetime():
    return datetime.datetime(2024, 6, 1, 14, 0, 0)


def timespan_seconds(t):
    return t.total_seconds()


def make_timespan():
    return datetime.timedelta(days=1, hours=2, microseconds=3)


def guid_text(g):
    return str(g)


def guid_from_text(s):
    return uuid.UUID(s)


class Color(enum.IntEnum):
    RED = 1
    GREEN = 2
    BLUE = 4


def color_name(c: Color) -> str:
    return f"{type(c).__name__}.{c.name}"


def next_color(c: Color) -> int:
    return int(c) * 2


def bad_color():
    return 99                                           # C# gets an undefined enum value: ints cross as they are


def transpose(m):
    return m.T                                          # a non-contiguous view: made contiguous (one copy) for C#


def fortran_ndarray():
    return np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3))


def strided_ndarray():
    return np.arange(10, dtype=np.int32)[::3]


def matrix_from_lists():
    return [[1, 2, 3], [4, 5, 6]]


@dataclass
class Point:
    x: float
    y: float


@dataclass
class Shape:
    name: str
    origin: Point
    samples: np.ndarray
    corners: List[Point]
    color: Color
    tags: Dict[str, int] = field(default_factory=dict)
    parent: Optional[Point] = None


class Pair(NamedTuple):
    first_name: str
    score: int


def move(p: Point, dx: float) -> Point:
    assert isinstance(p, Point), type(p)
    return Point(p.x + dx, p.y)


def inspect_shape(s: Shape) -> str:
    """Proves the argument arrived as the dataclasses its hints name, arrays as read-only views."""
    return (f"{type(s).__name__} {type(s.origin).__name__} {type(s.corners[0]).__name__ if s.corners else '-'} "
            f"{type(s.color).__name__}.{s.color.name} {type(s.samples).__name__}:{s.samples.dtype}:"
            f"{s.samples.flags.writeable} {type(s.tags).__name__} {s.parent}")


def grow_shape(s: Shape) -> Shape:
    s.corners.append(Point(s.origin.x + 1, s.origin.y + 1))
    s.samples = s.samples * 2
    s.parent = s.origin
    return s


def untyped_record(p):
    return f"{type(p).__name__}({', '.join(sorted(vars(p)))})"


def make_pair():
    return Pair("ada", 36)


def echo_points(ps: List[Point]) -> List[Point]:
    assert all(p is None or isinstance(p, Point) for p in ps)
    return ps


def record_missing_field():
    return {"x": 1.0}


def record_extra_field():
    return {"x": 1.0, "y": 2.0, "z": 3.0}


def not_a_datetime():
    return "2024-01-01"


def nd_list(n):
    return [np.arange(n, dtype=np.float32), None, np.ones((2, 2))]
