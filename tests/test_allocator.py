"""The C allocator (_resultalloc.c) under failure and misuse, each in a process of its own: reap() under memory
exhaustion, nested begin()/end(), a move_out whose mmap fails after unmapping, import_array refusing an old NumPy,
and LESSPY_NO_ALLOCATOR=1 (results take the copy path and stay exact)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from lesspy_kernel.client import ClientLane, RemoteError
from lesspy_kernel.wire import Tag
from servers import Headless

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the result allocator is Linux only")

ROOT = Path(__file__).resolve().parent.parent
N = 100_000                             # 800 KB of float64: above the allocator's 256 KiB

# a response-like mapping of a file of its own, and a place in it (as a lane's ResultSlot has)
PRELUDE = '''
import ctypes, mmap, os, sys, tempfile, threading
import numpy as np
from lesspy_kernel import _resultalloc as ra

fd, path = tempfile.mkstemp()
os.unlink(path)
os.ftruncate(fd, 1 << 22)
mm = mmap.mmap(fd, 1 << 22)
base = ctypes.addressof(ctypes.c_char.from_buffer(mm))
place = base + 4096 + 64
room = (1 << 22) - 8192

def handler():
    return np.lib.get_handler_name() if hasattr(np.lib, "get_handler_name") else np.core.multiarray.get_handler_name()
'''


def run(code: str, env: dict = None) -> str:
    """Run PRELUDE + code in a fresh interpreter; its stdout (it must exit 0)."""
    p = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)], capture_output=True, text=True,
                       cwd=str(ROOT), timeout=120, env={**os.environ, **(env or {})})
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


def test_reap_under_memory_exhaustion_reports_each_freed_block_once():
    pytest.importorskip("_testcapi")
    out = run('''
        import _testcapi
        t = ra.begin(place, room)
        a = np.ones(100_000)
        ra.end(t)
        assert a.ctypes.data == place
        assert ra.move_out(place, base, fd, None)[0] == 800_000      # moved; its old mapping kept (not released)
        del a                                                         # freed: GONE, waiting for reap()
        assert ra.moved() == 1
        reported, failures = [], 0
        for start in range(4):                 # the list, then its item, then nothing fails
            _testcapi.set_nomemory(start, 0)
            try:
                got = ra.reap()
            except MemoryError:
                got = None
            finally:
                _testcapi.remove_mem_hooks()
            if got is None:
                failures += 1
                assert ra.moved() == 1         # nothing was lost: still on the table
            else:
                reported += got
        print(failures, reported == [place], ra.moved(), ra.reap())
    ''')
    failures, once, moved, again = out.split(maxsplit=3)
    assert int(failures) >= 1, out             # the allocation failure did happen inside reap()
    assert (once, moved, again.strip()) == ("True", "0", "[]"), out


def test_begin_end_nest_and_refuse_misuse():
    out = run('''
        assert handler() == "default_allocator" and ra.depth() == 0
        outer = ra.begin(place, room)
        assert handler() == "lesspy" and ra.depth() == 1
        inner = ra.begin(place + 8192, 64)     # a nested call: its room holds no big array
        assert ra.depth() == 2
        try:
            ra.end(outer)
            raise SystemExit("end(outer) while the inner begin() is in effect was accepted")
        except RuntimeError as e:
            print("order:", e)
        assert ra.depth() == 2 and handler() == "lesspy"      # refused: nothing changed
        b = np.ones(100_000)
        assert b.ctypes.data not in (place, place + 8192)     # the inner call's room, not the outer's place
        errors = []
        th = threading.Thread(target=lambda: errors.append(pytest_raises(lambda: ra.end(inner))))
        def pytest_raises(f):
            try:
                f()
            except RuntimeError as e:
                return str(e)
        th.start(); th.join()
        print("thread:", errors[0])
        ra.end(inner)
        assert ra.depth() == 1 and handler() == "lesspy"      # the outer call is back: its place is used
        a = np.ones(100_000)
        assert a.ctypes.data == place, "the outer call's state was not restored"
        try:
            ra.end(inner)
            raise SystemExit("a second end() of one begin() was accepted")
        except RuntimeError as e:
            print("twice:", e)
        try:
            ra.end(None)
        except TypeError as e:
            print("type:", e)
        ra.end(outer)
        assert ra.depth() == 0 and handler() == "default_allocator"
        c = np.ones(100_000)
        assert c.ctypes.data != place
        del a
        assert ra.live(place) == 0
        print("ok")
    ''')
    assert "order: end() of an outer begin() while 1 inner one(s) are in effect" in out, out
    assert "thread: end() runs on another thread than its begin()" in out, out
    assert "twice: end(): this begin() has ended already" in out, out
    assert "type: end() takes what begin() returned" in out, out
    assert out.rstrip().endswith("ok"), out


def test_a_move_out_whose_mmap_failed_after_unmapping_leaves_the_array_mapped_with_its_bytes():
    out = run('''
        t = ra.begin(place, room)
        a = np.arange(100_000, dtype=np.float64)
        ra.end(t)
        assert a.ctypes.data == place
        ra._fail_next_map()                    # the mmap fails as one that discarded the range first (ENOMEM)
        try:
            ra.move_out(place, base, fd, None)
            raise SystemExit("the failed move_out did not raise")
        except OSError as e:
            print("errno", e.errno)
            print("message", e)
        assert ra.live(place) == 800_000       # still the live block where it was
        assert np.array_equal(a, np.arange(100_000)), "the array lost its bytes"
        a[:] = 5                               # and its pages take writes
        assert a.sum() == 500_000
        size, released, token = ra.move_out(place, base, fd, None)    # a later move works
        assert size == 800_000 and a.sum() == 500_000
        print("ok")
    ''')
    assert "errno 12" in out, out
    assert "could not give a result array kept after its call pages of its own" in out, out
    assert "were mapped again as they were (the same bytes)" in out, out
    assert out.rstrip().endswith("ok"), out


def test_move_pages_whose_mmap_failed_leaves_the_arguments_mapped():
    out = run('''
        mm[:8] = b"12345678"
        ra._fail_next_map()
        try:
            ra.move_pages(base, fd, None, 8192, [(0, 8192)])
        except OSError as e:
            print("message", e)
        print(bytes(mm[:8]))
    ''')
    assert "message [Errno 12]" in out and "were mapped again as they were" in out, out
    assert "b'12345678'" in out, out


FAKE_NUMPY = '''
import ctypes, sys, types
import numpy
# a NumPy whose C API reports the 1.21 feature version (0xe), before NEP 49
table = (ctypes.c_void_p * 400)()
keep = []
for index, value in ((0, 0x02000000), (210, 1), (211, 0xe)):     # ABI version, little endian, feature version
    f = ctypes.CFUNCTYPE(ctypes.c_uint)(lambda value=value: value)
    keep.append(f)
    table[index] = ctypes.cast(f, ctypes.c_void_p).value
new_capsule = ctypes.pythonapi.PyCapsule_New
new_capsule.restype = ctypes.py_object
new_capsule.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
fake = types.ModuleType("numpy._core._multiarray_umath")
fake._ARRAY_API = new_capsule(ctypes.addressof(table), None, None)
from lesspy_kernel import allocator
real = sys.modules["numpy._core._multiarray_umath"]
sys.modules["numpy._core._multiarray_umath"] = fake
try:
    try:
        from lesspy_kernel import _resultalloc
        print("imported")
    except ImportError as e:
        print("ImportError:", e)
        print("cause:", e.__cause__)
    print("available:", allocator.available())
finally:
    sys.modules["numpy._core._multiarray_umath"] = real
'''


def test_import_array_refuses_a_numpy_without_the_c_api_it_was_built_for():
    if np.lib.NumpyVersion(np.__version__) < "2.0.0":
        pytest.skip("the fake C API stands in for numpy._core (NumPy 2)")
    p = subprocess.run([sys.executable, "-c", FAKE_NUMPY], capture_output=True, text=True, cwd=str(ROOT), timeout=60)
    out = p.stdout
    assert p.returncode == 0, out + p.stderr
    assert "ImportError: lesspy_kernel._resultalloc needs a NumPy with NEP 49 data allocators (1.22 or later)" \
        in out, out
    assert "cause: module was compiled against NumPy C-API version 0xf (NumPy 1.22) but the running NumPy has " \
           "C-API version 0xe" in out, out
    assert "available: False" in out, out     # results are copied into the reply then
    from lesspy_kernel import _resultalloc
    assert _resultalloc.NUMPY_FEATURE_VERSION == 0xf


MODULE = '''
import numpy as np

from lesspy_kernel import allocator, result_array

KEPT = []


def allocator_on():
    return allocator.available()


def plus_one(a):
    return a + 1


def filled(n, v):
    r = result_array(n)
    r.fill(v)
    return r


def keep_failing_move(n, v):
    r = result_array(n)                  # placed in the response mapping
    r.fill(v)
    KEPT.append(r)                       # kept: it must be moved out before the reply
    allocator._native._fail_next_map()   # and that move fails after its mmap unmapped the pages
    return r


def kept_tail_sum():
    return float(KEPT[0][4096:].sum())   # past what an error reply may write over in the shared file


def kept_size():
    return int(KEPT[0].size)
'''


@pytest.fixture
def module(tmp_path) -> Path:
    path = tmp_path / "allocator_module.py"
    path.write_text(MODULE)
    return path


@pytest.mark.parametrize("off", [False, True], ids=["allocator", "LESSPY_NO_ALLOCATOR=1"])
def test_results_are_exact_with_the_allocator_on_and_off(tmp_path, module, monkeypatch, off):
    if off:
        monkeypatch.setenv("LESSPY_NO_ALLOCATOR", "1")
    else:
        monkeypatch.delenv("LESSPY_NO_ALLOCATOR", raising=False)
    a = np.arange(N, dtype=np.float64)
    with Headless(tmp_path / "work", module, "--capacity", "64K") as s, ClientLane(s.folder) as lane:
        assert lane.call("allocator_on", Tag.BOOL) is (not off)
        for k in range(3):
            np.testing.assert_array_equal(lane.call("plus_one", Tag.NDARRAY, [a + k], [Tag.NDARRAY]), a + k + 1)
            np.testing.assert_array_equal(lane.call("filled", Tag.NDARRAY, [N, float(k)], [Tag.INT32, Tag.FLOAT64]),
                                          np.full(N, float(k)))


def test_a_failed_move_out_in_a_server_keeps_the_array_valid_and_says_why(tmp_path, module, monkeypatch):
    monkeypatch.delenv("LESSPY_NO_ALLOCATOR", raising=False)
    a = np.arange(N, dtype=np.float64)
    with Headless(tmp_path / "work", module, "--capacity", "64K") as s, ClientLane(s.folder) as lane:
        with pytest.raises(RemoteError) as e:
            lane.call("keep_failing_move", Tag.NDARRAY, [N, 3.0], [Tag.INT32, Tag.FLOAT64])
        text = str(e.value)
        assert "could not give a result array kept after its call pages of its own" in text, text
        assert "Cannot allocate memory" in text and "mapped again as they were" in text, text
        # the kept array's pages are mapped with its bytes: reading it is no crash, and the server goes on
        assert lane.call("kept_tail_sum", Tag.FLOAT64) == 3.0 * (N - 4096)
        assert lane.call("kept_size", Tag.INT32) == N
        np.testing.assert_array_equal(lane.call("plus_one", Tag.NDARRAY, [a], [Tag.NDARRAY]), a + 1)
        assert s.proc.poll() is None
