"""The functions LessPyDemo.exe calls (the original LessPythonInvoke README's example, plus a few more types)."""

import time

import numpy as np


def add_ints(a, b):
    return int(a) + int(b)


def inc_ndarray(nd):
    # nd is a read-only view over the request mapping; the call declares an NdArray result, so nd + 1 is computed
    # straight into the response mapping where lesspy's allocator is built (lesspy_kernel/allocator.py): no fresh
    # array, no copy
    return nd + 1


def inc_ndarray_timed(nd):
    # times nd + 1 only; the result is returned inside a tuple, so it is an ordinary fresh array, not in the reply
    t0 = time.perf_counter()
    out = nd + 1
    return out, (time.perf_counter() - t0) * 1000.0


def greet(name):
    return f"Hello, {name}, from Python!"


def describe(nd):
    a = np.asarray(nd)
    return int(a.size), float(a.mean()), str(a.dtype)
