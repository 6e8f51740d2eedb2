"""Functions for the lane, cancellation and robustness tests (headless server and C# clients)."""

import asyncio
import os
import threading
import time

import numpy as np

import lesspy_kernel

_started = []


def add_ints(a, b):
    return a + b


def started_count():
    """How many calls of `record_start` ever began: a cancelled call that was never run does not count."""
    return len(_started)


def record_start(seconds):
    _started.append(time.time())
    time.sleep(seconds)
    return len(_started)


def spin_forever():
    """Pure Python that never returns: only an interrupt ends it."""
    n = 0
    while True:
        n += 1


def sleep_then(seconds, value):
    time.sleep(seconds)
    return value


def spin_for(seconds, value):
    """Pure Python for `seconds`: holds the GIL except when the interpreter's switch interval takes it away."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return value


def thread_name():
    return threading.current_thread().name


def tagged(tag, n):
    """An array filled with `tag`: a caller that gets another caller's data sees the wrong tag."""
    return np.full(n, tag, dtype=np.int32)


def echo_bytes(b):
    return bytes(b)


def zeros_bytes(n):
    return bytes(n)


def plus_one_in_place(a):
    out = lesspy_kernel.result_array(a.shape, a.dtype)
    np.add(a, 1, out=out)
    return out


def plus_one_shifted(a):
    """Returns a view into a result_array that is not at its start: must be copied, not corrupted."""
    out = lesspy_kernel.result_array((a.size + 1,), a.dtype)
    out[1:] = a + 1
    out[0] = -1
    return out[1:]


def echo(a):
    return a


def second_half(a):
    return a[a.shape[0] // 2:]


def every_other(a):
    return a[::2]


def echo_copy(a):
    return np.array(a)


def echo_first(items):
    """The first array of a list: a result that lies in the request, reached through another value."""
    return items[0]


kept = []
where = []


def _note(arr):
    """Whether `arr` was made by lesspy's allocator inside this lane's response mapping."""
    from lesspy_kernel.interrupts import current_lane
    lane = current_lane()
    start = arr.__array_interface__["data"][0] - lane.transport.resp.address
    where.append("mapping" if 0 <= start < lane.transport.resp.capacity else "heap")
    return arr


def plus_one(a):
    return _note(a + 1)


def plus_one_kept(a):
    """The result is also kept in a global: it must keep its values after later replies."""
    kept.append(_note(a + 1))
    return kept[-1]


def temporary_kept(a):
    """The first big array (which goes to the mapping) is kept; the result is another array."""
    kept.append(_note(a * 2))
    return a + 1


def plus_one_tail(a):
    return _note(a + 1)[1:]


def plus_one_then_fail(a):
    b = _note(a + 1)
    raise ValueError(f"failed after making {b.size} values")


def log_raising(a):
    """NumPy frees the big result it made (in the mapping) while its FloatingPointError is set."""
    with np.errstate(all="raise"):
        return np.log(a)


def zeros_like(a):
    return _note(np.zeros_like(a))


def grown(a):
    b = _note(a + 1)
    b.resize(b.size * 2, refcheck=False)            # realloc: the block leaves the mapping
    return b


def many_small(a):
    for _ in range(1000):
        np.arange(3) + 1
    return _note(a + 1)


def allocate_forever():
    """Returns an NdArray (so the allocator is on) and never ends: an interrupt usually fires inside it."""
    while True:
        np.arange(3) + 1


def kept_sums():
    return [float(k.sum()) for k in kept]


def drop_kept():
    n = len(kept)
    kept.clear()
    return n


def places():
    out = ",".join(where)
    where.clear()
    return out


def halves(a):
    """A stream of two views of its argument: items are always copied (the request outlives no item)."""
    yield a[:a.shape[0] // 2]
    yield a[a.shape[0] // 2:]


async def async_double(x):
    await asyncio.sleep(0.01)
    return 2 * x


def raises_long_type_name(n):
    cls = type("E" * n, (Exception,), {})
    raise cls("m" * n)


def pid():
    return os.getpid()


closed = []


def countdown(n):
    """A generator: streamed to C# as IEnumerable<int>, one item per MoveNext."""
    try:
        for i in range(n, 0, -1):
            _started.append(i)
            yield i
    finally:
        closed.append(n)


def closed_streams():
    return list(closed)


def fails_at(n):
    for i in range(n):
        yield i
    raise ValueError(f"no item {n}")


def not_iterable():
    return 42


def chatty(n):
    for i in range(n):
        print(f"line {i} " + "x" * 100)
    return n


def tagged_rows(rows, n):
    for r in range(rows):
        yield np.full(n, r, dtype=np.int32)
