"""Protocol version 2 on a real headless server: lanes, cancellation, interrupts, growth, fast paths, limits.

Driven by the Python client (lesspy_kernel.client), which follows the same handover rules as the C# client;
the C# side proves the same things again in test_csharp_lanes.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from lesspy_kernel import allocator
from lesspy_kernel.transport.handshake import HandshakeError
from lesspy_kernel.wire import handshake
from lesspy_kernel.client import ClientLane, RemoteError, status, stop
from lesspy_kernel.coerce import encode_call
from lesspy_kernel.wire import FLAG_REPLY_IN_REQUEST, REQUEST_STREAM, ErrorKind, FrameError, ListOf, Tag, decode_reply
from lesspy_kernel.workfolder import FORCE_TCP_ENV, UNIX, connect_notify
from servers import ROOT, Headless, wait_for

LANES_MODULE = ROOT / "tests" / "pymodules" / "lanes_module.py"
I, D, S, B, N = Tag.INT32, Tag.FLOAT64, Tag.STRING, Tag.BYTES, Tag.NDARRAY


@pytest.fixture
def server(tmp_path):
    with Headless(tmp_path / "work", LANES_MODULE, "--keep-alive", "--capacity", "64K") as s:
        yield s


def test_lanes_run_calls_at_the_same_time(server):
    """The spinning thread serves every lane's calls; one that runs long (releasing the GIL or not) gives the
    other lanes back to their own threads, so their calls go on meanwhile."""
    slow, fast = ClientLane(server.folder), ClientLane(server.folder)
    for _ in range(50):                                   # both lanes known to the spinner, which serves them
        assert fast.call("add_ints", I, [1, 1], [I, I]) == 2
        assert slow.call("add_ints", I, [1, 2], [I, I]) == 3
    for name, args, descs in (("sleep_then", [1.5, 7], [D, I]), ("spin_for", [1.5, 7], [D, I])):
        slow.send_raw(encode_call(name, I, args, descs))
        time.sleep(0.05)
        t0 = time.monotonic()
        for i in range(20):
            assert fast.call("add_ints", I, [i, 40], [I, I]) == i + 40
        assert time.monotonic() - t0 < 1.0, f"calls on another lane must not wait for {name}"
        assert slow.receive() == 7
        assert fast.call("add_ints", I, [2, 40], [I, I]) == 42
    slow.close()
    fast.close()


def test_a_call_served_by_the_spinner_can_be_cancelled(server):
    """While one lane keeps the spinner busy, a pure-Python call on another lane runs on the spinner's thread;
    cancelling it interrupts that thread's call, and both lanes go on with the right results."""
    busy, other = ClientLane(server.folder), ClientLane(server.folder)
    stop = threading.Event()
    wrong: list = []

    def hammer() -> None:
        i = 0
        while not stop.is_set():
            if busy.call("add_ints", I, [i, 1], [I, I]) != i + 1:
                wrong.append(i)
            i += 1

    t = threading.Thread(target=hammer)
    t.start()
    try:
        for _ in range(3):
            other.send_raw(encode_call("spin_forever", I, []))
            time.sleep(0.3)
            other.cancel()
            with pytest.raises(RemoteError) as e:
                other.receive()
            assert e.value.reply.kind == ErrorKind.CANCELLED
            assert other.call("add_ints", I, [5, 6], [I, I]) == 11
    finally:
        stop.set()
        t.join()
    assert not wrong
    busy.close()
    other.close()


