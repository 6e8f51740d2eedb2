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
