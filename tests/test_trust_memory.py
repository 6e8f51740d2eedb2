"""Issue 14 ("Trust"), items 5, 6, 7 and 10: arrays placed in the reply (allocator.py, result_array) give exactly
plain NumPy's guarantees, or the reply carries a copy.

- 5: two result_array() in one call are distinct; one inside a tuple or list is never written over by the reply;
  a kept one never sees a later reply, and Python writing it never changes a view C# holds.
- 6: a child of os.fork or of a multiprocessing pool (fork start method) has its own copy of every placed array.
- 7: moving a kept array out of the mapping loses no write made meanwhile by another thread.
- 10: a kept result pins its own size plus a page or two, not its lane's whole mapping, in address space, RSS
  and disk, also after its lane closed.

Real headless servers, the Python client of the protocol and a real Mono C# client (tests/csharp/TrustMemoryClient.cs).
The module the server serves is written by the test (MODULE).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from conftest import compile_csharp, csharp_checks, run_mono
from lesspy_kernel import allocator
from lesspy_kernel.client import ClientLane
from lesspy_kernel.wire import ListOf, Tag
from servers import Headless, wait_for

ROOT = Path(__file__).resolve().parent.parent
I, D, N, BOOL = Tag.INT32, Tag.FLOAT64, Tag.NDARRAY, Tag.BOOL
KEPT_N = 40_960                         # 320 KB of float64: above the allocator's 256 KiB, as in the issue

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the result allocator is Linux only")

MODULE = '''
import os
import threading
import time

import numpy as np

from lesspy_kernel import allocator, result_array
from lesspy_kernel.interrupts import current_lane

KEPT = []
COUNTERS = []
_R = None


def two_result_arrays(n):
    a = result_array(n)
    b = result_array(n)
    a.fill(1.0)
    b.fill(2.0)
    return a


def result_arrays_share(n):
    return bool(np.shares_memory(result_array(n), result_array(n)))


def two_result_arrays_kept(n):
    a = result_array(n)
    b = result_array(n)
    a.fill(1.0)
    b.fill(2.0)
    KEPT.append(b)
    return a


def in_tuple(n):
    r = result_array(n)
    r[:] = np.arange(n)
    s = result_array(n)
    s[:] = -np.arange(n)
    return (r, s, 7)


def in_list(n):
    out = []
    for k in range(3):
        r = result_array(n)
        r[:] = k * 1000 + np.arange(n)
        out.append(r)
    return out


def keep_result(n, v):
    r = result_array(n)
    r.fill(v)
    KEPT.append(r)
    return r


def keep_natural(a, v):
    r = a + v
    KEPT.append(r)
    return r


def write_kept(i, v):
    KEPT[i].fill(v)
    return float(KEPT[i].sum())


def kept_sums():
    return [float(k.sum()) for k in KEPT]


def drop_kept():
    n = len(KEPT)
    KEPT.clear()
    return n


def plus_one(a):
    return a + 1


def big(n):
    return np.ones(n)


def moved_blocks():
    return allocator._native.moved()


def slot_moved():
    return bool(current_lane().transport.slot.moved)


def _child(r):
    r.fill(99.0)
    os._exit(0)


def fork_writes(n):
    r = np.zeros(n)                                   # placed in the reply
    pid = os.fork()
    if pid == 0:
        _child(r)
    os.waitpid(pid, 0)
    return r


def fork_result_array(n):
    r = result_array(n)
    r.fill(0.0)
    pid = os.fork()
    if pid == 0:
        _child(r)
    os.waitpid(pid, 0)
    return r


def fork_then_send(n):
    r = np.full(n, 7.0)
    pid = os.fork()
    if pid == 0:
        time.sleep(0.2)                               # after the reply went out
        _child(r)
    threading.Thread(target=os.waitpid, args=(pid, 0), daemon=True).start()
    return r


def fork_parent_writes(n):
    """The parent writes its array right after the fork: the child must still see the bytes of the fork's moment."""
    r = np.full(n, 7.0)                               # placed in the reply
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        time.sleep(0.05)
        os.write(wfd, repr(float(r.sum())).encode())
        os._exit(0)
    os.close(wfd)
    r.fill(3.0)
    out = b""
    while True:
        chunk = os.read(rfd, 100)
        if not chunk:
            break
        out += chunk
    os.close(rfd)
    os.waitpid(pid, 0)
    return np.array([float(out), float(r.sum())])


