"""Mutated frames through every decoder, Python and C#: only the decoder's own error may escape, and no frame
makes a decoder allocate more than its size allows (issue 7 item 8).

The short runs (20,000 frames per decoder) are part of `make test`; the full ones (1,000,000 per decoder) are
marked `stress` and record their figures for docs/RELIABILITY.md.
"""

from __future__ import annotations

import json
import subprocess

import pytest

import fuzz
from stress_support import ROOT, fuzz_exe, record  # noqa: F401 (fixtures)

VECTORS = ROOT / "tests" / "vectors"
SHORT = 20_000
FULL = 1_000_000


def check_python(result: dict, frames: int) -> None:
    for name, d in result["decoders"].items():
        assert d["frames"] == frames
        assert not d["escaped"], f"decode_{name} let something other than FrameError escape: {d['escaped'][:3]}"
        assert d["outcomes"].get("ok", 0) > 0 and d["outcomes"].get("FrameError", 0) > 0, d["outcomes"]
        assert not d["alloc"]["over_bound"], (
            f"decode_{name} allocated more than {fuzz.ALLOC_FACTOR} bytes per frame byte + {fuzz.ALLOC_SLACK}: "
            f"{d['alloc']['over_bound'][:2]}")


def test_python_decoders_short():
    check_python(fuzz.run(SHORT, seed=7, alloc_every=100), SHORT)


@pytest.mark.stress
@pytest.mark.timeout(900)
def test_python_decoders_million(record):
    result = fuzz.run(FULL, seed=20261126, alloc_every=50)
    record("fuzz_python", result)
    check_python(result, FULL)


def run_csharp(exe, frames: int, seed: int) -> dict:
    proc = subprocess.run(["mono", "--debug", str(exe), str(VECTORS), str(frames), str(seed)], capture_output=True,
                          text=True, timeout=900)
    assert proc.stdout.strip(), f"FuzzCodec printed nothing (exit {proc.returncode}; a crash?):\n{proc.stderr[-3000:]}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["exit_code"] = proc.returncode
    return result


def check_csharp(result: dict, frames: int) -> None:
    for name, d in result["decoders"].items():
        assert d["frames"] == frames
        assert not d["escaped"], f"Codec.{name} let something other than ProtocolException escape: {d['escaped'][:3]}"
        assert d["outcomes"].get("ok", 0) > 0 and d["outcomes"].get("ProtocolException", 0) > 0, d["outcomes"]
        assert not d["alloc"]["over_bound"], f"Codec.{name} allocated beyond the bound: {d['alloc']['over_bound'][:2]}"
    assert result["exit_code"] == 0


def test_csharp_codec_short(fuzz_exe):
    check_csharp(run_csharp(fuzz_exe, SHORT, 7), SHORT)


@pytest.mark.stress
@pytest.mark.timeout(900)
def test_csharp_codec_million(fuzz_exe, record):
    result = run_csharp(fuzz_exe, FULL, 20261126)
    record("fuzz_csharp", result)
    check_csharp(result, FULL)


@pytest.mark.parametrize("extra", [1, 200_000])
def test_csharp_refuses_deeply_nested_tuples(fuzz_exe, extra):
    """Both decoders refuse values nested deeper than MAX_DEPTH. Before the limit, C#'s Codec.Read had none:
    200,000 levels (a 400 KB frame) ended in a StackOverflowException, and nesting cost quadratic time and memory
    in WireType.TupleOf (2,000 levels: about 19 s; 5,000: minutes and 500 MB)."""
    from lesspy_kernel.wire import MAX_DEPTH, FrameError, Tag, decode_value

    depth = MAX_DEPTH + extra
    frame = bytes([Tag.TUPLE, 1]) * depth + bytes([Tag.NONE])
    with pytest.raises(FrameError):
        decode_value(frame)
    proc = subprocess.run(["mono", "--debug", str(fuzz_exe), "deep", str(depth)], capture_output=True, text=True,
                          timeout=300)
    assert proc.stdout.strip() == "ProtocolException", (
        f"Codec.Read of a TUPLE nested {depth} deep gave {proc.stdout.strip() or proc.stderr[-500:]!r}, "
        f"expected ProtocolException (csharp/LessPy/Codec.Read.cs, Codec.Read: the nesting limit)")


def test_python_empty_jagged_rows_do_not_multiply_memory():
    """An INT32_JAGGED of 100,000 empty rows is an 800 KB frame. Each empty row used to become its own NumPy
    view (about 300 bytes for 8 bytes of frame, 38x), so a 256 MiB frame of empty rows asked the server for
    about 10 GB; empty rows now share one read-only empty view."""
    import struct

    from lesspy_kernel.wire import Tag

    rows = 100_000
    frame = bytes([Tag.INT32_JAGGED]) + struct.pack("<I", rows) + bytes(3 + 8 * rows)
    report = fuzz.alloc_check(fuzz.DECODERS["value"], [frame])
    assert not report["over_bound"], report
