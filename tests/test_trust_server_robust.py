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

from lesspy_kernel import protocol
from lesspy_kernel.client import END, Lane, RemoteError
from lesspy_kernel.protocol import ErrorKind, Record, Tag, decode_call, encode_call
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
    before = protocol.prefix_cache_bytes()
    for i in range(1500):
        call = decode_call(encode_call(f"missing_{i}", big_record(i, 100), []))
        assert call.name == f"missing_{i}"
        assert protocol.prefix_cache_bytes() <= protocol.PREFIX_BUDGET
    assert protocol.prefix_cache_bytes() > before          # it does cache
    protocol.forget_prefix("missing_1499")
    assert b"missing_1499" not in protocol._PREFIXES
    # a hot call stays fast after a flood: it is decoded again and kept
    frame = encode_call("add_ints", I, [1, 2], [I, I])
    assert decode_call(frame).args == [1, 2]
    assert decode_call(frame).args == [1, 2]


def test_thousands_of_large_descriptors_do_not_grow_the_server(server):
    """1,500 calls with large distinct record descriptors, to missing and to existing functions: the server's
    RSS stays within a small bound (it grew by hundreds of MiB: every prefix was kept), and it still answers."""
    lane = Lane(server.folder)
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
    assert grown < 40, f"the server grew by {grown:.0f} MiB over 1,500 calls"


# ---------------------------------------------------------------- item 14: bounded logs


def test_a_client_that_stops_reading_its_notify_socket_does_not_flood_the_log(tmp_path):
    """A client whose notify socket is never read: once its buffer is full every reply's wake-up byte fails.
    The log says so once per lane, not once per call (it said "client went away" for nearly every call)."""
    log_file = tmp_path / "server.log"
    with Headless(tmp_path / "work", TRUST_MODULE, "--keep-alive", "--log-file", str(log_file)) as s:
        lane = Lane(s.folder)
        lane.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        for i in range(3000):
            lane.send_raw(encode_call("add_ints", I, [i, 1], [I, I]))
            lane.resp.waiting = 1                  # "wake me": the server sends a byte for every reply
            while lane.resp.sequence < lane.seq:   # ...which this client never reads
                time.sleep(0)
            assert protocol.decode_value(bytes(lane.resp.payload(16))[:5]) == i + 1
        lane.resp.waiting = 0
        other = Lane(s.folder)
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
            lane, other = Lane(s.folder), Lane(s.folder)
            assert other.call("add_ints", I, [1, 2], [I, I]) == 3
            with pytest.raises(RemoteError) as e:
                lane.call("big_array", N, [100], [I])
            message = e.value.reply.message
            assert "file system is full" in message and "big_array" in message, message
            assert "bytes are free" in message and "134,217,728" in message, message
            assert s.proc.poll() is None, s.output()
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
            first = Lane(s.folder)
            filler = mount / "filler"
            with open(filler, "wb") as f:             # fill what is left
                with contextlib.suppress(OSError):
                    while True:
                        f.write(bytes(1 << 20))
                        f.flush()
            with pytest.raises(Exception) as e:          # HandshakeError: refused, with the reason
                Lane(s.folder)
            assert "file system is full" in str(e.value), str(e.value)
            assert first.call("add_ints", I, [1, 2], [I, I]) == 3
            filler.unlink()
            second = Lane(s.folder)
            assert second.call("add_ints", I, [3, 4], [I, I]) == 7
            first.close()
            second.close()
        finally:
            s.stop()


def test_a_client_that_cuts_its_request_file_gets_an_error_and_the_server_lives(server):
    lane = Lane(server.folder)
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
    other = Lane(server.folder)
    assert other.call("echo_bytes", Tag.BYTES, [blob], [Tag.BYTES]) == blob
    other.close()
    lane.sock.close()


def test_a_client_that_cuts_the_response_file_gets_an_error_and_the_lane_goes_on(server):
    lane = Lane(server.folder)
    blob = bytes(range(256)) * 800
    assert lane.call("echo_bytes", Tag.BYTES, [blob], [Tag.BYTES]) == blob     # the response file grows
    os.truncate(lane.resp.path, 4096)
    with pytest.raises(RemoteError) as e:
        lane.call("echo_bytes", Tag.BYTES, [blob], [Tag.BYTES])
    assert "resp.mmf had been cut to 4,096 bytes" in e.value.reply.message, e.value.reply.message
    assert server.proc.poll() is None, server.output()
    assert lane.call("echo_bytes", Tag.BYTES, [blob], [Tag.BYTES]) == blob     # its size was given back
    other = Lane(server.folder)
    assert other.call("add_ints", I, [1, 2], [I, I]) == 3
    other.close()
    lane.close()
