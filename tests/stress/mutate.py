"""Mutated frames for the decoder fuzz: golden vectors and random valid frames, then broken on purpose.

The same mutations are made by tests/csharp/FuzzCodec.cs for the C# codec: bit flips, byte overwrites,
truncations, length fields (u16/u32/u64) set to huge values at any offset, insertions, deletions, splices
of two frames, and plain random bytes. Everything is driven by one seeded `random.Random`, so a failure
is reproduced by its seed and frame number.
"""

from __future__ import annotations

import math
import random
import struct
from pathlib import Path
from typing import Dict, List

import numpy as np

from lesspy_kernel.coerce import encode_call, encode_value
from lesspy_kernel.wire import ErrorKind, Tag, encode_error

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
HUGE_U16 = (0xFFFF, 0x8000, 0x0400, 0x0401)
HUGE_U32 = (0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0x7FFFFFC0, 0x10000000, 0x40000000)
HUGE_U64 = (2**64 - 1, 2**63 - 1, 2**63, 2**31, 2**32, 2**31 - 1, 2**40)
KINDS = ("flip", "byte", "truncate", "huge16", "huge32", "huge64", "insert", "delete", "splice", "extend",
         "random", "dup")


def golden() -> Dict[str, List[bytes]]:
    """The golden vectors by decoder: call frames, value frames, error frames, replies into the request."""
    out: Dict[str, List[bytes]] = {"call": [], "value": [], "error": [], "reply": []}
    for path in sorted(VECTORS.glob("*.bin")):
        kind = path.name.split("_", 1)[0]
        out[kind].append(path.read_bytes())
    return out


def _random_value(rng: random.Random, depth: int = 0):
    """A random (value, descriptor) pair that encode_value accepts."""
    choices = [Tag.NONE, Tag.BOOL, Tag.INT32, Tag.INT64, Tag.FLOAT32, Tag.FLOAT64, Tag.STRING, Tag.BYTES,
               Tag.INT32_ARRAY, Tag.INT32_JAGGED, Tag.NDARRAY] + ([Tag.TUPLE] * 2 if depth < 3 else [])
    t = rng.choice(choices)
    if t == Tag.NONE:
        return None, Tag.NONE
    if t == Tag.BOOL:
        return rng.random() < 0.5, t
    if t == Tag.INT32:
        return rng.randint(-(2**31), 2**31 - 1), t
    if t == Tag.INT64:
        return rng.randint(-(2**63), 2**63 - 1), t
    if t in (Tag.FLOAT32, Tag.FLOAT64):
        return rng.choice([0.0, -0.0, 1.5, math.inf, -math.inf, math.nan, rng.uniform(-1e6, 1e6)]), t
    if t == Tag.STRING:
        return "".join(chr(rng.choice([rng.randint(32, 126), rng.randint(0xA0, 0x7FF), 0x2713, 0x1F40D]))
                       for _ in range(rng.randint(0, 24))), t
    if t == Tag.BYTES:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40))), t
    if t == Tag.INT32_ARRAY:
        return [rng.randint(-(2**31), 2**31 - 1) for _ in range(rng.randint(0, 9))], t
    if t == Tag.INT32_JAGGED:
        return [[rng.randint(-50, 50) for _ in range(rng.randint(0, 4))] for _ in range(rng.randint(0, 4))], t
    if t == Tag.NDARRAY:
        dtype = rng.choice(["bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
                            "float16", "float32", "float64", "complex64", "complex128"])
        shape = tuple(rng.randint(0, 4) for _ in range(rng.randint(0, 3)))
        return (np.arange(int(np.prod(shape, dtype=np.int64))) % 7).astype(dtype).reshape(shape), t
    items = [_random_value(rng, depth + 1) for _ in range(rng.randint(1, 7))]
    return tuple(v for v, _ in items), tuple(d for _, d in items)


def random_frames(rng: random.Random, n: int) -> Dict[str, List[bytes]]:
    """n valid frames of each kind, built from random values."""
    out: Dict[str, List[bytes]] = {"call": [], "value": [], "error": [], "reply": []}
    for _ in range(n):
        v, d = _random_value(rng)
        out["value"].append(encode_value(v, d))
        args = [_random_value(rng) for _ in range(rng.randint(0, 4))]
        ret = _random_value(rng)[1]
        name = rng.choice(["f", "add_ints", "scale3", "é" * rng.randint(1, 5)])
        out["call"].append(encode_call(name, ret, [a for a, _ in args], [d for _, d in args]))
        out["error"].append(encode_error(rng.choice(list(ErrorKind)), "ValueError" * rng.randint(0, 2),
                                         "message ✓" * rng.randint(0, 5), "tb\n" * rng.randint(0, 9)))
    return out


def _put(buf: bytearray, rng: random.Random, fmt: str, values) -> None:
    size = struct.calcsize(fmt)
    if len(buf) < size:
        return
    struct.pack_into(fmt, buf, rng.randrange(len(buf) - size + 1), rng.choice(values))


def mutate(rng: random.Random, frame: bytes, other: bytes) -> bytes:
    """One mutation (sometimes two or three stacked) of `frame`; `other` is a second frame to splice in."""
    buf = bytearray(frame)
    for _ in range(1 if rng.random() < 0.7 else rng.randint(2, 3)):
        kind = rng.choice(KINDS)
        n = len(buf)
        if kind == "flip" and n:
            for _ in range(rng.randint(1, 8)):
                buf[rng.randrange(n)] ^= 1 << rng.randrange(8)
        elif kind == "byte" and n:
            buf[rng.randrange(n)] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.getrandbits(8)))
        elif kind == "truncate" and n:
            del buf[rng.randrange(n):]
        elif kind == "huge16":
            _put(buf, rng, "<H", HUGE_U16)
        elif kind == "huge32":
            _put(buf, rng, "<I", HUGE_U32)
        elif kind == "huge64":
            _put(buf, rng, "<Q", HUGE_U64)
        elif kind == "insert":
            at = rng.randint(0, n)
            buf[at:at] = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 9)))
        elif kind == "delete" and n:
            at = rng.randrange(n)
            del buf[at:at + rng.randint(1, 9)]
        elif kind == "splice":
            cut = rng.randint(0, n)
            buf = buf[:cut] + other[rng.randint(0, len(other)):]
        elif kind == "extend":
            buf += bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 16)))
        elif kind == "random":
            buf = bytearray(rng.getrandbits(8) for _ in range(rng.randint(0, 64)))
        elif kind == "dup" and n:
            at = rng.randrange(n)
            buf[at:at] = buf[at:at + rng.randint(1, 16)]
    return bytes(buf)
