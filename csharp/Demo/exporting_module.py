"""The functions LessPyDemo.exe calls (the original LessPythonInvoke README's example, plus a few more types)."""

import time

import numpy as np


def add_ints(a, b):
    return int(a) + int(b)


def inc_ndarray(nd):
    # nd is a read-only view over the request mapping; the result is copied into the response mapping
    return nd + 1


def inc_ndarray_timed(nd):
    t0 = time.perf_counter()
    out = nd + 1
    return out, (time.perf_counter() - t0) * 1000.0


def greet(name):
    return f"Hello, {name}, from Python!"


def describe(nd):
    a = np.asarray(nd)
    return int(a.size), float(a.mean()), str(a.dtype)
