"""The Python decoder fuzz: mutated frames through decode_call, decode_value, decode_error and decode_reply.

Only `FrameError` may escape a decoder. A sample of the frames is decoded again under tracemalloc, and the
peak of what one decode allocates is compared with the frame's size: a length field can never make the
decoder allocate more than the frame could hold (Python objects cost a bounded factor per byte of frame;
see ALLOC_FACTOR).
"""

from __future__ import annotations

import random
import struct
import time
import tracemalloc
from collections import Counter
from typing import Any, Callable, Dict, List

from lesspy_kernel.wire import FrameError, Tag, decode_call, decode_error, decode_reply, decode_value

from mutate import VECTORS, golden, mutate, random_frames

_REQUEST = (VECTORS / "call_scale3.bin").read_bytes()       # what the golden NDARRAY_IN_REQUEST reply answers
DECODERS: Dict[str, Callable[[bytes], Any]] = {"call": decode_call, "value": decode_value, "error": decode_error,
                                               "reply": lambda frame: decode_reply(frame, _REQUEST)}
# What one decode may allocate at most: ALLOC_FACTOR bytes per byte of frame plus ALLOC_SLACK. The factor
# covers Python's per-object cost (a 5-byte INT32 in a tuple becomes a 28-byte int and an 8-byte slot; a
# 16-byte one-element INT32_ARRAY row becomes a NumPy view of about 300 bytes); a length field believed before it
# is checked would allocate up to 4 GiB, which no factor covers. The slack covers a FrameError raised 17
# levels deep (the exception and its traceback: about 18 KB).
ALLOC_FACTOR = 32
ALLOC_SLACK = 64 * 1024
MAX_EXAMPLES = 20


def crafted() -> Dict[str, List[bytes]]:
    """Hand-made hostile frames: deep nesting, huge counts and shapes, many tiny rows."""
    value = [
        bytes([Tag.TUPLE, 1]) * 40 + bytes([Tag.NONE]),                       # tuple nested 40 deep
        bytes([Tag.TUPLE, 1]) * 5000 + bytes([Tag.NONE]),                     # ... 5000 deep
        bytes([Tag.INT32_JAGGED]) + struct.pack("<I", 0xFFFFFFFF),            # 4G rows
        bytes([Tag.INT32_JAGGED]) + struct.pack("<I", 8000) + bytes(3) + bytes(8 * 8000),   # 8000 empty rows
        bytes([Tag.INT32_ARRAY]) + struct.pack("<I", 0xFFFFFFFF) + bytes(3),
        bytes([Tag.STRING]) + struct.pack("<I", 0xFFFFFFFF),
        bytes([Tag.BYTES]) + struct.pack("<I", 0x7FFFFFFF) + b"abc",
        bytes([Tag.NDARRAY, 12, 2]) + struct.pack("<QQ", 2**63 - 1, 2**63 - 1) + bytes(46),
        bytes([Tag.NDARRAY, 12, 3]) + struct.pack("<QQQ", 0, 2**62, 2**62) + bytes(37),
        bytes([Tag.NDARRAY, 12, 32]) + struct.pack("<32Q", *([2] * 32)) + bytes(62),
        bytes([Tag.NDARRAY, 12, 33]) + bytes(8 * 33),
        bytes([Tag.NDARRAY, 14, 1]) + struct.pack("<Q", 2**64 - 1) + bytes(53),
        bytes([Tag.TUPLE, 7]) + bytes([Tag.TUPLE, 7] + [Tag.NONE] * 7) * 7,
    ] + [bytes([tag]) + struct.pack("<I", n) + bytes(8) for tag in range(0x0C, 0x17)   # the newer tags
         for n in (0xFFFFFFFF, 0x7FFFFFFF, 100_000)]
    call = [
        struct.pack("<H", 0xFFFF) + b"f",
        struct.pack("<H", 1) + b"f" + bytes([Tag.TUPLE, 1]) * 5000 + bytes([Tag.NONE, 0]),
        struct.pack("<H", 1) + b"f" + bytes([Tag.NONE, 255]) + bytes([Tag.NONE]) * 255,
        struct.pack("<H", 1) + b"f" + bytes([Tag.NONE, 255]),
        struct.pack("<H", 2) + b"\xff\xfe" + bytes([Tag.NONE, 0]),
    ]
    error = [
        bytes([1]) + struct.pack("<I", 0xFFFFFFFF),
        bytes([1]) + struct.pack("<III", 0, 0, 0x7FFFFFFF),
        bytes([200]) + bytes(12),
        bytes([1]) + struct.pack("<I", 4) + b"\xff\xfe\xfd\xfc" + bytes(8),
    ]
    reply = [bytes([Tag.NDARRAY_IN_REQUEST, 12, 2]) + struct.pack("<QQ", 2**62, 2**62) + bytes(5) + struct.pack("<Q", 64),
             bytes([Tag.NDARRAY_IN_REQUEST, 12, 1]) + struct.pack("<Q", 1) + bytes(4) + struct.pack("<Q", 2**64 - 8)]
    return {"call": call, "value": value, "error": error, "reply": reply}


