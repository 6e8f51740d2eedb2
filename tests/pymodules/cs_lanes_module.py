"""Functions the C# lane tests export (tests/test_csharp_lanes.py): tagged arrays, slow and endless calls, a record of which calls ran."""

import os
import time

import numpy as np

_ran = []


def add_ints(a, b):
    return int(a) + int(b)


def fill(tag, n):
    """An int32 array of n elements, each `tag`: a thread can tell its own result from anyone else's."""
    return np.full(int(n), int(tag), dtype=np.int32)


def fill_pair(tag, n):
    return np.full(int(n), int(tag), dtype=np.int32), int(tag)


def sum_array(a):
    return float(np.asarray(a, dtype=np.float64).sum())


def scale(a, k):
    return a * k


_in_request = []


def echo(a):
    """Returns its argument: the reply points into the request (NDARRAY_IN_REQUEST) when the call's flag allows."""
    _in_request.append(_reply_may_point_into_request())
    return a


def tail(a, k):
    return a[a.shape[0] - int(k):]


def echo_flags():
    """How many echo calls so far allowed a reply into their request, as "allowed/calls"."""
    return f"{sum(_in_request)}/{len(_in_request)}"


def _reply_may_point_into_request():
    from lesspy_kernel.interrupts import current_lane
    from lesspy_kernel.wire import FLAG_REPLY_IN_REQUEST
    lane = current_lane()
    return bool(lane is not None and lane.transport.req.flags & FLAG_REPLY_IN_REQUEST)


def record(tag):
    """Remembers that it ran (the cancellation tests ask `ran` afterwards)."""
    _ran.append(str(tag))
    return str(tag)


def record_after(seconds, tag):
    time.sleep(float(seconds))
    _ran.append(str(tag))
    return str(tag)


def ran():
    return ",".join(_ran)


def sleep_then(seconds, value):
    time.sleep(float(seconds))
    return int(value)


def spin_forever(tag):
    """Pure Python that never returns: only an interrupt stops it."""
    _ran.append("spin-start-" + str(tag))
    n = 0
    try:
        while True:
            n += 1
    finally:
        _ran.append("spin-end-" + str(tag))     # only an exception raised in this thread (the interrupt) gets here


def server_pid():
    return os.getpid()
