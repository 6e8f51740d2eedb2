"""Functions for the adversarial ("trust", issue 14) tests: the Python server's and the C# client's.

Shared by tests/test_trust_server_robust.py and the C# robustness tests: each adds what it needs, in small edits.
"""

import asyncio
import os
import time

import numpy as np

# ---------------------------------------------------------------- server robustness (test_trust_server_robust.py)

_events = []                    # what the async and stream functions did, for the tests to ask (events())


def add_ints(a, b):
    return a + b


def big_array(megabytes):
    """An array of `megabytes` MiB of float64 ones (a reply that may not fit the work folder's file system)."""
    return np.ones(megabytes * (1 << 20) // 8)


def echo_bytes(b):
    return bytes(b)


def events():
    return list(_events)


def clear_events():
    _events.clear()


async def async_sleep_then(seconds, value):
    """An `async def` that awaits for `seconds`; records whether it finished or was cancelled."""
    _events.append("async started")
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        _events.append("async cancelled")
        raise
    _events.append("async finished")
    return value


async def async_offload(seconds, value):
    """An `async def` whose work runs in a thread (asyncio.to_thread): cancelling it cannot stop the thread."""
    await asyncio.to_thread(time.sleep, seconds)
    return value


def count_up(n):
    """A generator of 0..n-1 (a C# IEnumerable<int>)."""
    try:
        for i in range(n):
            _events.append(f"item {i}")
            yield i
    finally:
        _events.append("stream closed")


def lone_surrogate():
    """A str no UTF-8 encoder accepts: 'ab' then a lone high surrogate."""
    return "ab\ud800cd"


def surrogate_in_list():
    return ["fine", "x\udc00"]


def echo_text(s):
    return s


def jagged_with_none():
    """An int[][] result with a None row (int[][] carries no null rows)."""
    return [[7], None]


def pid():
    return os.getpid()


def sleep_then(seconds, value):
    time.sleep(seconds)
    return value


# ---------------------------------------------------------------- C# client robustness (test_trust_client.py)

def hold_gil(n):
    """Sums range(n) in C without releasing the GIL (time.sleep would release it): the server answers nothing meanwhile."""
    return sum(range(int(n)))


def numbers(n):
    """A generator of 0..n-1 for C# IEnumerable<int> streams (records its closing in events())."""
    try:
        for i in range(n):
            yield i
    finally:
        _events.append(f"numbers({n}) closed")


def row_kinds(rows):
    """What each row of an int[][] argument arrived as: 'None', or its elements as a list."""
    return [repr(None) if r is None else repr([int(x) for x in r]) for r in rows]


def echo_rows(rows):
    """An int[][] argument back as it came (None rows included)."""
    return [None if r is None else [int(x) for x in r] for r in rows]


def text_length(s):
    return len(s)


def array_size(a):
    """The number of elements of an NdArray argument (a large request)."""
    return int(a.size)
