"""Issue 14 ("Trust"), the Python server's side: what a careless or hostile client, a full file system or a
cancelled call must never do to a headless server (a whole notebook kernel, in a notebook).

Real headless servers (tests/servers.py) and the Python client of docs/PROTOCOL.md (lesspy_kernel.client).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kernels import FLAVOURS, kernel
from lesspy_kernel import wire
from lesspy_kernel.client import END, ClientLane, RemoteError
from lesspy_kernel.wire import handshake
from lesspy_kernel.transport.mapping import PAGE
from lesspy_kernel.coerce import encode_call
from lesspy_kernel.wire import ErrorKind, Record, Tag, decode_call, fastdecode
from servers import ROOT, Headless, wait_for

TRUST_MODULE = ROOT / "tests" / "pymodules" / "trust_module.py"
I, D, S, N = Tag.INT32, Tag.FLOAT64, Tag.STRING, Tag.NDARRAY


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def big_record(i: int, fields: int = 400) -> Record:
    """A record descriptor of a few KiB that no other call sends (distinct names)."""
    return Record(tuple((f"field_{j}_of_record_{i}", D if j % 2 else S) for j in range(fields)), f"Record{i}")


@pytest.fixture
def server(tmp_path):
    with Headless(tmp_path / "work", TRUST_MODULE, "--keep-alive", "--capacity", "64K") as s:
        yield s


# ---------------------------------------------------------------- item 11: the call-prefix cache is bounded


def test_prefix_cache_stays_within_its_byte_budget_in_process():
    """Decoding calls with thousands of distinct large return descriptors keeps the cache under its budget."""
    before = wire.prefix_cache_bytes()
    for i in range(1500):
        call = decode_call(encode_call(f"missing_{i}", big_record(i, 100), []))
        assert call.name == f"missing_{i}"
        assert wire.prefix_cache_bytes() <= wire.PREFIX_BUDGET
    assert wire.prefix_cache_bytes() > before          # it does cache
    wire.forget_prefix("missing_1499")
    assert b"missing_1499" not in fastdecode._PREFIXES
    # a hot call stays fast after a flood: it is decoded again and kept
    frame = encode_call("add_ints", I, [1, 2], [I, I])
    assert decode_call(frame).args == [1, 2]
    assert decode_call(frame).args == [1, 2]


def test_thousands_of_large_descriptors_do_not_grow_the_server(server):
    """1,500 calls with large distinct record descriptors, to missing and to existing functions: the server's
    RSS stays within a small bound (it grew by hundreds of MiB: every prefix was kept), and it still answers."""
    lane = ClientLane(server.folder)
    assert lane.call("add_ints", I, [1, 2], [I, I]) == 3
    start = rss_mib(server.pid)
    for i in range(1500):
        name = "add_ints" if i % 3 == 0 else f"missing_function_{i}"
        with pytest.raises(RemoteError) as e:
            lane.call(name, big_record(i), [1, 2], [I, I])
        assert e.value.reply.kind in (ErrorKind.FUNCTION_NOT_FOUND, ErrorKind.RESULT_MISMATCH)
    grown = rss_mib(server.pid) - start
    assert lane.call("add_ints", I, [40, 2], [I, I]) == 42
    lane.close()
    assert grown < 25, f"the server grew by {grown:.0f} MiB over 1,500 calls"


# ---------------------------------------------------------------- item 14: bounded logs


def test_a_client_that_stops_reading_its_notify_socket_does_not_flood_the_log(tmp_path):
    """A client whose notify socket is never read: once its buffer is full every reply's wake-up byte fails.
    The log says so once per lane, not once per call (it said "client went away" for nearly every call)."""
    log_file = tmp_path / "server.log"
    with Headless(tmp_path / "work", TRUST_MODULE, "--keep-alive", "--log-file", str(log_file)) as s:
        lane = ClientLane(s.folder)
        lane.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        for i in range(3000):
            lane.send_raw(encode_call("add_ints", I, [i, 1], [I, I]))
            lane.resp.waiting = 1                  # "wake me": the server sends a byte for every reply
            while lane.resp.sequence < lane.seq:   # ...which this client never reads
                time.sleep(0)
            assert wire.decode_value(bytes(lane.resp.payload(16))[:5]) == i + 1
        lane.resp.waiting = 0
        other = ClientLane(s.folder)
        assert other.call("add_ints", I, [1, 2], [I, I]) == 3
        other.close()
        lane.close()
    text = log_file.read_text()
    went_away = [line for line in text.splitlines() if "went away" in line or "notify socket" in line]
    assert 1 <= len(went_away) <= 2, f"{len(went_away)} log lines about the client's socket:\n" + \
        "\n".join(went_away[:5])
    assert log_file.stat().st_size < 64 * 1024


# ---------------------------------------------------------------- item 9: no SIGBUS, whatever the file system or client


@contextlib.contextmanager
def small_tmpfs(tmp_path: Path, size: str = "16m"):
    """A tmpfs of `size` mounted on a new folder (root only), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs (a full file system on demand)")
    if shutil.which("mount") is None:
        pytest.skip("mount is not installed")
    where = tmp_path / "small"
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_a_result_larger_than_the_file_system_is_an_error_not_a_crash(tmp_path):
    """A 100 MiB result, a work folder on a 16 MiB tmpfs: the caller gets an error saying the file system is
    full (with the sizes), and the server goes on serving this lane and the others (it died of SIGBUS)."""
    with small_tmpfs(tmp_path) as mount:
        s = Headless(mount / "work", TRUST_MODULE, "--keep-alive", "--capacity", "1M")
        try:
            lane, other = ClientLane(s.folder), ClientLane(s.folder)
            assert other.call("add_ints", I, [1, 2], [I, I]) == 3
            with pytest.raises(RemoteError) as e:
                lane.call("big_array", N, [100], [I])
            message = e.value.reply.message
            assert "file system is full" in message and "big_array" in message, message
            assert "bytes are free" in message and "134,217,728" in message, message
            assert s.proc.poll() is None, s.output()
            for _ in range(3):                         # each time the same error, and one log line, no traceback
                with pytest.raises(RemoteError):
                    lane.call("big_array", N, [100], [I])
            assert "Traceback" not in s.output() and s.output().count("file system is full") == 4, s.output()
            assert lane.call("add_ints", I, [40, 2], [I, I]) == 42
            assert other.call("add_ints", I, [2, 3], [I, I]) == 5
            small = lane.call("big_array", N, [1], [I])
            assert small.shape == (131072,) and small.sum() == 131072
            lane.close()
            other.close()
        finally:
            s.stop()


