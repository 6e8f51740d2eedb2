"""Issue 14 ("Trust"), the argument side of item 5: NdArray arguments are zero-copy views of the lane's request
file, and they give exactly plain NumPy's guarantees.

- A function that keeps an argument (in a global, as a view of it, in a closure, in a generator across stream
  items or after it, an async def, a thread, an in-place NDARRAY_AT array, one also returned as a pointer into
  the request) keeps its values: later requests written into the same file never show through it (the kept
  pages are moved out, MappedLane.keep_arguments / allocator.move_request), and it pins only its own pages.
- Moving them loses no write a thread makes meanwhile.
- A child made by os.fork during a call sees the call's arguments as they were, also after later requests.
- An argument view can never be made writable (`a.flags.writeable = True` is refused): Python cannot write into
  the client's request file.
- The hot path stays: a call that keeps nothing leaves the request mapping where it is.

Real headless servers and the Python client of the protocol; a real Mono C# client for the in-place arrays
(tests/csharp/TrustArgsClient.cs). The module the server serves is written by the test (MODULE).
"""

from __future__ import annotations

import os
import shutil
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from conftest import compile_csharp, csharp_checks, run_mono
from lesspy_kernel.client import ClientLane
from lesspy_kernel.wire import DTYPE_CODES, ListOf, Tag, encode_desc
from servers import Headless, wait_for

ROOT = Path(__file__).resolve().parent.parent
I, D, N, BOOL = Tag.INT32, Tag.FLOAT64, Tag.NDARRAY, Tag.BOOL

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="moving kept pages out is Linux only")

MODULE = '''
import ctypes
import threading

import numpy as np

from lesspy_kernel.interrupts import current_lane

KEPT = []
CLOSURES = []
FINALLY = []
COUNTERS = []


def total(a, k=None):
    return float(np.asarray(a, dtype=np.float64).sum())


def keep(a, k=None):
    KEPT.append(a)
    return total(a)


def keep_views(a):
    """Views of an argument: a slice, the transpose, np.asarray, a reshape, and the buffer it is a view of."""
    KEPT.extend([a[1:], a.T, np.asarray(a), a.reshape(-1)[::2]])
    base = a
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    KEPT.append(base)                                # a memoryview of the request payload
    return total(a)


def keep_in_closure(a):
    CLOSURES.append(lambda: total(a))
    return total(a)


def closure_sums():
    return [f() for f in CLOSURES]


def kept_sums():
    out = []
    for k in KEPT:
        if isinstance(k, memoryview):
            out.append(float(np.frombuffer(k, dtype=np.uint8).sum()))     # every byte stays readable
        else:
            out.append(total(k))
    return out


def drop_kept():
    n = len(KEPT) + len(CLOSURES)
    KEPT.clear()
    CLOSURES.clear()
    FINALLY.clear()
    return n


def items(a, n):
    """A stream that keeps its argument across items and in a global, and reads it once more when closed."""
    KEPT.append(a)
    try:
        for _ in range(n):
            yield total(a)
    finally:
        FINALLY.append(total(a))


def finally_sums():
    return list(FINALLY)


def writable(a):
    """Whether Python could make an argument view writable, by any of NumPy's ways."""
    ok = []
    for make in (lambda v: setattr(v.flags, "writeable", True), lambda v: v.setflags(write=True)):
        for view in (a, np.asarray(a), a[:], a.view()):
            try:
                make(view)
                ok.append(bool(view.flags.writeable))
            except ValueError:
                ok.append(False)
    return any(ok)


def writable_at(a, k):
    return writable(a)


async def keep_async(a):
    import asyncio
    await asyncio.sleep(0.001)
    KEPT.append(a)
    return total(a)


def read_later(a, delay):
    """A thread reads the argument after the call returned (and after later requests)."""
    def later():
        import time
        time.sleep(delay)
        FINALLY.append(total(a))
    threading.Thread(target=later).start()
    return None


def keep_and_return(a):
    KEPT.append(a)
    return a[1:]


def fork_reads(a, delay):
    """A child made by os.fork reads the argument after its parent's call returned (and later requests came)."""
    import os
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        import time
        time.sleep(delay)
        os.write(w, repr(total(a)).encode())
        os._exit(0)
    os.close(w)
    COUNTERS.append((r, pid))
    return None


def fork_sums():
    import os
    out = []
    for r, pid in COUNTERS:
        out.append(float(os.read(r, 100)))
        os.close(r)
        os.waitpid(pid, 0)
    COUNTERS.clear()
    return out


def req_address():
    return current_lane().transport.req.address


def _writer(w, passes):
    for _ in range(passes):
        np.add(w, 1, out=w)                          # releases the GIL: runs while the server moves the pages


def keep_and_count(a, passes):
    """Keep the argument and increment it from a thread through a writable alias of its memory (ctypes: what any
    C code given its pointer could do), while the call returns and its pages are moved out."""
    w = np.ctypeslib.as_array((ctypes.c_double * a.size).from_address(a.ctypes.data))
    t = threading.Thread(target=_writer, args=(w, passes))
    t.start()
    COUNTERS.append((a, passes, t))
    return None


def counters_wrong():
    """Elements of every kept argument whose count is not the number of increments made: lost writes."""
    wrong = 0
    for a, passes, t in COUNTERS:
        t.join()
        wrong += int(np.count_nonzero(a != passes))
    COUNTERS.clear()
    return wrong
'''


