"""The call history: records outlive the request mapping's reuse, the memory budget, rendering, the registry.

Arguments are built the way the server builds them: read-only numpy views over a real shared buffer (an mmap),
which the next call overwrites.
"""

from __future__ import annotations

import base64
import io
import math
import mmap
import re
import struct
import threading
import time
import zlib
from datetime import datetime

import numpy as np
import pytest

from lesspy_kernel.jupyter import history as hist
from lesspy_kernel.jupyter import render
from lesspy_kernel.dispatch import Outcome
from lesspy_kernel.jupyter.history import (CallHistory, CallList, CallRecord, DroppedArray, DroppedValue, calls,
                                   current_history, payload_size, set_current_history, to_html, to_text)
from lesspy_kernel.wire import ErrorKind, ErrorReply, Tag

MiB = 1024 * 1024


class Region:
    """A real shared mapping handing out read-only views, as the decoder does over req.mmf."""

    def __init__(self, size: int = 8 * MiB) -> None:
        self.mm = mmap.mmap(-1, size)
        self.pos = 0

    def view(self, values) -> np.ndarray:
        values = np.asarray(values)
        self.pos = (self.pos + 63) // 64 * 64
        out = np.frombuffer(self.mm, dtype=values.dtype, count=values.size, offset=self.pos).reshape(values.shape)
        out.flags.writeable = True
        out[...] = values
        out.flags.writeable = False
        self.pos += values.nbytes
        return out

    def overwrite(self, byte: int = 0xAB) -> None:
        """What the next call does to the mapping."""
        self.mm.seek(0)
        self.mm.write(bytes([byte]) * len(self.mm))
        self.pos = 0

    def close(self) -> None:
        self.mm.close()


@pytest.fixture
def region():
    r = Region()
    yield r
    # views into the mmap may still be alive in the test's locals; closing is best effort
    try:
        r.close()
    except BufferError:
        pass


def outcome(name="f", args=(), result=None, error=None, started=None, duration=0.001, returns=Tag.NDARRAY):
    return Outcome(name, returns, list(args), time.time() if started is None else started, duration,
                   result=result, value=result, error=error)


def python_error(kind=ErrorKind.PYTHON_ERROR, python_type="ValueError", message="boom", tb=""):
    return ErrorReply(kind, python_type, message, tb)


# ---------------------------------------------------------------- THE property: records outlive the mapping

def test_record_outlives_mapping_reuse(region):
    original = np.arange(4096 * 16, dtype=np.float32).reshape(256, 256)
    jagged_rows = [np.array([1, 2, 3], np.int32), np.array([], np.int32), np.array([7], np.int32)]
    a = region.view(original)
    rows = [region.view(r) for r in jagged_rows]
    pair = (region.view(np.array([1.5, 2.5])), 3)
    assert not a.flags.writeable and not a.flags.owndata
    h = CallHistory()
    h.observe(outcome("scale", [a, 2.0, rows, pair], result=a))   # the function returned its argument (a view)

    region.overwrite(0xAB)                                           # the next call reuses the mapping
    assert not np.array_equal(a, original)                           # the views really changed

    rec = h.records()[-1]
    got = rec.args[0]
    assert type(got) is np.ndarray and np.array_equal(got, original)
    assert got.flags.writeable and got.flags.owndata
    assert not np.shares_memory(got, a)
    assert rec.args[1] == 2.0
    assert isinstance(rec.args[2], list) and len(rec.args[2]) == 3
    for g, want in zip(rec.args[2], jagged_rows):
        assert g.dtype == np.int32 and np.array_equal(g, want) and g.flags.writeable
    assert isinstance(rec.args[3], tuple) and np.array_equal(rec.args[3][0], [1.5, 2.5]) and rec.args[3][1] == 3
    assert np.array_equal(rec.result, original)
    assert rec.result is got                                          # one copy for one view
    assert h.nbytes == original.nbytes + payload_size(rows) + payload_size(pair)   # the shared view counted once
    got[0, 0] = -1                                                    # a writeable copy of our own
    assert calls is hist.calls and rec.args[0][0, 0] == -1


def test_result_copied_too(region):
    h = CallHistory()
    src = np.ones((4, 4), np.float64)
    h.observe(outcome("f", [], result=src))
    src[:] = 5
    assert np.array_equal(h.records()[0].result, np.ones((4, 4)))