def _decode(decoder: Callable[[bytes], Any], frame: bytes) -> str:
    """'ok', 'FrameError', or the name of whatever else escaped (a bug)."""
    try:
        decoder(frame)
        return "ok"
    except FrameError:
        return "FrameError"
    except Exception as e:  # the bug we look for: anything but FrameError
        return f"{type(e).__name__}: {e}"[:300]


def run(frames_per_decoder: int, seed: int = 1, alloc_every: int = 50) -> Dict[str, Any]:
    """Fuzz each decoder with `frames_per_decoder` frames; return the figures (see the test for checks)."""
    rng = random.Random(seed)
    seeds = golden()
    extra = random_frames(rng, 300)
    hostile = crafted()
    result: Dict[str, Any] = {"seed": seed, "frames_per_decoder": frames_per_decoder, "decoders": {}}
    t0 = time.monotonic()
    for name, decoder in DECODERS.items():
        pool = seeds[name] + extra[name] + hostile[name]
        everything = [f for frames in seeds.values() for f in frames] + extra["value"][:50]
        outcomes: Counter = Counter()
        escaped: List[Dict[str, str]] = []
        samples: List[bytes] = []
        frames = list(hostile[name]) + list(seeds[name])   # unmutated first: each must decode or be refused
        done = 0
        while done < frames_per_decoder:
            if not frames:
                for _ in range(1000):
                    src = rng.choice(pool) if rng.random() < 0.9 else rng.choice(everything)
                    frames.append(mutate(rng, src, rng.choice(pool)))
            frame = frames.pop()
            outcome = _decode(decoder, frame)
            outcomes["ok" if outcome == "ok" else ("FrameError" if outcome == "FrameError" else "escaped")] += 1
            if outcome not in ("ok", "FrameError") and len(escaped) < MAX_EXAMPLES:
                escaped.append({"error": outcome, "frame": frame.hex()})
            if done % alloc_every == 0:
                samples.append(frame)
            done += 1
        samples.extend(hostile[name])
        result["decoders"][name] = {"frames": done, "outcomes": dict(outcomes), "escaped": escaped,
                                    "alloc": alloc_check(decoder, samples)}
    result["seconds"] = round(time.monotonic() - t0, 1)
    return result


def alloc_check(decoder: Callable[[bytes], Any], frames: List[bytes]) -> Dict[str, Any]:
    """Decode each frame under tracemalloc; report the worst peak, absolute and per byte of frame."""
    over: List[Dict[str, Any]] = []
    worst_peak, worst_ratio = 0, 0.0
    tracemalloc.start()
    try:
        for frame in frames:
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            try:
                value = decoder(frame)
            except Exception:
                value = None
            peak = tracemalloc.get_traced_memory()[1] - base
            del value
            worst_peak = max(worst_peak, peak)
            worst_ratio = max(worst_ratio, (peak - ALLOC_SLACK) / max(1, len(frame)))
            if peak > ALLOC_FACTOR * len(frame) + ALLOC_SLACK and len(over) < MAX_EXAMPLES:
                over.append({"peak": peak, "frame_bytes": len(frame), "frame": frame[:256].hex()})
    finally:
        tracemalloc.stop()
    return {"sampled": len(frames), "worst_peak_bytes": worst_peak,
            "worst_bytes_per_frame_byte": round(max(0.0, worst_ratio), 2), "over_bound": over}
