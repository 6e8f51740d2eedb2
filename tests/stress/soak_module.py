"""Functions for the soak and kill runs: every result carries its caller's tag and call number, so a result
that belongs to another caller, or to another call of the same caller, is detected."""

import time


def stamp(caller, i):
    return (caller, i)


def stamp_text(caller, i):
    return f"{caller}:{i}"


def stamp_array(caller, i, a):
    """1 MiB in, 1 MiB out: the argument (filled with the caller's tag) plus one."""
    if a[0] != a[-1]:
        raise ValueError(f"the argument of call {i} of caller {caller} is torn: {a[0]} .. {a[-1]}")
    return a + 1


def spin_forever():
    """Pure Python that never returns: only an interrupt ends it."""
    n = 0
    while True:
        n += 1


def sleep_then(seconds, value):
    time.sleep(seconds)
    return value


def add_ints(a, b):
    return a + b