def test_record_fields_and_index_numbering(region):
    h = CallHistory()
    t = time.time()
    h.observe(outcome("add_ints", [2, 40], result=42, started=t, duration=0.000123, returns=Tag.INT32))
    h.observe(outcome("raises", ["x"], error=python_error(message="bad x", tb="Traceback (most recent...)\n")))
    h.observe(outcome("nope", [], error=ErrorReply(ErrorKind.FUNCTION_NOT_FOUND, "", "nope is not defined", "")))
    recs = h.records()
    assert isinstance(recs, CallList) and all(isinstance(r, CallRecord) for r in recs)
    assert [r.index for r in recs] == [1, 2, 3]
    first = recs[0]
    assert first.function == "add_ints" and first.args == (2, 40) and first.result == 42 and first.ok
    assert first.error is None and first.error_type is None and first.traceback == ""
    assert isinstance(first.started, datetime) and abs(first.started.timestamp() - t) < 1e-3
    assert first.duration == pytest.approx(0.000123)
    assert not recs[1].ok and recs[1].error == "bad x" and recs[1].error_type == "ValueError"
    assert recs[1].traceback.startswith("Traceback")
    assert recs[2].error_type == "FUNCTION_NOT_FOUND" and recs[2].error == "nope is not defined"

    h.clear()
    assert len(h) == 0 and h.records() == [] and h.nbytes == 0
    h.observe(outcome("again", [1]))
    assert [r.index for r in h.records()] == [4]                     # numbering continues across clear()


def test_records_n_and_slices():
    h = CallHistory()
    for i in range(5):
        h.observe(outcome(f"f{i}", [i]))
    assert [r.function for r in h.records(2)] == ["f3", "f4"]
    assert h.records(0) == []
    assert len(h.records(100)) == 5
    assert isinstance(h.records()[1:3], CallList)
    with pytest.raises(ValueError):
        h.records(-1)


def test_repr_shows_the_newest_rows_only(monkeypatch):
    monkeypatch.setattr(hist, "DISPLAY_LIMIT", 3)
    h = CallHistory()
    for i in range(5):
        h.observe(outcome(f"f{i}", [i]))
    text = repr(h.records())
    assert text.startswith("(2 earlier calls not shown") and "f1" not in text and "f4" in text
    assert h.records().to_text().count("\n") == 5                       # to_text() shows all
    page = h.records()._repr_html_()
    assert "2 earlier calls not shown" in page and page.count("<tr") == 4


# ---------------------------------------------------------------- the memory budget