def test_opening_a_lane_on_a_full_file_system_is_refused_with_the_reason(tmp_path):
    """Each lane's response file has its room reserved when it is made: when there is none, the lane is
    refused with a message naming the full file system, and the lanes already open go on."""
    with small_tmpfs(tmp_path, "8m") as mount:
        s = Headless(mount / "work", TRUST_MODULE, "--keep-alive", "--capacity", "2M")
        try:
            first = ClientLane(s.folder)
            filler = mount / "filler"
            with open(filler, "wb") as f:             # fill what is left
                with contextlib.suppress(OSError):
                    while True:
                        f.write(bytes(1 << 20))
                        f.flush()
            with pytest.raises(Exception) as e:          # HandshakeError: refused, with the reason
                ClientLane(s.folder)
            assert "file system is full" in str(e.value), str(e.value)
            assert first.call("add_ints", I, [1, 2], [I, I]) == 3
            filler.unlink()
            second = ClientLane(s.folder)
            assert second.call("add_ints", I, [3, 4], [I, I]) == 7
            first.close()
            second.close()
        finally:
            s.stop()


def test_a_client_that_cuts_its_request_file_gets_an_error_and_the_server_lives(server):
    lane = ClientLane(server.folder)
    blob = bytes(range(256)) * 800                       # 200 KiB: the request file grows, the server maps it
    assert lane.call("echo_bytes", Tag.BYTES, [blob], [Tag.BYTES]) == blob
    frame = encode_call("echo_bytes", Tag.BYTES, [blob], [Tag.BYTES])
    lane.req.view[64:64 + len(frame)] = frame             # the frame is in the file...
    os.truncate(lane.req.path, 4096)                     # ...then the client cuts the file under it
    lane.hand_over(len(frame))
    with pytest.raises(RemoteError) as e:
        lane.receive()
    assert e.value.reply.kind == ErrorKind.MALFORMED_REQUEST
    assert "req.mmf is 4,096 bytes long" in e.value.reply.message, e.value.reply.message
    assert server.proc.poll() is None, server.output()
    other = ClientLane(server.folder)
    assert other.call("echo_bytes", Tag.BYTES, [blob], [Tag.BYTES]) == blob
    other.close()
    lane.sock.close()