@pytest.mark.timeout(120)
def test_bursts_with_pauses_never_lose_a_wake_up(server):
    """The spinner covers the lanes while calls come and gives them back when they pause: a call that arrives
    just as it stops (no byte sent, since the lane was covered) must still be served. Bursts separated by
    pauses around the spinner's idle limit make that moment happen often; a lost wake-up hangs a caller."""
    import random

    errors: list = []

    def worker(tag: int) -> None:
        rng = random.Random(tag)
        try:
            with ClientLane(server.folder) as lane:
                for burst in range(150):
                    for i in range(rng.randint(1, 6)):
                        if lane.call("add_ints", I, [tag, i], [I, I]) != tag + i:
                            errors.append((tag, burst, i))
                    time.sleep(rng.choice((0.0, 0.0001, 0.00015, 0.0002, 0.0005, 0.002)))
        except BaseException as e:
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(t * 1000,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_threads_each_get_their_own_data(server):
    errors = []

    def worker(tag: int) -> None:
        lane = ClientLane(server.folder)
        try:
            for n in (1, 1000, 300_000):          # the last one grows the 64 KiB mappings
                for _ in range(20):
                    out = lane.call("tagged", N, [tag, n], [I, I])
                    if out.shape != (n,) or not (out == tag).all():
                        errors.append((tag, n, out[:4]))
        finally:
            lane.close()

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors


def test_cancel_before_start_never_runs(server):
    lane = ClientLane(server.folder)
    before = lane.call("started_count", I)
    payload = encode_call("record_start", I, [0.0], [D])
    lane.cancel(lane.seq + 1)                       # abandoned before it is even sent: the server must not run it
    lane.send_raw(payload)
    with pytest.raises(RemoteError) as e:
        lane.receive()
    assert e.value.reply.kind == ErrorKind.CANCELLED and "not run" in e.value.reply.message
    assert lane.call("started_count", I) == before
    lane.close()


@pytest.mark.parametrize("function,returns", [("spin_forever", I), ("allocate_forever", N)])
def test_cancel_interrupts_a_running_pure_python_call_and_the_lane_goes_on(server, function, returns):
    """allocate_forever spends its time in NumPy allocations, which lesspy's allocator serves (allocator.py)
    while the call returns an NdArray: the interrupt still ends it, as a cancellation."""
    lane = ClientLane(server.folder)
    lane.send_raw(encode_call(function, returns, []))
    time.sleep(0.3)
    t0 = time.monotonic()
    lane.cancel()
    with pytest.raises(RemoteError) as e:
        lane.receive()
    assert e.value.reply.kind == ErrorKind.CANCELLED and "cancelled" in e.value.reply.message
    assert time.monotonic() - t0 < 3
    assert lane.call("add_ints", I, [1, 2], [I, I]) == 3
    lane.close()


@pytest.mark.parametrize("stray_bytes", [0, 3])
def test_a_client_that_dies_mid_call_gets_its_call_interrupted(server, stray_bytes):
    """Also when wake-up bytes the server never needed to read stand before the end of the stream (the server
    found the request without them): they must not hide that the client is gone."""
    lane = ClientLane(server.folder)
    lane.sock.sendall(handshake.CALL * stray_bytes)
    lane.send_raw(encode_call("spin_forever", I, []))
    time.sleep(0.2)
    lane.sock.sendall(handshake.CALL * stray_bytes)
    lane.sock.close()
    wait_for(lambda: status(server.folder)["lanes"] == 0, timeout=10, what="the dead client's lane to close")
    with ClientLane(server.folder) as other:
        assert other.call("add_ints", I, [1, 2], [I, I]) == 3


def test_sigterm_stops_within_5_s_even_when_a_call_is_stuck(tmp_path):
    for stuck in ("spin_forever", "sleep_then"):
        s = Headless(tmp_path / stuck, LANES_MODULE, "--keep-alive")
        lane = ClientLane(s.folder)
        args, descs = ([], None) if stuck == "spin_forever" else ([1000.0, 1], [D, I])
        lane.send_raw(encode_call(stuck, I, args, descs))
        time.sleep(0.3)
        t0 = time.monotonic()
        os.kill(s.pid, signal.SIGTERM)
        assert s.proc.wait(10) == 0
        assert time.monotonic() - t0 < 5, f"{stuck}: took {time.monotonic() - t0:.1f} s"
        assert not (tmp_path / stuck / "python.pid").exists()
        lane.close()
        s.stop()


def test_requests_and_results_grow_the_mappings(server):
    lane = ClientLane(server.folder)
    big = os.urandom(3 * 1024 * 1024 + 17)
    assert lane.call("echo_bytes", B, [big], [B]) == big          # 64 KiB mappings, 3 MiB both ways
    assert lane.req.capacity > 3 * 1024 * 1024
    assert lane.call("zeros_bytes", B, [10], [I]) == bytes(10)
    assert lane.call("zeros_bytes", B, [5_000_000], [I]) == bytes(5_000_000)
    lane.close()


def test_a_damaged_request_header_gets_an_error_and_the_lane_goes_on(server):
    """The server reads a request's length and status from the header words; a header the client broke
    (magic, or a length past the mapping) is a malformed request, not a crash or a read past the end."""
    from lesspy_kernel.wire import HEADER_SIZE, REQUEST_CALL
    with ClientLane(server.folder) as lane:
        assert lane.call("add_ints", I, [1, 2], [I, I]) == 3
        frame = encode_call("add_ints", I, [3, 4], [I, I])
        lane.req.view[HEADER_SIZE:HEADER_SIZE + len(frame)] = frame
        lane.req.view[0:4] = b"XXXX"                              # the magic
        lane.hand_over(len(frame), REQUEST_CALL)
        with pytest.raises(RemoteError, match="magic") as e:
            lane.receive()
        assert e.value.reply.kind == ErrorKind.MALFORMED_REQUEST
        lane.req.view[0:4] = b"LPYM"
        lane.hand_over(lane.req.capacity, REQUEST_CALL)             # a length past the end of the mapping
        with pytest.raises(RemoteError, match="payload length") as e:
            lane.receive()
        assert e.value.reply.kind == ErrorKind.MALFORMED_REQUEST
        assert lane.call("add_ints", I, [5, 6], [I, I]) == 11


def test_result_array_is_sent_without_a_copy_and_overlaps_are_safe(server):
    lane = ClientLane(server.folder)
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    for _ in range(3):
        np.testing.assert_array_equal(lane.call("plus_one_in_place", N, [a]), a + 1)
    big = np.arange(300_000, dtype=np.float64)                       # grows the response mapping first
    np.testing.assert_array_equal(lane.call("plus_one_in_place", N, [big]), big + 1)
    np.testing.assert_array_equal(lane.call("plus_one_shifted", N, [a.ravel()]), a.ravel() + 1)
    lane.close()


def test_a_returned_argument_comes_back_as_a_pointer_into_the_request(server):
    """With the request flag, an NdArray result that is an argument (or a contiguous part of one) is sent as
    NDARRAY_IN_REQUEST: its shape and where it lies in the request, no copy. Anything else is an NDARRAY."""
    lane = ClientLane(server.folder)
    a = np.arange(40_000, dtype=np.float64).reshape(200, 200)       # grows the 64K request file first

    def raw_reply(name: str, flagged: bool) -> bytes:
        lane.send_raw(encode_call(name, N, [a]), flags=FLAG_REPLY_IN_REQUEST if flagged else 0)
        lane.wait()
        length = lane.resp.words[3]
        return bytes(lane.resp.payload(length))

    for flagged in (True, False):
        for _ in range(3):
            reply = raw_reply("echo", flagged)
            assert reply[0] == (Tag.NDARRAY_IN_REQUEST if flagged else Tag.NDARRAY)
    reply = raw_reply("echo", True)
    assert len(reply) == 3 + 16 + 5 + 8                                   # tag, dtype, ndim, shape, padding, offset
    offset = int.from_bytes(reply[-8:], "little")
    frame = encode_call("echo", N, [a])
    assert offset == frame.index(a.tobytes()) and offset % 64 == 0        # where the NDARRAY data of the call lies
    assert decode_reply(reply, frame).tobytes() == a.tobytes()
    with pytest.raises(FrameError, match="did not ask"):
        decode_reply(reply)
    with pytest.raises(FrameError, match="beyond"):
        decode_reply(reply, frame[:offset + 100])

    half = raw_reply("second_half", True)
    assert half[0] == Tag.NDARRAY_IN_REQUEST
    assert int.from_bytes(half[-8:], "little") == offset + a[100:].nbytes
    for name in ("every_other", "echo_copy"):                            # not contiguous; not in the request
        assert raw_reply(name, True)[0] == Tag.NDARRAY
    for name in ("echo", "second_half", "every_other", "echo_copy"):      # the values, through the client
        want = {"echo": a, "second_half": a[100:], "every_other": a[::2], "echo_copy": a}[name]
        np.testing.assert_array_equal(lane.call(name, N, [a], reply_in_request=True), want)
    lists = encode_call("echo_first", N, [[a, a[:1]]], [ListOf(N)])  # nested in a list: still found in the request
    lane.send_raw(lists, flags=FLAG_REPLY_IN_REQUEST)
    np.testing.assert_array_equal(lane.receive(), a)
    lane.send_raw(encode_call("halves", N, [a]), REQUEST_STREAM, flags=FLAG_REPLY_IN_REQUEST)   # stream items
    lane.wait()
    assert lane.resp.payload(1)[0] == Tag.NDARRAY
    np.testing.assert_array_equal(lane.receive(), a[:100])
    assert lane.call("add_ints", I, [1, 2], [I, I]) == 3
    lane.close()


def test_async_def_functions_are_awaited(server):
    with ClientLane(server.folder) as lane:
        assert lane.call("async_double", I, [21], [I]) == 42


def test_an_exception_with_a_huge_type_name_cannot_stop_the_server(server):
    with ClientLane(server.folder) as lane:
        with pytest.raises(RemoteError) as e:
            lane.call("raises_long_type_name", I, [200_000], [I])
        assert e.value.reply.kind == ErrorKind.PYTHON_ERROR
        assert len(e.value.reply.python_type) <= 256 and len(e.value.reply.message) <= 64 * 1024
        assert lane.call("add_ints", I, [1, 2], [I, I]) == 3


def test_status_counts_calls_and_refusals_but_not_liveness_probes(server):
    for _ in range(3):
        connect_notify(server.folder).close()           # a probe: connect, close
    st = status(server.folder)
    assert st["refused"] == 0 and st["pid"] == server.pid and st["protocol"] == 2 and st["mode"] == "headless"
    with pytest.raises(HandshakeError):
        ClientLane(server.folder, key=b"0" * 64)
    with ClientLane(server.folder) as lane:
        lane.call("add_ints", I, [1, 2], [I, I])
        st = status(server.folder)
        assert st["refused"] == 1 and st["clients"] == 1 and st["lanes"] == 1 and st["calls"] >= 1


def test_a_client_of_another_protocol_version_is_told_at_once(server):
    with connect_notify(server.folder) as s:
        hello = s.recv(48)
        assert hello[:4] == b"LSPY" and int.from_bytes(hello[4:6], "little") == 2
        s.sendall(b"LSPY" + (1).to_bytes(2, "little") + bytes(2))     # a version 1 client's first bytes
        result = s.recv(3)
        message = s.recv(200).decode()
        assert result[0] == handshake.Result.BAD_VERSION and "version 1" in message and "version 2" in message


def test_stop_request_stops_the_server(tmp_path):
    s = Headless(tmp_path / "w", LANES_MODULE, "--keep-alive")
    stop(s.folder)
    assert s.proc.wait(10) == 0
    s.stop()


def test_two_servers_started_at_once_on_one_folder_leave_exactly_one(tmp_path):
    folder = tmp_path / "w"
    for _ in range(3):
        procs = [subprocess.Popen([sys.executable, "-m", "lesspy_kernel", "serve", "--module", str(LANES_MODULE),
                                   "--work-folder", str(folder), "--keep-alive"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, cwd=str(ROOT)) for _ in range(3)]
        try:
            wait_for(lambda: sum(p.poll() is not None for p in procs) >= 2, timeout=30,
                     what="all but one server to give up")
            alive = [p for p in procs if p.poll() is None]
            assert len(alive) == 1
            assert all(p.returncode == 2 for p in procs if p not in alive)
            wait_for(lambda: (folder / "notify.port").exists(), what="the winner to be ready")
            assert int((folder / "python.pid").read_text()) == alive[0].pid
            with ClientLane(folder) as lane:
                assert lane.call("pid", I) == alive[0].pid
        finally:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
                p.wait(10)
                p.stdout.close()
                p.stderr.close()


def test_generators_stream_lazily_and_close_when_abandoned(server):
    with ClientLane(server.folder) as lane:
        assert list(lane.stream("countdown", I, [3], [I])) == [3, 2, 1]
        before = lane.call("started_count", I)
        items = lane.stream("countdown", I, [1000], [I])
        assert [next(items), next(items)] == [1000, 999]
        assert lane.call("started_count", I) == before + 2, "one item per MoveNext, not the whole generator"
        items = lane.stream("countdown", I, [50], [I])
        assert next(items) == 50
        items.close()                                     # Dispose before the end: the generator's finally runs
        assert 50 in lane.call("closed_streams", Tag.INT32_ARRAY)
        got = []
        with pytest.raises(RemoteError) as e:
            for x in lane.stream("fails_at", I, [2], [I]):
                got.append(x)
        assert got == [0, 1] and e.value.reply.python_type == "ValueError" and "no item 2" in e.value.reply.message
        with pytest.raises(RemoteError) as e:
            list(lane.stream("not_iterable", I))
        assert e.value.reply.kind == ErrorKind.RESULT_MISMATCH and "IEnumerable<int>" in e.value.reply.message
        assert lane.call("add_ints", I, [1, 2], [I, I]) == 3


def test_the_log_file_is_rotated_at_its_cap(tmp_path):
    log = tmp_path / "server.log"
    with Headless(tmp_path / "w", LANES_MODULE, "--keep-alive", "--log-file", str(log), "--log-max-bytes",
                  "64K") as s, ClientLane(s.folder) as lane:
        for _ in range(10):
            assert lane.call("chatty", I, [2000], [I]) == 2000      # about 230 KB each
            time.sleep(0.15)
        wait_for(lambda: log.stat().st_size < 300_000, timeout=5, what="the log to be rotated")
        backup = tmp_path / "server.log.1"
        assert backup.exists() and backup.stat().st_size <= 64 * 1024
        assert lane.call("add_ints", I, [1, 2], [I, I]) == 3


def test_a_folder_too_long_for_a_unix_socket_is_served_on_a_unix_socket(tmp_path):
    """A folder path longer than a socket address allows is still served on notify.sock (reached through
    /proc/self/fd/<dirfd>/notify.sock on Linux), never on TCP where any local user could connect."""
    folder = tmp_path / ("x" * (110 - len(str(tmp_path))))
    assert len(str(folder / "notify.sock")) > 107
    with Headless(folder, LANES_MODULE, "--keep-alive") as s:
        assert (folder / "notify.port").read_text().strip() == UNIX and (folder / "notify.sock").exists()
        with ClientLane(s.folder) as lane:
            assert lane.call("add_ints", I, [2, 40], [I, I]) == 42
        assert "TCP" not in s.output()


def test_forced_tcp_is_served_on_tcp(tmp_path, monkeypatch):
    """LESSPY_TEST_FORCE_TCP (tests only) serves on TCP 127.0.0.1 as on Windows, and says it is for tests."""
    monkeypatch.setenv(FORCE_TCP_ENV, "1")
    with Headless(tmp_path / "w", LANES_MODULE, "--keep-alive") as s:
        assert (s.folder / "notify.port").read_text().strip().isdigit() and not (s.folder / "notify.sock").exists()
        with ClientLane(s.folder) as lane:
            assert lane.call("add_ints", I, [2, 40], [I, I]) == 42
        assert "for tests only" in s.output()


def test_csharp_streams_and_async_def_over_both_transports(tmp_path, csharp_bin, monkeypatch):
    """The C# client's streams, async calls and cancellation over a Unix socket (driven through libc on Linux),
    also for a folder too long for a Unix socket address (through /proc/self/fd), and over TCP
    (System.Net.Sockets, Windows' transport, forced with LESSPY_TEST_FORCE_TCP)."""
    from conftest import compile_csharp, run_mono

    exe = compile_csharp(csharp_bin, [ROOT / "tests" / "csharp" / "StreamClient.cs"], "StreamClient.exe",
                         extra=["-r:System.Core.dll"])
    runs = [(tmp_path / "w", False), (tmp_path / ("x" * (110 - len(str(tmp_path)))), False), (tmp_path / "t", True)]
    for folder, force_tcp in runs:
        if force_tcp:
            monkeypatch.setenv(FORCE_TCP_ENV, "1")
        else:
            monkeypatch.delenv(FORCE_TCP_ENV, raising=False)
        with Headless(folder, LANES_MODULE, "--keep-alive", "--capacity", "64K") as s:
            where = (folder / "notify.port").read_text().strip()
            assert where.isdigit() if force_tcp else where == UNIX, (folder, where)
            p = run_mono(exe, s.folder, timeout=120)
            assert p.returncode == 0, p.stdout + p.stderr
            assert p.stdout.count("OK ") == 10 and "FAIL" not in p.stdout, (where, p.stdout)


def _cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_idle_when_idle_after_a_burst_of_calls(server):
    """Spinning is only for calls that follow closely: with no calls, the server and its lanes block."""
    lanes = [ClientLane(server.folder) for _ in range(3)]
    for lane in lanes:
        for i in range(2000):
            assert lane.call("add_ints", I, [i, 1], [I, I]) == i + 1
    time.sleep(0.5)
    before = _cpu_seconds(server.pid)
    time.sleep(3.0)
    used = _cpu_seconds(server.pid) - before
    assert used < 0.1, f"the idle server used {used:.2f} s of CPU in 3 s (a lane or the watchdog spins)"
    for lane in lanes:
        lane.close()


def test_big_results_are_computed_in_the_response_mapping_and_kept_ones_stay_intact(server):
    """NumPy's allocator (allocator.py): a call's first big array is made in the response mapping, and returning
    it costs no copy. One that outlives the call (a global, a traceback, a view) is moved out before the next
    reply, so Python never sees another reply's bytes; other lanes and threads free it safely."""
    assert allocator.available() or not sys.platform.startswith("linux"), "lesspy_kernel/_resultalloc.c was not built"
    lane, other = ClientLane(server.folder), ClientLane(server.folder)
    a = np.arange(100_000, dtype=np.float64)           # 800 KB: above _resultalloc.MIN_BYTES
    np.testing.assert_array_equal(lane.call("plus_one", N, [a]), a + 1)
    np.testing.assert_array_equal(lane.call("plus_one", N, [a * 3]), a * 3 + 1)
    assert lane.call("places", Tag.STRING) == "mapping,mapping"
    sums = []
    for k in range(3):                                 # kept results and kept temporaries, replies in between
        np.testing.assert_array_equal(lane.call("plus_one_kept", N, [a + k]), a + k + 1)
        sums.append(float((a + k + 1).sum()))
        np.testing.assert_array_equal(lane.call("temporary_kept", N, [a + k]), a + k + 1)
        sums.append(float(((a + k) * 2).sum()))
        np.testing.assert_array_equal(lane.call("plus_one", N, [-a]), -a + 1)
    np.testing.assert_array_equal(lane.call("plus_one_tail", N, [a]), (a + 1)[1:])
    with pytest.raises(RemoteError, match="failed after making"):
        lane.call("plus_one_then_fail", N, [a])
    with pytest.raises(RemoteError) as e:                # an error NumPy raises while freeing its array
        lane.call("log_raising", N, [np.zeros(a.size)])
    assert e.value.reply.python_type == "FloatingPointError"
    np.testing.assert_array_equal(lane.call("plus_one", N, [a]), a + 1)
    assert lane.call("zeros_like", N, [a]).tolist() == [0.0] * a.size    # calloc over an earlier reply's bytes
    np.testing.assert_array_equal(lane.call("grown", N, [a]), np.concatenate([a + 1, np.zeros(a.size)]))
    assert "mapping" in lane.call("places", Tag.STRING)
    assert lane.call("kept_sums", ListOf(D)) == sums
    assert other.call("drop_kept", I) == 6             # freed by another lane's thread
    for _ in range(3):                                 # many small arrays first: the big one still goes there
        np.testing.assert_array_equal(lane.call("many_small", N, [a]), a + 1)
    assert lane.call("places", Tag.STRING) == "mapping,mapping,mapping"
    np.testing.assert_array_equal(lane.call("plus_one_in_place", N, [a]), a + 1)   # result_array still works
    np.testing.assert_array_equal(lane.call("plus_one", N, [a]), a + 1)
    assert lane.call("places", Tag.STRING) == "mapping"
    # every result kept: at most allocator.MAX_MOVED old mappings (each with a descriptor) live at once, the
    # rest are copied; dropping them gives the allocator back
    for k in range(allocator.MAX_MOVED + 8):
        np.testing.assert_array_equal(lane.call("plus_one_kept", N, [a + k]), a + k + 1)
    places = lane.call("places", Tag.STRING).split(",")
    assert places.count("mapping") == allocator.MAX_MOVED and places.count("heap") == 8, places
    assert lane.call("kept_sums", ListOf(D)) == [float((a + k + 1).sum()) for k in range(allocator.MAX_MOVED + 8)]
    assert other.call("drop_kept", I) == allocator.MAX_MOVED + 8
    lane.call("plus_one", N, [a])
    assert lane.call("places", Tag.STRING) == "mapping"
    lane.close()
    other.close()
