"""The functions benchmarks/Bench.exe calls, written the way users write them (no out=, no tricks)."""


def add_ints(a, b):
    return a + b


def inc_ndarray(a):
    # a is a read-only view over req.mmf; the result is a fresh array, copied into resp.mmf by the server
    return a + 1


def echo(a):
    # returns the argument itself (a view over req.mmf): the server copies it into resp.mmf
    return a