def test_a_client_that_cuts_the_response_file_gets_an_error_and_the_lane_goes_on(server):
    lane = ClientLane(server.folder)
    blob = bytes(range(256)) * 800
    assert lane.call("echo_bytes", Tag.BYTES, [blob], [Tag.BYTES]) == blob     # the response file grows
    os.truncate(lane.resp.path, 4096)
    with pytest.raises(RemoteError) as e:
        lane.call("echo_bytes", Tag.BYTES, [blob], [Tag.BYTES])
    assert "resp.mmf had been cut to 4,096 bytes" in e.value.reply.message, e.value.reply.message
    assert server.proc.poll() is None, server.output()
    assert lane.call("echo_bytes", Tag.BYTES, [blob], [Tag.BYTES]) == blob     # its size was given back
    other = ClientLane(server.folder)
    assert other.call("add_ints", I, [1, 2], [I, I]) == 3
    other.close()
    lane.close()


# ---------------------------------------------------------------- item 8: cancellation that cancels, clear text errors


def test_a_cancelled_async_def_stops_at_its_await(server):
    """Cancelling an `async def` that awaits for 5 s: the caller's CANCELLED error comes within a second, the
    coroutine saw CancelledError at its await and never finished (it ran on until its await ended)."""
    lane = ClientLane(server.folder)
    lane.call("clear_events", Tag.NONE)
    lane.send_raw(encode_call("async_sleep_then", I, [5.0, 7], [D, I]))
    time.sleep(0.3)
    t0 = time.monotonic()
    lane.cancel()
    with pytest.raises(RemoteError) as e:
        lane.receive()
    took = time.monotonic() - t0
    assert e.value.reply.kind == ErrorKind.CANCELLED, e.value.reply.message
    assert "async_sleep_then was interrupted" in e.value.reply.message
    assert took < 1.5, f"the cancelled coroutine ran on for {took:.1f} s"
    assert lane.call("events", wire.ListOf(S)) == ["async started", "async cancelled"]
    assert lane.call("async_sleep_then", I, [0.01, 9], [D, I]) == 9       # the lane (and asyncio) go on
    lane.close()


def test_a_cancelled_async_def_does_not_wait_for_the_thread_it_started(server):
    """An `async def` awaiting asyncio.to_thread: the thread cannot be stopped, but the cancelled call answers at
    once (asyncio.run waited for the thread, 5 s) and the lane goes on meanwhile."""
    lane = ClientLane(server.folder)
    lane.send_raw(encode_call("async_offload", I, [5.0, 7], [D, I]))
    time.sleep(0.3)
    t0 = time.monotonic()
    lane.cancel()
    with pytest.raises(RemoteError) as e:
        lane.receive()
    assert e.value.reply.kind == ErrorKind.CANCELLED
    assert time.monotonic() - t0 < 1.5, f"the cancelled call answered after {time.monotonic() - t0:.1f} s"
    assert lane.call("async_offload", I, [0.01, 9], [D, I]) == 9
    lane.close()


