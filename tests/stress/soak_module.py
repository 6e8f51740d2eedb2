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


kept = {}                            # (caller, i) -> a result of keep_plus that outlived its call


def keep_plus(caller, i, a):
    """`a + 1` is made in the response mapping (lesspy's allocator); one call in three also keeps it, so it is
    moved out before the next reply. Every kept array must keep its own values for ever."""
    r = a + 1
    if i % 3 == 0:
        kept[(caller, i)] = r
    return r


def check_kept(caller):
    """How many of this caller's kept arrays lost their values; then drops the older half of them."""
    mine = sorted(k for k in kept if k[0] == caller)
    bad = sum(1 for k in mine if not (kept[k] == kept[k][0]).all() or int(kept[k][0]) != caller * 10_000_000 + k[1] + 1)
    for k in mine[: len(mine) // 2]:
        del kept[k]
    return bad