def _pool_child(i):
    _R.fill(99.0)
    return i


def pool_writes(n):
    global _R
    import multiprocessing
    r = np.zeros(n)
    _R = r
    pool = multiprocessing.get_context("fork").Pool(2)
    pool.map(_pool_child, range(4))
    # close and join, not terminate (the with-block's exit): a forked worker inherits the server's SIGTERM handler
    # (cli.py), so terminate() leaves it running and join() waits forever (a defect of its own, reported)
    pool.close()
    pool.join()
    _R = None
    return r


def _increment(r, passes):
    for _ in range(passes):
        np.add(r, 1, out=r)


def _start(r, passes):
    t = threading.Thread(target=_increment, args=(r, passes), daemon=True)
    COUNTERS.append((r, passes, t))
    t.start()
    while not r[-1]:                                  # the thread is writing it now
        time.sleep(0)


def counter_result(n, passes):
    """The result itself is incremented by a thread while the reply is written (it is moved out then)."""
    r = np.zeros(n)                                   # placed in the reply
    _start(r, passes)
    return r


def counter_temporary(a, passes):
    """The call's first big array is kept and incremented by a thread; the result is another array."""
    c = np.zeros(a.size)                              # placed in the reply
    _start(c, passes)
    return a + 1


def counter_then_result_array(a, passes):
    """result_array() takes the place from an array a thread is incrementing."""
    c = np.zeros(a.size)                              # placed in the reply
    _start(c, passes)
    out = result_array(a.shape, a.dtype)
    np.add(a, 1, out=out)
    return out


def counters_wrong():
    """Elements of every counter whose count is not the number of increments made: lost writes."""
    wrong = 0
    for r, passes, t in COUNTERS:
        t.join()
        wrong += int(np.count_nonzero(r != passes))
    COUNTERS.clear()
    return wrong
