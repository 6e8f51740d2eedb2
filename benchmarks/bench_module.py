"""The functions the benchmarks call (lesspy from Bench.cs, pythonnet from PyNetBench.cs).

Written the way users write them; `inc_into_result` is the one fast-path variant, using the result buffer
API (`lesspy_kernel.result_array`) when this lesspy has it.
"""

import time

import numpy as np

try:
    from lesspy_kernel import result_array
except ImportError:          # an older lesspy, or the pythonnet peer's interpreter without lesspy
    result_array = None


def noop():
    return None


def add_ints(a, b):
    return a + b


def inc_ndarray(a):
    # a is a read-only view over the request mapping; the result is a fresh array
    return a + 1


def inc_into_result(a):
    # the result is written straight into the response mapping: no fresh 64 MiB array, no copy afterwards
    out = result_array(a.shape, a.dtype)
    np.add(a, 1, out=out)
    return out


def echo(a):
    # returns the argument itself (a view over the request mapping)
    return a


def add_floor_us(a):
    """The big cases' numpy floor measured where and when they run: np.add from the request mapping into the
    response mapping, inside the server, between the timed calls (µs). The separate floor process at the
    start of the run sees other page-cache and CPU conditions: its figure moves by a third between runs."""
    out = result_array(a.shape, a.dtype)
    t0 = time.perf_counter()
    np.add(a, 1, out=out)
    return (time.perf_counter() - t0) * 1e6


def has_result_array():
    return result_array is not None