def test_an_app_that_exits_during_an_async_def_does_not_keep_the_server_alive(tmp_path):
    """A client process that exits while its `async def` awaits: the server (--exit-when-idle) stops within a
    few seconds, not when the await ends (60 s)."""
    s = Headless(tmp_path / "work", TRUST_MODULE, "--exit-when-idle")
    try:
        app = subprocess.Popen([sys.executable, "-c", f"""
import sys
sys.path.insert(0, {str(ROOT / 'tests')!r})
from lesspy_kernel.client import ClientLane
from lesspy_kernel.coerce import encode_call
from lesspy_kernel.wire import Tag
lane = ClientLane({str(s.folder)!r})
lane.send_raw(encode_call("async_sleep_then", Tag.INT32, [60.0, 7], [Tag.FLOAT64, Tag.INT32]))
print("sent", flush=True)
"""], stdout=subprocess.PIPE, text=True)
        assert app.stdout.readline().strip() == "sent"
        assert app.wait(20) == 0
        t0 = time.monotonic()
        s.proc.wait(10)
        assert time.monotonic() - t0 < 10
    finally:
        s.stop()


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_cancelled_async_def_stops_in_the_notebook_too(tmp_path, flavour):
    """In a notebook an `async def` is awaited on the kernel's own loop, after the call's synchronous part: a
    cancel cancels that task too (it could not be stopped at all), and the notebook goes on."""
    with kernel(tmp_path, flavour) as k:
        k.run("%load_ext lesspy_kernel\nimport asyncio\nevents = []\n"
              "async def nap(seconds, value):\n    events.append('started')\n    try:\n"
              "        await asyncio.sleep(seconds)\n    except asyncio.CancelledError:\n"
              "        events.append('cancelled')\n        raise\n    events.append('finished')\n    return value\n"
              "def get_events():\n    return list(events)\n"
              "%lesspy serve --name nap")
        lane = ClientLane(k.folder("nap"))
        lane.send_raw(encode_call("nap", I, [5.0, 7], [D, I]))
        time.sleep(0.5)
        t0 = time.monotonic()
        lane.cancel()
        with pytest.raises(RemoteError) as e:
            lane.receive()
        took = time.monotonic() - t0
        assert e.value.reply.kind == ErrorKind.CANCELLED, e.value.reply.message
        assert took < 2.5, f"the cancelled coroutine ran on for {took:.1f} s"
        assert lane.call("get_events", wire.ListOf(S)) == ["started", "cancelled"]
        assert lane.call("nap", I, [0.01, 9], [D, I]) == 9
        lane.close()
        assert "3" in k.run("print(1 + 2)", timeout=20)
        k.run("%lesspy stop")


def test_a_cancelled_stream_delivers_no_more_items(server):
    """Once the cancel word names one of a stream's requests, the stream is over: the next item request gets
    CANCELLED, not an item (items kept coming), and the generator is closed."""
    lane = ClientLane(server.folder)
    lane.call("clear_events", Tag.NONE)
    lane.send_raw(encode_call("count_up", I, [1000], [I]), wire.REQUEST_STREAM)
    assert lane.receive() == 0
    lane.send_raw(b"", wire.REQUEST_NEXT)
    assert lane.receive() == 1
    lane.cancel()                                  # the caller gives up on the stream (its last request)
    lane.send_raw(b"", wire.REQUEST_NEXT)
    with pytest.raises(RemoteError) as e:
        lane.receive()
    assert e.value.reply.kind == ErrorKind.CANCELLED and "stream of count_up was cancelled" in e.value.reply.message
    lane.send_raw(b"", wire.REQUEST_NEXT)
    with pytest.raises(RemoteError):               # nothing is open any more
        lane.receive()
    assert lane.call("events", wire.ListOf(S)) == ["item 0", "item 1", "stream closed"]
    assert list(lane.stream("count_up", I, [3], [I])) == [0, 1, 2]    # a new stream on the lane works
    lane.close()


def test_a_lone_surrogate_in_a_result_is_a_clear_error(server):
    """A str with a lone surrogate cannot become UTF-8: the caller learns which function, where, and what to
    do (it got a bare "could not encode" server error), and the lane goes on."""
    lane = ClientLane(server.folder)
    with pytest.raises(RemoteError) as e:
        lane.call("lone_surrogate", S)
    reply = e.value.reply
    assert reply.kind == ErrorKind.RESULT_MISMATCH, reply.message
    assert "lone_surrogate returned" in reply.message and "lone surrogate at index 2 (U+D800" in reply.message
    assert "replace it" in reply.message
    with pytest.raises(RemoteError) as e:
        lane.call("surrogate_in_list", wire.ListOf(S))
    assert "element 1" in e.value.reply.message and "lone surrogate at index 1" in e.value.reply.message
    assert lane.call("add_ints", I, [1, 2], [I, I]) == 3
    lane.close()