'''


@pytest.fixture
def module(tmp_path) -> Path:
    path = tmp_path / "trust_memory_module.py"
    path.write_text(MODULE)
    return path


@pytest.fixture
def server(tmp_path, module):
    with Headless(tmp_path / "work", module, "--keep-alive", "--capacity", "64K") as s:
        yield s


def test_the_allocator_is_built():
    assert allocator.available(), "lesspy_kernel/_resultalloc.c was not built"


# ------------------------------------------------------------------ item 5: result_array()

def test_two_result_arrays_in_one_call_are_distinct(server):
    with ClientLane(server.folder) as lane:
        for _ in range(3):
            np.testing.assert_array_equal(lane.call("two_result_arrays", N, [50_000], [I]), np.ones(50_000))
            assert lane.call("result_arrays_share", BOOL, [1000], [I]) is False
            np.testing.assert_array_equal(lane.call("two_result_arrays_kept", N, [1000], [I]), np.ones(1000))
        assert lane.call("kept_sums", ListOf(D)) == [2000.0] * 3


def test_result_arrays_inside_a_tuple_or_a_list_arrive_exactly(server):
    n = 100
    with ClientLane(server.folder) as lane:
        for _ in range(3):
            r, s, k = lane.call("in_tuple", (N, N, I), [n], [I])
            np.testing.assert_array_equal(r, np.arange(n))
            np.testing.assert_array_equal(s, -np.arange(n))
            assert k == 7
            items = lane.call("in_list", ListOf(N), [n], [I])
            assert len(items) == 3
            for k, item in enumerate(items):
                np.testing.assert_array_equal(item, k * 1000 + np.arange(n))


def test_a_kept_result_sees_no_later_reply_and_never_changes_a_view_the_client_holds(server):
    n = KEPT_N
    a = np.arange(n, dtype=np.float64)
    with ClientLane(server.folder) as lane, ClientLane(server.folder) as other:
        for name, args, descs, want in (("keep_result", [n, 5.0], [I, D], np.full(n, 5.0)),
                                        ("keep_natural", [a, 3.0], [N, D], a + 3)):
            np.testing.assert_array_equal(lane.call(name, N, args, descs), want)      # kept in KEPT[i]
            length = lane.resp.words[3]
            held = bytes(lane.resp.payload(length))   # what a C# view of that reply reads until its next call
            np.testing.assert_array_equal(np.frombuffer(held[64:], dtype=np.float64), want)
            i = len(other.call("kept_sums", ListOf(D))) - 1
            assert other.call("write_kept", D, [i, 99.0], [I, D]) == 99.0 * n   # Python writes it meanwhile
            assert bytes(lane.resp.payload(length)) == held, "Python's write changed the reply the client holds"
            for _ in range(3):                                  # later replies on its lane
                np.testing.assert_array_equal(lane.call("plus_one", N, [a], [N]), a + 1)
                np.testing.assert_array_equal(lane.call("big", N, [n], [I]), np.ones(n))
            sums = other.call("kept_sums", ListOf(D))
            assert sums == [99.0 * n], sums
            other.call("drop_kept", I)
        # the fast path stays: a result nothing else holds is sent where it lies, and nothing is moved
        before = lane.call("moved_blocks", I)
        for _ in range(3):
            np.testing.assert_array_equal(lane.call("plus_one", N, [a], [N]), a + 1)
            np.testing.assert_array_equal(lane.call("two_result_arrays", N, [n], [I]), np.ones(n))
        assert lane.call("moved_blocks", I) == before


def test_csharp_gets_exact_result_arrays_and_fork_children_change_nothing(server, csharp_bin):
    exe = compile_csharp(csharp_bin, [ROOT / "tests" / "csharp" / "TrustMemoryClient.cs"], "TrustMemoryClient.exe")
    proc = run_mono(exe, server.folder, KEPT_N, timeout=180)
    csharp_checks(proc, "two_result_arrays_distinct", "tuple_first_exact", "list_item_exact",
                  "kept_result_array_view_unchanged", "kept_arrays_see_no_later_reply", "fork_child_writes",
                  "fork_child_writes_after_reply", "pool_children_write", "no_lost_increments",
                  "other_thread_replies_exact")
    assert server.proc.poll() is None


def test_a_lane_the_server_closes_keeps_the_last_reply_a_client_may_read(server):
    """Closing a lane frees its response file's blocks (test below), but not the last reply's while the client may
    still read it: here the server closes the lane for a byte that breaks the protocol."""
    n = KEPT_N
    lane = ClientLane(server.folder)
    try:
        np.testing.assert_array_equal(lane.call("keep_result", N, [n, 5.0], [I, D]), np.full(n, 5.0))  # moved out
        length = lane.resp.words[3]
        reply = bytes(lane.resp.payload(length))
        lane.sock.sendall(b"\x7f")                    # not CALL nor SHUTDOWN: the server closes the lane
        wait_for(lambda: not list(server.folder.glob("lane-*")), what="the lane's files removed")
        time.sleep(0.2)
        assert bytes(lane.resp.payload(length)) == reply
    finally:
        lane.close()


# ------------------------------------------------------------------ item 6: fork

def _fork_rounds(server, rounds: int) -> None:
    n = KEPT_N
    with ClientLane(server.folder) as lane:
        for _ in range(rounds):
            np.testing.assert_array_equal(lane.call("fork_writes", N, [n], [I]), np.zeros(n))
            np.testing.assert_array_equal(lane.call("fork_result_array", N, [n], [I]), np.zeros(n))
            lane.call("fork_then_send", N, [n], [I])
            length = lane.resp.words[3]
            time.sleep(0.5)                           # the child writes 0.2 s after the reply
            reply = np.frombuffer(bytes(lane.resp.payload(length))[64:], dtype=np.float64)
            np.testing.assert_array_equal(reply, np.full(n, 7.0))
        np.testing.assert_array_equal(lane.call("pool_writes", N, [n], [I]), np.zeros(n))
        for _ in range(rounds * 3):
            child, parent = lane.call("fork_parent_writes", N, [n], [I])
            assert (child, parent) == (7.0 * n, 3.0 * n), "the child saw its parent's write made after the fork"


def test_fork_children_have_their_own_copies(server):
    _fork_rounds(server, 2)


@pytest.mark.stress
def test_fork_children_have_their_own_copies_long(server):
    _fork_rounds(server, 30)


# ------------------------------------------------------------------ item 7: no lost writes

def _lost_writes(server, rounds: int, n: int, passes: int) -> None:
    a = np.arange(n, dtype=np.float64)
    with ClientLane(server.folder) as lane:
        for _ in range(rounds):
            lane.call("counter_result", N, [n, passes], [I, I])
            lane.call("plus_one", N, [a], [N])          # later replies while the thread goes on
            np.testing.assert_array_equal(lane.call("counter_temporary", N, [a, passes], [N, I]), a + 1)
            np.testing.assert_array_equal(lane.call("counter_then_result_array", N, [a, passes], [N, I]), a + 1)
            lane.call("plus_one", N, [a], [N])
            assert lane.call("counters_wrong", I) == 0, "increments made while the array was moved were lost"


def test_moving_a_kept_array_out_loses_no_concurrent_write(server):
    _lost_writes(server, rounds=4, n=2_000_000, passes=40)


@pytest.mark.stress
def test_moving_a_kept_array_out_loses_no_concurrent_write_long(server):
    _lost_writes(server, rounds=40, n=2_000_000, passes=60)


# ------------------------------------------------------------------ item 10: what a kept result pins

def _lane_mappings(pid: int) -> list:
    """(size, rss, disk bytes) of every mapping of a lane file in the server, open or deleted."""
    out = []
    entry = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
                entry = None
                if len(head) >= 6 and ".mmf" in line:
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


def _free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bfree * st.f_frsize


@pytest.fixture
def shm_server(module):
    """A server whose work folder is on a tmpfs of its own use (/dev/shm), so statvfs sees its files' blocks."""
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm on this machine")
    top = Path(tempfile.mkdtemp(prefix="lesspy-trust-", dir="/dev/shm"))
    try:
        with Headless(top / "work", module, "--keep-alive", "--capacity", "64K") as s:
            yield s
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_kept_results_pin_only_their_own_size(shm_server):
    server = shm_server
    big_n = 8 << 20                                   # a 64 MiB reply first: each lane's mapping grows to 128 MiB
    free_before = _free_bytes(server.folder)
    lanes = [ClientLane(server.folder) for _ in range(4)]
    a = np.arange(KEPT_N, dtype=np.float64)

    def work(k: int) -> None:
        lane = lanes[k]
        assert lane.call("big", N, [big_n], [I]).size == big_n
        if k % 2:
            np.testing.assert_array_equal(lane.call("keep_result", N, [KEPT_N, float(k)], [I, D]), np.full(KEPT_N, k))
        else:
            np.testing.assert_array_equal(lane.call("keep_natural", N, [a, float(k)], [N, D]), a + k)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(work, range(4)))
    for lane in lanes:
        lane.close()
    wait_for(lambda: not list(server.folder.glob("lane-*")), what="the lanes' files removed")
    time.sleep(0.3)
    pinned = [m for m in _lane_mappings(server.pid) if "resp" in m["path"]]
    bound = KEPT_N * 8 + 2 * 4096                     # its own pages, plus the one it starts in
    assert len(pinned) <= 4, pinned
    assert sum(m["Size"] for m in pinned) <= 4 * bound, pinned
    assert sum(m["Rss"] for m in pinned) <= 4 * bound, pinned
    assert sum(m["disk"] for m in pinned) <= 4 * 4096, pinned
    used = free_before - _free_bytes(server.folder)
    assert used < 16 << 20, f"the closed lanes' files still take {used:,} bytes of the file system"
    with ClientLane(server.folder) as lane:                 # and the kept arrays still hold their values
        assert sorted(lane.call("kept_sums", ListOf(D))) == sorted([float((a + 0).sum()), KEPT_N * 1.0,
                                                                    float((a + 2).sum()), KEPT_N * 3.0])
        lane.call("drop_kept", I)
    time.sleep(0.2)
    assert not [m for m in _lane_mappings(server.pid) if "(deleted)" in m["path"]], "freed arrays left mappings"