def test_budget_drops_oldest_payloads_first_and_keeps_small_values(region):
    big = 1 * MiB
    h = CallHistory(budget=int(2.5 * MiB))
    originals = []
    for i in range(4):
        data = np.random.default_rng(i).random(big // 8).reshape(256, 512)     # 1 MiB float64
        originals.append(data)
        small = np.arange(100, dtype=np.int32) + i
        h.observe(outcome(f"f{i}", [region.view(data), i, "s" * 10, b"\x00\x01", region.view(small)],
                          result=(float(i), region.view(small))))
        region.overwrite()
    recs = h.records()
    assert h.nbytes <= h.budget
    # the two oldest lost their payloads (the small array too: every payload counts), the newest two kept them
    assert [isinstance(r.args[0], DroppedArray) for r in recs] == [True, True, False, False]
    assert [isinstance(r.args[4], DroppedArray) for r in recs] == [True, True, False, False]
    assert np.array_equal(recs[3].args[0], originals[3]) and np.array_equal(recs[2].args[0], originals[2])
    for i, r in enumerate(recs):                                      # numbers and short texts are part of a record
        assert r.args[1:4] == (i, "s" * 10, b"\x00\x01")
        assert r.result[0] == float(i)
    for i in (2, 3):
        assert np.array_equal(recs[i].args[4], np.arange(100) + i) and type(recs[i].args[4]) is np.ndarray
        assert np.array_equal(recs[i].result[1], np.arange(100) + i)
    assert recs[1].args[4].min == 1 and recs[1].args[4].max == 100

    d = recs[0].args[0]
    o = originals[0]
    assert d.shape == (256, 512) and d.dtype == "float64" and d.nbytes == big and d.reason == "budget"
    assert d.min == pytest.approx(o.min()) and d.max == pytest.approx(o.max()) and d.mean == pytest.approx(o.mean())
    assert repr(d) == "<dropped float64 array (256, 512): budget>"
    assert "dropped" in to_text(recs) and "float64 (256, 512) min" in to_text(recs)

    # shrinking the budget drops at once, oldest first
    h.budget = int(1.5 * MiB)
    recs = h.records()
    assert [isinstance(r.args[0], DroppedArray) for r in recs] == [True, True, True, False]
    assert h.nbytes <= 1.5 * MiB
    h.budget = 0
    assert all(isinstance(r.args[0], DroppedArray) and isinstance(r.args[4], DroppedArray) for r in h.records())
    assert h.nbytes == 0
    assert [r.args[1:4] for r in h.records()] == [(i, "s" * 10, b"\x00\x01") for i in range(4)]


def test_array_bigger_than_budget_is_summarised_at_once(region):
    h = CallHistory(budget=512 * 1024)
    data = np.linspace(-2, 6, 256 * 1024, dtype=np.float32).reshape(512, 512)     # 1 MiB > budget
    v = region.view(data)
    h.observe(outcome("big", [v], result=None))
    region.overwrite()
    d = h.records()[0].args[0]
    assert isinstance(d, DroppedArray) and d.shape == (512, 512) and d.dtype == "float32"
    assert d.min == pytest.approx(-2) and d.max == pytest.approx(6) and d.mean == pytest.approx(2, abs=1e-4)
    assert h.nbytes == 0


def test_every_kind_of_payload_counts(region):
    """bytes, strings, lists, tuples, dicts and records count against the budget like arrays, nested too."""
    blob = bytes(range(256)) * 4096                                   # 1 MiB
    text = "x" * MiB
    rows = [bytes([i]) * 4096 for i in range(256)]                    # a list of 1 MiB in all
    nested = ("label", [np.ones(MiB // 8), {"k": "y" * 1000}])
    values = [blob, text, rows, nested, {"a": blob[:100_000]}]
    h = CallHistory(budget=10 * MiB)
    for v in values:
        h.observe(outcome("f", [v], result=v if isinstance(v, str) else None))
    assert h.nbytes == sum(payload_size(v) for v in values) + payload_size(text)
    assert h.nbytes >= 5 * MiB, "each MiB-sized value costs at least its MiB"
    recs = h.records()
    assert recs[0].args[0] == blob and recs[1].args[0] == text and recs[2].args[0] == rows
    assert np.array_equal(recs[3].args[0][1][0], np.ones(MiB // 8))

    h.budget = 0
    recs = h.records()
    assert h.nbytes == 0
    b, t, r, n, d = (rec.args[0] for rec in recs)
    assert isinstance(b, DroppedValue) and (b.type, b.length) == ("bytes", MiB) and b.preview == f"bytes[{MiB}]"
    assert isinstance(t, DroppedValue) and t.type == "str" and t.length == MiB and t.preview.startswith("'xxx")
    assert len(t.preview) <= 100 and isinstance(recs[1].result, DroppedValue)
    assert isinstance(r, DroppedValue) and (r.type, r.length) == ("list", 256)
    assert isinstance(n, tuple) and n[0] == "label" and isinstance(n[1], list)   # a short tuple keeps its shape
    assert isinstance(n[1][0], DroppedArray) and isinstance(n[1][1], DroppedValue) and n[1][1].type == "dict"
    assert isinstance(d, DroppedValue) and d.type == "dict"
    text_table = to_text(recs)
    assert f"bytes[{MiB}] [dropped: budget]" in text_table and "'xxxx" in text_table
    assert "[dropped: budget]" in repr(recs[0]) and repr(b) == f"<dropped bytes[{MiB}]: budget>"
    h.budget = 10 * MiB
    h.observe(outcome("g", [memoryview(blob)]))                      # a view (into a mapping) is copied
    assert type(h.records()[-1].args[0]) is bytes and h.records()[-1].args[0] == blob


def test_budget_zero_keeps_no_payload_and_adds_no_copy(region):
    import tracemalloc

    a = region.view(np.arange(MiB, dtype=np.float32))                # 4 MiB, inside the "mapping"
    blob = bytes(2 * MiB)
    h = CallHistory(budget=0)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(20):
            h.observe(outcome("f", [a, blob, memoryview(blob), [blob, a], "z" * 100], result=a))
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - before < 256 * 1024, f"budget 0 copied payloads: peak {peak - before} bytes"
    assert current - before < 256 * 1024
    assert h.nbytes == 0
    rec = h.records()[-1]
    assert isinstance(rec.args[0], DroppedArray) and rec.result is rec.args[0]
    assert all(isinstance(x, DroppedValue) for x in rec.args[1:3] + rec.args[4:])
    assert isinstance(rec.args[3], list) and isinstance(rec.args[3][0], DroppedValue)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * mmap.PAGESIZE


def test_ten_thousand_calls_of_a_mebibyte_stay_within_budget(region):
    """10,000 calls, each sending 1 MiB (a new array, bytes, string or list each time, as the decoder makes
    them) and returning 1 MiB: the history holds at most its budget, and the process's RSS grows by at most
    budget + 64 MiB (checked as it goes, so a history without a bound fails early instead of eating the machine)."""
    budget = 32 * MiB
    h = CallHistory(budget=budget)
    source = np.random.default_rng(1).integers(0, 255, MiB, dtype=np.uint8)
    view = region.view(source)                                       # a read-only view, as over req.mmf
    rss0 = _rss()
    for i in range(10_000):
        kind = i % 5
        if kind == 0:
            args, result = [view, i], view
        elif kind == 1:
            args, result = [view.tobytes()], bytes(MiB)
        elif kind == 2:
            args, result = [view.tobytes().decode("latin-1")], None
        elif kind == 3:
            args, result = [[view[j:j + 4096].tobytes() for j in range(0, MiB, 4096)]], (i, view.copy())
        else:
            args, result = [(view.copy(), {"s": "q" * 1000})], i
        h.observe(outcome("f", args, result=result))
        del args, result
        assert h.nbytes <= budget
        if i % 250 == 249:
            grown = _rss() - rss0
            assert grown <= budget + 64 * MiB, f"after {i + 1} calls RSS grew by {grown / MiB:.0f} MiB"
    assert len(h) == 10_000 and h.records()[-1].index == 10_000
    recs = h.records()
    assert type(recs[-5].args[0]) is np.ndarray and np.array_equal(recs[-5].args[0], source), "the newest are kept"
    assert isinstance(recs[0].args[0], DroppedArray) and isinstance(recs[1].args[0], DroppedValue)
    assert isinstance(recs[3].args[0], DroppedValue) and recs[3].args[0].length == 256


def test_dropped_stats_with_nan_bool_int_complex_and_empty():
    d = DroppedArray.of(np.array([np.nan, 1.0, 3.0, np.nan]))
    assert (d.min, d.max, d.mean, d.nans) == (1.0, 3.0, 2.0, 2)
    d = DroppedArray.of(np.array([np.nan, np.nan]))
    assert d.min is None and d.mean is None and d.nans == 2
    d = DroppedArray.of(np.array([True, False, True, True]))
    assert (d.min, d.max, d.mean) == (False, True, 0.75)
    d = DroppedArray.of(np.array([-5, 7], dtype=np.int64))
    assert (d.min, d.max, d.mean) == (-5, 7, 1.0) and isinstance(d.min, int)
    d = DroppedArray.of(np.array([1 + 1j, 3 - 1j], dtype=np.complex64))
    assert d.min is None and d.mean == pytest.approx(2 + 0j)
    d = DroppedArray.of(np.zeros((0, 3), np.float32))
    assert d.min is None and d.mean is None and d.size == 0 and d.ndim == 2
    d = DroppedArray.of(np.array([-np.inf, 1.0, np.inf]))
    assert d.min == -math.inf and d.max == math.inf


def test_max_records_removes_oldest(region):
    h = CallHistory(max_records=3)
    for i in range(7):
        h.observe(outcome(f"f{i}", [region.view(np.full(20000, i, np.float64))]))   # 160 KB each
        region.overwrite()
    recs = h.records()
    assert [r.index for r in recs] == [5, 6, 7]
    assert [float(r.args[0][0]) for r in recs] == [4.0, 5.0, 6.0]
    assert h.nbytes == 3 * 160000
    h.max_records = 1
    assert [r.index for r in h.records()] == [7] and h.nbytes == 160000


def test_thread_safety_smoke(region):
    h = CallHistory(budget=2 * MiB, max_records=50)
    n = 400
    errors = []

    def server():
        try:
            for i in range(n):
                data = np.full((128, 128), i, np.float64)                # 128 KiB: droppable
                h.observe(outcome("f", [data, i], result=i))
        except Exception as e:                                            # pragma: no cover - reported below
            errors.append(e)

    t = threading.Thread(target=server)
    t.start()
    reads = 0
    while t.is_alive() or reads < 10:
        recs = h.records()
        assert len(recs) <= 50
        idx = [r.index for r in recs]
        assert idx == sorted(idx) and len(set(idx)) == len(idx)
        to_text(recs[-3:])
        assert h.nbytes <= 2 * MiB
        reads += 1
    t.join()
    assert not errors
    recs = h.records()
    assert [r.index for r in recs] == list(range(n - 49, n + 1))
    assert recs[-1].args[1] == n - 1 and float(recs[-1].args[0][0, 0]) == n - 1


# ---------------------------------------------------------------- rendering

def test_text_table(region):
    h = CallHistory()
    t0 = datetime(2024, 5, 1, 13, 4, 5, 678000).timestamp()
    grid = np.zeros((4096, 4096), np.float32)
    grid[0, 0] = 1
    h.observe(outcome("scale", [region.view(np.array([[0, 1], [1, 0]], np.float32)), 2.0, "hello", b"abc"],
                      result=np.array([[0.0, 0.5], [1.0, 0.5]], np.float32), started=t0, duration=0.0000123))
    h.observe(outcome("raises", ["y" * 200], error=python_error(message="bad\nvalue"), duration=0.0123))
    h.observe(outcome("slow", [None, True], result=grid, duration=2.5))
    text = to_text(h.records())
    lines = text.splitlines()
    assert lines[0].split() == ["#", "start", "function", "arguments", "result", "duration"]
    assert len(lines) == 4
    assert "13:04:05.678" in lines[1] and "scale" in lines[1]
    assert "float32 (2, 2) min 0 max 1 mean 0.5, 2.0, 'hello', bytes[3]" in lines[1]
    assert lines[1].rstrip().endswith(" 12 µs")
    assert "ERROR ValueError: bad value" in lines[2] and lines[2].rstrip().endswith("12.3 ms")
    assert "'" + "y" * 60 + "'… (200 chars)" in lines[2] and "y" * 61 not in lines[2]
    assert "None, True" in lines[3] and "float32 (4096, 4096) min 0 max 1 mean 5.96e-08" in lines[3]
    assert lines[3].rstrip().endswith("2.50 s")
    assert to_text(h.records(), n=1).splitlines()[1].split()[0] == "3"
    assert repr(h.records()) == text and h.records().to_text() == text
    assert repr(h.records()[0]).startswith("<call #1 13:04:05.678 scale(")
    assert "raised ValueError: bad value" in repr(h.records()[1])
    assert [render._duration(d) for d in (0.0000045, 0.000456, 0.0456, 0.456, 45.6)] == [
        "4.5 µs", "456 µs", "45.6 ms", "456 ms", "45.60 s"]
    assert to_text([]) == "no lesspy calls recorded" and "no lesspy calls" in to_html([])


def test_array_summaries_edge_cases():
    s = render._summary
    assert s(np.zeros((0, 3), np.float32)) == "float32 (0, 3)"
    assert s(np.array([np.nan, 2.0, 4.0])) == "float64 (3,) min 2 max 4 mean 3 nan 1"
    assert s(np.array([np.nan, np.nan])) == "float64 (2,) nan 2"
    assert s(np.array([True, False])) == "bool (2,) min False max True mean 0.5"
    assert s(np.array([1 + 2j, 3 + 4j])) == "complex128 (2,) mean (2+3j)"
    assert s(np.array(["a", "b"])) == "<U1 (2,)"
    assert s(np.float32(1.5)) == "1.5"
    assert s(np.array(7, np.int32)) == "int32 7"
    assert s(("a", 1)) == "('a', 1)"
    assert s(memoryview(b"abcd")) == "bytes[4]"


def _data_uris(html_text):
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html_text)]


def _png_header(png: bytes):
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", png[8:16])
    assert kind == b"IHDR" and length == 13
    w, h, depth, color = struct.unpack(">IIBB", png[16:26])
    crc = struct.unpack(">I", png[29:33])[0]
    assert crc == zlib.crc32(png[12:29]) & 0xFFFFFFFF
    return w, h, depth, color


def _png_pixels(png: bytes, channels: int):
    """Decode our own PNG (filter 0 rows, one IDAT) without Pillow."""
    w, h, _, _ = _png_header(png)
    pos, idat = 8, b""
    while pos < len(png):
        n, kind = struct.unpack(">I4s", png[pos:pos + 8])
        if kind == b"IDAT":
            idat += png[pos + 8:pos + 8 + n]
        pos += 12 + n
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 1 + w * channels)
    assert (raw[:, 0] == 0).all()
    return raw[:, 1:].reshape(h, w, channels) if channels > 1 else raw[:, 1:]


def test_html_thumbnail_png_decodes(region):
    h = CallHistory()
    img = np.tile(np.linspace(0, 1, 300, dtype=np.float32), (200, 1))     # 200 x 300 gradient
    img[0, 0] = np.nan
    h.observe(outcome("show", [region.view(img)], result=np.zeros((5, 3))))
    page = to_html(h.records())
    pngs = _data_uris(page)
    assert len(pngs) == 2
    w, hh, depth, color = _png_header(pngs[0])
    assert (w, hh, depth, color) == (60, 40, 8, 0)                      # strided by 5 both ways: at most 64 a side
    px = _png_pixels(pngs[0], 1)
    assert px[0, 0] == 0 and px[1, 0] == 0 and px[1, -1] == 255          # NaN as 0, min..max to 0..255
    assert (np.diff(px[1].astype(int)) >= 0).all()
    assert _png_header(pngs[1])[:2] == (3, 5)
    assert 'width="36" height="60"' in page                              # small arrays shown bigger, <= 64 px
    try:
        from PIL import Image
    except ImportError:
        return
    im = Image.open(io.BytesIO(pngs[0]))
    im.load()
    assert im.size == (60, 40) and im.mode == "L"
    assert np.array_equal(np.asarray(im), px)


def test_html_thumbnail_rgb_bool_nd_and_big(region):
    rgb = np.zeros((100, 80, 3), np.uint8)
    rgb[..., 0] = 255
    png = render.thumbnail_png(rgb)
    assert _png_header(png)[:4] == (40, 50, 8, 2)
    assert (_png_pixels(png, 3)[..., 0] == 255).all() and (_png_pixels(png, 3)[..., 1] == 0).all()
    rgba = np.random.default_rng(0).random((3, 10, 10, 4))
    assert _png_header(render.thumbnail_png(rgba))[:4] == (10, 10, 8, 6)
    assert _png_header(render.thumbnail_png(np.eye(4, dtype=bool)))[:2] == (4, 4)
    assert (_png_pixels(render.thumbnail_png(np.eye(4, dtype=bool)), 1) == np.eye(4) * 255).all()
    assert _png_header(render.thumbnail_png(np.ones((2, 7, 9, 5))))[:2] == (5, 9)      # the first 2-D slice, a[0, 0]
    assert _png_header(render.thumbnail_png(np.ones((4096, 4096), np.float32)))[:2] == (64, 64)
    assert _png_header(render.thumbnail_png(np.ones((1000, 3))))[:2] == (1, 63)     # aspect ratio kept
    assert render.thumbnail_png(np.zeros((0, 5))) is None
    assert render.thumbnail_png(np.zeros(5)) is None
    assert render.thumbnail_png(np.array([["a"]])) is None
    const = _png_pixels(render.thumbnail_png(np.full((3, 3), 7.0)), 1)
    assert (const == 128).all()
    try:
        from PIL import Image
    except ImportError:
        return
    im = Image.open(io.BytesIO(png))
    im.load()
    assert im.mode == "RGB" and im.getpixel((0, 0)) == (255, 0, 0)


def test_html_sparkline_for_1d(region):
    h = CallHistory()
    h.observe(outcome("wave", [region.view(np.sin(np.linspace(0, 20, 5000)))], result=np.array([1.0])))
    page = to_html(h.records())
    svgs = re.findall(r"<svg[^>]*>.*?</svg>", page)
    assert len(svgs) == 1 and 'width="100" height="20"' in svgs[0]
    points = re.search(r'points="([^"]*)"', svgs[0]).group(1).split()
    assert 2 <= len(points) <= 100
    xy = np.array([[float(c) for c in p.split(",")] for p in points])
    assert xy[:, 0].min() >= 0 and xy[:, 0].max() <= 100 and xy[:, 1].min() >= 0 and xy[:, 1].max() <= 20
    assert (np.diff(xy[:, 0]) > 0).all()
    assert "<img" not in page                                           # no PNG for 1-D
    assert render.sparkline_svg(np.array([np.nan, 1.0, np.nan, 2.0])).count(",") == 2   # NaN skipped
    assert render.sparkline_svg(np.array([1.0])) == ""


def test_html_error_rows_and_escaping():
    h = CallHistory()
    h.observe(outcome("ok", ["<script>alert(1)</script>"], result="<b>&"))
    h.observe(outcome("bad<i>", [], error=python_error("KeyError", message="<missing> & more",
                                                        tb="Traceback\n  File \"<stdin>\"\nKeyError: <missing>")))
    page = h.records()._repr_html_()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>&" not in page and "&#x27;&lt;b&gt;&amp;&#x27;" in page
    assert "bad&lt;i&gt;" in page and "<i>" not in page
    assert page.count("<tr") == 3 and page.count('class="lesspy-error"') == 1
    err_row = page.split('class="lesspy-error"')[1]
    assert "KeyError" in err_row and "&lt;missing&gt; &amp; more" in err_row
    assert "<details>" in err_row and "File &quot;&lt;stdin&gt;&quot;" in err_row
    assert h.records()[1]._repr_html_().count("<tr") == 2


def test_render_does_not_import_the_history():
    """history uses render; render (and the statistics in summaries) must not use history: no import cycle."""
    import subprocess
    import sys

    code = ("import sys, lesspy_kernel.jupyter.render, lesspy_kernel.jupyter.summaries; "
            "print('lesspy_kernel.jupyter.history' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    assert hist.DroppedArray is render.DroppedArray


def test_calls_registry():
    old = current_history()
    try:
        set_current_history(None)
        assert calls() == [] and isinstance(calls(), CallList)
        h = CallHistory()
        set_current_history(h)
        assert current_history() is h
        for i in range(5):
            h.observe(outcome(f"f{i}", [np.full(3, i)]))
        got = calls(2)
        assert isinstance(got, CallList) and [r.function for r in got] == ["f3", "f4"]
        assert np.array_equal(calls()[-1].args[0], [4, 4, 4])
        assert len(calls()) == 5
        h(outcome("g", []))                                              # the history itself is an observer
        assert calls(1)[0].function == "g"
    finally:
        set_current_history(old)


def test_observer_on_a_real_server(tmp_path):
    """End to end: a headless server in this process, a client over the real mapping, the history attached."""
    from lesspy_kernel.client import ClientLane

    from lesspy_kernel.namespaces import DictNamespace
    from lesspy_kernel.server import Server

    def double(a):
        return a * 2

    def echo(a):
        return a

    namespace = DictNamespace({"double": double, "echo": echo}, export=["double", "echo"])   # defined in this test
    server = Server(namespace, tmp_path / "work", capacity=1 * MiB, exit_when_idle=True)
    h = CallHistory()
    server.observers.append(h.observe)
    server.start()
    try:
        c = ClientLane(tmp_path / "work")
        a = np.arange(12, dtype=np.float32).reshape(3, 4)
        c.call("double", Tag.NDARRAY, [a], [Tag.NDARRAY])
        c.call("echo", Tag.NDARRAY, [a + 100], [Tag.NDARRAY])
        c.close()
    finally:
        server.stop()
    recs = h.records()
    assert [r.function for r in recs] == ["double", "echo"]
    assert np.array_equal(recs[0].args[0], a) and np.array_equal(recs[0].result, a * 2)
    assert np.array_equal(recs[1].args[0], a + 100) and np.array_equal(recs[1].result, a + 100)