def test_a_none_row_in_an_int_jagged_result_says_what_to_declare(server):
    lane = ClientLane(server.folder)
    with pytest.raises(RemoteError) as e:
        lane.call("jagged_with_none", Tag.INT32_JAGGED)
    assert e.value.reply.kind == ErrorKind.RESULT_MISMATCH
    assert "row 1 is None" in e.value.reply.message and "List<int[]>" in e.value.reply.message
    rows = lane.call("jagged_with_none", wire.ListOf(Tag.INT32_ARRAY))
    assert rows[0].tolist() == [7] and rows[1] is None
    lane.close()


def test_a_lone_surrogate_sent_by_a_client_is_named_as_such(server):
    """A client that encodes a lone surrogate (bytes ED A0 80) gets an error that says so, not one blaming
    mismatched protocol versions."""
    lane = ClientLane(server.folder)
    good = encode_call("echo_text", S, ["abXYZcd"], [S])
    lane.send_raw(good.replace(b"XYZ", b"\xed\xa0\x80"))
    with pytest.raises(RemoteError) as e:
        lane.receive()
    message = e.value.reply.message
    assert e.value.reply.kind == ErrorKind.MALFORMED_REQUEST
    assert "lone UTF-16 surrogate (U+D800" in message and "disagree" not in message, message
    assert lane.call("add_ints", I, [1, 2], [I, I]) == 3
    lane.close()


def _cut_rounds(folder: Path, rounds: int, seed: int) -> dict:
    """Rounds of a client that cuts one of its lane files to a random size (at least one byte) between calls,
    then makes a call of a random size: every call gets its result or a clear error, the server lives."""
    import random
    rng = random.Random(seed)
    seen = {"ok": 0, "cut": 0}
    lane = ClientLane(folder)
    for _ in range(rounds):
        blob = bytes(rng.randrange(256) for _ in range(16)) * rng.choice((1, 100, 8000, 20000))
        frame = encode_call("echo_bytes", Tag.BYTES, [blob], [Tag.BYTES])
        which = rng.choice(("req", "resp", "none"))
        cut = 1 << 40
        if which == "req":
            lane.req.grow(len(frame))
            lane.req.view[64:64 + len(frame)] = frame
            cut = rng.randrange(1, lane.req.capacity)
            os.truncate(lane.req.path, cut)
            lane.hand_over(len(frame))
            lane.sock.sendall(handshake.CALL)      # the cut may have zeroed the server's `waiting` word: wake it
        else:
            if which == "resp":
                cut = rng.randrange(1, lane.resp.capacity)
                os.truncate(lane.resp.path, cut)
            lane.send_raw(frame)
        # a request cut inside its first page is read as what is left there (zeros past the cut): not checked,
        # since that page always exists (no SIGBUS), and a size check per call would cost every call
        in_first_page = which == "req" and cut < min(PAGE, 64 + len(frame))
        try:
            value = lane.receive()
            start = 64 + len(frame) - len(blob)
            if in_first_page and cut < start + len(blob):
                kept = max(0, cut - start)
                assert value == blob[:kept] + bytes(len(blob) - kept)
            else:
                assert value == blob
            seen["ok"] += 1
        except RemoteError as e:
            seen["cut"] += 1
            message = e.reply.message
            assert in_first_page or "cut" in message or "malformed frame" in message, message
        except wire.FrameError:                # the client cut the response header itself: its own loss
            assert which == "resp" and cut < 64
            seen["cut"] += 1
            which = "req"
        if which == "req":                         # its own mapping of the cut file is no longer safe to write
            lane.sock.close()
            lane = ClientLane(folder)
    assert lane.call("add_ints", I, [1, 2], [I, I]) == 3
    lane.close()
    return seen


def test_clients_that_cut_their_lane_files_between_calls_never_crash_the_server(server):
    seen = _cut_rounds(server.folder, 40, 14)
    assert server.proc.poll() is None, server.output()
    assert seen["ok"] and seen["cut"], seen


@pytest.mark.stress
def test_stress_clients_that_cut_their_lane_files(server):
    seen = _cut_rounds(server.folder, 1000, 1414)
    assert server.proc.poll() is None, server.output()
    assert seen["ok"] and seen["cut"], seen