@pytest.fixture
def module(tmp_path) -> Path:
    path = tmp_path / "trust_args_module.py"
    path.write_text(MODULE)
    return path


@pytest.fixture
def server(tmp_path, module):
    with Headless(tmp_path / "work", module, "--keep-alive", "--capacity", "64K") as s:
        yield s


def _others(lane: ClientLane, n: int) -> None:
    """Later requests on the same lane, each writing other bytes over the place the kept arguments came in."""
    for k in range(3):
        assert lane.call("total", D, [np.full(n, -7.0 - k)], [N]) == (-7.0 - k) * n
        assert lane.call("total", D, [np.zeros((n // 4, 4))], [N]) == 0.0


# ------------------------------------------------------------------ kept arguments keep their values

def test_an_argument_kept_in_a_global_keeps_its_values(server):
    n = 1000
    with ClientLane(server.folder) as lane:
        for k in range(3):
            assert lane.call("keep", D, [np.ones(n) * (k + 1)], [N]) == (k + 1) * n
            _others(lane, n)
        assert lane.call("kept_sums", ListOf(D)) == [1000.0, 2000.0, 3000.0]
        assert lane.call("drop_kept", I) == 3


def test_views_of_a_kept_argument_keep_their_values(server):
    a = np.arange(1.0, 401.0).reshape(100, 4)
    with ClientLane(server.folder) as lane:
        assert lane.call("keep_views", D, [a], [N]) == a.sum()
        want = lane.call("kept_sums", ListOf(D))
        assert want[:4] == [a[1:].sum(), a.sum(), a.sum(), a.reshape(-1)[::2].sum()]
        _others(lane, 400)
        assert lane.call("kept_sums", ListOf(D)) == want
        lane.call("drop_kept", I)


def test_an_argument_kept_by_a_closure_keeps_its_values(server):
    with ClientLane(server.folder) as lane:
        assert lane.call("keep_in_closure", D, [np.full(500, 2.0)], [N]) == 1000.0
        _others(lane, 500)
        assert lane.call("closure_sums", ListOf(D)) == [1000.0]
        lane.call("drop_kept", I)


def test_a_stream_keeps_its_argument_across_items_and_after(server):
    a = np.full(1000, 3.0)
    with ClientLane(server.folder) as lane:
        assert list(lane.stream("items", D, [a, 4], [N, I])) == [3000.0] * 4
        _others(lane, 1000)
        # abandoned after one item: the next call's request is written while the generator is still open, and
        # its finally block (run when the server closes it for the new call) still sees its own argument
        it = lane.stream("items", D, [np.full(1000, 5.0), 10], [N, I])
        assert next(it) == 5000.0
        lane._stream = None                           # the client moves on without closing it (C# does so too)
        _others(lane, 1000)
        assert lane.call("finally_sums", ListOf(D)) == [3000.0, 5000.0]
        assert lane.call("kept_sums", ListOf(D)) == [3000.0, 5000.0]
        lane.call("drop_kept", I)


def test_an_async_function_or_a_thread_keeps_its_argument(server):
    with ClientLane(server.folder) as lane:
        assert lane.call("keep_async", D, [np.full(100, 4.0)], [N]) == 400.0
        assert lane.call("read_later", Tag.NONE, [np.full(100, 6.0), 0.3], [N, D]) is None
        _others(lane, 100)
        assert lane.call("kept_sums", ListOf(D)) == [400.0]
        wait_for(lambda: lane.call("finally_sums", ListOf(D)), what="the thread's sum")
        assert lane.call("finally_sums", ListOf(D)) == [600.0]
        lane.call("drop_kept", I)


def test_a_kept_argument_returned_as_a_pointer_into_the_request(server):
    """NDARRAY_IN_REQUEST: the reply points into the request file, and Python keeps the argument too."""
    a = np.arange(1000, dtype=np.float64)
    with ClientLane(server.folder) as lane:
        np.testing.assert_array_equal(lane.call("keep_and_return", N, [a], [N], reply_in_request=True), a[1:])
        _others(lane, 1000)
        assert lane.call("kept_sums", ListOf(D)) == [a.sum()]
        lane.call("drop_kept", I)


def _fork_rounds(server, rounds: int) -> None:
    with ClientLane(server.folder) as lane:
        for k in range(rounds):
            assert lane.call("fork_reads", Tag.NONE, [np.full(50_000, 1.0 + k), 0.2], [N, D]) is None
            lane.send_raw(_at_frame("fork_reads", Tag.NONE, np.full(1000, 2.0 + k), 0.2, 256 * 1024, D))
            assert lane.receive() is None
            for _ in range(3):
                _others(lane, 50_000)
            assert lane.call("fork_sums", ListOf(D)) == [(1.0 + k) * 50_000, (2.0 + k) * 1000]


def test_a_fork_child_sees_its_parents_arguments_as_they_were(server):
    _fork_rounds(server, 2)


@pytest.mark.stress
def test_a_fork_child_sees_its_parents_arguments_as_they_were_long(server):
    _fork_rounds(server, 20)


def _at_frame(name: str, returns, a: np.ndarray, k, payload: int, k_tag=I) -> bytes:
    """A call frame `name(a, k)` whose array is an NDARRAY_AT at the end of the payload, as C#'s
    NewRequestArray places it (PROTOCOL.md section 4)."""
    raw = name.encode()
    frame = bytearray(struct.pack("<H", len(raw)) + raw + encode_desc(returns) + b"\x02")
    frame += bytes([Tag.NDARRAY_AT, DTYPE_CODES[a.dtype.name], a.ndim]) + struct.pack(f"<{a.ndim}Q", *a.shape)
    frame += bytes(-(len(frame) + 8) % 8)
    offset = (payload - a.nbytes) // 64 * 64
    frame += struct.pack("<Q", offset) + bytes([k_tag]) + struct.pack("<d" if k_tag == D else "<i", k)
    out = bytearray(payload)
    out[:len(frame)] = frame
    out[offset:offset + a.nbytes] = a.tobytes()
    return bytes(out[:offset + a.nbytes])


def test_a_kept_in_place_array_keeps_its_values(server):
    n = 512
    with ClientLane(server.folder) as lane:
        for k, v in enumerate((1.0, 2.0)):
            lane.send_raw(_at_frame("keep", D, np.full(n, v), k, 256 * 1024))
            assert lane.receive() == v * n
        for v in (8.0, 9.0):                           # later in-place requests: the same offsets, other bytes
            lane.send_raw(_at_frame("total", D, np.full(n, v), 0, 256 * 1024))
            assert lane.receive() == v * n
        _others(lane, n)
        assert lane.call("kept_sums", ListOf(D)) == [1.0 * n, 2.0 * n]
        lane.call("drop_kept", I)


def test_the_request_mapping_stays_put_when_nothing_is_kept(server):
    with ClientLane(server.folder) as lane:
        before = 0
        for k in range(20):
            assert lane.call("total", D, [np.ones(3000)], [N]) == 3000.0
            lane.send_raw(_at_frame("total", D, np.ones(100), 0, 48 * 1024))
            assert lane.receive() == 100.0
            if k == 0:
                before = lane.call("req_address", Tag.INT64)
        assert lane.call("req_address", Tag.INT64) == before
        assert lane.call("keep", D, [np.ones(10)], [N]) == 10.0
        assert lane.call("req_address", Tag.INT64) != before      # moved out: mapped anew
        lane.call("drop_kept", I)


# ------------------------------------------------------------------ no lost writes while moving

def _lost_writes(server, rounds: int, n: int, passes: int) -> None:
    with ClientLane(server.folder) as lane:
        for _ in range(rounds):
            assert lane.call("keep_and_count", Tag.NONE, [np.zeros(n), passes], [N, I]) is None
            assert lane.call("total", D, [np.full(n, -1.0)], [N]) == -n      # the next request, meanwhile
            assert lane.call("counters_wrong", I) == 0, "increments made while the argument was moved were lost"


def test_moving_a_kept_argument_out_loses_no_concurrent_write(server):
    _lost_writes(server, rounds=4, n=1_000_000, passes=30)


@pytest.mark.stress
def test_moving_a_kept_argument_out_loses_no_concurrent_write_long(server):
    _lost_writes(server, rounds=40, n=2_000_000, passes=60)


@pytest.mark.stress
def test_kept_arguments_keep_their_values_long(server):
    rng = np.random.default_rng(5)
    with ClientLane(server.folder) as lane:
        want = []
        for k in range(300):
            a = rng.standard_normal(int(rng.integers(1, 200_000)))
            if k % 3 == 0:
                lane.send_raw(_at_frame("keep", D, a, 0, 4 << 20))
                assert lane.receive() == pytest.approx(a.sum())
            else:
                assert lane.call("keep", D, [a], [N]) == pytest.approx(a.sum())
            want.append(a.sum())
            lane.call("total", D, [rng.standard_normal(a.size)], [N])
            if k % 50 == 49:
                assert lane.call("kept_sums", ListOf(D)) == pytest.approx(want)
                lane.call("drop_kept", I)
                want = []
    assert server.proc.poll() is None


# ------------------------------------------------------------------ what a kept argument pins

def _req_mappings(pid: int) -> list:
    """(size, rss, disk blocks of its file) of every mapping of a request file in the server, open or deleted."""
    out, entry = [], None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
                entry = None
                if len(head) >= 6 and ".req.mmf" in line:
                    entry = {"range": head[0], "path": " ".join(head[5:])}
                    out.append(entry)
            elif entry is not None and head[0] in ("Size:", "Rss:"):
                entry[head[0][:-1]] = int(head[1]) * 1024
    for e in out:
        try:
            e["disk"] = os.stat(f"/proc/{pid}/map_files/{e['range']}").st_blocks * 512
        except OSError:
            e["disk"] = 0
    return out


def test_a_kept_argument_pins_only_its_own_size(tmp_path, module):
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm on this machine")
    top = Path(tempfile.mkdtemp(prefix="lesspy-trust-args-", dir="/dev/shm"))
    kept = 40_960                                     # 320 KB of float64
    try:
        with Headless(top / "work", module, "--keep-alive", "--capacity", "64K") as server:
            lane = ClientLane(server.folder)
            assert lane.call("total", D, [np.ones(4 << 20)], [N]) == 4 << 20     # the request file grows to 64 MiB
            assert lane.call("keep", D, [np.ones(kept)], [N]) == kept
            assert lane.call("total", D, [np.ones(4 << 20)], [N]) == 4 << 20
            moved = [e for e in _req_mappings(server.pid) if e["Size"] < 1 << 20]
            assert moved and sum(e["Size"] for e in moved) <= kept * 8 + 2 * 4096, moved
            lane.close()
            wait_for(lambda: not list(server.folder.glob("lane-*")), what="the lane's files removed")
            left = _req_mappings(server.pid)
            assert sum(e["Size"] for e in left) <= kept * 8 + 2 * 4096, left
            assert sum(e["disk"] for e in left) <= kept * 8 + 2 * 4096, left     # its file's blocks were freed
            with ClientLane(server.folder) as other:
                assert other.call("kept_sums", ListOf(D)) == [kept]
    finally:
        shutil.rmtree(top, ignore_errors=True)


# ------------------------------------------------------------------ read-only

def test_argument_views_cannot_be_made_writable(server):
    with ClientLane(server.folder) as lane:
        assert lane.call("writable", BOOL, [np.ones(100)], [N]) is False
        assert lane.call("writable", BOOL, [np.ones((10, 10), dtype=np.float32)], [N]) is False
        assert lane.call("writable", BOOL, [np.arange(5, dtype=np.int32)], [Tag.INT32_ARRAY]) is False
        lane.send_raw(_at_frame("writable_at", BOOL, np.ones(100), 0, 64 * 1024))
        assert lane.receive() is False


# ------------------------------------------------------------------ C#

def test_csharp_kept_arguments_and_in_place_arrays_keep_their_values(server, csharp_bin):
    exe = compile_csharp(csharp_bin, [ROOT / "tests" / "csharp" / "TrustArgsClient.cs"], "TrustArgsClient.exe")
    proc = run_mono(exe, server.folder, timeout=120)
    csharp_checks(proc, "kept_array_keeps_values", "kept_in_place_keeps_values", "in_place_not_writable")
    assert server.proc.poll() is None