@pytest.mark.stress
def test_stress_cancelled_async_defs_and_streams(server):
    """Many cancelled coroutines and streams on two lanes: each is cancelled promptly, nothing leaks into the
    next call, and the server's threads do not grow."""
    lanes = [ClientLane(server.folder), ClientLane(server.folder)]
    for round_ in range(30):
        lane = lanes[round_ % 2]
        lane.send_raw(encode_call("async_sleep_then", I, [5.0, 7], [D, I]))
        time.sleep(0.05)
        t0 = time.monotonic()
        lane.cancel()
        with pytest.raises(RemoteError) as e:
            lane.receive()
        assert e.value.reply.kind == ErrorKind.CANCELLED and time.monotonic() - t0 < 1.5
        lane.send_raw(encode_call("count_up", I, [100], [I]), wire.REQUEST_STREAM)
        assert lane.receive() == 0
        lane.cancel()
        lane.send_raw(b"", wire.REQUEST_NEXT)
        with pytest.raises(RemoteError):
            lane.receive()
        assert lane.call("add_ints", I, [round_, 1], [I, I]) == round_ + 1
    threads = int(next(line for line in Path(f"/proc/{server.pid}/status").read_text().splitlines()
                       if line.startswith("Threads:")).split()[1])
    assert threads < 12, f"{threads} threads"
    for lane in lanes:
        lane.close()


@pytest.mark.stress
def test_stress_ten_thousand_descriptors(server):
    lane = ClientLane(server.folder)
    assert lane.call("add_ints", I, [1, 2], [I, I]) == 3
    start = rss_mib(server.pid)
    for i in range(10000):
        with pytest.raises(RemoteError):
            lane.call(f"missing_{i}" if i % 2 else "add_ints", big_record(i, 200), [1, 2], [I, I])
    grown = rss_mib(server.pid) - start
    lane.close()
    assert grown < 40, f"the server grew by {grown:.0f} MiB over 10,000 calls"


def test_a_cut_response_file_never_receives_an_array_made_in_the_mapping(server):
    """An NdArray result is made straight in the response file (allocator.py): after the client cut that file,
    the call is refused with the reason (the server died of SIGBUS), the file gets its size back, and the next
    call makes its array there again."""
    lane = ClientLane(server.folder)
    blob = bytes(1 << 20)
    assert lane.call("echo_bytes", Tag.BYTES, [blob], [Tag.BYTES]) == blob        # the response file: 2 MiB
    os.truncate(lane.resp.path, 4096)
    with pytest.raises(RemoteError) as e:
        lane.call("big_array", N, [1], [I])
    assert "big_array was not run" in e.value.reply.message and "had been cut" in e.value.reply.message
    assert server.proc.poll() is None, server.output()
    result = lane.call("big_array", N, [1], [I])
    assert result.shape == (131072,) and result.sum() == 131072
    lane.close()


def test_a_python_client_on_a_full_file_system_gets_an_error_not_sigbus(tmp_path):
    """The Python client writes a 4 MiB argument into its request file (within its first capacity, made
    without its room by the server) on a full file system: DiskFull, not a SIGBUS in the client."""
    with small_tmpfs(tmp_path) as mount:
        s = Headless(mount / "work", TRUST_MODULE, "--keep-alive", "--capacity", "8M")
        try:
            app = subprocess.Popen([sys.executable, "-c", f"""
import sys
from lesspy_kernel.client import ClientLane
from lesspy_kernel.wire import Tag
lane = ClientLane({str(s.folder)!r})
print("open", flush=True)
sys.stdin.readline()
try:
    lane.call("echo_bytes", Tag.BYTES, [bytes(4 << 20)], [Tag.BYTES])
except OSError as e:
    print("refused:", e)
"""], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            assert app.stdout.readline().strip() == "open"
            filler = mount / "filler"
            with open(filler, "wb") as f:             # the lane is open: now the file system fills up
                with contextlib.suppress(OSError):
                    while True:
                        f.write(bytes(1 << 20))
                        f.flush()
            out, err = app.communicate("go\n", timeout=60)
            assert app.returncode == 0, (app.returncode, err)
            assert "refused: the work folder's file system is full" in out, out
            filler.unlink()
            lane = ClientLane(s.folder)
            assert lane.call("add_ints", I, [1, 2], [I, I]) == 3
            lane.close()
        finally:
            s.stop()
